//! `restorable doctor`: checks every configured backend and prints whether it is usable
//! (exit code 1 when one is not).

use std::process::ExitCode;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;

use crate::settings;
use crate::settings::Config;

/// Prints one line per backend.
///
/// # Errors
/// A setting that is missing or wrong.
pub async fn run(data: Config) -> Result<ExitCode> {
    let (backends, settings) = settings::resolve(&data, Settings::default())?;
    let report = restorable_pipeline::setup::diagnose(&backends, &settings).await;
    let mut healthy = true;
    for line in &report {
        healthy &= line.ok;
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
