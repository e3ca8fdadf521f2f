//! Progress bars on a terminal: a [`Progress`] that draws the stages' long work (download,
//! read-back, verify, restore test) with indicatif — bytes, rate and ETA — on standard error,
//! only when it is a terminal and the command was not asked for `--json`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use restorable_pipeline::progress::{Progress, ProgressHook, Work};

/// The hook a command gives the pipeline: bars on a terminal, nothing otherwise.
pub fn terminal_hook(json: bool) -> ProgressHook {
    if json || !std::io::stderr().is_terminal() {
        return ProgressHook::default();
    }
    ProgressHook::new(Arc::new(TerminalBars::default()))
}

/// One bar at a time (a command follows one cycle).
#[derive(Default)]
struct TerminalBars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for TerminalBars {
    fn begin(&self, _cycle: &str, work: Work, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => {
                let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                spinner
            }
        };
        bar.set_message(work.label());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn position(&self, _cycle: &str, done: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.set_position(done);
            }
        }
    }

    fn end(&self, _cycle: &str) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}
