//! Restore certificates: for every Restore-Tested cycle, the facts an auditor or a customer asks
//! for — tenant, instance, cycle; the copy's SHA-256, size and key version; what the restore
//! found against what the PBX reported; the sandbox; start, end and restore duration; and the
//! `RestoreTested` event's place in the tenant's hash chain — signed.
//!
//! The facts are derived from the cycle's events (nothing more is stored), so a certificate is
//! the same whenever it is asked for. Its id is `<cycle id>.<the first 32 hex digits of the
//! SHA-256 of the facts' canonical JSON>`: it names the cycle and changes if any fact does, so
//! the public page `/certificates/{id}` rebuilds the facts from the store and says whether they
//! still hash to the id (genuine), and whether the event still sits in an intact chain (its
//! link recomputed from its predecessor's, a checkpoint covering it, no open History Tampered
//! alert). `certificate verify FILE` checks a file offline: the id against the facts and the
//! Ed25519 signature against the key it names.

use chrono::{DateTime, Utc};
use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::evidence::{canonical_json, link, sha256_hex, GENESIS};
use restorable_domain::ladder::ManifestCounts;
use serde::{Deserialize, Serialize};

use super::checkpoint::{latest_checkpoints, read_checkpoint};
use super::{key_id_of, signature_holds, EvidenceError, Signer};
use crate::store::Store;
use crate::vault::Vault;

/// The certificate format's name and version.
pub const CERTIFICATE_FORMAT: &str = "restorable-restore-certificate/1";

/// What a certificate states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFacts {
    /// [`CERTIFICATE_FORMAT`].
    pub format: String,
    /// The tenant.
    pub tenant: String,
    /// The instance (PBX).
    pub instance_id: String,
    /// The cycle whose copy was restored.
    pub cycle_id: String,
    /// SHA-256 of the stored copy (lowercase hex).
    pub copy_sha256: String,
    /// Its size in bytes.
    pub copy_size: u64,
    /// The tenant key version it is encrypted with.
    pub key_version: u32,
    /// What the PBX reported when the copy was made.
    pub expected: ManifestCounts,
    /// What the restore found in the restored database.
    pub restored: ManifestCounts,
    /// The sandbox that ran the restore (adapter and throwaway id).
    pub sandbox: String,
    /// When the cycle started.
    pub cycle_started_at: DateTime<Utc>,
    /// When the restore test ended.
    pub restore_tested_at: DateTime<Utc>,
    /// How long the restore took, in milliseconds.
    pub restore_duration_ms: u64,
    /// The `RestoreTested` event's index in the tenant's chain.
    pub chain_index: i64,
    /// Its link.
    pub chain_link: String,
}

impl CertificateFacts {
    /// The certificate id these facts make.
    pub fn id(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let digest = sha256_hex(canonical_json(&value).as_bytes());
        format!("{}.{}", self.cycle_id, &digest[..32])
    }

    /// The bytes signed.
    fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// A signed certificate, as `certificate get` writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// `<cycle id>.<digest>`.
    pub id: String,
    /// What it states.
    pub facts: CertificateFacts,
    /// The key that signed.
    pub key_id: String,
    /// Its public key (Ed25519, hex); compare its id with the operator's.
    pub public_key: String,
    /// The signature of the facts' canonical JSON (hex).
    pub signature: String,
}

/// The facts of `cycle`'s certificate, if the cycle reached Restore-Tested.
///
/// # Errors
/// A storage error, or [`EvidenceError::Format`] if its events do not decode.
pub async fn certificate_facts(
    store: &Store,
    cycle: &str,
) -> Result<Option<CertificateFacts>, EvidenceError> {
    let events = store.history("BackupCycle", cycle).await?;
    let (mut started, mut captured, mut tested) = (None, None, None);
    for logged in &events {
        match logged.decode::<BackupCycleEvent>()? {
            BackupCycleEvent::CycleStarted(e) => started = Some(e),
            BackupCycleEvent::Captured(e) => captured = Some(e),
            BackupCycleEvent::RestoreTested(e) => tested = Some((logged.position, e)),
            _ => {}
        }
    }
    let (Some(started), Some(captured), Some((position, tested))) = (started, captured, tested)
    else {
        return Ok(None);
    };
    let Some((tenant, index, hash)) = store.chain_place(position).await? else {
        return Ok(None);
    };
    Ok(Some(CertificateFacts {
        format: CERTIFICATE_FORMAT.to_owned(),
        tenant,
        instance_id: started.instance_id.to_string(),
        cycle_id: started.cycle_id.to_string(),
        copy_sha256: captured.sha256,
        copy_size: captured.size,
        key_version: captured.key_version,
        expected: captured.manifest,
        restored: tested.counts,
        sandbox: tested.sandbox,
        cycle_started_at: started.started_at,
        restore_tested_at: tested.restore_tested_at,
        restore_duration_ms: tested.duration_ms,
        chain_index: index,
        chain_link: hash,
    }))
}

/// `cycle`'s certificate, signed by `signer`, if the cycle reached Restore-Tested.
///
/// # Errors
/// As [`certificate_facts`], or the signer's.
pub async fn issue_certificate(
    store: &Store,
    signer: &dyn Signer,
    cycle: &str,
) -> Result<Option<Certificate>, EvidenceError> {
    let Some(facts) = certificate_facts(store, cycle).await? else {
        return Ok(None);
    };
    let signature = signer.sign(facts.canonical().as_bytes()).await?;
    Ok(Some(Certificate {
        id: facts.id(),
        key_id: signer.key_id(),
        public_key: signer.public_key_hex(),
        signature,
        facts,
    }))
}

/// Checks a certificate offline: its id against its facts, its key id against its public key,
/// its signature; what is wrong, if anything.
pub fn certificate_fault(certificate: &Certificate) -> Option<String> {
    if certificate.facts.format != CERTIFICATE_FORMAT {
        return Some(format!(
            "format {} is not {CERTIFICATE_FORMAT}",
            certificate.facts.format
        ));
    }
    if certificate.id != certificate.facts.id() {
        return Some("its facts do not make its id (a fact was changed)".into());
    }
    if key_id_of(&certificate.public_key) != certificate.key_id {
        return Some(format!(
            "the public key given is not key {}",
            certificate.key_id
        ));
    }
    if !signature_holds(
        &certificate.public_key,
        certificate.facts.canonical().as_bytes(),
        &certificate.signature,
    ) {
        return Some("its signature does not match its facts".into());
    }
    None
}

/// What the public page says of a certificate id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// No Restore-Tested cycle has that id's facts (unknown, forged, or changed since).
    Unknown,
    /// Genuine: the facts as recorded, and whether their event is still in an intact chain
    /// (`None`: intact; `Some(why)`: not).
    Genuine {
        /// The facts.
        facts: Box<CertificateFacts>,
        /// Why the chain cannot vouch for it, if it cannot.
        chain_fault: Option<String>,
    },
}

/// The standing of certificate `id`, from the store and the vault.
///
/// # Errors
/// A storage or vault error (never a verdict).
pub async fn certificate_standing(
    store: &Store,
    vault: &dyn Vault,
    id: &str,
) -> Result<Standing, EvidenceError> {
    let Some((cycle, _)) = id.split_once('.') else {
        return Ok(Standing::Unknown);
    };
    if uuid::Uuid::parse_str(cycle).is_err() {
        return Ok(Standing::Unknown);
    }
    let Some(facts) = certificate_facts(store, cycle).await? else {
        return Ok(Standing::Unknown);
    };
    if facts.id() != id {
        return Ok(Standing::Unknown);
    }
    let chain_fault = chain_fault(store, vault, &facts).await?;
    Ok(Standing::Genuine {
        facts: Box::new(facts),
        chain_fault,
    })
}

/// Why the chain cannot vouch for the certificate's event, if it cannot.
async fn chain_fault(
    store: &Store,
    vault: &dyn Vault,
    facts: &CertificateFacts,
) -> Result<Option<String>, EvidenceError> {
    let index = facts.chain_index;
    let rows = store
        .chain_rows(&facts.tenant, (index - 2).max(0), 2)
        .await?;
    let previous = if index == 1 {
        Some(GENESIS.to_owned())
    } else {
        rows.iter()
            .find(|r| r.index == index - 1)
            .map(|r| r.hash.clone())
    };
    let own = rows.iter().find(|r| r.index == index);
    let (Some(previous), Some(own)) = (previous, own) else {
        return Ok(Some("its place in the chain is missing".into()));
    };
    let Some(event) = &own.event else {
        return Ok(Some("its event is missing from the store".into()));
    };
    if link(&previous, &event.line()) != own.hash {
        return Ok(Some("its event no longer matches its link".into()));
    }
    let tampered = store
        .operations_alerts(true)
        .await?
        .into_iter()
        .any(|alert| alert.key == super::HISTORY_TAMPERED);
    if tampered {
        return Ok(Some(
            "the history check found tampering (an open History Tampered alert)".into(),
        ));
    }
    let covered = match latest_checkpoints(store, vault).await?.last() {
        Some(&last) => match read_checkpoint(vault, last).await? {
            Some(Ok(checkpoint)) => checkpoint
                .tenants
                .iter()
                .any(|h| h.tenant == facts.tenant && h.index >= index),
            _ => false,
        },
        None => false,
    };
    if !covered {
        return Ok(Some(
            "no signed checkpoint covers it yet (one is written every hour)".into(),
        ));
    }
    Ok(None)
}
