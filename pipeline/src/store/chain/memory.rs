//! What a process remembers of the chains it committed to, so that a commit need not read them
//! (see the chain's module header): each aggregate's tenant (fixed by its first chained event)
//! and each tenant's head after this process's last commit to it. Nothing here is trusted: a
//! head another process moved on is refused by the store (PostgreSQL's chained append compares
//! it under the writers' lock, SQLite's `UNIQUE (tenant, tenant_index)`) and forgotten, and the
//! commit is redone reading the head.

use cqrs_es::persist::SerializedEvent;
use restorable_domain::evidence;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::UNASSIGNED;

/// Entries of each map before it is emptied (a bound, not a working set: a miss costs one read).
const REMEMBERED: usize = 4_096;

/// A tenant's last link: its index and hash.
#[derive(Clone, Debug, Default)]
pub(crate) struct Head {
    /// The last index in the tenant's chain (0: the chain is empty).
    pub index: i64,
    /// The last link (the genesis value when the chain is empty).
    pub hash: String,
}

/// The process's memory of tenants and heads, shared by every clone of a store.
#[derive(Debug, Default)]
pub(crate) struct ChainMemory {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// (aggregate type, aggregate id) → tenant.
    tenants: HashMap<(String, String), String>,
    /// tenant → head.
    heads: HashMap<String, Head>,
}

impl ChainMemory {
    /// The tenant and remembered head of the commit that starts with `first`, if both are
    /// known. An aggregate's first event names its tenant; later ones need the memory.
    pub(crate) fn recall(&self, first: &SerializedEvent) -> Option<(String, Head)> {
        let remembered = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let tenant = if first.sequence == 1 {
            evidence::tenant_named_by(&first.payload)
                .unwrap_or(UNASSIGNED)
                .to_owned()
        } else {
            remembered
                .tenants
                .get(&(first.aggregate_type.clone(), first.aggregate_id.clone()))?
                .clone()
        };
        let head = remembered.heads.get(&tenant)?.clone();
        Some((tenant, head))
    }

    /// Remembers a committed chain: `first`'s aggregate belongs to `tenant`, whose head is now
    /// `head`.
    pub(crate) fn remember(&self, first: &SerializedEvent, tenant: &str, head: Head) {
        let mut remembered = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.tenants.len() >= REMEMBERED {
            remembered.tenants.clear();
        }
        if remembered.heads.len() >= REMEMBERED && !remembered.heads.contains_key(tenant) {
            remembered.heads.clear();
        }
        remembered.tenants.insert(
            (first.aggregate_type.clone(), first.aggregate_id.clone()),
            tenant.to_owned(),
        );
        remembered.heads.insert(tenant.to_owned(), head);
    }

    /// Forgets `tenant`'s head (another process moved it on, or a commit's outcome is unknown).
    pub(crate) fn forget(&self, tenant: &str) {
        let mut remembered = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        remembered.heads.remove(tenant);
    }
}
