//! The fleet page's re-check coverage line: of the stored copies the viewer may see (in the
//! tenant filtered to), how many were proven intact within the re-check window, how many
//! failed their last re-check, and the oldest proof ([`restorable_pipeline::recheck`]). Read
//! from the re-checks' index when the page is rendered; a store that does not answer leaves the
//! line saying so rather than failing the page (the rest of it comes from the views).

use chrono::{DateTime, Utc};
use restorable_pipeline::store::RecheckCoverage;

use super::layout::time;
use crate::auth::{Principal, Scope};
use crate::queries::FleetFilter;
use crate::state::AppState;

/// The coverage line for `who` looking at `filter`.
pub(super) async fn coverage_line(
    state: &AppState,
    who: &Principal,
    filter: &FleetFilter,
) -> String {
    let asked = filter.tenant.as_deref().filter(|t| !t.is_empty());
    let tenants: Option<Vec<String>> = match (&who.scope, asked) {
        (Scope::All, None) => None,
        (Scope::All, Some(tenant)) => Some(vec![tenant.to_owned()]),
        (Scope::Tenant(own), Some(tenant)) if own.as_str() != tenant => Some(Vec::new()),
        (Scope::Tenant(own), _) => Some(vec![own.to_string()]),
    };
    let window = state.pipeline.settings.recheck_window;
    let now = Utc::now();
    let since = (now - window).timestamp_millis();
    match state
        .pipeline
        .store
        .recheck_coverage(tenants.as_deref(), since)
        .await
    {
        Ok(coverage) => describe(&coverage, window),
        Err(error) => {
            tracing::warn!(%error, "the fleet page could not read the re-check coverage");
            "Re-check coverage: not available right now".to_owned()
        }
    }
}

/// `Re-check coverage: 97.5 % of 40 stored copies proven in the last 7 days · oldest proof ... ·
/// 1 failed its last re-check`.
pub(super) fn describe(coverage: &RecheckCoverage, window: chrono::Duration) -> String {
    if coverage.copies == 0 {
        return "Re-check coverage: no stored copies yet".to_owned();
    }
    let copies = match coverage.copies {
        1 => "1 stored copy".to_owned(),
        n => format!("{n} stored copies"),
    };
    let mut line = format!(
        "Re-check coverage: {:.1} % of {copies} proven in the last {} days · oldest proof {}",
        coverage.share() * 100.0,
        window.num_days(),
        time(
            coverage
                .oldest_proof
                .and_then(DateTime::<Utc>::from_timestamp_millis)
        )
    );
    if coverage.failing > 0 {
        line.push_str(&format!(" · {} failed its last re-check", coverage.failing));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_the_share_the_count_the_oldest_proof_and_the_failing() {
        let window = chrono::Duration::days(7);
        assert_eq!(
            describe(&RecheckCoverage::default(), window),
            "Re-check coverage: no stored copies yet"
        );
        let coverage = RecheckCoverage {
            copies: 40,
            proven: 39,
            failing: 1,
            oldest_proof: Some(1_764_064_800_000),
        };
        assert_eq!(
            describe(&coverage, window),
            "Re-check coverage: 97.5 % of 40 stored copies proven in the last 7 days · \
             oldest proof 2025-11-25 10:00 UTC · 1 failed its last re-check"
        );
    }
}
