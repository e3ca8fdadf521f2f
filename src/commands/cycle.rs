//! `restorable cycle ...`: an operator's commands on one cycle.
//!
//! `restorable cycle abort --cycle ID [--reason TEXT]` fails a cycle in flight `aborted` (not
//! retryable) on the stage that should move it next, frees its instance at once, and records
//! the action (`abort_cycle`) in the tenant's audit trail. A cycle that is not in flight
//! (closed, or already ended) is refused with exit code 2 and nothing is recorded.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::CycleId;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::watchdog::{abort, AbortError};

use crate::cli::{CycleAbortArgs, CycleCommand};
use crate::runtime::{open, operator};

/// Runs a `restorable cycle` command.
///
/// # Errors
/// The store or a backend failed (exit code 2, as any error).
pub async fn run(command: CycleCommand) -> Result<ExitCode> {
    match command {
        CycleCommand::Abort(args) => abort_command(args).await,
    }
}

async fn abort_command(args: CycleAbortArgs) -> Result<ExitCode> {
    let cycle: CycleId = args
        .cycle
        .parse()
        .with_context(|| format!("{:?} is not a cycle id", args.cycle))?;
    let pipeline = open(&args.data, Settings::default()).await?;
    let actor = operator();
    let detail = match &args.reason {
        Some(reason) => format!("aborted by {actor}: {reason}"),
        None => format!("aborted by {actor}"),
    };
    let aborted = match abort(&pipeline, cycle, &detail).await {
        Ok(aborted) => aborted,
        Err(refused @ (AbortError::Unknown(_) | AbortError::NotInFlight { .. })) => {
            eprintln!("refused: {refused}");
            pipeline.store.close().await;
            return Ok(ExitCode::from(2));
        }
        Err(AbortError::Store(error)) => {
            pipeline.store.close().await;
            return Err(error).context("aborting the cycle (trying again is safe)");
        }
    };
    let record = ActionRecorded {
        tenant_id: aborted.tenant.clone(),
        actor,
        action: AuditAction::AbortCycle,
        instance_id: Some(aborted.instance),
        cycle_id: Some(cycle),
        key_version: None,
        at: Utc::now(),
    };
    let audited = pipeline.store.audit(aborted.tenant.as_str(), record).await;
    pipeline.store.close().await;
    audited.context("the cycle is aborted, but recording it in the audit trail failed")?;
    println!(
        "aborted cycle {cycle} at {} (stage {} failed: aborted); instance {} is free",
        aborted.rung.map_or("Opened", |r| r.label()),
        aborted.stage,
        aborted.instance
    );
    Ok(ExitCode::SUCCESS)
}
