//! Enrolling PBXes and opening cycles: the operator-facing commands of the pipeline.
//!
//! Enrolment issues the tenant's backup key on first use (a password generated here, never
//! supplied by a customer, sealed before it is stored) and seals the PBX's API credentials.

use chrono::Utc;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleOpened, EndpointChanged, Instance, InstanceCommand, InstanceEnrolled, RestorePolicy,
    Schedule,
};
use restorable_domain::ladder::Trigger;
use restorable_domain::tenant_key::{SealedPassword, TenantKey, TenantKeyCommand};

use crate::context::{PbxCredentials, Pipeline};
use crate::sealing::{generate_tenant_password, SealError};
use crate::store::StoreError;

/// Why an enrolment or cycle request failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The store refused or failed (the message carries the domain's reason).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be sealed.
    #[error("sealing: {0}")]
    Sealing(#[from] SealError),
}

/// What an operator provides to enrol a PBX.
pub struct EnrolRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// A display name, unique within the tenant.
    pub name: String,
    /// The PBX's FQDN.
    pub fqdn: String,
    /// Base URL of its API.
    pub api_url: String,
    /// Its API credentials.
    pub credentials: PbxCredentials,
    /// How often to capture it.
    pub schedule: Schedule,
    /// How often a verified copy is also restore-tested.
    pub restore_policy: RestorePolicy,
}

/// Makes sure `tenant` has a backup key; issues version 1 if it has none.
///
/// # Errors
/// Sealing or store failures.
pub async fn ensure_tenant_key(
    pipeline: &Pipeline,
    tenant: &TenantId,
) -> Result<u32, EnrolmentError> {
    let key: TenantKey = pipeline.store.load(tenant.as_str()).await?;
    if let Some((version, _)) = key.current() {
        return Ok(version);
    }
    let password = generate_tenant_password();
    let sealed = pipeline
        .sealer
        .seal(&Pipeline::password_context(tenant), &password)
        .await?;
    drop(password);
    pipeline
        .store
        .tenant_key(
            tenant.as_str(),
            TenantKeyCommand::Issue {
                tenant_id: tenant.clone(),
                sealed: SealedPassword(sealed.as_str().to_owned()),
                at: Utc::now(),
            },
        )
        .await?;
    Ok(1)
}

/// Rotates `tenant`'s key: a new generated password becomes the current version; older backups
/// keep opening with the version they recorded.
///
/// # Errors
/// Sealing or store failures (a tenant without a key is refused by the aggregate).
pub async fn rotate_tenant_key(
    pipeline: &Pipeline,
    tenant: &TenantId,
) -> Result<u32, EnrolmentError> {
    let password = generate_tenant_password();
    let sealed = pipeline
        .sealer
        .seal(&Pipeline::password_context(tenant), &password)
        .await?;
    pipeline
        .store
        .tenant_key(
            tenant.as_str(),
            TenantKeyCommand::Rotate {
                sealed: SealedPassword(sealed.as_str().to_owned()),
                at: Utc::now(),
            },
        )
        .await?;
    let key: TenantKey = pipeline.store.load(tenant.as_str()).await?;
    Ok(key.current().map_or(0, |(v, _)| v))
}

/// Enrols a PBX (or, if it is already enrolled, points it at the given URL and credentials).
///
/// # Errors
/// Sealing or store failures; a different PBX under the same name is refused.
pub async fn enrol(
    pipeline: &Pipeline,
    request: EnrolRequest,
) -> Result<InstanceId, EnrolmentError> {
    ensure_tenant_key(pipeline, &request.tenant).await?;
    let instance_id = InstanceId::for_name(&request.tenant, &request.name);
    let id = instance_id.to_string();
    let credentials = pipeline
        .seal_credentials(&request.tenant, &id, &request.credentials)
        .await?;
    let existing: Instance = pipeline.store.load(&id).await?;
    let command = if existing.enrolled.is_some() {
        InstanceCommand::ChangeEndpoint(EndpointChanged {
            api_url: request.api_url,
            credentials,
            changed_at: Utc::now(),
        })
    } else {
        InstanceCommand::Enrol(InstanceEnrolled {
            instance_id,
            tenant_id: request.tenant,
            name: request.name,
            fqdn: request.fqdn,
            api_url: request.api_url,
            credentials,
            schedule: request.schedule,
            restore_policy: request.restore_policy,
            enrolled_at: Utc::now(),
        })
    };
    pipeline.store.instance(&id, command).await?;
    Ok(instance_id)
}

/// Opens a cycle for an instance now; the pipeline's stages take it from there.
///
/// # Errors
/// The instance's refusal (not enrolled, stopped, a cycle in flight) or a store failure.
pub async fn open_cycle(
    pipeline: &Pipeline,
    instance: InstanceId,
    trigger: Trigger,
) -> Result<CycleId, EnrolmentError> {
    let cycle_id = CycleId::random();
    pipeline
        .store
        .instance(
            &instance.to_string(),
            InstanceCommand::OpenCycle(CycleOpened {
                cycle_id,
                trigger,
                opened_at: Utc::now(),
            }),
        )
        .await?;
    Ok(cycle_id)
}
