//! The production deployment end to end: PostgreSQL event store, NATS JetStream transport, S3
//! vault under Object Lock and KMS sealing (a local AWS endpoint), each stage in its own
//! `restorable worker` process. A simulated fleet climbs the ladder to the same outcomes as on
//! the embedded default; a worker SIGKILLed mid-capture or mid-verify leaves a cycle that
//! completes after a restart with no duplicate events.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{Instance, RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::runtime::driver::run_until_closed;
use restorable_pipeline::sealing::{KmsConfig, KmsKeySealer};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::transport::nats::NatsConfig;
use restorable_pipeline::vault::{S3Config, S3Vault};
use restorable_testkit::{
    aws_endpoint, test_server_url, unique_bucket, NatsServer, ScratchDatabase, AWS_REGION,
};
use secrecy::SecretString;

/// How far a cycle got: its rung, and the failure's stage and reason if it failed.
type Outcome = (String, Option<(String, String)>);

/// PostgreSQL, NATS, an Object Lock bucket and a KMS key of this test's own, and its workers.
struct Deployment {
    database: ScratchDatabase,
    nats: NatsServer,
    bucket: String,
    key_id: String,
    dir: tempfile::TempDir,
    workers: Vec<(String, Child)>,
}

impl Deployment {
    async fn start() -> Self {
        let endpoint = aws_endpoint().to_owned();
        let bucket = unique_bucket("prod");
        S3Vault::new(s3_config(&endpoint, &bucket))
            .expect("vault")
            .create_bucket_with_object_lock()
            .await
            .expect("bucket");
        let sealer = KmsKeySealer::new(kms_config(&endpoint, "bootstrap")).expect("kms");
        let key_id = sealer
            .client()
            .create_key()
            .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
            .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
            .send()
            .await
            .expect("create a KMS key")
            .key_metadata
            .map(|m| m.key_id)
            .expect("key id");
        Self {
            database: ScratchDatabase::create(&test_server_url())
                .await
                .expect("PostgreSQL for tests"),
            nats: NatsServer::start(),
            bucket,
            key_id,
            dir: tempfile::tempdir().expect("tempdir"),
            workers: Vec::new(),
        }
    }

    fn backends(&self) -> Backends {
        let endpoint = aws_endpoint();
        Backends {
            data_dir: self.dir.path().join("enrolment"),
            database_url: Some(self.database.url().to_owned()),
            nats: Some(NatsConfig {
                url: self.nats.url(),
            }),
            s3: Some(s3_config(endpoint, &self.bucket)),
            kms: Some(kms_config(endpoint, &self.key_id)),
        }
    }

    async fn pipeline(&self) -> Pipeline {
        Pipeline::open(&self.backends(), test_settings())
            .await
            .expect("production pipeline")
    }

    /// `restorable` with the deployment's settings in the environment (as an operator would
    /// set them).
    fn command(&self) -> Command {
        let endpoint = aws_endpoint();
        let mut command = Command::new(env!("CARGO_BIN_EXE_restorable"));
        command
            .env("RESTORABLE_DATA_DIR", self.dir.path().join("cli"))
            .env("RESTORABLE_DATABASE_URL", self.database.url())
            .env("RESTORABLE_NATS_URL", self.nats.url())
            .env("RESTORABLE_S3_ENDPOINT", endpoint)
            .env("RESTORABLE_S3_BUCKET", &self.bucket)
            .env("RESTORABLE_S3_REGION", AWS_REGION)
            .env("RESTORABLE_KMS_ENDPOINT", endpoint)
            .env("RESTORABLE_KMS_KEY_ID", &self.key_id)
            .env("RUST_LOG", "warn");
        command
    }

    /// Starts `restorable worker --stage <stage>`.
    fn spawn_worker(&mut self, stage: &str) {
        let data = self
            .dir
            .path()
            .join(format!("worker-{stage}-{}", self.workers.len()));
        let child = self
            .command()
            .args([
                "worker",
                "--stage",
                stage,
                "--ack-wait-secs",
                "3",
                "--grace-secs",
                "2",
            ])
            .env("RESTORABLE_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a worker");
        self.workers.push((stage.to_owned(), child));
    }

    /// One worker per stage, and `captures` copies of the capture stage sharing its work.
    fn spawn_all_workers(&mut self, captures: usize) {
        for stage in [
            "start",
            "secure",
            "verify",
            "restore-test",
            "close",
            "alerts",
        ] {
            self.spawn_worker(stage);
        }
        for _ in 0..captures {
            self.spawn_worker("capture");
        }
    }

    /// SIGKILLs the (first) worker of `stage`.
    fn kill_worker(&mut self, stage: &str) {
        let index = self
            .workers
            .iter()
            .position(|(s, _)| s == stage)
            .expect("a worker of that stage");
        let (_, mut child) = self.workers.remove(index);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn s3_config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        bucket: bucket.to_owned(),
        region: AWS_REGION.to_owned(),
    }
}

fn kms_config(endpoint: &str, key_id: &str) -> KmsConfig {
    KmsConfig {
        endpoint: Some(endpoint.to_owned()),
        key_id: key_id.to_owned(),
        region: AWS_REGION.to_owned(),
    }
}

fn test_settings() -> Settings {
    Settings {
        capture_deadline: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        ..Settings::default()
    }
}

async fn start_pbx(
    dir: &std::path::Path,
    name: &str,
    fault: Option<Fault>,
    padding: u64,
) -> RunningPbx {
    let mut config = SimPbxConfig::new(name, 7);
    config.fault = fault;
    config.padding_bytes = padding;
    config.backup_delay = Duration::from_millis(20);
    RunningPbx::start(config, dir).await.expect("simulator")
}

async fn enrol_pbx(pipeline: &Pipeline, pbx: &RunningPbx) -> InstanceId {
    let config = pbx.config();
    enrol(
        pipeline,
        EnrolRequest {
            tenant: TenantId::new("acme").expect("tenant"),
            name: config.name.clone(),
            fqdn: format!("{}.example", config.name),
            api_url: pbx.base_url(),
            credentials: PbxCredentials {
                client_id: SecretString::from(config.client_id.clone()),
                client_secret: SecretString::from(config.client_secret.clone()),
            },
            schedule: Schedule {
                interval_minutes: 60,
            },
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol")
}

/// Waits until every cycle's instance has closed it (the workers run elsewhere).
async fn wait_closed(pipeline: &Pipeline, cycles: &BTreeMap<String, (InstanceId, CycleId)>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut open = Vec::new();
        for (name, (instance, cycle)) in cycles {
            let state: Instance = pipeline
                .store
                .load(&instance.to_string())
                .await
                .expect("instance");
            if state.open_cycle == Some(*cycle) {
                open.push(name.clone());
            }
        }
        if open.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cycles still open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn outcome(pipeline: &Pipeline, cycle: CycleId) -> Outcome {
    let state: BackupCycle = pipeline
        .store
        .load(&cycle.to_string())
        .await
        .expect("cycle");
    (
        state.rung.map_or("-", |r| r.label()).to_owned(),
        state
            .failed
            .map(|f| (f.stage.to_string(), f.reason.to_string())),
    )
}

async fn cycle_event_types(pipeline: &Pipeline, cycle: CycleId) -> Vec<String> {
    pipeline
        .store
        .history("BackupCycle", &cycle.to_string())
        .await
        .expect("history")
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

const FLEET: &[(&str, Option<Fault>)] = &[
    ("healthy-a", None),
    ("healthy-b", None),
    ("bad-auth", Some(Fault::BadCredentials)),
    ("flipped", Some(Fault::FlippedByte)),
    ("other-password", Some(Fault::WrongPassword)),
    ("dangling-fk", Some(Fault::DanglingForeignKey)),
];

/// The fleet on the embedded default, in this process: the reference outcomes.
async fn embedded_outcomes() -> BTreeMap<String, Outcome> {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(&dir.path().join("data"), test_settings())
        .await
        .expect("embedded");
    let mut cycles = HashSet::new();
    let mut names = BTreeMap::new();
    let mut sims = Vec::new();
    for (name, fault) in FLEET {
        let pbx = start_pbx(dir.path(), name, *fault, 0).await;
        let instance = enrol_pbx(&pipeline, &pbx).await;
        let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        cycles.insert(cycle);
        names.insert((*name).to_owned(), cycle);
        sims.push(pbx);
    }
    run_until_closed(&pipeline, cycles, 0, Duration::from_secs(120), |_| {})
        .await
        .expect("closed");
    let mut outcomes = BTreeMap::new();
    for (name, cycle) in names {
        outcomes.insert(name, outcome(&pipeline, cycle).await);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_through_separate_workers_on_production_backends_matches_the_embedded_default() {
    let mut deployment = Deployment::start().await;
    let pipeline = deployment.pipeline().await;
    deployment.spawn_all_workers(2);
    let sims = tempfile::tempdir().expect("tempdir");
    let mut pbxes = Vec::new();
    let mut cycles = BTreeMap::new();
    for (name, fault) in FLEET {
        let pbx = start_pbx(sims.path(), name, *fault, 0).await;
        let instance = enrol_pbx(&pipeline, &pbx).await;
        let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        cycles.insert((*name).to_owned(), (instance, cycle));
        pbxes.push(pbx);
    }
    wait_closed(&pipeline, &cycles).await;
    let mut production = BTreeMap::new();
    for (name, (_, cycle)) in &cycles {
        production.insert(name.clone(), outcome(&pipeline, *cycle).await);
    }
    let embedded = embedded_outcomes().await;
    assert_eq!(production, embedded);
    assert_eq!(
        production["healthy-a"],
        ("Restore-Tested".to_owned(), None),
        "the healthy copies reached the top rung"
    );

    // The copies really are in S3 under a compliance lock, and the passwords sealed by KMS.
    let (_, healthy) = cycles["healthy-a"];
    let state: BackupCycle = pipeline
        .store
        .load(&healthy.to_string())
        .await
        .expect("cycle");
    let captured = state.captured.expect("captured");
    let head = pipeline
        .vault
        .head(&captured.object_key)
        .await
        .expect("head")
        .expect("the object is in the bucket");
    assert_eq!(head.version_id, captured.version_id);
    assert!(head.lock.is_some(), "stored under Object Lock");
    // Downloads stream out of S3 through Restorable, checked against the recorded SHA-256.
    let out = deployment.dir.path().join("download.zip");
    let download = deployment
        .command()
        .args(["download", "--cycle", &healthy.to_string(), "--out"])
        .arg(&out)
        .output()
        .expect("download");
    assert!(download.status.success(), "{download:?}");
    assert_eq!(
        std::fs::metadata(&out).expect("downloaded").len(),
        captured.size
    );
    let key: restorable_domain::tenant_key::TenantKey =
        pipeline.store.load("acme").await.expect("key");
    let (_, sealed) = key.current().expect("a key version");
    assert!(
        sealed.0.starts_with("kms:"),
        "the tenant password is sealed by KMS"
    );

    // The history the workers wrote is chained; checkpoints go to the bucket under Object Lock;
    // an export verifies offline; the healthy copy's restore certificate checks.
    let run = |args: &[&str]| {
        let output = deployment
            .command()
            .args(args)
            .output()
            .expect("restorable");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{args:?}: {output:?}");
        text
    };
    run(&["audit", "checkpoint"]);
    let checked = run(&["audit", "check"]);
    assert!(checked.starts_with("INTACT"), "{checked}");
    let checkpoint = pipeline
        .vault
        .head("audit/checkpoints/000000000001.json")
        .await
        .expect("head")
        .expect("the checkpoint is in the bucket");
    assert!(
        checkpoint.lock.is_some(),
        "checkpoints are under Object Lock"
    );
    let export = deployment.dir.path().join("audit-acme");
    let export_arg = export.display().to_string();
    run(&["audit", "export", "--tenant", "acme", "--out", &export_arg]);
    let verified = run(&["audit", "verify", &export_arg]);
    assert!(verified.starts_with("VERIFIED"), "{verified}");
    let certificate = deployment.dir.path().join("certificate.json");
    let certificate_arg = certificate.display().to_string();
    run(&[
        "certificate",
        "get",
        "--cycle",
        &healthy.to_string(),
        "--out",
        &certificate_arg,
    ]);
    let genuine = run(&["certificate", "verify", &certificate_arg]);
    assert!(genuine.starts_with("GENUINE"), "{genuine}");
}

/// Kills the worker of `stage` while `in_progress` holds for the cycle (checked against the
/// store right before the kill), restarts it, and checks the cycle completes with one event of
/// each kind.
async fn killed_mid(stage: &str, fault: Option<Fault>, padding: u64, in_progress: &[&str]) {
    let mut deployment = Deployment::start().await;
    let pipeline = deployment.pipeline().await;
    deployment.spawn_all_workers(1);
    let sims = tempfile::tempdir().expect("tempdir");
    let pbx = start_pbx(sims.path(), "victim", fault, padding).await;
    let instance = enrol_pbx(&pipeline, &pbx).await;
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
        .await
        .expect("open");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = cycle_event_types(&pipeline, cycle).await;
        if events == in_progress {
            break;
        }
        assert!(
            events.len() <= in_progress.len() && tokio::time::Instant::now() < deadline,
            "the cycle went past the {stage} stage before the kill: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await; // well into the stage's work
    deployment.kill_worker(stage);
    let at_kill = cycle_event_types(&pipeline, cycle).await;
    assert_eq!(
        at_kill, in_progress,
        "the {stage} stage had not finished when killed"
    );
    deployment.spawn_worker(stage);

    let cycles = BTreeMap::from([("victim".to_owned(), (instance, cycle))]);
    wait_closed(&pipeline, &cycles).await;
    assert_eq!(
        cycle_event_types(&pipeline, cycle).await,
        [
            "CycleStarted",
            "Captured",
            "Secured",
            "Verified",
            "RestoreTested"
        ],
        "completed after the restart, each event once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_worker_killed_mid_download_completes_after_restart_without_duplicates() {
    killed_mid("capture", Some(Fault::SlowDownload), 0, &["CycleStarted"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_worker_killed_mid_verify_completes_after_restart_without_duplicates() {
    killed_mid(
        "verify",
        None,
        128 << 20,
        &["CycleStarted", "Captured", "Secured"],
    )
    .await;
}
