//! Per-cycle overhead apart from the backup's bytes: events, store and transport.
//!
//! Stand-in stages answer each rung at once with the command the real stage would send
//! (`CycleStarted → RecordCaptured → RecordSecured → RecordVerified`, then the instance closes
//! the cycle), so what is timed is only the bookkeeping: commands through the aggregates, events
//! into the store, delivery to the next stage. The same fleet runs on the embedded default
//! (SQLite, in-process), on PostgreSQL (in-process) and on PostgreSQL + NATS JetStream (outbox
//! relay, one durable pull consumer per stage), side by side in one run.
//!
//! `cargo bench -p restorable-pipeline --bench overhead [-- CYCLES]` (default 1000) prints a
//! Markdown table; `scripts/bench.sh` puts it in BENCHMARKS.md. Needs PostgreSQL
//! (`RESTORABLE_TEST_DATABASE_URL`) and nats-server (`RESTORABLE_NATS_SERVER`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{
    examples, BackupCycle, BackupCycleCommand, BackupCycleEvent, Secured, Verified,
};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{CycleClosed, InstanceCommand, RestorePolicy, Schedule};
use restorable_domain::ladder::{LockMode, Rung, Trigger};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::stages::start::StartStage;
use restorable_pipeline::store::{LoggedEvent, StoreError};
use restorable_pipeline::transport::nats::relay::Relay;
use restorable_pipeline::transport::nats::worker::{run_worker, WorkerSettings};
use restorable_pipeline::transport::nats::NatsConfig;
use restorable_pipeline::transport::{run_consumer, Consumer};
use restorable_testkit::{test_server_url, NatsServer, ScratchDatabase};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// A stage that answers its event at once with the next rung's command.
struct AnswerAtOnce {
    pipeline: Pipeline,
    name: &'static str,
    on: &'static [&'static str],
}

#[async_trait]
impl Consumer for AnswerAtOnce {
    fn name(&self) -> &'static str {
        self.name
    }
    fn event_types(&self) -> &'static [&'static str] {
        self.on
    }
    fn wants(&self, event: &LoggedEvent) -> bool {
        event.aggregate_type == "BackupCycle" && self.on.contains(&event.event_type.as_str())
    }
    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let id = &event.aggregate_id;
        let cycle: BackupCycle = self.pipeline.store.load(id).await?;
        let command = match event.decode::<BackupCycleEvent>()? {
            BackupCycleEvent::CycleStarted(_) => {
                BackupCycleCommand::RecordCaptured(examples::captured())
            }
            BackupCycleEvent::Captured(c) => BackupCycleCommand::RecordSecured(Secured {
                sha256: c.sha256,
                lock_mode: LockMode::Compliance,
                retain_until: c.retain_until,
                secured_at: Utc::now(),
            }),
            BackupCycleEvent::Secured(_) => BackupCycleCommand::RecordVerified(Verified {
                entries: 12,
                tables: vec!["dn".into()],
                verified_at: Utc::now(),
                ..examples::verified()
            }),
            BackupCycleEvent::Verified(_) => {
                let started = cycle.started.expect("started");
                return self
                    .pipeline
                    .store
                    .instance(
                        &started.instance_id.to_string(),
                        InstanceCommand::CloseCycle(CycleClosed {
                            cycle_id: started.cycle_id,
                            reached: Rung::Verified,
                            failed: false,
                            retryable: false,
                            restore_tested_copy: None,
                            closed_at: Utc::now(),
                        }),
                    )
                    .await;
            }
            _ => return Ok(()),
        };
        match self.pipeline.store.cycle(id, command).await {
            Err(StoreError::Rejected(_)) => Ok(()), // a repeated delivery
            other => other,
        }
    }
}

fn stages(pipeline: &Pipeline) -> Vec<Arc<dyn Consumer>> {
    let stage = |name, on| -> Arc<dyn Consumer> {
        Arc::new(AnswerAtOnce {
            pipeline: pipeline.clone(),
            name,
            on,
        })
    };
    vec![
        Arc::new(StartStage::new(pipeline.clone())),
        stage("capture", &["CycleStarted"]),
        stage("secure", &["Captured"]),
        stage("verify", &["Secured"]),
        stage("close", &["Verified"]),
    ]
}

struct Run {
    label: &'static str,
    cycles: usize,
    seconds: f64,
    events: usize,
}

async fn run(label: &'static str, backends: Backends, cycles: usize) -> Run {
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let tenant = TenantId::new("bench").expect("tenant");
    let mut instances = Vec::with_capacity(cycles);
    for n in 0..cycles {
        instances.push(
            enrol(
                &pipeline,
                EnrolRequest {
                    tenant: tenant.clone(),
                    name: format!("pbx-{n}"),
                    fqdn: format!("pbx-{n}.example"),
                    api_url: format!("https://pbx-{n}.example"),
                    credentials: PbxCredentials {
                        client_id: SecretString::from("id".to_owned()),
                        client_secret: SecretString::from("secret".to_owned()),
                    },
                    schedule: Schedule {
                        interval_minutes: 1440,
                    },
                    restore_policy: RestorePolicy::default(),
                },
            )
            .await
            .expect("enrol"),
        );
    }
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    match &pipeline.nats {
        None => {
            for consumer in stages(&pipeline) {
                tasks.spawn(run_consumer(
                    pipeline.store.clone(),
                    consumer,
                    shutdown.clone(),
                ));
            }
        }
        Some(nats) => {
            tasks.spawn(Relay::new(pipeline.store.clone(), nats.clone()).run(shutdown.clone()));
            for consumer in stages(&pipeline) {
                let worker = run_worker(
                    pipeline.clone(),
                    nats.clone(),
                    consumer,
                    WorkerSettings {
                        concurrency: 16,
                        ..WorkerSettings::default()
                    },
                    shutdown.clone(),
                );
                tasks.spawn(async move {
                    worker.await.expect("worker");
                });
            }
        }
    }
    let mut position = restorable_pipeline::runtime::driver::head_position(&pipeline)
        .await
        .expect("head");
    let (mut closed, mut events) = (0, 0);
    let started = Instant::now();
    for instance in &instances {
        open_cycle(&pipeline, *instance, Trigger::Manual)
            .await
            .expect("open");
    }
    // Every cycle is closed when each instance has a CycleClosed.
    let committed = pipeline.store.committed();
    loop {
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = pipeline
            .store
            .read_after(position, 10_000)
            .await
            .expect("log");
        if let Some(last) = batch.last() {
            position = last.position;
        }
        events += batch.len();
        closed += batch
            .iter()
            .filter(|e| e.event_type == "CycleClosed")
            .count();
        if closed == cycles {
            break;
        }
        if !batch.is_empty() {
            continue;
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    pipeline.store.close().await;
    Run {
        label,
        cycles,
        seconds,
        events,
    }
}

#[tokio::main]
async fn main() {
    let cycles: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let sqlite_dir = tempfile::tempdir().expect("tempdir");
    let sqlite = run(
        "SQLite, in-process (embedded default)",
        Backends {
            data_dir: sqlite_dir.path().to_owned(),
            ..Backends::default()
        },
        cycles,
    )
    .await;
    let pg_dir = tempfile::tempdir().expect("tempdir");
    let pg_database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("PostgreSQL");
    let postgres = run(
        "PostgreSQL, in-process",
        Backends {
            data_dir: pg_dir.path().to_owned(),
            database_url: Some(pg_database.url().to_owned()),
            ..Backends::default()
        },
        cycles,
    )
    .await;
    let nats_dir = tempfile::tempdir().expect("tempdir");
    let nats_database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("PostgreSQL");
    let server = NatsServer::start();
    let nats = run(
        "PostgreSQL + NATS JetStream (relay, a durable consumer per stage)",
        Backends {
            data_dir: nats_dir.path().to_owned(),
            database_url: Some(nats_database.url().to_owned()),
            nats: Some(NatsConfig { url: server.url() }),
            ..Backends::default()
        },
        cycles,
    )
    .await;
    println!("| backends | cycles | events | wall time | per cycle | cycles/day on this machine |");
    println!("|---|---|---|---|---|---|");
    for run in [sqlite, postgres, nats] {
        let per_cycle_ms = run.seconds * 1000.0 / run.cycles as f64;
        println!(
            "| {} | {} | {} | {:.2} s | {:.2} ms | {:.0} |",
            run.label,
            run.cycles,
            run.events,
            run.seconds,
            per_cycle_ms,
            86_400.0 * run.cycles as f64 / run.seconds
        );
    }
}
