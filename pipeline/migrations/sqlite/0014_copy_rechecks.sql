-- The rotating re-checks' index (pipeline/src/recheck/): one row per copy that reached Secured,
-- kept from the log's BackupCycle events (Secured, Rechecked, RecheckFailed, Failed) under the
-- `rechecks` checkpoint and rebuildable from it; the cycle aggregate stays the truth.
--   proven_at  when the copy was last read back intact (Secured, then each Rechecked), Unix ms
--   slot       the re-check slot it is due for next (NULL: no longer watched, its cycle failed)
--   due_at     when a sweep may take it: the slot, or later while a sweep holds it (a claim
--              that runs out gives it back to the next sweep)
--   failing    the reason of its last re-check when that failed, else NULL
--   position   the log position of the last event the row reflects (never replaced by older)
CREATE TABLE copy_rechecks
(
  cycle_id    text   PRIMARY KEY,
  tenant_id   text   NOT NULL,
  instance_id text   NOT NULL,
  proven_at   bigint NOT NULL,
  slot        bigint,
  due_at      bigint,
  failing     text,
  position    bigint NOT NULL
);
CREATE INDEX copy_rechecks_due ON copy_rechecks (due_at, cycle_id) WHERE due_at IS NOT NULL;
CREATE INDEX copy_rechecks_tenant ON copy_rechecks (tenant_id, proven_at) WHERE slot IS NOT NULL;
