//! How far the pipeline trusts a PBX: deadlines and size caps of its calls and downloads, and
//! the grace its own backup schedule gets.

use std::collections::HashMap;
use std::time::Duration;

use restorable_domain::ids::TenantId;

use crate::deadlines::Deadline;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// How far the pipeline trusts a PBX: deadlines and size caps (`[pbx]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbxLimits {
    /// Overall deadline of one API call, from connecting to the last byte of the answer.
    pub call_deadline: Duration,
    /// Overall deadline of one backup download, scaled by its `Content-Length`.
    pub download_deadline: Deadline,
    /// The largest JSON answer read from a PBX.
    pub max_json_bytes: u64,
    /// The largest backup stored, unless its tenant has its own maximum.
    pub max_backup_bytes: u64,
    /// The tenants whose backups may be larger or must be smaller than `max_backup_bytes`.
    pub tenant_max_backup_bytes: HashMap<TenantId, u64>,
    /// How long past its schedule's period the PBX's own newest backup may be before it is
    /// stale (the native backup watch; default 48 h).
    pub native_backup_grace: chrono::Duration,
    /// How often the native backup watch reads the PBX's own schedule between captures
    /// (`[pbx] native_watch_hours`, default 6; zero: only at captures).
    pub native_watch_every: chrono::Duration,
}

impl Default for PbxLimits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(2 * 60),
            download_deadline: Deadline::new(
                Duration::from_secs(30 * 60),
                Duration::from_secs(10 * 60),
            ),
            max_json_bytes: 4 * MIB,
            max_backup_bytes: 50 * GIB,
            tenant_max_backup_bytes: HashMap::new(),
            native_backup_grace: chrono::Duration::hours(48),
            native_watch_every: chrono::Duration::hours(i64::from(
                crate::native_watch::DEFAULT_EVERY_HOURS,
            )),
        }
    }
}

impl PbxLimits {
    /// The largest backup stored for `tenant`.
    pub fn max_backup_for(&self, tenant: &TenantId) -> u64 {
        self.tenant_max_backup_bytes
            .get(tenant)
            .copied()
            .unwrap_or(self.max_backup_bytes)
    }
}
