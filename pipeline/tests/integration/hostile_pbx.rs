//! The PBX as an attacker: a simulated PBX over real HTTP that points its download elsewhere,
//! redirects to a loopback service, trickles without end, answers endless JSON, announces
//! 100 GiB, or hands out an unencrypted backup. Each cycle fails at capture with its own reason,
//! nothing reaches the vault (so nothing is locked), and the loopback service the PBX points at
//! is never contacted. Also: plain `http` to a host that is not loopback is refused unless
//! allowed, and re-enrolling an instance at another URL is an audited `endpoint_changed`.

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use restorable_domain::audit::{AuditAction, AuditEvent};
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{
    Instance, InstanceCommand, InstanceEnrolled, InstanceEvent, RestorePolicy, Schedule,
    SealedCredentials,
};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::deadlines::Deadline;
use restorable_pipeline::enrolment::{enrol_with, open_cycle, EnrolOptions, EnrolRequest};
use restorable_pipeline::pbx::PbxLimits;
use restorable_pipeline::pipeline::{PbxCredentials, Settings};
use secrecy::SecretString;

/// A TCP service on loopback that counts the connections it gets (it should get none).
struct LoopbackService {
    url: String,
    contacted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackService {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let contacted = Arc::new(AtomicUsize::new(0));
        let counter = contacted.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/internal/secrets"),
            contacted,
            task,
        }
    }
}

impl Drop for LoopbackService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Limits small enough for a test to hit quickly (the defaults are generous).
fn settings() -> Settings {
    Settings {
        pbx: PbxLimits {
            call_deadline: Duration::from_secs(5),
            download_deadline: Deadline::new(Duration::from_secs(2), Duration::ZERO),
            max_json_bytes: 1 << 20,
            ..PbxLimits::default()
        },
        ..Settings::default()
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

async fn start_pbx(work: &Path, name: &str, fault: Fault, target: &str) -> RunningPbx {
    let mut config = SimPbxConfig::new(name, 11);
    config.fault = Some(fault);
    config.backup_delay = Duration::from_millis(20);
    config.hostile_target = target.to_owned();
    RunningPbx::start(config, work).await.expect("simulator")
}

/// Runs one cycle against a PBX committing `fault` and checks it fails at capture with
/// `reason`, with nothing in the vault and the loopback service untouched.
async fn refused(fault: Fault, reason: FailureReason, retryable: bool) {
    let harness = Harness::with(settings()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let target = LoopbackService::start().await;
    let pbx = start_pbx(work.path(), "hostile", fault, &target.url).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    let started = std::time::Instant::now();
    harness.drive(&[cycle_id]).await;

    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle
        .failed
        .clone()
        .unwrap_or_else(|| panic!("{fault}: expected a failure, got {:?}", cycle.rung));
    assert_eq!(
        (cycle.rung, failed.stage, failed.reason, failed.retryable),
        (Some(Rung::Started), Stage::Capture, reason, retryable),
        "{fault}: {}",
        failed.detail
    );
    assert!(cycle.captured.is_none(), "{fault}: nothing captured");
    let stored = files_under(&harness.data.join("vault"));
    assert!(
        stored.is_empty(),
        "{fault}: the vault holds {stored:?} after a refused backup"
    );
    assert_eq!(
        target.contacted.load(Ordering::SeqCst),
        0,
        "{fault}: the service the PBX pointed at was contacted"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{fault}: took {:?}",
        started.elapsed()
    );
    pbx.shutdown().await;
}

#[tokio::test]
async fn an_off_origin_download_link_is_refused_unfetched() {
    refused(
        Fault::OffOriginLink,
        FailureReason::DownloadOffOrigin,
        false,
    )
    .await;
}

#[tokio::test]
async fn a_redirect_to_a_loopback_service_is_not_followed() {
    refused(
        Fault::RedirectLoopback,
        FailureReason::DownloadOffOrigin,
        false,
    )
    .await;
}

#[tokio::test]
async fn an_endless_trickle_hits_the_download_deadline() {
    refused(Fault::EndlessTrickle, FailureReason::PbxDeadline, true).await;
}

#[tokio::test]
async fn an_endless_json_answer_hits_the_cap() {
    refused(Fault::HugeJson, FailureReason::PbxAnswerTooLarge, false).await;
}

#[tokio::test]
async fn a_100_gib_content_length_is_refused_before_anything_is_stored() {
    refused(
        Fault::HugeContentLength,
        FailureReason::BackupTooLarge,
        false,
    )
    .await;
}

#[tokio::test]
async fn a_backup_the_pbx_reports_unencrypted_is_refused() {
    refused(
        Fault::UnencryptedBackup,
        FailureReason::NotEncryptedByPbx,
        false,
    )
    .await;
}

#[tokio::test]
async fn a_backup_over_the_tenants_maximum_is_refused_and_a_healthy_one_records_the_version() {
    let mut small = settings();
    small
        .pbx
        .tenant_max_backup_bytes
        .insert(TenantId::new("acme").expect("slug"), 1024);
    let harness = Harness::with(small).await;
    let pbx = harness.pbx("big", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;
    let failed = harness.cycle(cycle_id).await.failed.expect("failed");
    assert_eq!(
        failed.reason,
        FailureReason::BackupTooLarge,
        "{}",
        failed.detail
    );
    assert!(files_under(&harness.data.join("vault")).is_empty());

    // The same PBX under the default maximum: captured, with the 3CX version it reported.
    drop(harness); // one harness (and heavy-test permit) at a time
    let harness = Harness::with(settings()).await;
    let pbx = harness.pbx("fine", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;
    let cycle = harness.cycle(cycle_id).await;
    let captured = cycle
        .captured
        .unwrap_or_else(|| panic!("{:?}", cycle.failed));
    assert_eq!(
        captured.pbx_version.as_deref(),
        Some(restorable_pbx_sim::PBX_VERSION)
    );
    // The control of the "nothing stored" checks: a capture does store under this directory.
    assert!(!files_under(&harness.data.join("vault")).is_empty());
}

#[tokio::test]
async fn the_loopback_service_counts_contacts() {
    // The control of the "never contacted" checks.
    let target = LoopbackService::start().await;
    let port = target
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next());
    let addr = format!("127.0.0.1:{}", port.expect("port"));
    drop(
        tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while target.contacted.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn request(tenant: &TenantId, name: &str, url: &str, secret: &str) -> EnrolRequest {
    EnrolRequest {
        tenant: tenant.clone(),
        name: name.into(),
        fqdn: "pbx.acme.example".into(),
        api_url: url.into(),
        credentials: PbxCredentials {
            client_id: SecretString::from("client"),
            client_secret: SecretString::from(secret.to_owned()),
        },
        schedule: Schedule::DAILY,
        restore_policy: RestorePolicy::default(),
    }
}

async fn audit_actions(harness: &Harness, tenant: &TenantId) -> Vec<(AuditAction, String)> {
    harness
        .pipeline
        .store
        .history("AuditTrail", tenant.as_str())
        .await
        .expect("history")
        .into_iter()
        .filter_map(|e| serde_json::from_str::<AuditEvent>(&e.payload).ok())
        .map(|AuditEvent::ActionRecorded(r)| (r.action, r.actor))
        .collect()
}

#[tokio::test]
async fn plain_http_off_loopback_needs_allow_insecure_http_and_repointing_is_audited() {
    let harness = Harness::with(settings()).await;
    let tenant = TenantId::new("acme").expect("slug");
    let admin = EnrolOptions {
        actor: "admin@acme.example".into(),
        allow_insecure_http: false,
    };
    let refused = enrol_with(
        &harness.pipeline,
        request(&tenant, "hq", "http://pbx.acme.example:5000", "s1"),
        &admin,
    )
    .await
    .expect_err("plain http to a remote host");
    assert!(
        refused.to_string().contains("allow_insecure_http"),
        "{refused}"
    );
    let id = InstanceId::for_name(&tenant, "hq");
    let instance: Instance = harness
        .pipeline
        .store
        .load(&id.to_string())
        .await
        .expect("load");
    assert!(instance.enrolled.is_none(), "nothing enrolled");

    // https, loopback http, and http with the explicit allowance are accepted.
    let id = enrol_with(
        &harness.pipeline,
        request(&tenant, "hq", "https://pbx.acme.example", "s1"),
        &admin,
    )
    .await
    .expect("https");
    // The same facts again: nothing changes, nothing is audited.
    enrol_with(
        &harness.pipeline,
        request(&tenant, "hq", "https://pbx.acme.example", "s1"),
        &admin,
    )
    .await
    .expect("again");
    assert!(audit_actions(&harness, &tenant).await.is_empty());

    // Another URL under the same name: repointed, with the old URL, and audited.
    let insecure = EnrolOptions {
        allow_insecure_http: true,
        ..admin.clone()
    };
    enrol_with(
        &harness.pipeline,
        request(&tenant, "hq", "http://10.1.2.3:5000", "s1"),
        &insecure,
    )
    .await
    .expect("allowed");
    let history = harness
        .pipeline
        .store
        .history("Instance", &id.to_string())
        .await
        .expect("history");
    let changes: Vec<_> = history
        .into_iter()
        .filter_map(|e| serde_json::from_str::<InstanceEvent>(&e.payload).ok())
        .filter_map(|e| match e {
            InstanceEvent::EndpointChanged(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].previous_api_url.as_deref(),
        Some("https://pbx.acme.example")
    );
    assert_eq!(changes[0].api_url, "http://10.1.2.3:5000");
    assert!(changes[0].allow_insecure_http);
    assert_eq!(
        audit_actions(&harness, &tenant).await,
        [(
            AuditAction::EndpointChanged,
            "admin@acme.example".to_owned()
        )]
    );
    let instance: Instance = harness
        .pipeline
        .store
        .load(&id.to_string())
        .await
        .expect("load");
    let enrolled = instance.enrolled.expect("enrolled");
    assert!(enrolled.allow_insecure_http);
    assert_eq!(enrolled.api_url, "http://10.1.2.3:5000");

    // New credentials at the same URL: repointed and audited too.
    enrol_with(
        &harness.pipeline,
        request(&tenant, "hq", "http://10.1.2.3:5000", "s2"),
        &insecure,
    )
    .await
    .expect("new credentials");
    assert_eq!(audit_actions(&harness, &tenant).await.len(), 2);
}

#[tokio::test]
async fn an_instance_enrolled_before_the_rule_at_plain_http_fails_capture_unsent() {
    let harness = Harness::with(settings()).await;
    let tenant = TenantId::new("acme").expect("slug");
    restorable_pipeline::enrolment::ensure_tenant_key(&harness.pipeline, &tenant)
        .await
        .expect("key");
    let id = InstanceId::for_name(&tenant, "old");
    harness
        .pipeline
        .store
        .instance(
            &id.to_string(),
            InstanceCommand::Enrol(InstanceEnrolled {
                instance_id: id,
                tenant_id: tenant.clone(),
                name: "old".into(),
                fqdn: "old.acme.example".into(),
                api_url: "http://192.0.2.10:5000".into(),
                credentials: SealedCredentials("not even sealed".into()),
                schedule: Schedule::DAILY,
                restore_policy: RestorePolicy::default(),
                allow_insecure_http: false,
                enrolled_at: chrono::Utc::now(),
            }),
        )
        .await
        .expect("enrol");
    let cycle_id = open_cycle(&harness.pipeline, id, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;
    let failed = harness.cycle(cycle_id).await.failed.expect("failed");
    assert_eq!(
        (failed.reason, failed.retryable),
        (FailureReason::InsecureTransport, false),
        "{}",
        failed.detail
    );
}
