//! The evidence's schedule in `serve` and the scheduling `worker` ([`EvidenceSchedule`]): a
//! checkpoint every `checkpoint_every` (also when nothing happened; several processes may try,
//! the vault's write-once keys let one win each sequence), and `audit check` every
//! `check_every` (the last check's time is kept in the store, so a restart does not check
//! again), which raises the operations alert `history_tampered` naming the first break, and
//! resolves it once a check passes again.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

#[cfg(doc)]
use super::EvidenceSchedule;
use super::{check_live, write_checkpoint, Signer};
use crate::alerting::AlertDelivery;
use crate::periodic::{Round, Rounds::Whole};
use crate::pipeline::Pipeline;

/// The operations alert's condition.
pub const HISTORY_TAMPERED: &str = "history_tampered";

/// One round: a checkpoint, and the check if `check` is set; whether the history was found
/// intact (`None`: not checked, or the check could not run).
pub async fn round(pipeline: &Pipeline, signer: &dyn Signer, check: bool) -> Option<bool> {
    match write_checkpoint(
        &pipeline.store,
        pipeline.vault.as_ref(),
        signer,
        pipeline.settings.evidence.retention,
    )
    .await
    {
        Ok(checkpoint) => {
            tracing::info!(sequence = checkpoint.header.sequence, "checkpoint written")
        }
        Err(error) => tracing::warn!(%error, "checkpoint not written (tried again next interval)"),
    }
    if !check {
        return None;
    }
    let report = match check_live(&pipeline.store, pipeline.vault.as_ref()).await {
        Ok(report) => report,
        Err(error) => {
            tracing::warn!(%error, "the history check could not run");
            return None;
        }
    };
    let delivery = AlertDelivery::new(pipeline);
    let outcome = match report.breaks.first() {
        Some((scope, broken)) => {
            let detail = format!("the event history was tampered with ({scope}): {broken}");
            tracing::error!(%detail, "history check failed");
            delivery
                .raise_operations(HISTORY_TAMPERED, &detail, Utc::now())
                .await
        }
        None => {
            delivery
                .resolve_operations(HISTORY_TAMPERED, Utc::now())
                .await
        }
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, "the history check's alert could not be recorded");
    }
    Some(report.intact())
}

/// Runs rounds until `shutdown`: a checkpoint now and every `checkpoint_every`, the check
/// whenever the last one (by any process: its time is kept in the store) is `check_every` old.
pub async fn watch(
    pipeline: Pipeline,
    signer: std::sync::Arc<dyn Signer>,
    shutdown: CancellationToken,
) {
    let every = pipeline
        .settings
        .evidence
        .checkpoint_every
        .to_std()
        .unwrap_or(Duration::from_secs(3600));
    let mut checks = Checks { pipeline, signer };
    crate::periodic::repeat(every, Whole, shutdown, &mut checks).await;
}

/// The watch's rounds: a checkpoint, and the history check when due.
struct Checks {
    pipeline: Pipeline,
    signer: std::sync::Arc<dyn Signer>,
}

impl Round for Checks {
    async fn once(&mut self) {
        let pipeline = &self.pipeline;
        let check_every = pipeline.settings.evidence.check_every;
        let check = match pipeline.store.last_history_check().await {
            Ok(last) => last.is_none_or(|at| Utc::now() - at >= check_every),
            Err(error) => {
                tracing::warn!(%error, "the time of the last history check could not be read");
                false
            }
        };
        if round(pipeline, self.signer.as_ref(), check).await.is_some() {
            if let Err(error) = pipeline.store.record_history_check(Utc::now()).await {
                tracing::warn!(%error, "the time of the history check could not be recorded");
            }
        }
    }
}
