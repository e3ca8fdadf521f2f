//! `restorable doctor`: checks every configured backend and prints whether it is usable
//! (exit code 1 when one is not).

use std::process::ExitCode;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;

use crate::cli::DoctorArgs;
use crate::output::{self, BackendLine, DoctorReport};
use crate::settings;

/// Prints one line per backend.
///
/// # Errors
/// A setting that is missing or wrong.
pub async fn run(args: DoctorArgs) -> Result<ExitCode> {
    let (backends, settings) = settings::resolve(&args.data, Settings::default())?;
    let report = restorable_pipeline::setup::diagnose(&backends, &settings).await;
    let healthy = report.iter().all(|line| line.ok);
    if args.json {
        output::print(&DoctorReport {
            healthy,
            backends: report
                .iter()
                .map(|line| BackendLine {
                    port: line.port.to_owned(),
                    ok: line.ok,
                    detail: line.detail.clone(),
                })
                .collect(),
        })?;
    }
    for line in report.iter().filter(|_| !args.json) {
        println!(
            "{:<16} {}  {}",
            line.port,
            if line.ok { "ok  " } else { "FAIL" },
            line.detail
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
