-- A commit's events and their links in one call (pipeline/src/store/chain/mod.rs): the process
-- computed each link from the tenant's head it remembers, and sends
-- {"tenant", "after" (the head's index it chained to), "events": [{the event's columns, index,
-- hash}]}. The function takes the writers' turn (the advisory lock of migration 1's trigger),
-- then compares the tenant's head with "after" BEFORE writing anything: a stale head is refused
-- with SQLSTATE RSTAL and nothing was inserted, so no log position was drawn (a position drawn
-- by a rolled-back transaction would leave a gap in the log readers follow). The caller redoes
-- the commit reading the head. Each event goes through the same triggers as any insert; its
-- link is written at the position the trigger gave it.
CREATE FUNCTION restorable_append_chained(batch jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  e       jsonb;
  head    bigint;
  linked  bigint;
  written bigint := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(72835610);
  SELECT COALESCE((SELECT tenant_index FROM event_chain WHERE tenant = batch->>'tenant'
                   ORDER BY tenant_index DESC LIMIT 1), 0) INTO head;
  IF head <> (batch->>'after')::bigint THEN
    RAISE EXCEPTION 'the chain of % is at %, not %', batch->>'tenant', head, batch->>'after'
      USING ERRCODE = 'RSTAL';
  END IF;
  FOR e IN SELECT value FROM jsonb_array_elements(batch->'events') LOOP
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata)
    VALUES (e->>'aggregate_type', e->>'aggregate_id', (e->>'sequence')::bigint,
            e->>'event_type', e->>'event_version', e->'payload', e->'metadata');
    INSERT INTO event_chain (position, tenant, tenant_index, hash)
    SELECT position, batch->>'tenant', (e->>'index')::bigint, e->>'hash' FROM event_log
    WHERE aggregate_type = e->>'aggregate_type' AND aggregate_id = e->>'aggregate_id'
      AND sequence = (e->>'sequence')::bigint;
    GET DIAGNOSTICS linked = ROW_COUNT;
    IF linked <> 1 THEN
      RAISE EXCEPTION '% % #% has no log position to chain',
        e->>'aggregate_type', e->>'aggregate_id', e->>'sequence';
    END IF;
    written := written + 1;
  END LOOP;
  RETURN written;
END $$;
-- When the history was last checked against the checkpoints (by any process), so a restart
-- does not check it again before it is due (pipeline/src/evidence/watch.rs). One row.
CREATE TABLE history_checks
(
  id            integer PRIMARY KEY CHECK (id = 1),
  checked_at_ms bigint  NOT NULL
);
