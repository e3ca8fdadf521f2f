-- The events sqlite-es expects, the global log filled by a trigger in the same transaction as
-- each event (SQLite has one writer at a time, so positions follow commit order), and the
-- consumers' checkpoints.
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE event_log
(
  position       integer PRIMARY KEY AUTOINCREMENT,
  aggregate_type text    NOT NULL,
  aggregate_id   text    NOT NULL,
  sequence       integer NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE TRIGGER events_into_log AFTER INSERT ON events
BEGIN
  INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
END;
CREATE TABLE consumer_checkpoints
(
  consumer text    PRIMARY KEY,
  position integer NOT NULL
) STRICT;
