//! `restorable restore-test`: restore-tests a Verified cycle now, whatever the cadence.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;

use crate::cli::RestoreTestArgs;
use crate::output::{self, CycleOutcome};
use crate::progress::terminal_hook;
use crate::runtime::open;

/// Runs the restore test and prints the rung reached (exit code 1 when it failed).
///
/// # Errors
/// A bad cycle id or a store failure.
pub async fn run(args: RestoreTestArgs) -> Result<ExitCode> {
    let settings = Settings {
        restore_time_limit: Duration::from_secs(args.time_limit_secs),
        progress: terminal_hook(args.json),
        ..Settings::default()
    };
    let pipeline = open(&args.data, settings).await?;
    let cycle: restorable_domain::ids::CycleId = args.cycle.parse()?;
    restorable_pipeline::stages::restore_test::restore_test_now(&pipeline, &cycle.to_string())
        .await?;
    let state: restorable_domain::cycle::BackupCycle =
        pipeline.store.load(&cycle.to_string()).await?;
    pipeline.store.close().await;
    if args.json {
        output::print(&CycleOutcome::of(&cycle.to_string(), &state))?;
        return Ok(if state.failed.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    match state.failed {
        Some(failed) => {
            println!(
                "FAILED at {}: {} ({})",
                failed.stage, failed.reason, failed.detail
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("reached {}", state.rung.map_or("-", |r| r.label()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
