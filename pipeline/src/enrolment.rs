//! Enrolling PBXes and opening cycles: the operator-facing commands of the pipeline.
//!
//! Enrolment issues the tenant's backup key on first use (a password generated here, never
//! supplied by a customer, sealed before it is stored) and seals the PBX's API credentials.
//!
//! The PBX URL must be `https`, except to a loopback address or with an explicit
//! [`EnrolOptions::allow_insecure_http`] ([`check_endpoint`]). Enrolling an instance again
//! under the same name with another URL, other credentials or another `allow_insecure_http`
//! repoints it: an `EndpointChanged` event with the old and the new URL, and an
//! `endpoint_changed` entry in the tenant's audit trail, never silently. Enrolling it again with
//! the same facts changes nothing.

use chrono::Utc;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    check_policy, CycleOpened, EndpointChanged, Instance, InstanceCommand, InstanceEnrolled,
    InstanceError, RestorePolicy, Schedule,
};
use restorable_domain::ladder::Trigger;
use restorable_domain::tenant_key::{SealedPassword, TenantKey, TenantKeyCommand};

use crate::pbx::{check_endpoint, origin_of, EndpointError};
use crate::pipeline::{PbxCredentials, Pipeline};
use crate::sealing::{generate_tenant_password, SealError};
use crate::store::StoreError;
use secrecy::ExposeSecret;

/// Why an enrolment or cycle request failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The store refused or failed (the message carries the domain's reason).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be sealed.
    #[error("sealing: {0}")]
    Sealing(#[from] SealError),
    /// The PBX URL is refused (plain http to a host that is not loopback, ...).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The schedule or the restore policy is out of range (checked before anything else, so
    /// enrolling an enrolled instance again does not pass it by).
    #[error(transparent)]
    Policy(#[from] InstanceError),
}

/// How an enrolment is made, beyond what the PBX is.
#[derive(Clone, Debug)]
pub struct EnrolOptions {
    /// Who enrols (recorded in the audit trail when an enrolment repoints an instance).
    pub actor: String,
    /// Allow plain `http` to a host that is not loopback (the tenant's backup password then
    /// crosses the network in clear; the instance page warns).
    pub allow_insecure_http: bool,
}

impl Default for EnrolOptions {
    fn default() -> Self {
        Self {
            actor: "system".to_owned(),
            allow_insecure_http: false,
        }
    }
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

/// Enrols a PBX (or, if it is already enrolled, points it at the given URL and credentials)
/// with the default [`EnrolOptions`] (actor `system`, `https` or loopback only).
///
/// # Errors
/// As [`enrol_with`].
pub async fn enrol(
    pipeline: &Pipeline,
    request: EnrolRequest,
) -> Result<InstanceId, EnrolmentError> {
    enrol_with(pipeline, request, &EnrolOptions::default()).await
}

/// Whether `existing`'s sealed credentials are `given` (unsealed to compare; a failure to
/// unseal counts as different).
async fn same_credentials(
    pipeline: &Pipeline,
    existing: &Instance,
    given: &PbxCredentials,
) -> bool {
    pipeline
        .pbx_credentials(existing)
        .await
        .is_ok_and(|current| {
            current.client_id.expose_secret() == given.client_id.expose_secret()
                && current.client_secret.expose_secret() == given.client_secret.expose_secret()
        })
}

/// Enrols a PBX, or repoints an enrolled one (see the module documentation): a change of URL,
/// credentials or `allow_insecure_http` is an `EndpointChanged` event and an `endpoint_changed`
/// audit entry by `options.actor`.
///
/// # Errors
/// [`EnrolmentError::Endpoint`] for a refused URL; [`EnrolmentError::Policy`] for a schedule
/// or restore policy out of range (even when the instance is enrolled already); sealing or
/// store failures; a different PBX
/// under the same name is refused.
pub async fn enrol_with(
    pipeline: &Pipeline,
    request: EnrolRequest,
    options: &EnrolOptions,
) -> Result<InstanceId, EnrolmentError> {
    check_endpoint(&request.api_url, options.allow_insecure_http)?;
    check_policy(&request.schedule, &request.restore_policy)?;
    ensure_tenant_key(pipeline, &request.tenant).await?;
    let instance_id = InstanceId::for_name(&request.tenant, &request.name);
    let id = instance_id.to_string();
    let existing: Instance = pipeline.store.load(&id).await?;
    if let Some(current) = &existing.enrolled {
        if current.api_url == request.api_url
            && current.allow_insecure_http == options.allow_insecure_http
            && same_credentials(pipeline, &existing, &request.credentials).await
        {
            return Ok(instance_id);
        }
    }
    let credentials = pipeline
        .seal_credentials(&request.tenant, &id, &request.credentials)
        .await?;
    if let Some(current) = &existing.enrolled {
        let previous = current.api_url.clone();
        let tenant = current.tenant_id.clone();
        pipeline
            .store
            .instance(
                &id,
                InstanceCommand::ChangeEndpoint(EndpointChanged {
                    api_url: request.api_url.clone(),
                    previous_api_url: Some(previous.clone()),
                    allow_insecure_http: options.allow_insecure_http,
                    credentials,
                    changed_at: Utc::now(),
                }),
            )
            .await?;
        tracing::warn!(
            instance = %id,
            from = %origin_of(&previous),
            to = %origin_of(&request.api_url),
            actor = %options.actor,
            "instance repointed (endpoint_changed)"
        );
        pipeline
            .store
            .audit(
                tenant.as_str(),
                ActionRecorded {
                    tenant_id: tenant.clone(),
                    actor: options.actor.clone(),
                    action: AuditAction::EndpointChanged,
                    instance_id: Some(instance_id),
                    cycle_id: None,
                    key_version: None,
                    at: Utc::now(),
                },
            )
            .await?;
        return Ok(instance_id);
    }
    let command = InstanceCommand::Enrol(InstanceEnrolled {
        instance_id,
        tenant_id: request.tenant,
        name: request.name,
        fqdn: request.fqdn,
        api_url: request.api_url,
        credentials,
        schedule: request.schedule,
        restore_policy: request.restore_policy,
        allow_insecure_http: options.allow_insecure_http,
        enrolled_at: Utc::now(),
    });
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
