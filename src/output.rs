//! What `--json` prints: one JSON document per command, with stable field names (snake_case)
//! and the stable reason codes. Each document's JSON Schema is published in `schemas/cli/`
//! (generated from these types; a test keeps the files equal to them:
//! `UPDATE_SCHEMAS=1 cargo test -p restorable --bin restorable output` regenerates).
//!
//! A leaf: commands build these and print them with [`print`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// Prints `document` as one line of JSON on standard output.
///
/// # Errors
/// Serialization failed (it cannot for these types).
pub fn print<T: Serialize>(document: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(document)?);
    Ok(())
}

/// `restorable verify --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VerifyReport {
    /// The file checked.
    pub file: String,
    /// Every entry authenticated and read to its end.
    pub verified: bool,
    /// Why not: the stable reason code (`wrong_key`, `entry_corrupt`, `archive_truncated` ...).
    pub reason: Option<String>,
    /// Why not, for a person.
    pub detail: Option<String>,
    /// Entries read (verified only).
    pub entries: Option<u64>,
    /// Bytes they inflated to (verified only).
    pub inflated_bytes: Option<u64>,
    /// The 3CX tables found (verified only).
    pub tables: Vec<String>,
    /// Entries per encryption (`aes256` ...).
    pub encryption: BTreeMap<String, u64>,
    /// Entries per compression method.
    pub compression: BTreeMap<String, u64>,
}

/// A cycle's outcome: `restorable backup-now --json` and `restorable restore-test --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CycleOutcome {
    /// The cycle.
    pub cycle: String,
    /// The highest rung reached (`Started`, `Captured`, `Secured`, `Verified`,
    /// `Restore-Tested`), if any.
    pub rung: Option<String>,
    /// The failure, if the cycle failed.
    pub failed: Option<CycleFailure>,
}

impl CycleOutcome {
    /// The outcome of `cycle` as its state shows it.
    pub fn of(cycle: &str, state: &restorable_domain::cycle::BackupCycle) -> Self {
        CycleOutcome {
            cycle: cycle.to_owned(),
            rung: state.rung.map(|r| r.label().to_owned()),
            failed: state.failed.as_ref().map(|f| CycleFailure {
                stage: f.stage.to_string(),
                reason: f.reason.to_string(),
                detail: f.detail.clone(),
                retryable: f.retryable,
            }),
        }
    }
}

/// Why a cycle failed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CycleFailure {
    /// The stage (`capture`, `secure`, `verify`, `restore_test` ...).
    pub stage: String,
    /// The stable reason code.
    pub reason: String,
    /// For a person; never a secret.
    pub detail: String,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

/// `restorable doctor --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DoctorReport {
    /// Every backend usable.
    pub healthy: bool,
    /// One per backend.
    pub backends: Vec<BackendLine>,
}

/// One backend's check.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BackendLine {
    /// `event store`, `transport`, `vault`, `key sealing`, `restore sandbox`.
    pub port: String,
    /// Usable.
    pub ok: bool,
    /// What it is, and why not (passwords removed).
    pub detail: String,
}

/// `restorable events --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventsReport {
    /// `BackupCycle` or `Instance`.
    pub aggregate: String,
    /// Its id.
    pub id: String,
    /// Its events in order.
    pub events: Vec<EventLine>,
}

/// One stored event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventLine {
    /// Its global position in the log.
    pub position: i64,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// e.g. `Captured` (its schema: `schemas/events/`).
    pub event_type: String,
    /// e.g. `1.0`.
    pub event_version: String,
    /// The event as stored (cqrs-es form: `{"Captured": {...}}`).
    pub payload: serde_json::Value,
}

/// `restorable download --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DownloadReport {
    /// The cycle.
    pub cycle: String,
    /// The file written.
    pub out: String,
    /// Bytes written (equal to the captured size).
    pub size: u64,
    /// Their SHA-256 (equal to the captured one), hex.
    pub sha256: String,
}

/// `restorable token list --json`: one per token.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenLine {
    /// The id `token revoke` takes.
    pub id: String,
    /// The user it acts as.
    pub email: String,
    /// Its name.
    pub name: String,
    /// When it was issued (RFC 3339).
    pub issued: String,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
    /// Whether it has expired.
    pub expired: bool,
}

/// `restorable fleet --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetReport {
    /// Every enrolled instance.
    pub instances: Vec<FleetLine>,
}

/// One instance of the fleet.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetLine {
    /// Its id.
    pub instance_id: String,
    /// Its tenant's slug.
    pub tenant: String,
    /// Its name within the tenant.
    pub name: String,
    /// Cycles run so far.
    pub cycles: u64,
    /// The latest cycle.
    pub last_cycle: Option<String>,
    /// When it was opened (RFC 3339).
    pub last_cycle_at: Option<String>,
    /// The highest rung of the latest cycle.
    pub rung: Option<String>,
    /// `healthy`, `needs_attention` or `stopped`.
    pub status: String,
    /// The latest cycle's failure, if it failed.
    pub failure: Option<FleetFailure>,
    /// When a copy was last Secured, Verified, Restore-Tested (RFC 3339).
    pub last_secured: Option<String>,
    /// See `last_secured`.
    pub last_verified: Option<String>,
    /// See `last_secured`.
    pub last_restore_tested: Option<String>,
}

/// Where and why the latest cycle failed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FleetFailure {
    /// The stage.
    pub stage: String,
    /// The stable reason code.
    pub reason: String,
}

/// Every published document: its schema file's name and its schema.
#[cfg(test)]
fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("verify.json", schemars::schema_for!(VerifyReport)),
        ("fleet.json", schemars::schema_for!(FleetReport)),
        ("backup-now.json", schemars::schema_for!(CycleOutcome)),
        ("restore-test.json", schemars::schema_for!(CycleOutcome)),
        ("doctor.json", schemars::schema_for!(DoctorReport)),
        ("events.json", schemars::schema_for!(EventsReport)),
        ("download.json", schemars::schema_for!(DownloadReport)),
        ("token-list.json", schemars::schema_for!(Vec<TokenLine>)),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn committed_cli_schemas_match_the_output_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cli");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        let mut expected = Vec::new();
        for (name, schema) in schemas() {
            let text = serde_json::to_string_pretty(&schema).expect("serialize") + "\n";
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::fs::write(&path, &text).expect("write");
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!("{name} is missing: run UPDATE_SCHEMAS=1 cargo test -p restorable --bin restorable output")
            });
            assert_eq!(committed, text, "{name} differs from its output type");
            expected.push(name.to_owned());
        }
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .expect("schemas/cli")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        expected.sort();
        assert_eq!(present, expected, "a schema file has no output type");
    }
}
