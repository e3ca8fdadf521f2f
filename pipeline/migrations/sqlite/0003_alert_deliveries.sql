-- Alert deliveries in progress: one row per alert event and route from the moment the event is
-- taken until the route has it or is given up on, leased by the process delivering it so another
-- can take over when that process stops.
CREATE TABLE alert_deliveries
(
  instance_id text   NOT NULL,
  sequence    bigint NOT NULL,
  route       text   NOT NULL,
  lease_until bigint NOT NULL,
  PRIMARY KEY (instance_id, sequence, route)
);
