//! `audit export --tenant T --out DIR [--from DATE --to DATE]`: one tenant's events as chained,
//! their links, the checkpoints that cover them with the tenant's Merkle proofs, the public keys
//! and a README for the auditor (format: `verify.rs`'s header). Nothing of other tenants: a
//! checkpoint's other leaves appear only as hashes in a proof.
//!
//! A checkpoint is written first, so everything exported is covered by a signature. With a
//! range, the export starts after the tenant's head in the last checkpoint at or before `from`
//! and ends at its head in the first checkpoint at or after `to`: both ends are signed. The
//! events are streamed from the store a batch at a time (memory does not grow with history).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use restorable_domain::evidence::{inclusion_proof, GENESIS};

use super::checkpoint::{latest_checkpoints, published_key, read_checkpoint, write_checkpoint};
use super::verify::{ExportManifest, ExportedCheckpoint, EXPORT_FORMAT};
use super::{EvidenceError, SignedCheckpoint, Signer};
use crate::store::Store;
use crate::vault::Vault;

/// Events read from the store per query.
const BATCH: i64 = 5_000;

/// The dates an export covers (`None`: from the start / to now).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportRange {
    /// Events after the last checkpoint at or before this moment.
    pub from: Option<DateTime<Utc>>,
    /// Events up to the first checkpoint at or after this moment.
    pub to: Option<DateTime<Utc>>,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Where.
    pub dir: PathBuf,
    /// Events written.
    pub events: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// The checkpoint the export took first.
    pub taken: i64,
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, EvidenceError> {
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|source| EvidenceError::Io {
            path: path.display().to_string(),
            source,
        })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the export of `tenant` into `out` (created; must be empty if it exists).
///
/// # Errors
/// [`EvidenceError`].
pub async fn export_tenant(
    store: &Store,
    vault: &dyn Vault,
    signer: &dyn Signer,
    tenant: &str,
    out: &Path,
    range: ExportRange,
    schedule: &super::EvidenceSchedule,
) -> Result<ExportSummary, EvidenceError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    if std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(EvidenceError::Format(format!(
            "{} is not empty: an export goes into a new directory",
            out.display()
        )));
    }
    let taken = write_checkpoint(store, vault, signer, schedule.retention).await?;
    // The checkpoints in the range, with the tenant's leaf in each.
    let path = out.join("checkpoints.jsonl");
    let mut checkpoints = create(&path)?;
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut first_index = 1i64;
    let mut last_index = 0i64;
    let mut written = 0u64;
    let mut opening: Option<(ExportedCheckpoint, i64)> = None;
    let mut started = range.from.is_none();
    let mut lines = Vec::new();
    for sequence in latest_checkpoints(store, vault).await? {
        let checkpoint: SignedCheckpoint = match read_checkpoint(vault, sequence).await? {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(EvidenceError::Format(e)),
            None => continue,
        };
        let at = checkpoint.header.at;
        let entry = line_of(&checkpoint, tenant);
        if !started {
            if range.from.is_some_and(|from| at <= from) {
                opening = Some(entry);
                continue;
            }
            started = true;
        }
        if let Some((open, index)) = opening.take() {
            first_index = index + 1;
            last_index = index;
            lines.push(open);
        }
        last_index = last_index.max(entry.1);
        lines.push(entry.0);
        if range.to.is_some_and(|to| at >= to) {
            break;
        }
    }
    if let Some((open, index)) = opening.take() {
        first_index = index + 1;
        last_index = index;
        lines.push(open);
    }
    for line in lines {
        if !keys.contains_key(&line.header.key_id) {
            let public = published_key(vault, &line.header.key_id)
                .await?
                .ok_or_else(|| {
                    EvidenceError::Key(format!(
                        "public key {} is not published in the vault",
                        line.header.key_id
                    ))
                })?;
            keys.insert(line.header.key_id.clone(), public);
        }
        let text =
            serde_json::to_string(&line).map_err(|e| EvidenceError::Format(e.to_string()))?;
        writeln!(checkpoints, "{text}").map_err(io(&path))?;
        written += 1;
    }
    checkpoints.flush().map_err(io(&path))?;
    // The events and their stored links.
    let (events_path, links_path) = (out.join("events.jsonl"), out.join("links.txt"));
    let (mut events, mut links) = (create(&events_path)?, create(&links_path)?);
    let mut start_link = GENESIS.to_owned();
    let mut count = 0u64;
    let mut after = first_index - 2;
    if after >= 0 {
        if let Some(row) = store.chain_rows(tenant, after, 1).await?.first() {
            if row.index == first_index - 1 {
                start_link = row.hash.clone();
            }
        }
    }
    after = first_index - 1;
    'read: loop {
        let rows = store.chain_rows(tenant, after, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.index > last_index {
                break 'read;
            }
            after = row.index;
            // A place whose event is gone or unreadable is left out: the verifier names the gap.
            let Some(event) = row.event else { continue };
            writeln!(events, "{}", event.line()).map_err(io(&events_path))?;
            writeln!(links, "{}", row.hash).map_err(io(&links_path))?;
            count += 1;
        }
    }
    events.flush().map_err(io(&events_path))?;
    links.flush().map_err(io(&links_path))?;
    let manifest = ExportManifest {
        format: EXPORT_FORMAT.to_owned(),
        tenant: tenant.to_owned(),
        first_index,
        last_index,
        start_link,
        checkpoint_interval_seconds: schedule.checkpoint_every.num_seconds(),
        exported_at: Utc::now(),
    };
    write_file(
        &out.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest)
            .map_err(|e| EvidenceError::Format(e.to_string()))?,
    )?;
    write_file(
        &out.join("keys.json"),
        &serde_json::to_string_pretty(&keys).map_err(|e| EvidenceError::Format(e.to_string()))?,
    )?;
    write_file(&out.join("README.md"), &readme(tenant, &keys))?;
    Ok(ExportSummary {
        dir: out.to_owned(),
        events: count,
        checkpoints: written,
        taken: taken.header.sequence,
    })
}

/// A checkpoint as an export line for `tenant` (its leaf and proof), and the tenant's index in
/// it (0: no event yet).
fn line_of(checkpoint: &SignedCheckpoint, tenant: &str) -> (ExportedCheckpoint, i64) {
    let position = checkpoint.tenants.iter().position(|h| h.tenant == tenant);
    let leaf = position.map(|p| checkpoint.tenants[p].clone());
    let index = leaf.as_ref().map_or(0, |l| l.index);
    let line = ExportedCheckpoint {
        leaf,
        leaf_index: position.unwrap_or(0),
        proof: position.map_or_else(Vec::new, |p| inclusion_proof(&checkpoint.tenants, p)),
        header: checkpoint.header.clone(),
        signature: checkpoint.signature.clone(),
    };
    (line, index)
}

fn write_file(path: &Path, text: &str) -> Result<(), EvidenceError> {
    std::fs::write(path, text).map_err(io(path))
}

/// The auditor's README: what the files are and how to check them without Restorable.
fn readme(tenant: &str, keys: &BTreeMap<String, String>) -> String {
    let key_list: String = keys
        .iter()
        .map(|(id, public)| format!("- `{id}`: `{public}`\n"))
        .collect();
    format!(
        r#"# Audit export of tenant `{tenant}`

Check it with `restorable audit verify .` (offline: no network, no database), or by hand.

## Files
- `manifest.json`: the tenant, the first and last chain index exported, `start_link` (the link
  before the first event; 64 `0`s when the export starts at the tenant's first event).
- `events.jsonl`: one event per line, exactly the bytes that were hashed (canonical JSON,
  RFC 8785: no spaces, keys sorted).
- `links.txt`: the link of each event, one per line: `h_n = SHA-256(h_(n-1) as 64 hex digits,
  then line n)`, lowercase hex.
- `checkpoints.jsonl`: the signed checkpoints covering these events, consecutive. `header` is
  signed (Ed25519 over its canonical JSON); `header.previous` is the SHA-256 of the previous
  header's canonical JSON; `leaf` is this tenant's head (`{{"head","index","tenant"}}`) and
  `proof` its Merkle audit path (RFC 9162; leaf hash `SHA-256(0x00 || leaf)`, node
  `SHA-256(0x01 || left || right)`) up to `header.root`.
- `keys.json`: the public keys (Ed25519, hex) that signed. Compare their ids with the ones your
  service provider publishes (`restorable audit key`): a signature proves only who holds the key.

Keys in this export:
{key_list}
## The chain by hand (bash, sha256sum)
```sh
prev=$(jq -r .start_link manifest.json)
paste -d '\n' events.jsonl links.txt | while IFS= read -r line && IFS= read -r stored; do
  prev=$(printf '%s%s' "$prev" "$line" | sha256sum | cut -d' ' -f1)
  [ "$prev" = "$stored" ] || {{ echo "altered: $line"; exit 1; }}
done && echo "chain intact"
```
Then check that the last link equals the `leaf.head` of the checkpoint whose `leaf.index` is the
last event's `index`.
"#
    )
}
