-- The tamper-evident history (pipeline/src/store/chain.rs): each event's link in its tenant's
-- hash chain, written in the same transaction as the event; where the chain began (the first
-- open after this migration chains the events already stored, once); and the signed
-- checkpoints written to the vault (an index of them: the vault holds the truth).
CREATE TABLE event_chain
(
  position     integer PRIMARY KEY,
  tenant       text    NOT NULL,
  tenant_index integer NOT NULL,
  hash         text    NOT NULL,
  UNIQUE (tenant, tenant_index)
) STRICT;
CREATE TABLE chain_genesis
(
  chained_to integer NOT NULL,
  done       integer NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE audit_checkpoints
(
  sequence   integer PRIMARY KEY,
  at_ms      integer NOT NULL,
  object_key text    NOT NULL,
  digest     text    NOT NULL
) STRICT;
