CREATE TABLE alert_deliveries
(
  instance_id text   NOT NULL,
  sequence    bigint NOT NULL,
  route       text   NOT NULL,
  lease_until bigint NOT NULL,
  PRIMARY KEY (instance_id, sequence, route)
);
