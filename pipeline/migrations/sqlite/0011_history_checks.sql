-- When the history was last checked against the checkpoints (by any process), so a restart
-- does not check it again before it is due (pipeline/src/evidence/watch.rs). One row.
CREATE TABLE history_checks
(
  id            integer PRIMARY KEY CHECK (id = 1),
  checked_at_ms bigint  NOT NULL
);
