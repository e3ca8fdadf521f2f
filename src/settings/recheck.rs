//! The file's `[recheck]` section: the rotating re-checks' window — every stored copy is read
//! back and its lock checked again at least once per `window_days` (default 7). A value out of
//! range names its key.

use anyhow::{bail, Result};
use serde::Deserialize;

/// `[recheck]`: the re-checks' window.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRecheck {
    window_days: Option<u32>,
}

/// `[recheck]` over the default `window`.
pub(super) fn recheck_window(file: &FileRecheck, window: &mut chrono::Duration) -> Result<()> {
    if let Some(days) = file.window_days {
        if !(1..=365).contains(&days) {
            bail!("recheck.window_days must be between 1 and 365, not {days}");
        }
        *window = chrono::Duration::days(i64::from(days));
    }
    Ok(())
}
