//! The evidence's schedule in `serve` and the scheduling `worker`: a checkpoint every
//! [`CHECKPOINT_INTERVAL`] (also when nothing happened; several processes may try, the vault's
//! write-once keys let one win each sequence), and `audit check` every [`CHECK_EVERY`], which
//! raises the operations alert `history_tampered` naming the first break, and resolves it once a
//! check passes again.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{check_live, write_checkpoint, Signer, CHECKPOINT_INTERVAL, CHECKPOINT_RETENTION};
use crate::alerting::AlertDelivery;
use crate::pipeline::Pipeline;

/// How often the whole history is checked (it reads every event).
pub const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The operations alert's condition.
pub const HISTORY_TAMPERED: &str = "history_tampered";

/// One round: a checkpoint, and the check if `check` is set; whether the history was found
/// intact (`None`: not checked, or the check could not run).
pub async fn round(pipeline: &Pipeline, signer: &dyn Signer, check: bool) -> Option<bool> {
    match write_checkpoint(
        &pipeline.store,
        pipeline.vault.as_ref(),
        signer,
        CHECKPOINT_RETENTION,
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

/// Runs rounds until `shutdown`: a checkpoint now and every interval, a check now and every
/// [`CHECK_EVERY`].
pub async fn watch(
    pipeline: Pipeline,
    signer: std::sync::Arc<dyn Signer>,
    shutdown: CancellationToken,
) {
    let every = CHECKPOINT_INTERVAL
        .to_std()
        .unwrap_or(Duration::from_secs(3600));
    let mut checked: Option<tokio::time::Instant> = None;
    loop {
        let check = checked.is_none_or(|at| at.elapsed() >= CHECK_EVERY);
        if round(&pipeline, signer.as_ref(), check).await.is_some() {
            checked = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
