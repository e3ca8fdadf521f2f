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
