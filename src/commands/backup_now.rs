//! `restorable backup-now`: one backup cycle of an instance now, in this process; prints the
//! rung it reached (exit code 1 when it failed).

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use restorable_domain::ladder::Trigger;
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::runtime::driver;

use crate::cli::BackupNowArgs;
use crate::output::{self, CycleOutcome};
use crate::progress::terminal_hook;
use crate::runtime::{instance_id, open};

/// Runs the cycle until it closes.
///
/// # Errors
/// An unknown instance, a store failure, or a cycle that never closes.
pub async fn run(args: BackupNowArgs) -> Result<ExitCode> {
    let settings = Settings {
        capture_deadline: Duration::from_secs(args.capture_deadline_secs),
        poll_interval: Duration::from_millis(500),
        progress: terminal_hook(args.json),
        ..Settings::default()
    };
    let pipeline = open(&args.data, settings).await?;
    let instance = instance_id(&args.instance)?;
    let from = driver::head_position(&pipeline).await?;
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual).await?;
    if !args.json {
        println!("cycle {cycle}");
    }
    driver::run_until_closed(
        &pipeline,
        HashSet::from([cycle]),
        from,
        Duration::from_secs(args.capture_deadline_secs + 3600),
        |_| {},
    )
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
    let rung = state.rung.map_or("-", |r| r.label());
    match state.failed {
        Some(failed) => {
            println!(
                "reached {rung}; FAILED at {}: {} ({})",
                failed.stage, failed.reason, failed.detail
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("reached {rung}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
