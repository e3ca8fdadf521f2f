//! The file's `[audit]` section: when the history's checkpoints are written and the history is
//! checked ([`EvidenceSchedule`]). Each value is checked against its range and a mistake names
//! its key.

use anyhow::{bail, Result};
use restorable_pipeline::evidence::EvidenceSchedule;
use serde::Deserialize;

/// `[audit]`: the evidence's schedule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAudit {
    checkpoint_minutes: Option<u32>,
    check_hours: Option<u32>,
}

/// `[audit]` over the defaults in `schedule`.
pub(super) fn audit_schedule(file: &FileAudit, schedule: &mut EvidenceSchedule) -> Result<()> {
    if let Some(minutes) = file.checkpoint_minutes {
        if !(1..=1440).contains(&minutes) {
            bail!("audit.checkpoint_minutes must be between 1 and 1440, not {minutes}");
        }
        schedule.checkpoint_every = chrono::Duration::minutes(i64::from(minutes));
    }
    if let Some(hours) = file.check_hours {
        if !(1..=720).contains(&hours) {
            bail!("audit.check_hours must be between 1 and 720, not {hours}");
        }
        schedule.check_every = chrono::Duration::hours(i64::from(hours));
    }
    Ok(())
}
