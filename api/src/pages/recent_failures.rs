//! The fleet page's "Failures in the last 24 h": how many cycles of the instances the viewer may
//! see (in the tenant filtered to) failed in the last day, and the newest few, each linked to its
//! instance. Read from the stored `failures` view newest first, a page at a time, stopping at the
//! first page older than the day (less the workers' clock skew): never the whole history. A store
//! that does not answer leaves the line saying so rather than failing the page.

use chrono::{DateTime, Utc};
use restorable_pipeline::read_model::{failures_between, CLOCK_SKEW};

use super::layout::time;
use crate::auth::{Principal, Scope};
use crate::queries::FleetFilter;
use crate::state::AppState;

/// How many of the day's failures the page lists.
const LISTED: usize = 5;

/// One listed failure.
pub(super) struct RecentFailure {
    pub(super) instance: String,
    pub(super) name: String,
    pub(super) tenant: String,
    pub(super) at: String,
    pub(super) what: String,
}

/// The day's failures as the page shows them.
pub(super) struct RecentFailures {
    /// `Failures in the last 24 h: 3`, or why it is not known.
    pub(super) line: String,
    /// The newest few.
    pub(super) newest: Vec<RecentFailure>,
}

/// The failures of the last 24 hours before `now` that `who` may see under `filter`.
pub(super) async fn recent_failures(
    state: &AppState,
    who: &Principal,
    filter: &FleetFilter,
    now: DateTime<Utc>,
) -> RecentFailures {
    let asked = filter.tenant.as_deref().filter(|t| !t.is_empty());
    let tenant: Option<String> = match (&who.scope, asked) {
        (Scope::All, asked) => asked.map(str::to_owned),
        (Scope::Tenant(own), Some(asked)) if own.as_str() != asked => {
            return RecentFailures {
                line: "Failures in the last 24 h: 0".to_owned(),
                newest: Vec::new(),
            };
        }
        (Scope::Tenant(own), _) => Some(own.to_string()),
    };
    let since = now - chrono::Duration::hours(24);
    let found = match failures_between(
        &state.pipeline.store,
        tenant.as_deref(),
        since,
        now + CLOCK_SKEW,
        LISTED,
    )
    .await
    {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "the fleet page could not read the day's failures");
            return RecentFailures {
                line: "Failures in the last 24 h: not available right now".to_owned(),
                newest: Vec::new(),
            };
        }
    };
    let count = found.count;
    let mut newest: Vec<(RecentFailure, _)> = found
        .newest
        .into_iter()
        .map(|failure| {
            (
                RecentFailure {
                    instance: failure.instance_id.to_string(),
                    name: failure.instance_id.to_string(),
                    tenant: failure.tenant_id.to_string(),
                    at: time(Some(failure.failed_at)),
                    what: format!("{} failed: {}", failure.stage, failure.reason),
                },
                failure.instance_id,
            )
        })
        .collect();
    {
        let model = state.read.read();
        for (listed, instance) in &mut newest {
            if let Some(row) = model.fleet.row(instance) {
                listed.name = row.name.clone();
            }
        }
    }
    RecentFailures {
        line: format!("Failures in the last 24 h: {count}"),
        newest: newest.into_iter().map(|(listed, _)| listed).collect(),
    }
}
