//! `restorable projections rebuild`: the read side's stored views, rebuilt from the history.

use std::process::ExitCode;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::read_model::rebuild;

use crate::cli::ProjectionsCommand;
use crate::runtime::open;

/// `projections rebuild`: empties the stored views and replays the whole history.
///
/// # Errors
/// A store failure.
pub async fn run(command: ProjectionsCommand) -> Result<ExitCode> {
    match command {
        ProjectionsCommand::Rebuild(data) => {
            let pipeline = open(&data, Settings::default()).await?;
            let model = rebuild(&pipeline.store).await?;
            pipeline.store.close().await;
            println!(
                "rebuilt: {} instances, {} backups, {} alerts, {} audit records",
                model.fleet.rows().len(),
                model.backups.rows().count(),
                model.alerts.rows().len(),
                model.audit.rows().count()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
