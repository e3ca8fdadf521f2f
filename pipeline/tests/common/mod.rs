//! The shared harness of the pipeline's integration tests: a data directory, the embedded
//! pipeline over it, simulated PBXes over real HTTP, and ways to drive cycles.
#![allow(dead_code)] // each test file uses its own part

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::Schedule;
use restorable_domain::ladder::Trigger;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::runtime::driver::run_until_closed;
use restorable_pipeline::setup::Backends;
use restorable_pipeline::stages::{alerts::AlertsStage, capture::CaptureStage, start::StartStage};
use restorable_pipeline::store::Store;
use restorable_pipeline::transport::nats::NatsConfig;
use restorable_pipeline::transport::{run_consumer, Consumer};
use restorable_testkit::{test_server_url, NatsServer, ScratchDatabase};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// Which backends a test's pipeline runs on (the vault and key sealing stay local).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: SQLite, in-process transport.
    Sqlite,
    /// A scratch PostgreSQL database, in-process transport.
    Postgres,
    /// A scratch PostgreSQL database and a nats-server of the test's own feeding the stages.
    PostgresNats,
}

pub struct Harness {
    pub pipeline: Pipeline,
    pub data: std::path::PathBuf,
    sims: tempfile::TempDir,
    _database: Option<ScratchDatabase>,
    _nats: Option<NatsServer>,
    _dir: tempfile::TempDir,
    /// Every harness drives the whole pipeline against the simulator: a heavy test.
    _heavy: restorable_testkit::HeavyPermit,
}

impl Harness {
    pub async fn new() -> Self {
        Self::on(Backend::Sqlite).await
    }

    pub async fn on(backend: Backend) -> Self {
        Self::with_backend(backend, Settings::default()).await
    }

    pub async fn with(defaults: Settings) -> Self {
        Self::with_backend(Backend::Sqlite, defaults).await
    }

    pub async fn with_backend(backend: Backend, defaults: Settings) -> Self {
        // Waits off the runtime, on a blocking thread, for a turn among the heavy tests.
        let heavy = tokio::task::spawn_blocking(restorable_testkit::heavy)
            .await
            .expect("heavy-test permit");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let settings = Settings {
            capture_deadline: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
            ..defaults
        };
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres | Backend::PostgresNats => Some(
                ScratchDatabase::create(&test_server_url())
                    .await
                    .expect("a PostgreSQL server for tests (RESTORABLE_TEST_DATABASE_URL)"),
            ),
        };
        let nats = (backend == Backend::PostgresNats).then(NatsServer::start);
        let backends = Backends {
            data_dir: data.clone(),
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            nats: nats.as_ref().map(|n| NatsConfig { url: n.url() }),
            s3: None,
            kms: None,
        };
        let pipeline = Pipeline::open(&backends, settings).await.expect("pipeline");
        Self {
            pipeline,
            data,
            sims: tempfile::tempdir().expect("tempdir"),
            _database: database,
            _nats: nats,
            _dir: dir,
            _heavy: heavy,
        }
    }

    pub async fn pbx(&self, name: &str, fault: Option<Fault>) -> RunningPbx {
        let mut config = SimPbxConfig::new(name, 7);
        config.fault = fault;
        config.backup_delay = Duration::from_millis(20);
        RunningPbx::start(config, self.sims.path())
            .await
            .expect("simulator")
    }

    pub async fn enrol(&self, pbx: &RunningPbx, interval_minutes: u32) -> InstanceId {
        let policy = restorable_domain::instance::RestorePolicy::default();
        self.enrol_with_policy(pbx, interval_minutes, policy).await
    }

    pub async fn enrol_with_policy(
        &self,
        pbx: &RunningPbx,
        interval_minutes: u32,
        restore_policy: restorable_domain::instance::RestorePolicy,
    ) -> InstanceId {
        let config = pbx.config();
        enrol(
            &self.pipeline,
            EnrolRequest {
                tenant: TenantId::new("acme").expect("tenant"),
                name: config.name.clone(),
                fqdn: format!("{}.example", config.name),
                api_url: pbx.base_url(),
                credentials: PbxCredentials {
                    client_id: SecretString::from(config.client_id.clone()),
                    client_secret: SecretString::from(config.client_secret.clone()),
                },
                schedule: Schedule { interval_minutes },
                restore_policy,
            },
        )
        .await
        .expect("enrol")
    }

    pub async fn drive(&self, cycles: &[CycleId]) {
        let cycles: HashSet<_> = cycles.iter().copied().collect();
        run_until_closed(&self.pipeline, cycles, 0, Duration::from_secs(60), |_| {})
            .await
            .expect("cycles close");
    }

    pub async fn cycle(&self, id: CycleId) -> BackupCycle {
        self.pipeline
            .store
            .load(&id.to_string())
            .await
            .expect("load cycle")
    }

    pub async fn cycle_events(&self, id: CycleId) -> Vec<String> {
        self.event_types("BackupCycle", &id.to_string()).await
    }

    /// The types of one aggregate's events, in order.
    pub async fn event_types(&self, aggregate_type: &str, id: &str) -> Vec<String> {
        let history = self
            .pipeline
            .store
            .history(aggregate_type, id)
            .await
            .expect("history");
        history.into_iter().map(|e| e.event_type).collect()
    }

    /// Where the local vault keeps a stored copy's bytes (read-only, as the vault wrote them).
    pub fn vault_object(&self, object_key: &str) -> PathBuf {
        self.data.join("vault").join("objects").join(object_key)
    }

    /// Where the local vault keeps its record of a stored copy (size, hash, lock).
    pub fn vault_record(&self, object_key: &str) -> PathBuf {
        self.data
            .join("vault")
            .join("meta")
            .join(format!("{object_key}.json"))
    }

    /// Runs only start and capture until the cycle is captured (or failed).
    pub async fn capture_only(&self, id: CycleId) {
        let shutdown = CancellationToken::new();
        let consumers: Vec<Arc<dyn Consumer>> = vec![
            Arc::new(StartStage::new(self.pipeline.clone())),
            Arc::new(CaptureStage::new(self.pipeline.clone())),
        ];
        let tasks: Vec<_> = consumers
            .into_iter()
            .map(|c| {
                tokio::spawn(run_consumer(
                    self.pipeline.store.clone(),
                    c,
                    shutdown.clone(),
                ))
            })
            .collect();
        let notify = self.pipeline.store.committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = notify.notified();
            let cycle = self.cycle(id).await;
            if cycle.captured.is_some() || cycle.is_failed() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "capture did not finish"
            );
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        shutdown.cancel();
        for task in tasks {
            task.await.expect("consumer");
        }
    }
}

pub async fn one_cycle(backend: Backend, fault: Option<Fault>) -> (Harness, RunningPbx, CycleId) {
    let harness = Harness::on(backend).await;
    let pbx = harness.pbx("pbx-one", fault).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle]).await;
    (harness, pbx, cycle)
}

/// Every logged event of the `aggregates` (type, id), in log order, delivered to the alerts
/// stage `times` times over, as an at-least-once transport may.
pub async fn deliver_to_alerts(pipeline: &Pipeline, aggregates: &[(&str, String)], times: usize) {
    let stage = AlertsStage::new(pipeline.clone());
    let mut events = Vec::new();
    for (aggregate_type, id) in aggregates {
        events.extend(
            pipeline
                .store
                .history(aggregate_type, id)
                .await
                .expect("history"),
        );
    }
    events.sort_by_key(|e| e.position);
    for _ in 0..times {
        for event in events.iter().filter(|e| stage.wants(e)) {
            stage.react(event.clone()).await.expect("react");
        }
    }
}

/// Flips one byte in the middle of a stored (read-only) object, as bit rot would.
pub fn flip_a_byte(file: &Path) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = std::fs::read(file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, &bytes).expect("write");
}

/// Removes a stored (read-only) object, as a lost object would be.
pub fn remove_from_vault(file: &Path) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::remove_file(file).expect("remove");
}

/// A store that says no: every insert of an `event_type` event (of one aggregate, when given)
/// fails for the next `seconds` with a real database error, raised by a trigger (the caller's
/// reaction reaches the store, and the store refuses it). [`stop_failing_inserts`] ends it early.
pub async fn fail_inserts_for(
    store: &Store,
    backend: Backend,
    event_type: &str,
    aggregate_id: Option<&str>,
    seconds: u32,
) {
    let aggregate = aggregate_id
        .map(|id| format!(" AND NEW.aggregate_id = '{id}'"))
        .unwrap_or_default();
    let statements: Vec<String> = if backend == Backend::Sqlite {
        vec![
            "CREATE TABLE injected_fault (until_at real NOT NULL)".into(),
            format!("INSERT INTO injected_fault VALUES (julianday('now') + {seconds}.0 / 86400.0)"),
            format!(
                "CREATE TRIGGER inject_fault BEFORE INSERT ON events \
                 WHEN NEW.event_type = '{event_type}'{aggregate} \
                 AND julianday('now') < (SELECT until_at FROM injected_fault) \
                 BEGIN SELECT RAISE(ABORT, 'injected store fault'); END"
            ),
        ]
    } else {
        vec![
            "CREATE TABLE injected_fault (until_at timestamptz NOT NULL)".into(),
            format!("INSERT INTO injected_fault VALUES (clock_timestamp() + interval '{seconds} seconds')"),
            format!(
                "CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.event_type = '{event_type}'{aggregate} \
                 AND clock_timestamp() < (SELECT until_at FROM injected_fault) \
                 THEN RAISE EXCEPTION 'injected store fault'; END IF; RETURN NEW; END $$"
            ),
            "CREATE TRIGGER inject_fault BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION inject_fault()"
                .into(),
        ]
    };
    for sql in statements {
        store.execute_sql(&sql).await.expect("inject the fault");
    }
}

/// Ends the fault [`fail_inserts_for`] injected: the store takes every insert again.
pub async fn stop_failing_inserts(store: &Store) {
    // With no row the trigger's condition is NULL, which is not true: the insert goes through.
    store
        .execute_sql("DELETE FROM injected_fault")
        .await
        .expect("end the fault");
}
