//! Retention's policy beyond each tenant's Object Lock days: the grandfather-father-son rule
//! (every tenant's, or a tenant's own) and the offboarding grace. Plain settings, read by
//! [`crate::pipeline::Settings`]; the rules that use them are in [`super::plan`].

use std::collections::HashMap;

use restorable_domain::ids::TenantId;

/// Keep the newest good copy of each of the last `daily` days, `weekly` ISO weeks and
/// `monthly` months (0 = that rule keeps nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gfs {
    /// Days.
    pub daily: u32,
    /// ISO weeks (Monday to Sunday).
    pub weekly: u32,
    /// Calendar months.
    pub monthly: u32,
}

/// Retention's policy beyond each tenant's Object Lock days (`retention_days`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The grandfather-father-son rule of every tenant without its own (none by default).
    pub gfs: Option<Gfs>,
    /// The tenants with a rule of their own.
    pub tenant_gfs: HashMap<TenantId, Gfs>,
    /// How long after an instance is removed its copies and credentials go (default 30 days).
    pub remove_after: chrono::Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            gfs: None,
            tenant_gfs: HashMap::new(),
            remove_after: chrono::Duration::days(30),
        }
    }
}

impl RetentionPolicy {
    /// The grandfather-father-son rule of `tenant`, if any.
    pub fn gfs_for(&self, tenant: &TenantId) -> Option<Gfs> {
        self.tenant_gfs.get(tenant).copied().or(self.gfs)
    }
}
