//! `restorable audit ...`: signed checkpoints, exports for auditors, their offline verification
//! and the live check (`restorable_pipeline::evidence`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use restorable_pipeline::evidence::{
    check_live, export_tenant, verify_export, write_checkpoint, ExportRange, LocalSigner, Signer,
    SIGNING_KEY_FILE,
};
use restorable_pipeline::pipeline::Settings;

use crate::cli::{AuditCommand, AuditExportArgs};
use crate::runtime::{open, signer};

/// A date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 instant.
fn parse_date(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))?;
    Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// Runs an `audit` subcommand.
///
/// # Errors
/// A store or vault failure, a bad flag, an unusable key or export.
pub async fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Checkpoint(data) => {
            let pipeline = open(&data, Settings::default()).await?;
            let signer = signer(&data).await?;
            let checkpoint = write_checkpoint(
                &pipeline.store,
                pipeline.vault.as_ref(),
                signer.as_ref(),
                pipeline.settings.evidence.retention,
            )
            .await?;
            println!(
                "checkpoint {} at {}: {} tenants, root {}, signed by key {}",
                checkpoint.header.sequence,
                checkpoint.header.at.to_rfc3339(),
                checkpoint.header.leaves,
                checkpoint.header.root,
                checkpoint.header.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Verify(args) => match verify_export(&args.dir)? {
            Ok(proven) => {
                println!("VERIFIED {proven}");
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => {
                println!("BROKEN {broken}");
                Ok(ExitCode::from(1))
            }
        },
        AuditCommand::Check(data) => {
            let pipeline = open(&data, Settings::default()).await?;
            let report = check_live(&pipeline.store, pipeline.vault.as_ref()).await?;
            for (tenant, broken) in &report.breaks {
                println!("BROKEN {tenant}: {broken}");
            }
            println!(
                "{}: {} tenants, {} events, {} checkpoints",
                if report.intact() { "INTACT" } else { "BROKEN" },
                report.tenants,
                report.events,
                report.checkpoints
            );
            Ok(if report.intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Key(data) => {
            let signer = signer(&data).await?;
            println!(
                "key id {}\npublic key (hex: Ed25519, or a KMS key's P-256 SubjectPublicKeyInfo) {}",
                signer.key_id(),
                signer.public_key_hex()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::RotateKey(data) => {
            anyhow::ensure!(
                crate::settings::signing_kms(&data)?.is_none(),
                "the signing key is in KMS: rotate it there (a new key, then --signing-key-id)"
            );
            let path = data.data_dir.join(SIGNING_KEY_FILE);
            let old = signer(&data).await?.key_id();
            let new = LocalSigner::rotate(&path)?;
            println!(
                "signing key {old} retired (kept in signing-keys/); new key id {}",
                new.key_id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn export(args: AuditExportArgs) -> Result<ExitCode> {
    let range = ExportRange {
        from: args.from.as_deref().map(parse_date).transpose()?,
        to: args.to.as_deref().map(parse_date).transpose()?,
    };
    let pipeline = open(&args.data, Settings::default()).await?;
    let signer = signer(&args.data).await?;
    let summary = export_tenant(
        &pipeline.store,
        pipeline.vault.as_ref(),
        signer.as_ref(),
        &args.tenant,
        &args.out,
        range,
        &pipeline.settings.evidence,
    )
    .await?;
    println!(
        "exported {} events of tenant {} and {} checkpoints (took checkpoint {}) into {}; check it with `restorable audit verify {}`",
        summary.events,
        args.tenant,
        summary.checkpoints,
        summary.taken,
        summary.dir.display(),
        summary.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
