//! `audit check`: the checks of `audit verify` against the live store and the vault, for every
//! tenant: each chain recomputed from the events as stored now (an edit through SQL changes
//! what is read), every link row present in order, no event in the log without a link, every
//! checkpoint in the vault present, signed by a published key, linked to its predecessor, and
//! every tenant's head in it reached by the recomputed chain. Streams each chain a batch at a
//! time.

use std::collections::{BTreeMap, HashMap};

use restorable_domain::evidence::{link, merkle_root, GENESIS};

use super::checkpoint::{latest_checkpoints, published_key, read_checkpoint};
use super::verify::check_header;
use super::{Break, EvidenceError};
use crate::store::Store;
use crate::vault::Vault;

/// Links read per query.
const BATCH: i64 = 5_000;

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveReport {
    /// Tenants checked.
    pub tenants: usize,
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The first break of each tenant's chain (and of the checkpoints, under `*`).
    pub breaks: Vec<(String, Break)>,
}

impl LiveReport {
    /// Whether nothing is broken.
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Checks the store and the vault.
///
/// # Errors
/// [`EvidenceError`] when the store or the vault cannot be read (never a verdict).
pub async fn check_live(store: &Store, vault: &dyn Vault) -> Result<LiveReport, EvidenceError> {
    let mut report = LiveReport {
        tenants: 0,
        events: 0,
        checkpoints: 0,
        breaks: Vec::new(),
    };
    // The checkpoints: what each tenant's chain must reach, by index.
    let mut signed: HashMap<String, BTreeMap<i64, (String, i64)>> = HashMap::new();
    let mut keys = BTreeMap::new();
    let mut previous = None;
    let indexed = store.checkpoint_index().await?;
    for sequence in latest_checkpoints(store, vault).await? {
        let checkpoint = match read_checkpoint(vault, sequence).await? {
            Some(Ok(c)) => c,
            Some(Err(why)) => {
                report
                    .breaks
                    .push(("*".into(), Break::Checkpoint { sequence, why }));
                break;
            }
            None => {
                report.breaks.push((
                    "*".into(),
                    Break::Checkpoint {
                        sequence,
                        why: "missing from the vault".into(),
                    },
                ));
                break;
            }
        };
        let key_id = checkpoint.header.key_id.clone();
        if !keys.contains_key(&key_id) {
            if let Some(public) = published_key(vault, &key_id).await? {
                keys.insert(key_id.clone(), public);
            }
        }
        if let Some(b) = check_header(
            &checkpoint.header,
            &checkpoint.signature,
            previous.as_ref(),
            &keys,
        ) {
            report.breaks.push(("*".into(), b));
            break;
        }
        if merkle_root(&checkpoint.tenants) != checkpoint.header.root
            || checkpoint.tenants.len() != checkpoint.header.leaves
        {
            report.breaks.push((
                "*".into(),
                Break::Checkpoint {
                    sequence,
                    why: "its tenants' heads do not make the root it signed".into(),
                },
            ));
            break;
        }
        if let Some((_, digest)) = indexed.iter().find(|(s, _)| *s == sequence) {
            if *digest != checkpoint.header.digest() {
                report.breaks.push((
                    "*".into(),
                    Break::Checkpoint {
                        sequence,
                        why: "the index in the database names another checkpoint".into(),
                    },
                ));
                break;
            }
        }
        for head in &checkpoint.tenants {
            signed
                .entry(head.tenant.clone())
                .or_default()
                .insert(head.index, (head.head.clone(), sequence));
        }
        report.checkpoints += 1;
        previous = Some(checkpoint.header);
    }
    // Every tenant's chain, from the events as stored now.
    let mut tenants: Vec<String> = store
        .chain_heads()
        .await?
        .into_iter()
        .map(|h| h.tenant)
        .collect();
    for tenant in signed.keys() {
        if !tenants.contains(tenant) {
            tenants.push(tenant.clone());
        }
    }
    tenants.sort();
    report.tenants = tenants.len();
    for tenant in tenants {
        let heads = signed.remove(&tenant).unwrap_or_default();
        if let Some(b) = check_chain(store, &tenant, &heads, &mut report.events).await? {
            report.breaks.push((tenant, b));
        }
    }
    // Events in the log that were never chained.
    if let Some(event) = store.unchained_events(1).await?.into_iter().next() {
        report.breaks.push((
            "*".into(),
            Break::Inserted {
                at: format!(
                    "log position {} ({} {} #{})",
                    event.position, event.aggregate_type, event.aggregate_id, event.sequence
                ),
                why: "it was never chained (written behind the store's back)".into(),
            },
        ));
    }
    Ok(report)
}

/// Recomputes one tenant's chain; its first break.
async fn check_chain(
    store: &Store,
    tenant: &str,
    heads: &BTreeMap<i64, (String, i64)>,
    events: &mut u64,
) -> Result<Option<Break>, EvidenceError> {
    let mut previous = GENESIS.to_owned();
    let mut expected = 1i64;
    loop {
        let rows = store.chain_rows(tenant, expected - 1, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.index != expected {
                return Ok(Some(Break::Removed { index: expected }));
            }
            let at = format!("log position {}", row.position);
            let Some(event) = row.event else {
                return Ok(Some(if row.malformed {
                    Break::Altered {
                        index: row.index,
                        at: format!("{at}, no longer JSON"),
                    }
                } else {
                    Break::Removed { index: row.index }
                }));
            };
            let at = format!(
                "{at}, {} {} #{}",
                event.aggregate_type, event.aggregate_id, event.sequence
            );
            let computed = link(&previous, &event.line());
            if computed != row.hash {
                return Ok(Some(Break::Altered {
                    index: row.index,
                    at,
                }));
            }
            if let Some((head, checkpoint)) = heads.get(&row.index) {
                if *head != computed {
                    return Ok(Some(Break::Rewritten {
                        index: row.index,
                        checkpoint: *checkpoint,
                    }));
                }
            }
            previous = computed;
            expected += 1;
            *events += 1;
        }
    }
    let last = expected - 1;
    if let Some((&covered, &(_, checkpoint))) = heads.iter().next_back() {
        if covered > last {
            return Ok(Some(Break::Truncated {
                last,
                covered,
                checkpoint,
            }));
        }
    }
    Ok(None)
}
