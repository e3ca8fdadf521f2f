-- Retention (pipeline/src/retention/): the stored copies' index (copy_rechecks) gains each copy's
-- Object Lock retain-until and now has a row from Captured on (a copy whose cycle failed before
-- Secured is still in the vault and is removed when its lock runs out; such a row has no slot:
-- it is never re-checked); the scheduler's index gains each removed instance's purge date.
--   copy_rechecks.retain_until   the copy's lock as last known, Unix ms (NULL once removed)
--   instance_schedule.purge_at   when a removed instance's copies and credentials go (NULL
--                                 for a live instance, and once purged)
ALTER TABLE copy_rechecks ADD COLUMN retain_until bigint;
ALTER TABLE instance_schedule ADD COLUMN purge_at bigint;
-- Both are kept from the log and refill on their next refresh.
DELETE FROM copy_rechecks;
DELETE FROM instance_schedule;
DELETE FROM consumer_checkpoints WHERE consumer IN ('rechecks', 'schedule');
CREATE INDEX copy_rechecks_expiry ON copy_rechecks (retain_until, instance_id)
  WHERE retain_until IS NOT NULL;
CREATE INDEX copy_rechecks_instance ON copy_rechecks (instance_id) WHERE retain_until IS NOT NULL;
CREATE INDEX instance_schedule_purge ON instance_schedule (purge_at) WHERE purge_at IS NOT NULL;
