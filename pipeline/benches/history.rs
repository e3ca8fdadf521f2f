//! Cost as history grows (issue 13): the bookkeeping of one cycle for an instance with 0, 1,000,
//! 10,000 and 100,000 earlier cycles, on SQLite (the embedded default) and on PostgreSQL, with
//! the peak RSS of each; and, as the physical ceiling of that bookkeeping, the database's own
//! rate of plain inserts into the same `events` table on the same machine.
//!
//! **What one cycle's bookkeeping is**: every store operation the stages make for a cycle
//! that climbs to Verified, without the bytes and the transport: `open_cycle` (the instance's
//! `OpenCycle`), the start stage's load of the instance and `Start` of the cycle, `Captured`,
//! `Secured`, `Verified` on the cycle, the close stage's `CloseCycle` on the instance, and the
//! alerts stage's load of the instance's alerts. Timed over `CYCLES_TIMED` cycles in a row.
//!
//! **The fast loader** (documented, as the issue allows): an instance is enrolled through the
//! real command, then its earlier cycles are appended to its stream as `CycleOpened` /
//! `CycleClosed` pairs, serialized from the domain's own event types, in multi-row `INSERT`s
//! into `events` (so the `event_log` trigger runs as for any commit). This is the history an
//! older process, or an import, leaves: there is no snapshot yet, so the first command after
//! the load replays the whole stream once (timed and shown as "first command") and takes a
//! snapshot; every cycle after that is what the table's per-cycle columns show.
//!
//! `cargo bench -p restorable-pipeline --bench history [-- HISTORIES...]` (default
//! `0 1000 10000 100000`) prints Markdown; `scripts/bench.sh` puts it in BENCHMARKS.md. Needs
//! PostgreSQL (`RESTORABLE_TEST_DATABASE_URL`, or the local server).

use std::time::Instant;

use chrono::{Duration, Utc};
use cqrs_es::DomainEvent;
use restorable_domain::alert::InstanceAlerts;
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted, Secured, Verified};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, Instance, InstanceCommand, InstanceEvent, RestorePolicy, Schedule,
};
use restorable_domain::ladder::{LockMode, Rung, Trigger};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::setup::Backends;
use restorable_testkit::{test_server_url, ScratchDatabase};
use secrecy::SecretString;

/// Cycles timed after each history (their mean is the per-cycle figure).
const CYCLES_TIMED: usize = 20;
/// Rows per `INSERT` of the loader.
const ROWS_PER_INSERT: usize = 500;

/// The peak resident set since the last [`reset_peak_rss`], in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Starts the peak-RSS count again from the current RSS (`clear_refs` 5, Linux >= 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn enrol_one(pipeline: &Pipeline, name: &str) -> InstanceId {
    enrol(
        pipeline,
        EnrolRequest {
            tenant: TenantId::new("bench").expect("tenant"),
            name: name.to_owned(),
            fqdn: format!("{name}.example"),
            api_url: format!("https://{name}.example"),
            credentials: PbxCredentials {
                client_id: SecretString::from("id".to_owned()),
                client_secret: SecretString::from("secret".to_owned()),
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

/// Appends `cycles` earlier cycles (hourly, ending an hour ago) to `instance`'s stream.
async fn load_history(pipeline: &Pipeline, instance: InstanceId, cycles: usize) {
    let id = instance.to_string();
    let history = pipeline
        .store
        .history("Instance", &id)
        .await
        .expect("history");
    let mut sequence = history.last().map_or(0, |e| e.sequence);
    let jsonb = if pipeline.store.backend_name() == "postgresql" {
        "::jsonb"
    } else {
        ""
    };
    let first = Utc::now() - Duration::hours(i64::try_from(cycles).expect("cycles") + 1);
    let mut rows = Vec::with_capacity(ROWS_PER_INSERT);
    for n in 0..cycles {
        let cycle_id = CycleId::random();
        let opened_at = first + Duration::hours(i64::try_from(n).expect("n"));
        let events = [
            InstanceEvent::CycleOpened(CycleOpened {
                cycle_id,
                trigger: Trigger::Scheduled,
                opened_at,
            }),
            InstanceEvent::CycleClosed(CycleClosed {
                cycle_id,
                reached: Rung::Verified,
                failed: false,
                retryable: false,
                closed_at: opened_at + Duration::minutes(3),
            }),
        ];
        for event in events {
            sequence += 1;
            let payload = serde_json::to_string(&event)
                .expect("json")
                .replace('\'', "''");
            rows.push(format!(
                "('Instance', '{id}', {sequence}, '{}', '{}', '{payload}'{jsonb}, '{{}}'{jsonb})",
                event.event_type(),
                event.event_version()
            ));
        }
        if rows.len() >= ROWS_PER_INSERT || n + 1 == cycles {
            let sql = format!(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES {}",
                rows.join(", ")
            );
            pipeline.store.execute_sql(&sql).await.expect("load");
            rows.clear();
        }
    }
}

/// One cycle's bookkeeping up to Verified (see the module's header).
async fn one_cycle(pipeline: &Pipeline, instance: InstanceId) {
    let store = &pipeline.store;
    let id = instance.to_string();
    let cycle_id = open_cycle(pipeline, instance, Trigger::Scheduled)
        .await
        .expect("open");
    let loaded: Instance = store.load(&id).await.expect("load instance");
    let enrolled = loaded.enrolled.expect("enrolled");
    let cycle = cycle_id.to_string();
    let now = Utc::now();
    let captured = examples::captured();
    let commands = [
        BackupCycleCommand::Start(CycleStarted {
            cycle_id,
            tenant_id: enrolled.tenant_id,
            instance_id: instance,
            trigger: Trigger::Scheduled,
            started_at: now,
        }),
        BackupCycleCommand::RecordSecured(Secured {
            sha256: captured.sha256.clone(),
            lock_mode: LockMode::Compliance,
            retain_until: captured.retain_until,
            secured_at: now,
        }),
        BackupCycleCommand::RecordVerified(Verified {
            verified_at: now,
            ..examples::verified()
        }),
    ];
    let [start, secured, verified] = commands;
    store.cycle(&cycle, start).await.expect("start");
    store
        .cycle(&cycle, BackupCycleCommand::RecordCaptured(captured))
        .await
        .expect("captured");
    store.cycle(&cycle, secured).await.expect("secured");
    store.cycle(&cycle, verified).await.expect("verified");
    store
        .instance(
            &id,
            InstanceCommand::CloseCycle(CycleClosed {
                cycle_id,
                reached: Rung::Verified,
                failed: false,
                retryable: false,
                closed_at: Utc::now(),
            }),
        )
        .await
        .expect("close");
    let _: InstanceAlerts = store.load(&id).await.expect("alerts");
}

struct Row {
    history: usize,
    load_seconds: f64,
    first_ms: f64,
    per_cycle_ms: f64,
    peak_mib: f64,
}

async fn histories(pipeline: &Pipeline, sizes: &[usize]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (n, &history) in sizes.iter().enumerate() {
        let instance = enrol_one(pipeline, &format!("pbx-{n}")).await;
        let loading = Instant::now();
        load_history(pipeline, instance, history).await;
        let load_seconds = loading.elapsed().as_secs_f64();
        reset_peak_rss();
        let first = Instant::now();
        one_cycle(pipeline, instance).await;
        let first_ms = first.elapsed().as_secs_f64() * 1000.0;
        reset_peak_rss();
        let timed = Instant::now();
        for _ in 0..CYCLES_TIMED {
            one_cycle(pipeline, instance).await;
        }
        let per_cycle_ms = timed.elapsed().as_secs_f64() * 1000.0 / CYCLES_TIMED as f64;
        rows.push(Row {
            history,
            load_seconds,
            first_ms,
            per_cycle_ms,
            peak_mib: peak_rss_mib(),
        });
    }
    rows
}

/// The ceiling: plain multi-row inserts of the same rows into `events`, per second.
async fn insert_ceiling(pipeline: &Pipeline) -> f64 {
    let instance = enrol_one(pipeline, "ceiling").await;
    let started = Instant::now();
    let cycles = 20_000;
    load_history(pipeline, instance, cycles).await;
    (2 * cycles) as f64 / started.elapsed().as_secs_f64()
}

fn print(label: &str, rows: &[Row], ceiling: f64) {
    println!("\n**{label}** (plain inserts into `events`: {ceiling:.0} events/s)\n");
    println!(
        "| earlier cycles | loaded in | first command after the load | per cycle (mean of {CYCLES_TIMED}) | x of no history | peak RSS while timed |"
    );
    println!("|---|---|---|---|---|---|");
    let base = rows.first().map_or(f64::NAN, |r| r.per_cycle_ms);
    for row in rows {
        println!(
            "| {} | {:.1} s | {:.1} ms | {:.2} ms | {:.2} | {:.1} MiB |",
            row.history,
            row.load_seconds,
            row.first_ms,
            row.per_cycle_ms,
            row.per_cycle_ms / base,
            row.peak_mib
        );
    }
}

#[tokio::main]
async fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![0, 1_000, 10_000, 100_000];
    }
    let sqlite_dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Pipeline::open(
        &Backends {
            data_dir: sqlite_dir.path().to_owned(),
            ..Backends::default()
        },
        Settings::default(),
    )
    .await
    .expect("SQLite pipeline");
    let sqlite_rows = histories(&sqlite, &sizes).await;
    let sqlite_ceiling = insert_ceiling(&sqlite).await;
    sqlite.store.close().await;

    let pg_dir = tempfile::tempdir().expect("tempdir");
    let database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("PostgreSQL");
    let postgres = Pipeline::open(
        &Backends {
            data_dir: pg_dir.path().to_owned(),
            database_url: Some(database.url().to_owned()),
            ..Backends::default()
        },
        Settings::default(),
    )
    .await
    .expect("PostgreSQL pipeline");
    let postgres_rows = histories(&postgres, &sizes).await;
    let postgres_ceiling = insert_ceiling(&postgres).await;
    postgres.store.close().await;

    print("SQLite (embedded default)", &sqlite_rows, sqlite_ceiling);
    print("PostgreSQL", &postgres_rows, postgres_ceiling);
}
