//! `restorable verify`: checks a downloaded backup file offline (opens, decrypts and
//! authenticates every entry); exit code 1 when it is rejected.

use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};
use restorable_pipeline::archive::{verify_archive_counted, VerifyLimits, CORE_TABLES};
use restorable_pipeline::progress::{report_while, Work};
use restorable_pipeline::stages::verify::failure_reason;

use crate::cli::VerifyArgs;
use crate::output::{self, VerifyReport};
use crate::progress::terminal_hook;
use crate::runtime::read_secret_file;

/// Verifies the file and prints the verdict.
///
/// # Errors
/// The file or the password file cannot be read.
pub async fn run(args: VerifyArgs) -> Result<ExitCode> {
    let password = read_secret_file(&args.password_file, "password")?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let limits = VerifyLimits {
        minimum_encryption: args.minimum_encryption,
        ..VerifyLimits::default()
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let read = Arc::new(AtomicU64::new(0));
    let verifier = tokio::task::spawn_blocking({
        let read = Arc::clone(&read);
        move || verify_archive_counted(file, &password, CORE_TABLES, &limits, read)
    });
    let name = args.file.display().to_string();
    let progress = terminal_hook(args.json);
    let outcome = report_while(&progress, &name, Work::Verify, size, &read, verifier).await?;
    if args.json {
        let file = args.file.display().to_string();
        let (verified, document) = match outcome {
            Ok(report) => (
                true,
                VerifyReport {
                    file,
                    verified: true,
                    reason: None,
                    detail: None,
                    entries: Some(report.entries),
                    inflated_bytes: Some(report.inflated_bytes),
                    tables: report.tables,
                    encryption: report.encryption,
                    compression: report.compression,
                },
            ),
            Err(fault) => (
                false,
                VerifyReport {
                    file,
                    verified: false,
                    reason: Some(failure_reason(&fault).to_string()),
                    detail: Some(fault.to_string()),
                    entries: None,
                    inflated_bytes: None,
                    tables: Vec::new(),
                    encryption: Default::default(),
                    compression: Default::default(),
                },
            ),
        };
        output::print(&document)?;
        return Ok(if verified {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    match outcome {
        Ok(report) => {
            let counts = |map: &std::collections::BTreeMap<String, u64>| {
                map.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "OK: {} entries authenticated and read to their end ({} bytes); DbTables: {}; \
                 encryption: {}; compression: {}",
                report.entries,
                report.inflated_bytes,
                report.tables.join(", "),
                counts(&report.encryption),
                counts(&report.compression)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            println!("REJECTED {}: {fault}", failure_reason(&fault));
            Ok(ExitCode::FAILURE)
        }
    }
}
