-- Alerts about the service itself, not one PBX: a consumer's pending dead letters, a held NATS
-- relay. One row per alert: alert_key names the condition (dead_letters:close, relay_held),
-- number counts its raises; at most one row of a key is open (resolved_at NULL), which is what
-- makes a condition raise once however often it is seen. Kept for good, like the tenants'.
CREATE TABLE operations_alerts
(
  alert_key   text   NOT NULL,
  number      bigint NOT NULL,
  detail      text   NOT NULL,
  raised_at   text   NOT NULL,
  resolved_at text,
  PRIMARY KEY (alert_key, number)
);
