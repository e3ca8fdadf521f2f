//! `restorable rotate-key`: a tenant's new backup key (older backups keep their version).

use std::process::ExitCode;

use anyhow::Result;
use restorable_domain::ids::TenantId;
use restorable_pipeline::enrolment::rotate_tenant_key;
use restorable_pipeline::pipeline::Settings;

use crate::cli::RotateKeyArgs;
use crate::runtime::open;

/// Rotates the key and prints its new version.
///
/// # Errors
/// A bad tenant, a sealing or a store failure.
pub async fn run(args: RotateKeyArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let version = rotate_tenant_key(&pipeline, &TenantId::new(&args.tenant)?).await?;
    println!(
        "tenant {} now encrypts new backups with key version {version}",
        args.tenant
    );
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}
