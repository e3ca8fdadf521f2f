//! `restorable projections rebuild`: the read side's stored views, the scheduler's index and
//! the rotating re-checks' index, rebuilt from the history. The log is streamed in batches, and progress is shown: a progress
//! bar when stderr is a terminal; otherwise nothing extra on the output, only an `info` log line
//! every [`PLAIN_EVERY`] (seen with `RUST_LOG=info`, e.g. in a service's journal).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::read_model::rebuild_reporting;
use restorable_pipeline::{recheck, schedule};

use crate::cli::ProjectionsCommand;
use crate::runtime::open;

/// How often the progress is logged when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// `projections rebuild`: empties the stored views and replays the whole history, then rebuilds
/// the scheduler's index.
///
/// # Errors
/// A store failure.
pub async fn run(command: ProjectionsCommand) -> Result<ExitCode> {
    match command {
        ProjectionsCommand::Rebuild(data) => {
            let pipeline = open(&data, Settings::default()).await?;
            let end = pipeline.store.log_end().await?;
            let mut progress = Progress::new(end, std::io::stderr().is_terminal());
            let model = rebuild_reporting(&pipeline.store, &mut |at| progress.at(at)).await?;
            progress.finish();
            let scheduled = schedule::rebuild(&pipeline.store).await?;
            let window = pipeline.settings.recheck_window;
            let rechecks =
                recheck::index::rebuild(&pipeline.store, window, chrono::Utc::now()).await?;
            let backups = pipeline.store.view_count("backups").await?;
            let alerts = pipeline.store.view_count("alerts").await?;
            let audit = pipeline.store.view_count("audit").await?;
            pipeline.store.close().await;
            println!(
                "rebuilt: {} instances, {backups} backups, {alerts} alerts, {audit} audit \
                 records; schedule index at position {scheduled}; re-check index at position \
                 {rechecks}",
                model.fleet.rows().len(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress through the log: a bar on a terminal, a periodic log line otherwise.
struct Progress {
    end: i64,
    started: Instant,
    bar: Option<ProgressBar>,
    printed: Instant,
}

impl Progress {
    fn new(end: i64, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(u64::try_from(end).unwrap_or(0)).with_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} events ({per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            end,
            started: Instant::now(),
            bar,
            printed: Instant::now(),
        }
    }

    fn at(&mut self, position: i64) {
        match &self.bar {
            Some(bar) => bar.set_position(u64::try_from(position).unwrap_or(0)),
            None if self.printed.elapsed() >= PLAIN_EVERY => {
                self.printed = Instant::now();
                tracing::info!("{}", self.line(position));
            }
            None => {}
        }
    }

    fn line(&self, position: i64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "rebuilding: {position}/{} events ({:.0}/s)",
            self.end,
            position as f64 / seconds
        )
    }

    fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => tracing::info!("{}", self.line(self.end)),
        }
    }
}
