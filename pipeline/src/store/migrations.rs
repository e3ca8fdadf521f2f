//! The project's migrations, one list per backend, applied in order once each. Neither
//! sqlite-es nor postgres-es creates its tables; both expect `events` in the shape below, to which
//! we add `event_log` (a global, gap-free commit order, filled by a trigger in the same
//! transaction as each event) and `consumer_checkpoints` (durable positions of consumers and of
//! the NATS relay).

use sqlx::{Pool, Postgres, Sqlite};

use super::StoreError;

/// The read side and accounts, the same on both backends: view rows as JSON documents (kept by
/// the projector, rebuildable from the log), users, sessions and API tokens (only hashes of
/// tokens are stored).
const READ_SIDE: &str = r#"
CREATE TABLE read_model
(
  view      text NOT NULL,
  key       text NOT NULL,
  tenant_id text NOT NULL,
  doc       text NOT NULL,
  PRIMARY KEY (view, key)
);
CREATE INDEX read_model_by_tenant ON read_model (view, tenant_id);
CREATE TABLE users
(
  email         text PRIMARY KEY,
  password_hash text NOT NULL,
  role          text NOT NULL,
  tenant_scope  text NOT NULL,
  created_at    text NOT NULL
);
CREATE TABLE sessions
(
  token_hash text   PRIMARY KEY,
  email      text   NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  csrf_token text   NOT NULL,
  expires_at bigint NOT NULL
);
CREATE TABLE api_tokens
(
  token_hash text PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  created_at text NOT NULL
);
"#;

/// Alert deliveries in progress (the same SQL on both backends): one row per alert event and
/// route from the moment the event is taken until the route has it or is given up on, leased by
/// the process delivering it so another can take over when that process stops.
const ALERT_DELIVERIES: &str = r#"
CREATE TABLE alert_deliveries
(
  instance_id text   NOT NULL,
  sequence    bigint NOT NULL,
  route       text   NOT NULL,
  lease_until bigint NOT NULL,
  PRIMARY KEY (instance_id, sequence, route)
);
"#;

/// Leases with fencing and the dead letters (the same SQL on both backends).
/// - `leases`: a named role one process at a time plays (the relay, the projector, the
///   watchdog); `epoch` grows at every change of holder, and every fenced write checks, in its
///   own transaction, that its holder and epoch still hold an unexpired lease (database clock).
/// - `dead_letters`: events a consumer gave up on (they can never succeed), kept with the reason
///   until an operator replays them.
const LEASES_AND_DEAD_LETTERS: &str = r#"
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
"#;

/// Operations alerts (the same SQL on both backends): alerts about the service itself, not one
/// PBX — a consumer's pending dead letters, a held NATS relay ([`crate::operations_alerts`]).
/// One row per alert: `alert_key` names the condition (`dead_letters:close`, `relay_held`),
/// `number` counts its raises; at most one row of a key is open (`resolved_at` NULL), which is
/// what makes a condition raise once however often it is seen. Kept for good, like the tenants'.
const OPERATIONS_ALERTS: &str = r#"
CREATE TABLE operations_alerts
(
  alert_key   text   NOT NULL,
  number      bigint NOT NULL,
  detail      text   NOT NULL,
  raised_at   text   NOT NULL,
  resolved_at text,
  PRIMARY KEY (alert_key, number)
);
"#;

/// API tokens expire: `expires_at` (Unix seconds). Tokens issued before this migration, which
/// never expired, get the default lifetime (90 days) from the moment it runs.
const TOKEN_EXPIRY_SQLITE: &str = r#"
ALTER TABLE api_tokens ADD COLUMN expires_at bigint;
UPDATE api_tokens SET expires_at = CAST(strftime('%s', 'now') AS integer) + 7776000;
CREATE INDEX api_tokens_by_email ON api_tokens (email);
CREATE INDEX sessions_by_email ON sessions (email);
"#;

/// [`TOKEN_EXPIRY_SQLITE`] for PostgreSQL.
const TOKEN_EXPIRY_POSTGRES: &str = r#"
ALTER TABLE api_tokens ADD COLUMN expires_at bigint;
UPDATE api_tokens SET expires_at = CAST(extract(epoch FROM now()) AS bigint) + 7776000;
CREATE INDEX api_tokens_by_email ON api_tokens (email);
CREATE INDEX sessions_by_email ON sessions (email);
"#;

/// SQLite (the embedded default).
const SQLITE: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE event_log
(
  position       integer PRIMARY KEY AUTOINCREMENT,
  aggregate_type text    NOT NULL,
  aggregate_id   text    NOT NULL,
  sequence       integer NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE TRIGGER events_into_log AFTER INSERT ON events
BEGIN
  INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
END;
CREATE TABLE consumer_checkpoints
(
  consumer text    PRIMARY KEY,
  position integer NOT NULL
) STRICT;
"#,
    ),
    (2, READ_SIDE),
    (3, ALERT_DELIVERIES),
    (4, LEASES_AND_DEAD_LETTERS),
    (5, TOKEN_EXPIRY_SQLITE),
    (6, OPERATIONS_ALERTS),
];

/// PostgreSQL (production). SQLite has one writer at a time, so its positions follow commit
/// order by construction; PostgreSQL hands out sequence values before commit, so a reader could
/// see position 8 committed while 7 is still in flight and skip 7 for ever. The `BEFORE` trigger
/// takes a transaction-scoped advisory lock before any row is written, so event-writing
/// transactions commit one at a time and positions follow commit order here too (taking it
/// before the insert means no transaction holds a row lock while it waits: no deadlock).
/// Commits notify `restorable_events`, so consumers in other processes wake at once.
const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events
(
  aggregate_type text                         NOT NULL,
  aggregate_id   text                         NOT NULL,
  sequence       bigint CHECK (sequence >= 0) NOT NULL,
  event_type     text                         NOT NULL,
  event_version  text                         NOT NULL,
  payload        jsonb                        NOT NULL,
  metadata       jsonb                        NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE event_log
(
  position       bigserial PRIMARY KEY,
  aggregate_type text   NOT NULL,
  aggregate_id   text   NOT NULL,
  sequence       bigint NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE FUNCTION restorable_serialize_event_writers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(72835610);
  RETURN NEW;
END $$;
CREATE FUNCTION restorable_events_into_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
  PERFORM pg_notify('restorable_events', '');
  RETURN NEW;
END $$;
CREATE TRIGGER events_serialize_writers BEFORE INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION restorable_serialize_event_writers();
CREATE TRIGGER events_into_log AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION restorable_events_into_log();
CREATE TABLE consumer_checkpoints
(
  consumer text   PRIMARY KEY,
  position bigint NOT NULL
);
"#,
    ),
    (2, READ_SIDE),
    (3, ALERT_DELIVERIES),
    (4, LEASES_AND_DEAD_LETTERS),
    (5, TOKEN_EXPIRY_POSTGRES),
    (6, OPERATIONS_ALERTS),
];

/// Applies the pending SQLite migrations.
pub(super) async fn sqlite(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at text NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in SQLITE {
        let mut tx = pool.begin().await?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !applied {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, datetime('now'))",
            )
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Applies the pending PostgreSQL migrations; several processes starting at once take turns
/// (an advisory lock held for the migration's transaction).
pub(super) async fn postgres(pool: &Pool<Postgres>) -> Result<(), StoreError> {
    for (version, sql) in POSTGRES {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(72835611)")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !applied {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
