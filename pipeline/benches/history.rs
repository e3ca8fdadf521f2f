//! Cost as history grows (issue 13): the bookkeeping of one cycle for an instance with 0, 1,000,
//! 10,000 and 100,000 earlier cycles, on SQLite (the embedded default) and on PostgreSQL, with
//! the peak RSS of each; and, as the physical ceiling of that bookkeeping, the database's own
//! rate of plain inserts into the same `events` table on the same machine.
//!
//! **What one cycle's bookkeeping is**: every store operation the stages make for a cycle
//! that climbs to Verified, without the bytes and the transport: `open_cycle` (the instance's
//! `OpenCycle`), the start stage's load of the instance and `Start` of the cycle, `Captured`,
//! `Secured`, `Verified` on the cycle, the close stage's `CloseCycle` on the instance, and the
//! alerts stage's load of the instance's alerts. Timed over [`cycles_timed`] cycles in a row
//! (20, or `RESTORABLE_BENCH_CYCLES`: more cycles per figure, less noise, for comparing builds).
//!
//! **The fast loader** (documented, as the issue allows): an instance is enrolled through the
//! real command, then its earlier cycles are appended to its stream as `CycleOpened` /
//! `CycleClosed` pairs, serialized from the domain's own event types, in multi-row `INSERT`s
//! into `events` (so the `event_log` trigger runs as for any commit). This is the history an
//! older process, or an import, leaves: there is no snapshot yet, so the first command after
//! the load replays the whole stream once (timed and shown as "first command") and takes a
//! snapshot; every cycle after that is what the table's per-cycle columns show.
//!
//! **The scheduler tick and `projections rebuild`** (`-- tick [sqlite|postgres] [INSTANCES
//! [HISTORY...]]`, both backends unless one is named,
//! default 10,000 instances with 1 and with 100 cycles each): the fleet is loaded the same way
//! (each instance's `InstanceEnrolled` copied from one enrolled through the real command), ten
//! of them a day behind (due), the rest not; then the first tick (it indexes the whole loaded
//! history once, as after an upgrade), twenty steady ticks, and a rebuild of every view from
//! the whole log, each with its peak RSS.
//!
//! **`projections rebuild`'s memory** (`-- rebuild [postgres] [EVENTS...]`, default 1 and 5
//! million events on SQLite): a log of whole cycles made with the same loader — 1,000 instances
//! enrolled, then cycles round the fleet, each the instance's `CycleOpened` and `CycleClosed`
//! around the cycle's `CycleStarted`, `Captured`, `Secured`, `Verified` (six events; a backups
//! row each), and an audit record every 50 cycles — rebuilt in a process of its own, with its
//! time, peak RSS and the most backups rows it held at once.
//!
//! `cargo bench -p restorable-pipeline --bench history [-- HISTORIES...]` (default
//! `0 1000 10000 100000`) prints Markdown; `scripts/bench.sh` puts it in BENCHMARKS.md. Needs
//! PostgreSQL (`RESTORABLE_TEST_DATABASE_URL`, or the local server).

use std::time::Instant;

use chrono::{Duration, Utc};
use cqrs_es::DomainEvent;
use restorable_domain::alert::InstanceAlerts;
use restorable_domain::audit::{ActionRecorded, AuditAction, AuditEvent};
use restorable_domain::cycle::{
    examples, BackupCycleCommand, BackupCycleEvent, CycleStarted, Secured, Verified,
};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, Instance, InstanceCommand, InstanceEvent, RestorePolicy, Schedule,
};
use restorable_domain::ladder::{LockMode, Rung, Trigger};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::read_model;
use restorable_pipeline::runtime::scheduler;
use restorable_pipeline::setup::Backends;
use restorable_testkit::{test_server_url, ScratchDatabase};
use secrecy::SecretString;

/// Cycles timed after each history (their mean is the per-cycle figure).
const CYCLES_TIMED: usize = 20;

/// The cycles timed per figure: `RESTORABLE_BENCH_CYCLES` if set (the timed child process
/// inherits it), else [`CYCLES_TIMED`].
fn cycles_timed() -> usize {
    std::env::var("RESTORABLE_BENCH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CYCLES_TIMED)
}
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
    enrol_every(pipeline, name, 60).await
}

async fn enrol_every(pipeline: &Pipeline, name: &str, interval_minutes: u32) -> InstanceId {
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
            schedule: Schedule { interval_minutes },
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
    let sequence = history.last().map_or(0, |e| e.sequence);
    let mut loader = Loader::new(pipeline);
    loader
        .cycles(&id, sequence, cycles, Duration::hours(1))
        .await;
    loader.flush().await;
}

/// Multi-row `INSERT`s into `events`, [`ROWS_PER_INSERT`] at a time.
struct Loader<'a> {
    pipeline: &'a Pipeline,
    jsonb: &'static str,
    rows: Vec<String>,
}

impl<'a> Loader<'a> {
    fn new(pipeline: &'a Pipeline) -> Self {
        let jsonb = if pipeline.store.backend_name() == "postgresql" {
            "::jsonb"
        } else {
            ""
        };
        Self {
            pipeline,
            jsonb,
            rows: Vec::with_capacity(ROWS_PER_INSERT),
        }
    }

    async fn push(&mut self, id: &str, sequence: i64, event: &InstanceEvent) {
        self.push_event("Instance", id, sequence, event).await;
    }

    /// Any aggregate's event, serialized as the store serializes it.
    async fn push_event<E: DomainEvent>(
        &mut self,
        aggregate: &str,
        id: &str,
        sequence: i64,
        event: &E,
    ) {
        let payload = serde_json::to_string(event).expect("json");
        self.push_row(
            aggregate,
            id,
            sequence,
            &event.event_type(),
            &event.event_version(),
            &payload,
        )
        .await;
    }

    async fn push_json(
        &mut self,
        id: &str,
        sequence: i64,
        kind: &str,
        version: &str,
        payload: &str,
    ) {
        self.push_row("Instance", id, sequence, kind, version, payload)
            .await;
    }

    async fn push_row(
        &mut self,
        aggregate: &str,
        id: &str,
        sequence: i64,
        kind: &str,
        version: &str,
        payload: &str,
    ) {
        let jsonb = self.jsonb;
        let payload = payload.replace('\'', "''");
        self.rows.push(format!(
            "('{aggregate}', '{id}', {sequence}, '{kind}', '{version}', '{payload}'{jsonb}, '{{}}'{jsonb})"
        ));
        if self.rows.len() >= ROWS_PER_INSERT {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES {}",
            self.rows.join(", ")
        );
        self.pipeline.store.execute_sql(&sql).await.expect("load");
        self.rows.clear();
    }

    /// `cycles` opened `every` apart, each closed Verified 3 minutes later, the last one
    /// opened `every` ago; after the stream's `sequence`. Returns the last sequence.
    async fn cycles(&mut self, id: &str, mut sequence: i64, cycles: usize, every: Duration) -> i64 {
        let first = Utc::now() - every * i32::try_from(cycles).expect("cycles");
        for n in 0..cycles {
            let cycle_id = CycleId::random();
            let opened_at = first + every * i32::try_from(n).expect("n");
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
                    restore_tested_copy: None,
                    closed_at: opened_at + Duration::minutes(3),
                }),
            ];
            for event in &events {
                sequence += 1;
                self.push(id, sequence, event).await;
            }
        }
        sequence
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
                restore_tested_copy: None,
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

/// Where a pipeline's store is, so that a second process can open the same one.
fn location(backends: &Backends) -> (String, String) {
    match &backends.database_url {
        Some(url) => ("postgres".into(), url.clone()),
        None => ("sqlite".into(), backends.data_dir.display().to_string()),
    }
}

async fn histories(pipeline: &Pipeline, backends: &Backends, sizes: &[usize]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (n, &history) in sizes.iter().enumerate() {
        let instance = enrol_one(pipeline, &format!("pbx-{n}")).await;
        let loading = Instant::now();
        load_history(pipeline, instance, history).await;
        let load_seconds = loading.elapsed().as_secs_f64();
        let first = Instant::now();
        one_cycle(pipeline, instance).await;
        let first_ms = first.elapsed().as_secs_f64() * 1000.0;
        // The timed cycles run in a process of their own, so its peak RSS is theirs (plus
        // opening the pipeline), not what the first command's replay left in this one.
        let (kind, place) = location(backends);
        let child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["child", &kind, &place, &instance.to_string()])
            .output()
            .expect("the timed process");
        assert!(child.status.success(), "{child:?}");
        let text = String::from_utf8_lossy(&child.stdout);
        let mut numbers = text
            .split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok());
        let (Some(per_cycle_ms), Some(peak_mib)) = (numbers.next(), numbers.next()) else {
            panic!("the timed process printed {text}");
        };
        rows.push(Row {
            history,
            load_seconds,
            first_ms,
            per_cycle_ms,
            peak_mib,
        });
    }
    rows
}

/// The pipeline of a child process, on the backend its parent's `location` named.
async fn open_at(kind: &str, place: &str) -> Pipeline {
    let backends = if kind == "postgres" {
        Backends {
            data_dir: std::env::temp_dir(),
            database_url: Some(place.to_owned()),
            ..Backends::default()
        }
    } else {
        Backends {
            data_dir: place.into(),
            ..Backends::default()
        }
    };
    Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline")
}

/// The timed process: [`cycles_timed`] cycles of `instance`; prints the mean per cycle in ms
/// and the process's peak RSS in MiB.
async fn timed_cycles(kind: &str, place: &str, instance: &str) {
    let pipeline = open_at(kind, place).await;
    let instance: InstanceId = instance.parse().expect("instance id");
    let timed = Instant::now();
    let cycles = cycles_timed();
    for _ in 0..cycles {
        one_cycle(&pipeline, instance).await;
    }
    let per_cycle_ms = timed.elapsed().as_secs_f64() * 1000.0 / cycles as f64;
    pipeline.store.close().await;
    println!("{per_cycle_ms} {}", peak_rss_mib());
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
        "| earlier cycles | loaded in | first command after the load | per cycle (mean of {}) | x of no history | peak RSS of the process running them |",
        cycles_timed()
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

struct TickRow {
    history: usize,
    events: i64,
    load_seconds: f64,
    first_tick_ms: f64,
    opened: usize,
    tick_mean_ms: f64,
    tick_max_ms: f64,
    tick_peak_mib: f64,
    rebuild_seconds: f64,
    rebuild_peak_mib: f64,
}

/// `instances` daily instances with `history` hourly cycles each (the last an hour ago, so not
/// due), of which `DUE` are a day and more behind (due); then the first tick (it indexes the
/// whole loaded history once), 20 steady ticks, and `projections rebuild` of the whole log.
async fn fleet_tick(pipeline: &Pipeline, instances: usize, history: usize) -> TickRow {
    const DUE: usize = 10;
    let template = enrol_every(pipeline, "template", 1440).await;
    let enrolled = pipeline
        .store
        .history("Instance", &template.to_string())
        .await
        .expect("history")
        .into_iter()
        .next()
        .expect("InstanceEnrolled");
    let payload: serde_json::Value = serde_json::from_str(&enrolled.payload).expect("json");
    let tenant = TenantId::new("bench").expect("tenant");
    let mut loader = Loader::new(pipeline);
    let loading = Instant::now();
    for n in 0..instances {
        let name = format!("fleet-{history}-{n}");
        let id = InstanceId::for_name(&tenant, &name).to_string();
        let mut event = payload.clone();
        event["InstanceEnrolled"]["instance_id"] = serde_json::Value::String(id.clone());
        event["InstanceEnrolled"]["name"] = serde_json::Value::String(name);
        loader
            .push_json(
                &id,
                1,
                &enrolled.event_type,
                &enrolled.event_version,
                &event.to_string(),
            )
            .await;
        let every = if n < DUE {
            Duration::days(2)
        } else {
            Duration::hours(1)
        };
        loader.cycles(&id, 1, history.max(1), every).await;
    }
    loader.flush().await;
    let load_seconds = loading.elapsed().as_secs_f64();
    let first = Instant::now();
    let opened = scheduler::tick(pipeline).await.expect("tick").len();
    let first_tick_ms = first.elapsed().as_secs_f64() * 1000.0;
    reset_peak_rss();
    let mut times = Vec::new();
    for _ in 0..20 {
        let tick = Instant::now();
        scheduler::tick(pipeline).await.expect("tick");
        times.push(tick.elapsed().as_secs_f64() * 1000.0);
    }
    let tick_peak_mib = peak_rss_mib();
    let events = pipeline.store.log_end().await.expect("log end");
    reset_peak_rss();
    let rebuilding = Instant::now();
    read_model::rebuild(&pipeline.store).await.expect("rebuild");
    TickRow {
        history: history.max(1),
        events,
        load_seconds,
        first_tick_ms,
        opened,
        tick_mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        tick_max_ms: times.iter().copied().fold(0.0, f64::max),
        tick_peak_mib,
        rebuild_seconds: rebuilding.elapsed().as_secs_f64(),
        rebuild_peak_mib: peak_rss_mib(),
    }
}

fn print_ticks(label: &str, instances: usize, rows: &[TickRow]) {
    println!("\n**{label}**, {instances} instances\n");
    println!(
        "| cycles each | events in the log | loaded in | first tick (indexes the load) | cycles it opened | steady tick mean / max | peak RSS of the ticks | `projections rebuild` | rebuild rate | rebuild peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.0} s | {:.0} ms | {} | {:.1} / {:.1} ms | {:.1} MiB | {:.1} s | {:.0} events/s | {:.0} MiB |",
            row.history,
            row.events,
            row.load_seconds,
            row.first_tick_ms,
            row.opened,
            row.tick_mean_ms,
            row.tick_max_ms,
            row.tick_peak_mib,
            row.rebuild_seconds,
            row.events as f64 / row.rebuild_seconds,
            row.rebuild_peak_mib
        );
    }
}

/// Instances of the rebuild's history.
const REBUILD_INSTANCES: usize = 1000;

/// A history of about `events` events for the rebuild's memory (see the module's header):
/// [`REBUILD_INSTANCES`] instances, then whole cycles round the fleet — the instance's
/// `CycleOpened`, the cycle's `CycleStarted`, `Captured`, `Secured`, `Verified`, the instance's
/// `CycleClosed` — and an audit record every 50 cycles. Returns the cycles loaded.
async fn load_cycles(pipeline: &Pipeline, events: usize) -> usize {
    let template = enrol_every(pipeline, "template", 60).await;
    let enrolled = pipeline
        .store
        .history("Instance", &template.to_string())
        .await
        .expect("history")
        .into_iter()
        .next()
        .expect("InstanceEnrolled");
    let payload: serde_json::Value = serde_json::from_str(&enrolled.payload).expect("json");
    let tenant = TenantId::new("bench").expect("tenant");
    let mut loader = Loader::new(pipeline);
    let mut instances = Vec::new();
    for n in 0..REBUILD_INSTANCES {
        let name = format!("pbx-{n}");
        let id = InstanceId::for_name(&tenant, &name);
        let mut event = payload.clone();
        event["InstanceEnrolled"]["instance_id"] = serde_json::Value::String(id.to_string());
        event["InstanceEnrolled"]["name"] = serde_json::Value::String(name);
        loader
            .push_json(
                &id.to_string(),
                1,
                &enrolled.event_type,
                &enrolled.event_version,
                &event.to_string(),
            )
            .await;
        instances.push((id, 1i64));
    }
    let cycles = events / 6;
    let first = Utc::now() - Duration::minutes(i64::try_from(cycles).expect("cycles"));
    let mut audit_sequence = 0;
    for k in 0..cycles {
        let (instance, sequence) = &mut instances[k % REBUILD_INSTANCES];
        let id = instance.to_string();
        let cycle_id = CycleId::random();
        let cycle = cycle_id.to_string();
        let at = first + Duration::minutes(i64::try_from(k).expect("k"));
        *sequence += 1;
        let opened = InstanceEvent::CycleOpened(CycleOpened {
            cycle_id,
            trigger: Trigger::Scheduled,
            opened_at: at,
        });
        loader.push(&id, *sequence, &opened).await;
        let steps = [
            BackupCycleEvent::CycleStarted(CycleStarted {
                cycle_id,
                instance_id: *instance,
                tenant_id: tenant.clone(),
                trigger: Trigger::Scheduled,
                started_at: at,
            }),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Secured(examples::secured()),
            BackupCycleEvent::Verified(examples::verified()),
        ];
        for (n, step) in steps.iter().enumerate() {
            let n = i64::try_from(n).expect("n") + 1;
            loader.push_event("BackupCycle", &cycle, n, step).await;
        }
        *sequence += 1;
        let closed = InstanceEvent::CycleClosed(CycleClosed {
            cycle_id,
            reached: Rung::Verified,
            failed: false,
            retryable: false,
            restore_tested_copy: None,
            closed_at: at + Duration::minutes(3),
        });
        loader.push(&id, *sequence, &closed).await;
        if k % 50 == 0 {
            audit_sequence += 1;
            let record = AuditEvent::ActionRecorded(ActionRecorded {
                tenant_id: tenant.clone(),
                actor: "owner@bench.example".into(),
                action: AuditAction::Download,
                instance_id: Some(*instance),
                cycle_id: Some(cycle_id),
                key_version: Some(1),
                at,
            });
            loader
                .push_event("AuditTrail", tenant.as_str(), audit_sequence, &record)
                .await;
        }
    }
    loader.flush().await;
    cycles
}

/// The rebuilding process: `projections rebuild` of the whole log; prints its seconds, the
/// events, the backups rows stored, the most backups rows it held at once and its peak RSS in
/// MiB.
async fn rebuild_child(kind: &str, place: &str) {
    let pipeline = open_at(kind, place).await;
    let events = pipeline.store.log_end().await.expect("log end");
    let started = Instant::now();
    let side = read_model::rebuild_caching(
        &pipeline.store,
        read_model::Bounds::default(),
        read_model::REBUILD_BATCH,
        &mut |_| {},
    )
    .await
    .expect("rebuild");
    let seconds = started.elapsed().as_secs_f64();
    let backups = pipeline.store.view_count("backups").await.expect("count");
    let cache = side.cache_use().await;
    pipeline.store.close().await;
    println!(
        "{seconds} {events} {backups} {} {}",
        cache.peak,
        peak_rss_mib()
    );
}

/// `projections rebuild` of histories of `sizes` events (about: whole cycles), each rebuilt in
/// a process of its own, so its peak RSS is the rebuild's.
async fn rebuilds(postgres: bool, sizes: &[usize]) {
    let label = if postgres {
        "PostgreSQL"
    } else {
        "SQLite (embedded default)"
    };
    println!("\n**{label}**, `projections rebuild` of a history of whole cycles ({REBUILD_INSTANCES} instances)\n");
    println!(
        "| events in the log | cycles (backups rows) | loaded in | rebuild | rebuild rate | most backups rows held at once | rebuild peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &size in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pipeline, database) = pipeline_on(postgres, dir.path()).await;
        let loading = Instant::now();
        let cycles = load_cycles(&pipeline, size).await;
        let load_seconds = loading.elapsed().as_secs_f64();
        pipeline.store.close().await;
        let backends = Backends {
            data_dir: dir.path().to_owned(),
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            ..Backends::default()
        };
        let (kind, place) = location(&backends);
        let child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["rebuild-child", &kind, &place])
            .output()
            .expect("the rebuilding process");
        assert!(child.status.success(), "{child:?}");
        let text = String::from_utf8_lossy(&child.stdout);
        let numbers: Vec<f64> = text
            .split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok())
            .collect();
        let [seconds, events, backups, held, peak] = numbers[..] else {
            panic!("the rebuilding process printed {text}");
        };
        assert_eq!(backups as usize, cycles, "every cycle's row");
        println!(
            "| {events:.0} | {backups:.0} | {load_seconds:.0} s | {seconds:.1} s | {:.0} events/s | {held:.0} | {peak:.1} MiB |",
            events / seconds
        );
    }
}

/// A fresh pipeline on SQLite (in `dir`) or on a new scratch PostgreSQL database.
async fn pipeline_on(postgres: bool, dir: &std::path::Path) -> (Pipeline, Option<ScratchDatabase>) {
    let database = if postgres {
        Some(
            ScratchDatabase::create(&test_server_url())
                .await
                .expect("PostgreSQL"),
        )
    } else {
        None
    };
    let pipeline = Pipeline::open(
        &Backends {
            data_dir: dir.to_owned(),
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            ..Backends::default()
        },
        Settings::default(),
    )
    .await
    .expect("pipeline");
    (pipeline, database)
}

async fn ticks(instances: usize, histories: &[usize], only: Option<&str>) {
    for (postgres, label) in [(false, "SQLite (embedded default)"), (true, "PostgreSQL")] {
        if only.is_some_and(|backend| (backend == "postgres") != postgres) {
            continue;
        }
        let mut rows = Vec::new();
        for &history in histories {
            let dir = tempfile::tempdir().expect("tempdir");
            let (pipeline, _database) = pipeline_on(postgres, dir.path()).await;
            rows.push(fleet_tick(&pipeline, instances, history).await);
            pipeline.store.close().await;
        }
        print_ticks(label, instances, &rows);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers = |from: usize| -> Vec<usize> {
        args.iter()
            .skip(from)
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    if args.first().map(String::as_str) == Some("child") {
        timed_cycles(&args[1], &args[2], &args[3]).await;
        return;
    }
    if args.first().map(String::as_str) == Some("rebuild-child") {
        rebuild_child(&args[1], &args[2]).await;
        return;
    }
    if args.first().map(String::as_str) == Some("rebuild") {
        // history rebuild [postgres] EVENTS... (default 1,000,000 and 5,000,000 on SQLite)
        let postgres = args.get(1).map(String::as_str) == Some("postgres");
        let mut sizes = numbers(1);
        if sizes.is_empty() {
            sizes = vec![1_000_000, 5_000_000];
        }
        rebuilds(postgres, &sizes).await;
        return;
    }
    if args.first().map(String::as_str) == Some("tick") {
        // history tick [sqlite|postgres] INSTANCES HISTORY... (default both backends, 10000
        // instances, 1 and 100 cycles each)
        let only = args
            .get(1)
            .map(String::as_str)
            .filter(|a| ["sqlite", "postgres"].contains(a));
        let given = numbers(1);
        let instances = given.first().copied().unwrap_or(10_000);
        let histories = if given.len() > 1 {
            given[1..].to_vec()
        } else {
            vec![1, 100]
        };
        ticks(instances, &histories, only).await;
        return;
    }
    let mut sizes = numbers(0);
    if sizes.is_empty() {
        sizes = vec![0, 1_000, 10_000, 100_000];
    }
    let mut tables = Vec::new();
    for (postgres, label) in [(false, "SQLite (embedded default)"), (true, "PostgreSQL")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pipeline, database) = pipeline_on(postgres, dir.path()).await;
        let backends = Backends {
            data_dir: dir.path().to_owned(),
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            ..Backends::default()
        };
        let rows = histories(&pipeline, &backends, &sizes).await;
        let ceiling = insert_ceiling(&pipeline).await;
        pipeline.store.close().await;
        tables.push((label, rows, ceiling));
    }
    for (label, rows, ceiling) in &tables {
        print(label, rows, *ceiling);
    }
}
