-- snapshots: a cache of an aggregate's state after the event at last_sequence, so a load reads
-- that row and only the events after it instead of the whole history. One row per aggregate,
-- written forward only (a write never lowers last_sequence). snapshot_version names the code
-- that wrote the payload (the aggregate's SNAPSHOT_VERSION and a fingerprint of its shape); a
-- row of another version, or one that does not deserialize, is ignored (full replay) and
-- replaced. taken_at is the database clock in Unix milliseconds. Events stay the only truth:
-- the table can be emptied at any time.
CREATE TABLE snapshots
(
  aggregate_type   text                              NOT NULL,
  aggregate_id     text                              NOT NULL,
  snapshot_version text                              NOT NULL,
  last_sequence    bigint CHECK (last_sequence >= 0) NOT NULL,
  payload          jsonb                             NOT NULL,
  taken_at         bigint                            NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
