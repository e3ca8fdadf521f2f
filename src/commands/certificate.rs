//! `restorable certificate get|verify`: a Restore-Tested cycle's signed restore certificate
//! (`restorable_pipeline::evidence::certificate`), and its offline check.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use restorable_pipeline::evidence::{certificate_fault, issue_certificate, Certificate};
use restorable_pipeline::pipeline::Settings;

use crate::cli::CertificateCommand;
use crate::runtime::{open, signer};

/// Runs a `certificate` subcommand.
///
/// # Errors
/// A bad cycle id, a cycle not Restore-Tested, an unreadable file, a store failure.
pub async fn run(command: CertificateCommand) -> Result<ExitCode> {
    match command {
        CertificateCommand::Get(args) => {
            let cycle = args
                .cycle
                .parse::<restorable_domain::ids::CycleId>()?
                .to_string();
            let pipeline = open(&args.data, Settings::default()).await?;
            let signer = signer(&args.data).await?;
            let certificate = issue_certificate(&pipeline.store, signer.as_ref(), &cycle)
                .await?
                .with_context(|| format!("cycle {cycle} has no Restore-Tested copy"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            file.write_all(serde_json::to_string_pretty(&certificate)?.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "certificate {} written to {}; public page: /certificates/{}",
                certificate.id,
                args.out.display(),
                certificate.id
            );
            Ok(ExitCode::SUCCESS)
        }
        CertificateCommand::Verify(args) => {
            let bytes = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let certificate: Certificate = match serde_json::from_slice(&bytes) {
                Ok(certificate) => certificate,
                Err(error) => {
                    println!("NOT GENUINE: not a restore certificate ({error})");
                    return Ok(ExitCode::from(1));
                }
            };
            match certificate_fault(&certificate) {
                None => {
                    let f = &certificate.facts;
                    println!(
                        "GENUINE certificate {}: tenant {}, instance {}, cycle {}, copy sha256 {} ({} bytes, key version {}), restored in {} ms at {}, signed by key {}",
                        certificate.id,
                        f.tenant,
                        f.instance_id,
                        f.cycle_id,
                        f.copy_sha256,
                        f.copy_size,
                        f.key_version,
                        f.restore_duration_ms,
                        f.restore_tested_at.to_rfc3339(),
                        certificate.key_id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(fault) => {
                    println!("NOT GENUINE: {fault}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
