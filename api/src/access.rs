//! What a caller may see (fleet rows and alerts from the views in memory, cycles from the stored view). Every lookup by id goes through here, and data of a tenant outside
//! the caller's scope answers exactly like data that does not exist (404), so ids of other
//! tenants leak nothing.

use restorable_domain::ids::{CycleId, InstanceId};
use restorable_pipeline::read_model;
use restorable_projections::alerts::AlertRow;
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::FleetRow;

use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// The fleet row of `instance`, if the caller may see it.
///
/// # Errors
/// [`ApiError::NotFound`] for a malformed, unknown or other tenant's id.
pub fn instance(state: &AppState, who: &Principal, instance: &str) -> Result<FleetRow, ApiError> {
    let id: InstanceId = instance.parse().map_err(|_| ApiError::NotFound)?;
    let model = state.read.read();
    model
        .fleet
        .row(&id)
        .filter(|row| who.scope.allows(&row.tenant_id))
        .cloned()
        .ok_or(ApiError::NotFound)
}

/// The backups row of `cycle`, if the caller may see it (read from the stored view by its key).
///
/// # Errors
/// [`ApiError::NotFound`] for a malformed, unknown or other tenant's id; a store failure.
pub async fn cycle(state: &AppState, who: &Principal, cycle: &str) -> Result<BackupRow, ApiError> {
    let id: CycleId = cycle.parse().map_err(|_| ApiError::NotFound)?;
    read_model::backup_row(&state.pipeline.store, &id)
        .await?
        .filter(|row| who.scope.allows(&row.tenant_id))
        .ok_or(ApiError::NotFound)
}

/// The alert `alert_id` as held in memory (every open alert is), if the caller may see it.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown, long-resolved or other tenant's alert.
pub fn alert(state: &AppState, who: &Principal, alert_id: &str) -> Result<AlertRow, ApiError> {
    let model = state.read.read();
    model
        .alerts
        .row(alert_id)
        .filter(|row| who.scope.allows(&row.tenant_id))
        .cloned()
        .ok_or(ApiError::NotFound)
}

/// The tenant whose rows `who` may read, `None` for every tenant.
pub fn tenant_of(who: &Principal) -> Option<&str> {
    match &who.scope {
        Scope::All => None,
        Scope::Tenant(tenant) => Some(tenant.as_str()),
    }
}
