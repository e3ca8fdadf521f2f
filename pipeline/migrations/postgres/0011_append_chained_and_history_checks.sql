-- A commit's events and their links in one call (pipeline/src/store/chain/mod.rs): the process
-- computed each link from the tenant's head it remembers, and sends the batch as a JSON array of
-- objects (the event's columns, then tenant, index and hash). Each event goes through the same
-- triggers as any insert (the writers' turn, the log position); its link is written at that
-- position. A stale head makes UNIQUE (tenant, tenant_index) refuse the link: the caller rolls
-- back and redoes the commit reading the head.
CREATE FUNCTION restorable_append_chained(batch jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  e       jsonb;
  linked  bigint;
  written bigint := 0;
BEGIN
  FOR e IN SELECT value FROM jsonb_array_elements(batch) LOOP
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata)
    VALUES (e->>'aggregate_type', e->>'aggregate_id', (e->>'sequence')::bigint,
            e->>'event_type', e->>'event_version', e->'payload', e->'metadata');
    INSERT INTO event_chain (position, tenant, tenant_index, hash)
    SELECT position, e->>'tenant', (e->>'index')::bigint, e->>'hash' FROM event_log
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
