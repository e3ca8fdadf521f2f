-- The native backup watch (pipeline/src/native_watch.rs) reads each live PBX's own backup
-- schedule between captures; the scheduler's index gains when each instance is next due for it.
--   instance_schedule.native_watch_from   the watch's last reading, Unix ms (the earliest
--                                          instant when it never read one); NULL for an
--                                          instance it leaves alone (stopped, removed)
ALTER TABLE instance_schedule ADD COLUMN native_watch_from bigint;
-- Kept from the log: refills on its next refresh.
DELETE FROM instance_schedule;
DELETE FROM consumer_checkpoints WHERE consumer = 'schedule';
CREATE INDEX instance_schedule_native_watch ON instance_schedule (native_watch_from)
  WHERE native_watch_from IS NOT NULL;
