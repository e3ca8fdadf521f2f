-- leases: a named role one process at a time plays (the relay, the projector, the watchdog);
-- epoch grows at every change of holder, and every fenced write checks, in its own transaction,
-- that its holder and epoch still hold an unexpired lease (database clock).
-- dead_letters: events a consumer gave up on (they can never succeed), kept with the reason
-- until an operator replays them.
CREATE TABLE leases
(
  name       text   PRIMARY KEY,
  holder     text   NOT NULL,
  epoch      bigint NOT NULL,
  expires_at bigint NOT NULL
);
CREATE TABLE dead_letters
(
  consumer       text   NOT NULL,
  position       bigint NOT NULL,
  aggregate_type text   NOT NULL,
  aggregate_id   text   NOT NULL,
  sequence       bigint NOT NULL,
  event_type     text   NOT NULL,
  reason         text   NOT NULL,
  attempts       bigint NOT NULL,
  created_at     text   NOT NULL,
  replayed_at    text,
  PRIMARY KEY (consumer, position)
);
