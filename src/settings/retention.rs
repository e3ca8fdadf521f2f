//! The file's `[retention]` section: what retention keeps past a copy's Object Lock, and how
//! long a removed instance's copies and credentials stay (the lock's days themselves are
//! `retention_days` and `[tenant_retention_days]`).
//!
//! ```toml
//! [retention]
//! remove_after_days = 30            # offboarding grace (default 30)
//! [retention.gfs]                   # every tenant's grandfather-father-son rule (default none)
//! daily = 7
//! weekly = 4
//! monthly = 12
//! [retention.tenant_gfs.acme]       # a tenant's own rule
//! daily = 14
//! ```
//!
//! A value out of range, or a tenant that is not a tenant id, names its key.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use restorable_domain::ids::TenantId;
use restorable_pipeline::retention::{Gfs, RetentionPolicy};
use serde::Deserialize;

/// `[retention]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetention {
    remove_after_days: Option<u32>,
    gfs: Option<FileGfs>,
    #[serde(default)]
    tenant_gfs: HashMap<String, FileGfs>,
}

/// A grandfather-father-son rule: how many days, ISO weeks and months keep their newest good
/// copy (each 0 by default).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGfs {
    #[serde(default)]
    daily: u32,
    #[serde(default)]
    weekly: u32,
    #[serde(default)]
    monthly: u32,
}

impl FileGfs {
    fn checked(self, what: &str) -> Result<Gfs> {
        for (key, value, most) in [
            ("daily", self.daily, 3660),
            ("weekly", self.weekly, 520),
            ("monthly", self.monthly, 1200),
        ] {
            if value > most {
                bail!("{what}.{key} must be at most {most}, not {value}");
            }
        }
        if self.daily + self.weekly + self.monthly == 0 {
            bail!("{what} keeps nothing: give daily, weekly or monthly");
        }
        Ok(Gfs {
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        })
    }
}

/// `[retention]` over the default `policy`.
pub(super) fn retention_policy(file: &FileRetention, policy: &mut RetentionPolicy) -> Result<()> {
    if let Some(days) = file.remove_after_days {
        if !(1..=3650).contains(&days) {
            bail!("retention.remove_after_days must be between 1 and 3650, not {days}");
        }
        policy.remove_after = chrono::Duration::days(i64::from(days));
    }
    if let Some(gfs) = file.gfs {
        policy.gfs = Some(gfs.checked("retention.gfs")?);
    }
    for (tenant, gfs) in &file.tenant_gfs {
        let id = TenantId::new(tenant)
            .with_context(|| format!("retention.tenant_gfs: {tenant:?} is not a tenant id"))?;
        let gfs = gfs.checked(&format!("retention.tenant_gfs.{tenant}"))?;
        policy.tenant_gfs.insert(id, gfs);
    }
    Ok(())
}
