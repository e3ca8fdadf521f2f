//! What a caller may see. Every lookup by id goes through here, and data of a tenant outside
//! the caller's scope answers exactly like data that does not exist (404), so ids of other
//! tenants leak nothing.

use restorable_domain::ids::{CycleId, InstanceId};
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::FleetRow;

use crate::auth::Principal;
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

/// The backups row of `cycle`, if the caller may see it.
///
/// # Errors
/// [`ApiError::NotFound`] for a malformed, unknown or other tenant's id.
pub fn cycle(state: &AppState, who: &Principal, cycle: &str) -> Result<BackupRow, ApiError> {
    let id: CycleId = cycle.parse().map_err(|_| ApiError::NotFound)?;
    let model = state.read.read();
    model
        .backups
        .row(&id)
        .filter(|row| who.scope.allows(&row.tenant_id))
        .cloned()
        .ok_or(ApiError::NotFound)
}
