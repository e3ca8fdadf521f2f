//! Recording what people do: one `ActionRecorded` event in the tenant's audit trail per
//! action (a leaf the actions share).

use chrono::Utc;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Records `action` by `who` in `tenant`'s audit trail.
///
/// # Errors
/// The store failed.
pub(super) async fn record(
    state: &AppState,
    who: &Principal,
    tenant: &TenantId,
    action: AuditAction,
    instance: Option<InstanceId>,
    cycle: Option<CycleId>,
    key_version: Option<u32>,
) -> Result<(), ApiError> {
    let record = ActionRecorded {
        tenant_id: tenant.clone(),
        actor: who.actor.clone(),
        action,
        instance_id: instance,
        cycle_id: cycle,
        key_version,
        at: Utc::now(),
    };
    state
        .pipeline
        .store
        .audit(tenant.as_str(), record)
        .await
        .map_err(ApiError::from)
}
