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
