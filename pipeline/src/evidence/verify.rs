//! `audit verify DIR`: an export checked offline (no network, no database): the chain
//! recomputed, every signature, Merkle proof and checkpoint link checked; either what it proved
//! or the **first** break, named.
//!
//! # The export's files (written by `export.rs`)
//! - `manifest.json`: `{"format": "restorable-audit-export/1", "tenant", "first_index",
//!   "last_index", "start_link", "checkpoint_interval_seconds", "exported_at"}`; `start_link` is
//!   the link before `first_index` (64 `0`s from the chain's start).
//! - `events.jsonl`: one event per line, exactly the canonical line that was hashed.
//! - `links.txt`: the stored link of each event, one per line, in the same order.
//! - `checkpoints.jsonl`: one per line, consecutive: `{"header", "signature", "leaf",
//!   "leaf_index", "proof"}` (`leaf` is the tenant's head in it, `null` if the tenant had no
//!   event yet; `proof` its RFC 9162 audit path).
//! - `keys.json`: `{"<key id>": "<Ed25519 public key, hex>"}`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use restorable_domain::evidence::{
    canonical_json, link, verify_inclusion, ChainedEvent, TenantHead,
};
use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointHeader;
use super::{key_id_of, signature_holds, EvidenceError};

/// The export format's name and version.
pub const EXPORT_FORMAT: &str = "restorable-audit-export/1";

/// `manifest.json` of an export.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportManifest {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The tenant.
    pub tenant: String,
    /// The first chain index exported.
    pub first_index: i64,
    /// The last chain index a checkpoint of the export covers.
    pub last_index: i64,
    /// The link before `first_index`.
    pub start_link: String,
    /// How often checkpoints are written (longer stretches without one are noted).
    pub checkpoint_interval_seconds: i64,
    /// When the export was written.
    pub exported_at: chrono::DateTime<chrono::Utc>,
}

/// A line of an export's `checkpoints.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportedCheckpoint {
    /// The signed header.
    pub header: CheckpointHeader,
    /// Its signature (hex).
    pub signature: String,
    /// The tenant's head in it (`None`: no event of the tenant yet).
    pub leaf: Option<TenantHead>,
    /// The leaf's place in the tree.
    pub leaf_index: usize,
    /// Its audit path (hex, leaf side first).
    pub proof: Vec<String>,
}

/// What an intact export proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The tenant.
    pub tenant: String,
    /// Events verified.
    pub events: u64,
    /// Their first and last chain index.
    pub indexes: Option<(i64, i64)>,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The first and last checkpoint's time.
    pub span: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    /// Events after the last checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    /// Keys that signed.
    pub key_ids: Vec<String>,
    /// Stretches longer than twice the interval with no checkpoint (the service was down).
    pub quiet_gaps: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
}

impl fmt::Display for Proven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} events of tenant {}", self.events, self.tenant)?;
        if let Some((first, last)) = self.indexes {
            write!(f, " (chain index {first} to {last})")?;
        }
        write!(f, ", {} checkpoints", self.checkpoints)?;
        if let Some((from, to)) = self.span {
            write!(f, " from {} to {}", from.to_rfc3339(), to.to_rfc3339())?;
        }
        write!(f, ", signed by key {}", self.key_ids.join(", "))?;
        write!(f, ": chain intact")?;
        if self.unsigned_tail > 0 {
            write!(
                f,
                "; the last {} events are after the last checkpoint (chained, not yet signed)",
                self.unsigned_tail
            )?;
        }
        for (from, to) in &self.quiet_gaps {
            write!(
                f,
                "; note: no checkpoint between {} and {}",
                from.to_rfc3339(),
                to.to_rfc3339()
            )?;
        }
        Ok(())
    }
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// An event's content differs from what was chained.
    Altered {
        /// Its chain index.
        index: i64,
        /// Where it is (a line of the export, an aggregate in the store).
        at: String,
    },
    /// An event is missing from the chain.
    Removed {
        /// The missing index.
        index: i64,
    },
    /// An event that was never chained, or out of its place.
    Inserted {
        /// Where it is.
        at: String,
        /// Why it does not belong there.
        why: String,
    },
    /// An event out of its place (events swapped or moved).
    Reordered {
        /// The index of the event found out of place.
        index: i64,
        /// Where it is.
        at: String,
    },
    /// Events that a checkpoint covered are gone from the end.
    Truncated {
        /// The last index present.
        last: i64,
        /// The index the checkpoint covered.
        covered: i64,
        /// That checkpoint.
        checkpoint: i64,
    },
    /// The chain up to a checkpoint does not lead to the head it signed: the history before it
    /// was rewritten (links recomputed).
    Rewritten {
        /// The index the checkpoint covered.
        index: i64,
        /// That checkpoint.
        checkpoint: i64,
    },
    /// A checkpoint is missing, unsigned, or does not follow its predecessor.
    Checkpoint {
        /// Its sequence (or the missing one).
        sequence: i64,
        /// What is wrong.
        why: String,
    },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Altered { index, at } => write!(f, "event {index} ({at}) was altered"),
            Break::Removed { index } => write!(f, "event {index} was removed"),
            Break::Inserted { at, why } => write!(f, "an event was inserted or reordered at {at}: {why}"),
            Break::Reordered { index, at } => write!(f, "event {index} is out of its place at {at} (events reordered)"),
            Break::Truncated { last, covered, checkpoint } => write!(
                f,
                "events {} to {covered} were removed from the end (checkpoint {checkpoint} covers up to {covered}; the history ends at {last})",
                last + 1
            ),
            Break::Rewritten { index, checkpoint } => write!(
                f,
                "the history up to event {index} was rewritten: it no longer leads to the head checkpoint {checkpoint} signed"
            ),
            Break::Checkpoint { sequence, why } => write!(f, "checkpoint {sequence}: {why}"),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvidenceError> {
    let bytes = std::fs::read(path).map_err(|source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EvidenceError::Format(format!("{}: {e}", path.display())))
}

fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<String, EvidenceError>> + '_, EvidenceError> {
    let file = std::fs::File::open(path).map_err(|source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(std::io::BufReader::new(file).lines().map(move |l| {
        l.map_err(|source| EvidenceError::Io {
            path: path.display().to_string(),
            source,
        })
    }))
}

/// Checks the checkpoints in order: signatures, links, proofs; the tenant's signed heads by
/// index (the last checkpoint's head for each index).
pub(super) struct CheckedCheckpoints {
    pub heads: BTreeMap<i64, (String, i64)>,
    pub count: u64,
    pub span: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    pub key_ids: Vec<String>,
    pub quiet_gaps: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
}

/// Checks one checkpoint header against its predecessor and its key; the break, if any.
pub(super) fn check_header(
    header: &CheckpointHeader,
    signature: &str,
    previous: Option<&CheckpointHeader>,
    keys: &BTreeMap<String, String>,
) -> Option<Break> {
    let broken = |why: String| {
        Some(Break::Checkpoint {
            sequence: header.sequence,
            why,
        })
    };
    let Some(public) = keys.get(&header.key_id) else {
        return broken(format!(
            "signed by key {}, which is not among the public keys",
            header.key_id
        ));
    };
    if key_id_of(public) != header.key_id {
        return broken(format!(
            "the public key given for {} is another key",
            header.key_id
        ));
    }
    if !signature_holds(public, header.canonical().as_bytes(), signature) {
        return broken("its signature does not match its content".into());
    }
    if let Some(previous) = previous {
        if header.sequence != previous.sequence + 1 {
            return Some(Break::Checkpoint {
                sequence: previous.sequence + 1,
                why: format!(
                    "missing: checkpoint {} is followed by {}",
                    previous.sequence, header.sequence
                ),
            });
        }
        if header.previous.as_deref() != Some(previous.digest().as_str()) {
            return broken(format!(
                "does not name checkpoint {} as its predecessor",
                previous.sequence
            ));
        }
        if header.at < previous.at {
            return broken("is dated before its predecessor".into());
        }
    }
    None
}

fn check_checkpoints(
    dir: &Path,
    manifest: &ExportManifest,
    keys: &BTreeMap<String, String>,
) -> Result<Result<CheckedCheckpoints, Break>, EvidenceError> {
    let mut checked = CheckedCheckpoints {
        heads: BTreeMap::new(),
        count: 0,
        span: None,
        key_ids: Vec::new(),
        quiet_gaps: Vec::new(),
    };
    let mut previous: Option<CheckpointHeader> = None;
    let interval = chrono::Duration::seconds(manifest.checkpoint_interval_seconds.max(1));
    let path = dir.join("checkpoints.jsonl");
    for (n, line) in lines(&path)?.enumerate() {
        let line = line?;
        let entry: ExportedCheckpoint = serde_json::from_str(&line)
            .map_err(|e| EvidenceError::Format(format!("checkpoints.jsonl line {}: {e}", n + 1)))?;
        let header = &entry.header;
        if let Some(b) = check_header(header, &entry.signature, previous.as_ref(), keys) {
            return Ok(Err(b));
        }
        if let Some(leaf) = &entry.leaf {
            if leaf.tenant != manifest.tenant {
                return Ok(Err(Break::Checkpoint {
                    sequence: header.sequence,
                    why: format!(
                        "its leaf is of tenant {}, not {}",
                        leaf.tenant, manifest.tenant
                    ),
                }));
            }
            if !verify_inclusion(
                leaf,
                entry.leaf_index,
                header.leaves,
                &entry.proof,
                &header.root,
            ) {
                return Ok(Err(Break::Checkpoint {
                    sequence: header.sequence,
                    why: "the tenant's head is not in the tree it signed (bad Merkle proof)".into(),
                }));
            }
            checked
                .heads
                .insert(leaf.index, (leaf.head.clone(), header.sequence));
        }
        if let Some(p) = &previous {
            if header.at - p.at > interval * 2 {
                checked.quiet_gaps.push((p.at, header.at));
            }
        }
        if !checked.key_ids.contains(&header.key_id) {
            checked.key_ids.push(header.key_id.clone());
        }
        checked.span = Some((checked.span.map_or(header.at, |s| s.0), header.at));
        checked.count += 1;
        previous = Some(entry.header);
    }
    Ok(Ok(checked))
}

/// Every chain index the events file holds (read again only when a gap is found, to tell a
/// removed event from a moved one).
fn indexes_present(path: &Path) -> Result<std::collections::HashSet<i64>, EvidenceError> {
    let mut present = std::collections::HashSet::new();
    for line in lines(path)? {
        if let Ok(event) = serde_json::from_str::<ChainedEvent>(&line?) {
            present.insert(event.index);
        }
    }
    Ok(present)
}

/// Verifies the export in `dir`.
///
/// # Errors
/// [`EvidenceError`] when a file is missing or not in the format (not a verdict).
pub fn verify_export(dir: &Path) -> Result<Result<Proven, Break>, EvidenceError> {
    let manifest: ExportManifest = read_json(&dir.join("manifest.json"))?;
    if manifest.format != EXPORT_FORMAT {
        return Err(EvidenceError::Format(format!(
            "manifest.json: format {} is not {EXPORT_FORMAT}",
            manifest.format
        )));
    }
    let keys: BTreeMap<String, String> = read_json(&dir.join("keys.json"))?;
    let checked = match check_checkpoints(dir, &manifest, &keys)? {
        Ok(c) => c,
        Err(b) => return Ok(Err(b)),
    };
    if let Some((head, checkpoint)) = checked.heads.get(&(manifest.first_index - 1)) {
        if *head != manifest.start_link {
            return Ok(Err(Break::Rewritten {
                index: manifest.first_index - 1,
                checkpoint: *checkpoint,
            }));
        }
    }
    let links_path = dir.join("links.txt");
    let mut links = lines(&links_path)?;
    let mut previous = manifest.start_link.clone();
    let mut expected = manifest.first_index;
    let mut events = 0u64;
    let mut last_signed = manifest.first_index - 1;
    let events_path = dir.join("events.jsonl");
    for (n, line) in lines(&events_path)?.enumerate() {
        let line = line?;
        let at = format!("events.jsonl line {}", n + 1);
        let Ok(event) = serde_json::from_str::<ChainedEvent>(&line) else {
            return Ok(Err(Break::Altered {
                index: expected,
                at: format!("{at}, not an event"),
            }));
        };
        if event.tenant != manifest.tenant {
            return Ok(Err(Break::Inserted {
                at,
                why: format!("an event of tenant {}", event.tenant),
            }));
        }
        if event.index > expected {
            if indexes_present(&events_path)?.contains(&expected) {
                return Ok(Err(Break::Reordered {
                    index: event.index,
                    at,
                }));
            }
            return Ok(Err(Break::Removed { index: expected }));
        }
        if event.index < expected {
            return Ok(Err(Break::Inserted {
                at,
                why: format!("event {} comes after event {}", event.index, expected - 1),
            }));
        }
        let canonical = serde_json::from_str::<serde_json::Value>(&line)
            .map(|v| canonical_json(&v))
            .unwrap_or_default();
        let stored = links.next().transpose()?.unwrap_or_default();
        let computed = link(&previous, &line);
        if canonical != line || computed != stored {
            return Ok(Err(Break::Altered {
                index: event.index,
                at: format!(
                    "{at}, {} {} #{}",
                    event.aggregate_type, event.aggregate_id, event.sequence
                ),
            }));
        }
        if let Some((head, checkpoint)) = checked.heads.get(&event.index) {
            if *head != computed {
                return Ok(Err(Break::Rewritten {
                    index: event.index,
                    checkpoint: *checkpoint,
                }));
            }
            last_signed = event.index;
        }
        previous = computed;
        expected += 1;
        events += 1;
    }
    let last = expected - 1;
    if last < manifest.last_index {
        return Ok(Err(Break::Removed { index: last + 1 }));
    }
    if let Some((&covered, &(_, checkpoint))) = checked.heads.iter().next_back() {
        if covered > last {
            return Ok(Err(Break::Truncated {
                last,
                covered,
                checkpoint,
            }));
        }
    }
    Ok(Ok(Proven {
        tenant: manifest.tenant,
        events,
        indexes: (events > 0).then_some((manifest.first_index, last)),
        checkpoints: checked.count,
        span: checked.span,
        unsigned_tail: u64::try_from(last - last_signed.max(manifest.first_index - 1)).unwrap_or(0),
        key_ids: checked.key_ids,
        quiet_gaps: checked.quiet_gaps,
    }))
}
