//! `restorable instance ...`: an operator's commands on one instance.
//!
//! `restorable instance remove --instance ID|TENANT/NAME` offboards the instance: managed
//! backups stop for good (it can be neither resumed nor backed up again), and from its purge
//! date (now + `[retention] remove_after_days`, default 30) the `retention` stage removes each
//! of its copies once its Object Lock has run out, then forgets its credentials. Recorded in
//! the tenant's audit trail (`remove_instance`). Removing it again changes nothing (the first
//! purge date stands). An instance that is not enrolled is refused with exit code 2.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::instance::Instance;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::retention::offboard;

use crate::cli::{InstanceCommand, InstanceRemoveArgs};
use crate::runtime::{instance_id, open, operator};

/// Runs a `restorable instance` command.
///
/// # Errors
/// The store or a backend failed (exit code 2, as any error).
pub async fn run(command: InstanceCommand) -> Result<ExitCode> {
    match command {
        InstanceCommand::Remove(args) => remove(args).await,
    }
}

async fn remove(args: InstanceRemoveArgs) -> Result<ExitCode> {
    let id = instance_id(&args.instance)?;
    let pipeline = open(&args.data, Settings::default()).await?;
    let instance: Instance = pipeline.store.load(&id.to_string()).await?;
    let Some(enrolled) = instance.enrolled else {
        eprintln!("refused: no instance {id} is enrolled");
        pipeline.store.close().await;
        return Ok(ExitCode::from(2));
    };
    let now = Utc::now();
    let purge_after = match offboard(&pipeline, &id.to_string(), now).await {
        Ok(purge_after) => purge_after,
        Err(error) => {
            pipeline.store.close().await;
            return Err(error).context("removing the instance (trying again is safe)");
        }
    };
    let record = ActionRecorded {
        tenant_id: enrolled.tenant_id.clone(),
        actor: operator(),
        action: AuditAction::RemoveInstance,
        instance_id: Some(id),
        cycle_id: None,
        key_version: None,
        at: now,
    };
    let audited = pipeline
        .store
        .audit(enrolled.tenant_id.as_str(), record)
        .await;
    pipeline.store.close().await;
    audited.context("the instance is removed, but recording it in the audit trail failed")?;
    println!(
        "removed instance {id} ({}/{}): managed backups stopped for good; its copies and \
         credentials are removed from {} on (each copy once its Object Lock has run out)",
        enrolled.tenant_id,
        enrolled.name,
        purge_after.to_rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}
