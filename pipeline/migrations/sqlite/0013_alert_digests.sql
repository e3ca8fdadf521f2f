-- A tenant's daily digest, once per day (UTC): a process claims the day's row before it sends
-- (leased until `lease_until`, Unix milliseconds, so a process stopped while sending leaves it
-- to another once the lease runs out), and marks it sent after; a failed send gives the claim
-- back at once.
CREATE TABLE alert_digests (
    tenant_id   TEXT   NOT NULL,
    day         TEXT   NOT NULL,
    lease_until BIGINT NOT NULL,
    sent_at     BIGINT,
    PRIMARY KEY (tenant_id, day)
);
