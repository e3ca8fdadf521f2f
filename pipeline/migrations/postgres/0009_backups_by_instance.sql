-- The views that grow with history (backups: a row per cycle; audit: a row per recorded action)
-- are no longer held in memory but read per request from read_model. An instance's page lists
-- its cycles: the backups rows carry their instance (NULL for every other view) and a partial
-- index holds only them, so the page reads its instance's rows, not the whole view. Rows stored
-- before this migration get their instance from their document.
ALTER TABLE read_model ADD COLUMN instance_id text;
UPDATE read_model SET instance_id = (doc::json) ->> 'instance_id' WHERE view = 'backups';
CREATE INDEX read_model_by_instance ON read_model (instance_id, view)
  WHERE instance_id IS NOT NULL;
