-- The scheduler's index: one row per Instance aggregate with the moment it is next due
-- (due_at, Unix milliseconds, from Instance::next_due_at; NULL while none: not enrolled,
-- stopped, or a cycle in flight), the cycle in flight (open_cycle, for the watchdog) and the
-- sequence of the instance's event the row reflects
-- (version: a row is only ever replaced by one at least as new). Kept from the log by the
-- scheduler under the `schedule` checkpoint, rebuildable from it; the aggregate stays the truth
-- (the scheduler checks it before opening a cycle), the index only narrows the tick to the rows
-- due.
CREATE TABLE instance_schedule
(
  instance_id text   PRIMARY KEY,
  due_at      bigint,
  open_cycle  text,
  version     bigint NOT NULL
);
CREATE INDEX instance_schedule_due ON instance_schedule (due_at, instance_id)
  WHERE due_at IS NOT NULL;
CREATE INDEX instance_schedule_in_flight ON instance_schedule (open_cycle)
  WHERE open_cycle IS NOT NULL;
-- The first event of every aggregate (one entry per aggregate): listing an aggregate type's ids
-- and counting instances (the schedule's reconcile) without reading the whole log.
CREATE INDEX event_log_firsts ON event_log (aggregate_type, position) WHERE sequence = 1;
-- Dead letters are kept after their replay; the pending ones are counted on every watch round.
CREATE INDEX dead_letters_pending ON dead_letters (consumer, position) WHERE replayed_at IS NULL;
-- An instance page lists the endpoint's changes: this partial index holds only those events,
-- so the page does not read an instance's every cycle.
CREATE INDEX events_endpoint_changes ON events (aggregate_type, aggregate_id, sequence)
  WHERE event_type = 'EndpointChanged';
