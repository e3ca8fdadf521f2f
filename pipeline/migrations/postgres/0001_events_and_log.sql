-- The events postgres-es expects, the global log filled by a trigger in the same transaction as
-- each event, and the consumers' checkpoints. PostgreSQL hands out sequence values before
-- commit, so a reader could see position 8 committed while 7 is still in flight and skip 7 for
-- ever: the BEFORE trigger takes a transaction-scoped advisory lock before any row is written,
-- so event-writing transactions commit one at a time and positions follow commit order (taking
-- it before the insert means no transaction holds a row lock while it waits: no deadlock).
-- Commits notify restorable_events, so consumers in other processes wake at once.
CREATE TABLE events
(
  aggregate_type text                         NOT NULL,
  aggregate_id   text                         NOT NULL,
  sequence       bigint CHECK (sequence >= 0) NOT NULL,
  event_type     text                         NOT NULL,
  event_version  text                         NOT NULL,
  payload        jsonb                        NOT NULL,
  metadata       jsonb                        NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE event_log
(
  position       bigserial PRIMARY KEY,
  aggregate_type text   NOT NULL,
  aggregate_id   text   NOT NULL,
  sequence       bigint NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE FUNCTION restorable_serialize_event_writers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(72835610);
  RETURN NEW;
END $$;
CREATE FUNCTION restorable_events_into_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
  PERFORM pg_notify('restorable_events', '');
  RETURN NEW;
END $$;
CREATE TRIGGER events_serialize_writers BEFORE INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION restorable_serialize_event_writers();
CREATE TRIGGER events_into_log AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION restorable_events_into_log();
CREATE TABLE consumer_checkpoints
(
  consumer text   PRIMARY KEY,
  position bigint NOT NULL
);
