CREATE TABLE operations_alerts
(
  alert_key   text   NOT NULL,
  number      bigint NOT NULL,
  detail      text   NOT NULL,
  raised_at   text   NOT NULL,
  resolved_at text,
  PRIMARY KEY (alert_key, number)
);
