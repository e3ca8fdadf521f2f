//! Chaos: the production deployment under infrastructure faults, as separate processes of the
//! built binary — one `restorable serve` and two `restorable worker --stage all` on a private
//! PostgreSQL cluster, a private nats-server and the local AWS endpoint (S3 with Object Lock,
//! KMS) — with a fleet of healthy simulated PBXes enrolled on a one-minute schedule. While it
//! runs, a worker is killed (SIGKILL) at random intervals and restarted, PostgreSQL is stopped
//! and resumed, and nats-server is killed and restarted. Then the faults stop, the instances are
//! stopped (no new cycles) and the system settles. Afterwards:
//! - no cycle is in flight;
//! - no `Failed` event at all (no PBX has a fault: any failure is a false red);
//! - no native backup alert (`native_backup_*`): every PBX's own schedule is healthy, so one
//!   raised from a capture's reading or the native watch's is a false red too;
//! - no event twice (each ladder event of a cycle, each open/close of a cycle at most once);
//! - every event of the store's `event_log` is in the JetStream stream (by `Nats-Msg-Id`);
//! - the stored views equal a rebuild of the same history (`restorable projections rebuild`);
//! - no process exited by itself.
//!
//! Figures (cycles, kills, outage lengths, time to the first completed cycle after each outage)
//! are printed and, with `RESTORABLE_CHAOS_REPORT=<file>`, written there as a Markdown table
//! (`scripts/chaos.sh` runs this longer and turns it into RELIABILITY.md). Every process's log
//! is kept under `RESTORABLE_CHAOS_LOG_DIR` (default: a directory under the temp dir, printed).
//!
//! Knobs (environment, seconds unless said): `RESTORABLE_CHAOS_SECS` (fault phase, 150),
//! `RESTORABLE_CHAOS_OUTAGE_EVERY_SECS` (one PostgreSQL and one NATS outage per period; default
//! the whole phase), `RESTORABLE_CHAOS_PG_OUTAGE_SECS` (30), `RESTORABLE_CHAOS_NATS_OUTAGE_SECS`
//! (10), `RESTORABLE_CHAOS_KILL_MIN_SECS` / `_KILL_MAX_SECS` (10 / 20), `RESTORABLE_CHAOS_PBXES`
//! (count, 8), `RESTORABLE_CHAOS_SETTLE_SECS` (limit of the settling wait, 240),
//! `RESTORABLE_CHAOS_ACK_WAIT_SECS` (workers' `--ack-wait-secs`, 10),
//! `RESTORABLE_CHAOS_PADDING_BYTES` (extra bytes per backup, 8 MiB),
//! `RESTORABLE_CHAOS_RESTORE_EVERY` (restore-test every Nth verified cycle, 1: each one, so
//! restore sandboxes are live while workers restart), `RESTORABLE_CHAOS_SEED` (the random
//! schedule of kills).
//!
//! The PBXes are enrolled one after another, spread over the first minute of the fault phase,
//! so that their cycles are spread over the minute too and every fault finds work in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{Instance, InstanceCommand, RestorePolicy, Schedule};
use restorable_pbx_sim::{RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::sealing::{KmsConfig, KmsKeySealer};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::transport::nats::{NatsConfig, EVENTS_STREAM};
use restorable_pipeline::vault::{S3Config, S3Vault};
use restorable_testkit::{aws_endpoint, unique_bucket, NatsServer, PostgresCluster, AWS_REGION};
use secrecy::SecretString;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

/// The knobs of one run.
#[derive(Clone, Debug)]
struct Knobs {
    run: Duration,
    outage_every: Duration,
    pg_outage: Duration,
    nats_outage: Duration,
    kill_min: Duration,
    kill_max: Duration,
    pbxes: usize,
    settle: Duration,
    ack_wait_secs: u64,
    padding: u64,
    restore_every: u32,
    seed: u64,
    report: Option<PathBuf>,
    log_dir: PathBuf,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

impl Knobs {
    fn from_env() -> Self {
        let run = env_u64("RESTORABLE_CHAOS_SECS", 150);
        let kill_min = env_u64("RESTORABLE_CHAOS_KILL_MIN_SECS", 10);
        let kill_max = env_u64("RESTORABLE_CHAOS_KILL_MAX_SECS", 20).max(kill_min);
        let log_dir = std::env::var_os("RESTORABLE_CHAOS_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "restorable-chaos-{}",
                    Utc::now().format("%Y%m%dT%H%M%S")
                ))
            });
        Self {
            run: Duration::from_secs(run),
            outage_every: Duration::from_secs(
                env_u64("RESTORABLE_CHAOS_OUTAGE_EVERY_SECS", run).max(1),
            ),
            pg_outage: Duration::from_secs(env_u64("RESTORABLE_CHAOS_PG_OUTAGE_SECS", 30)),
            nats_outage: Duration::from_secs(env_u64("RESTORABLE_CHAOS_NATS_OUTAGE_SECS", 10)),
            kill_min: Duration::from_secs(kill_min.max(1)),
            kill_max: Duration::from_secs(kill_max.max(1)),
            pbxes: usize::try_from(env_u64("RESTORABLE_CHAOS_PBXES", 8)).unwrap_or(8),
            settle: Duration::from_secs(env_u64("RESTORABLE_CHAOS_SETTLE_SECS", 240)),
            ack_wait_secs: env_u64("RESTORABLE_CHAOS_ACK_WAIT_SECS", 10).max(1),
            padding: env_u64("RESTORABLE_CHAOS_PADDING_BYTES", 8 << 20),
            restore_every: u32::try_from(env_u64("RESTORABLE_CHAOS_RESTORE_EVERY", 1))
                .unwrap_or(1)
                .max(1),
            seed: env_u64("RESTORABLE_CHAOS_SEED", rand::random::<u32>().into()),
            report: std::env::var_os("RESTORABLE_CHAOS_REPORT").map(PathBuf::from),
            log_dir,
        }
    }
}

/// A fault, at an offset from the start of the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillWorker,
    StopPostgres,
    ResumePostgres,
    StopNats,
    ResumeNats,
}

/// The faults of the whole phase, in order: kills every `kill_min..=kill_max`, and per outage
/// period one PostgreSQL outage starting at a quarter and one NATS outage at two thirds.
fn fault_plan(knobs: &Knobs, rng: &mut impl Rng) -> Vec<(Duration, Fault)> {
    let mut plan = Vec::new();
    let mut at = Duration::ZERO;
    loop {
        at += Duration::from_millis(
            rng.gen_range(knobs.kill_min.as_millis()..=knobs.kill_max.as_millis()) as u64,
        );
        if at >= knobs.run {
            break;
        }
        plan.push((at, Fault::KillWorker));
    }
    let mut period_start = Duration::ZERO;
    while period_start < knobs.run {
        let period = knobs.outage_every.min(knobs.run - period_start);
        let pg = period_start + period / 4;
        let nats = period_start + period * 2 / 3;
        if pg + knobs.pg_outage <= knobs.run {
            plan.push((pg, Fault::StopPostgres));
            plan.push((pg + knobs.pg_outage, Fault::ResumePostgres));
        }
        if nats + knobs.nats_outage <= knobs.run {
            plan.push((nats, Fault::StopNats));
            plan.push((nats + knobs.nats_outage, Fault::ResumeNats));
        }
        period_start += knobs.outage_every;
    }
    plan.sort();
    plan
}

/// One process of the deployment.
struct Proc {
    /// `serve`, `worker-1`, `worker-2`.
    role: String,
    args: Vec<String>,
    child: Child,
    /// How many times it was started.
    starts: u32,
    log: PathBuf,
}

/// An outage that happened: what, when it began and ended (wall clock), how long.
#[derive(Clone, Debug)]
struct Outage {
    what: &'static str,
    began: DateTime<Utc>,
    ended: DateTime<Utc>,
    length: Duration,
}

/// A process that ended without being asked.
#[derive(Clone, Debug)]
struct SelfExit {
    role: String,
    at_secs: f64,
    status: String,
    log_tail: String,
}

/// The deployment: servers, processes, and what happened to them.
struct Deployment {
    postgres: Arc<Mutex<PostgresCluster>>,
    nats: Arc<Mutex<NatsServer>>,
    endpoint: String,
    bucket: String,
    key_id: String,
    data_dir: PathBuf,
    log_dir: PathBuf,
    ack_wait_secs: u64,
    procs: Vec<Proc>,
    started: Instant,
    kills: u32,
    outages: Vec<Outage>,
    self_exits: Vec<SelfExit>,
}

impl Deployment {
    /// `restorable` with the deployment's settings in the environment, its output into `log`.
    fn command(&self, log: &Path) -> Command {
        let postgres = self.postgres.lock().expect("cluster lock").url();
        let nats = self.nats.lock().expect("nats lock").url();
        let mut command = Command::new(env!("CARGO_BIN_EXE_restorable"));
        command
            .env("RESTORABLE_DATA_DIR", &self.data_dir)
            .env("RESTORABLE_DATABASE_URL", postgres)
            .env("RESTORABLE_NATS_URL", nats)
            .env("RESTORABLE_S3_ENDPOINT", &self.endpoint)
            .env("RESTORABLE_S3_BUCKET", &self.bucket)
            .env("RESTORABLE_S3_REGION", AWS_REGION)
            .env("RESTORABLE_KMS_ENDPOINT", &self.endpoint)
            .env("RESTORABLE_KMS_KEY_ID", &self.key_id)
            .env_remove("RESTORABLE_CONFIG")
            .env_remove("RESTORABLE_LISTEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        if let Ok(file) = File::options().create(true).append(true).open(log) {
            if let Ok(copy) = file.try_clone() {
                command.stdout(copy);
            }
            command.stderr(file);
        }
        command
    }

    fn spawn(&mut self, role: &str, args: &[&str]) {
        let log = self.log_dir.join(format!("{role}.log"));
        let child = self
            .command(&log)
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {role}: {e}"));
        self.procs.push(Proc {
            role: role.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child,
            starts: 1,
            log,
        });
    }

    fn worker_args(&self) -> Vec<String> {
        [
            "worker",
            "--stage",
            "all",
            "--ack-wait-secs",
            &self.ack_wait_secs.to_string(),
            "--grace-secs",
            "2",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn restart(&mut self, index: usize) {
        let log = self.procs[index].log.clone();
        append_line(
            &log,
            &format!("==== chaos: restarting at t={:.1}s ====", self.secs()),
        );
        let args = self.procs[index].args.clone();
        let child = self
            .command(&log)
            .args(&args)
            .spawn()
            .unwrap_or_else(|e| panic!("restarting {}: {e}", self.procs[index].role));
        let proc = &mut self.procs[index];
        proc.child = child;
        proc.starts += 1;
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records every process that ended by itself, and (when `restart`) starts it again so the
    /// run goes on.
    fn reap(&mut self, restart: bool) {
        for index in 0..self.procs.len() {
            let status = match self.procs[index].child.try_wait() {
                Ok(Some(status)) => status.to_string(),
                Ok(None) => continue,
                Err(e) => format!("unknown ({e})"),
            };
            let exit = SelfExit {
                role: self.procs[index].role.clone(),
                at_secs: self.secs(),
                status,
                log_tail: tail(&self.procs[index].log, 12),
            };
            eprintln!(
                "chaos: t={:.1}s {} EXITED BY ITSELF ({}); last log lines:\n{}",
                exit.at_secs, exit.role, exit.status, exit.log_tail
            );
            self.self_exits.push(exit);
            if restart {
                self.restart(index);
            }
        }
    }

    /// SIGKILLs a random worker and starts it again at once.
    fn kill_a_worker(&mut self, rng: &mut impl Rng) {
        let workers: Vec<usize> = (0..self.procs.len())
            .filter(|i| self.procs[*i].role.starts_with("worker"))
            .collect();
        let index = workers[rng.gen_range(0..workers.len())];
        let at = self.secs();
        let proc = &mut self.procs[index];
        let _ = proc.child.kill();
        let _ = proc.child.wait();
        append_line(
            &proc.log,
            &format!("==== chaos: SIGKILL at t={at:.1}s ===="),
        );
        eprintln!("chaos: t={at:.1}s kill -9 {}", proc.role);
        self.kills += 1;
        self.restart(index);
    }

    /// SIGTERM to every process, then SIGKILL what is left after 30 s; returns each one's exit.
    fn stop_all(&mut self) -> Vec<(String, String)> {
        for proc in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &proc.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exits = Vec::new();
        for proc in &mut self.procs {
            let status = loop {
                match proc.child.try_wait() {
                    Ok(Some(status)) => break status.to_string(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {
                        let _ = proc.child.kill();
                        break format!("{:?} (SIGKILLed after 30 s)", proc.child.wait());
                    }
                }
            };
            exits.push((proc.role.clone(), status));
        }
        exits
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = File::options().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// The last `n` lines of a log.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Strips ANSI colour codes from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// ERROR and WARN lines of every log, without their timestamps, counted, most frequent first.
fn log_summary(dir: &Path) -> Vec<(usize, String)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let role = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let line = plain(line);
            if !(line.contains(" ERROR ") || line.contains(" WARN ") || line.starts_with("error")) {
                continue;
            }
            // Drop the timestamp; cut long ids so similar lines count together.
            let body = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
            let body: String = body.chars().take(220).collect();
            *counts
                .entry(format!("[{role}] {}", body.trim()))
                .or_default() += 1;
        }
    }
    let mut lines: Vec<(usize, String)> = counts.into_iter().map(|(l, c)| (c, l)).collect();
    lines.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    lines
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

/// A bucket with Object Lock and a KMS key on the local AWS endpoint.
async fn aws_resources(endpoint: &str) -> (String, String) {
    let bucket = unique_bucket("chaos");
    S3Vault::new(s3_config(endpoint, &bucket))
        .expect("vault")
        .create_bucket_with_object_lock()
        .await
        .expect("bucket");
    let sealer = KmsKeySealer::new(kms_config(endpoint, "bootstrap")).expect("kms");
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
    (bucket, key_id)
}

/// The event's own JSON (the stored payload may wrap it in `{"<Type>": ...}`).
fn event_body(event_type: &str, payload: &serde_json::Value) -> serde_json::Value {
    payload
        .get(event_type)
        .filter(|_| payload.as_object().is_some_and(|o| o.len() == 1))
        .cloned()
        .unwrap_or_else(|| payload.clone())
}

/// One stored event.
#[derive(Clone, Debug)]
struct Stored {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    body: serde_json::Value,
}

async fn all_events(pool: &PgPool) -> Result<Vec<Stored>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, payload::text AS payload \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let event_type: String = row.get("event_type");
            let payload: String = row.get("payload");
            let payload = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
            Stored {
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                sequence: row.get("sequence"),
                body: event_body(&event_type, &payload),
                event_type,
            }
        })
        .collect())
}

/// `(view, key) -> (tenant, doc)` of the stored views.
async fn view_rows(pool: &PgPool) -> Result<BTreeMap<(String, String), String>, sqlx::Error> {
    let rows = sqlx::query("SELECT view, key, tenant_id, doc FROM read_model")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let tenant: String = row.get("tenant_id");
            let doc: String = row.get("doc");
            (
                (row.get("view"), row.get("key")),
                format!("tenant={tenant} {doc}"),
            )
        })
        .collect())
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(sql).fetch_one(pool).await?;
    row.try_get::<Option<i64>, _>(0).map(|v| v.unwrap_or(0))
}

/// Every `Nats-Msg-Id` in the events stream, with how many messages carry it.
async fn stream_ids(pipeline: &Pipeline) -> Result<BTreeMap<String, u32>, String> {
    let nats = pipeline.nats.as_ref().ok_or("no NATS in the pipeline")?;
    let mut stream = nats
        .jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let (messages, first, last) = {
        let info = stream.info().await.map_err(|e| e.to_string())?;
        (
            info.state.messages,
            info.state.first_sequence,
            info.state.last_sequence,
        )
    };
    let mut ids = BTreeMap::new();
    if messages == 0 {
        return Ok(ids);
    }
    for sequence in first..=last {
        match stream.get_raw_message(sequence).await {
            Ok(message) => {
                let id = message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_else(|| format!("<no Nats-Msg-Id at stream seq {sequence}>"));
                *ids.entry(id).or_default() += 1;
            }
            Err(error) => eprintln!("chaos: stream message {sequence}: {error}"),
        }
    }
    Ok(ids)
}

async fn stream_count(pipeline: &Pipeline) -> Option<u64> {
    let nats = pipeline.nats.as_ref()?;
    let mut stream = nats.jetstream.get_stream(EVENTS_STREAM).await.ok()?;
    stream.info().await.ok().map(|i| i.state.messages)
}

/// Polls `check` every second until it says done, or `limit` passes; returns whether it did.
async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_production_deployment_survives_kills_and_outages_without_loss_or_false_reds() {
    let knobs = Knobs::from_env();
    let mut rng = rand::rngs::StdRng::seed_from_u64(knobs.seed);
    let plan = fault_plan(&knobs, &mut rng);
    std::fs::create_dir_all(&knobs.log_dir).expect("log dir");
    eprintln!(
        "chaos: {knobs:?}\nchaos: logs in {}\nchaos: plan {plan:?}",
        knobs.log_dir.display()
    );
    let wall_start = Instant::now();

    // Servers of the test's own.
    let endpoint = aws_endpoint().to_owned();
    let postgres = tokio::task::spawn_blocking(PostgresCluster::start)
        .await
        .expect("join")
        .expect("a private PostgreSQL cluster");
    eprintln!(
        "chaos: PostgreSQL on {} (log {})",
        postgres.url(),
        postgres.log_path().display()
    );
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .expect("join");
    let (bucket, key_id) = aws_resources(&endpoint).await;
    let work = tempfile::tempdir().expect("tempdir");
    let database_url = postgres.url();
    let backends = Backends {
        data_dir: work.path().join("enrolment"),
        database_url: Some(database_url.clone()),
        nats: Some(NatsConfig { url: nats.url() }),
        s3: Some(s3_config(&endpoint, &bucket)),
        kms: Some(kms_config(&endpoint, &key_id)),
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("the production pipeline");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&database_url)
        .expect("pool");

    // One installation on one host: the processes share the data directory.
    let mut deployment = Deployment {
        postgres: Arc::new(Mutex::new(postgres)),
        nats: Arc::new(Mutex::new(nats)),
        endpoint: endpoint.clone(),
        bucket,
        key_id,
        data_dir: work.path().join("data"),
        log_dir: knobs.log_dir.clone(),
        ack_wait_secs: knobs.ack_wait_secs,
        procs: Vec::new(),
        started: Instant::now(),
        kills: 0,
        outages: Vec::new(),
        self_exits: Vec::new(),
    };
    let worker_args = deployment.worker_args();
    let worker_args: Vec<&str> = worker_args.iter().map(String::as_str).collect();
    deployment.spawn("worker-1", &worker_args);
    deployment.spawn("worker-2", &worker_args);
    deployment.spawn(
        "serve",
        &["serve", "--tick-secs", "5", "--listen", "127.0.0.1:0"],
    );

    // The fleet: healthy PBXes on a one-minute schedule, enrolled one after another over the
    // first minute of the fault phase (so that their cycles are spread over the minute).
    let sims = tempfile::tempdir().expect("tempdir");
    let tenant = TenantId::new("chaos").expect("tenant");
    let mut pbxes = Vec::new();
    let mut instances = Vec::new();
    let mut fleet = Vec::new();
    for n in 0..knobs.pbxes {
        let name = format!("pbx-{n:02}");
        let mut config = SimPbxConfig::new(&name, 100 + n as u64);
        config.padding_bytes = knobs.padding;
        config.backup_delay = Duration::from_millis(20);
        let pbx = RunningPbx::start(config, sims.path())
            .await
            .expect("simulator");
        instances.push(InstanceId::for_name(&tenant, &name));
        fleet.push((
            name,
            pbx.base_url(),
            pbx.config().client_id.clone(),
            pbx.config().client_secret.clone(),
        ));
        pbxes.push(pbx);
    }
    let faults_began = Utc::now();
    deployment.started = Instant::now();
    let spacing = Duration::from_secs(60) / u32::try_from(knobs.pbxes.max(1)).unwrap_or(1);
    let restore_policy = RestorePolicy {
        every_nth_verified: knobs.restore_every,
        ..RestorePolicy::default()
    };
    let enroller = tokio::spawn({
        let (pipeline, tenant, began) = (pipeline.clone(), tenant.clone(), deployment.started);
        async move {
            for (n, (name, url, client_id, client_secret)) in fleet.into_iter().enumerate() {
                tokio::time::sleep_until((began + spacing * n as u32).into()).await;
                loop {
                    let request = EnrolRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        fqdn: format!("{name}.example"),
                        api_url: url.clone(),
                        credentials: PbxCredentials {
                            client_id: SecretString::from(client_id.clone()),
                            client_secret: SecretString::from(client_secret.clone()),
                        },
                        schedule: Schedule {
                            interval_minutes: 1,
                        },
                        restore_policy,
                    };
                    match enrol(&pipeline, request).await {
                        Ok(_) => break,
                        Err(error) => {
                            eprintln!("chaos: enrolling {name}: {error}; again in 1 s");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
    });
    eprintln!(
        "chaos: {} PBXes enrolled one every {}; faults for {}",
        knobs.pbxes,
        fmt_secs(spacing),
        fmt_secs(knobs.run)
    );

    // The fault phase.
    let mut pending_outage: HashMap<&'static str, (DateTime<Utc>, Instant)> = HashMap::new();
    let mut plan = plan.into_iter().peekable();
    let mut last_progress = Instant::now();
    while deployment.started.elapsed() < knobs.run {
        deployment.reap(true);
        if last_progress.elapsed() >= Duration::from_secs(15) {
            last_progress = Instant::now();
            let closed = scalar_i64(
                &pool,
                "SELECT count(*) FROM events WHERE event_type = 'CycleClosed'",
            )
            .await
            .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
            eprintln!("chaos: t={:.0}s cycles closed: {closed}", deployment.secs());
        }
        let Some((at, _)) = plan.peek().copied() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if deployment.started.elapsed() < at {
            tokio::time::sleep((at - deployment.started.elapsed()).min(Duration::from_millis(500)))
                .await;
            continue;
        }
        let Some((_, fault)) = plan.next() else {
            continue;
        };
        let t = deployment.secs();
        match fault {
            Fault::KillWorker => deployment.kill_a_worker(&mut rng),
            Fault::StopPostgres => {
                eprintln!("chaos: t={t:.1}s stopping PostgreSQL");
                pending_outage.insert("PostgreSQL", (Utc::now(), Instant::now()));
                let cluster = Arc::clone(&deployment.postgres);
                tokio::task::spawn_blocking(move || cluster.lock().expect("cluster lock").stop())
                    .await
                    .expect("join")
                    .expect("stopping PostgreSQL");
            }
            Fault::ResumePostgres => {
                let cluster = Arc::clone(&deployment.postgres);
                tokio::task::spawn_blocking(move || cluster.lock().expect("cluster lock").resume())
                    .await
                    .expect("join")
                    .expect("resuming PostgreSQL");
                if let Some((began, since)) = pending_outage.remove("PostgreSQL") {
                    deployment.outages.push(Outage {
                        what: "PostgreSQL",
                        began,
                        ended: Utc::now(),
                        length: since.elapsed(),
                    });
                }
                eprintln!("chaos: t={:.1}s PostgreSQL is back", deployment.secs());
            }
            Fault::StopNats => {
                eprintln!("chaos: t={t:.1}s killing nats-server");
                pending_outage.insert("NATS", (Utc::now(), Instant::now()));
                let server = Arc::clone(&deployment.nats);
                tokio::task::spawn_blocking(move || server.lock().expect("nats lock").stop())
                    .await
                    .expect("join");
            }
            Fault::ResumeNats => {
                let server = Arc::clone(&deployment.nats);
                tokio::task::spawn_blocking(move || server.lock().expect("nats lock").resume())
                    .await
                    .expect("join");
                if let Some((began, since)) = pending_outage.remove("NATS") {
                    deployment.outages.push(Outage {
                        what: "NATS",
                        began,
                        ended: Utc::now(),
                        length: since.elapsed(),
                    });
                }
                eprintln!("chaos: t={:.1}s nats-server is back", deployment.secs());
            }
        }
    }
    let faults_ended = Utc::now();
    if tokio::time::timeout(Duration::from_secs(120), enroller)
        .await
        .is_err()
    {
        panic!("the fleet was not enrolled within 120 s of the fault phase's end");
    }
    eprintln!(
        "chaos: t={:.1}s faults stopped; stopping the instances and settling",
        deployment.secs()
    );

    // Settle: no new cycles (the instances are stopped, as an operator would), and every open
    // cycle closes.
    let mut failures: Vec<String> = Vec::new();
    for instance in &instances {
        let id = instance.to_string();
        let (id_ref, store) = (&id, &pipeline.store);
        let stopped = wait_for(Duration::from_secs(60), || async move {
            store
                .instance(id_ref, InstanceCommand::Stop { at: Utc::now() })
                .await
                .is_ok()
        })
        .await;
        if !stopped {
            failures.push(format!("could not stop instance {id} within 60 s"));
        }
    }
    let settle_began = Instant::now();
    let settled = loop {
        deployment.reap(true);
        let mut open = 0;
        for instance in &instances {
            match pipeline.store.load::<Instance>(&instance.to_string()).await {
                Ok(state) if state.open_cycle.is_none() => {}
                _ => open += 1,
            }
        }
        if open == 0 {
            break true;
        }
        if settle_began.elapsed() >= knobs.settle {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let settle_time = settle_began.elapsed();
    eprintln!("chaos: settled={settled} after {}", fmt_secs(settle_time));

    // Let the relay and the projector reach the end of the log (they may be behind).
    let (pool_ref, pipeline_ref) = (&pool, &pipeline);
    let relay_caught_up = wait_for(Duration::from_secs(60), || async move {
        let logged = scalar_i64(pool_ref, "SELECT count(*) FROM event_log").await;
        match (logged, stream_count(pipeline_ref).await) {
            (Ok(logged), Some(streamed)) => streamed >= logged as u64,
            _ => false,
        }
    })
    .await;
    let projector_caught_up = wait_for(Duration::from_secs(60), || async move {
        let head = scalar_i64(pool_ref, "SELECT max(position) FROM event_log").await;
        let checkpoint = scalar_i64(
            pool_ref,
            "SELECT max(position) FROM consumer_checkpoints WHERE consumer = 'projections'",
        )
        .await;
        matches!((head, checkpoint), (Ok(h), Ok(c)) if c >= h)
    })
    .await;

    // No process exited by itself; then stop them all (the read side must be still for the
    // comparison with a rebuild).
    deployment.reap(false);
    let stop_exits = deployment.stop_all();

    // The evidence.
    let events = all_events(&pool).await.expect("events");
    let mut report = String::new();
    let mut opened: BTreeMap<String, (String, DateTime<Utc>)> = BTreeMap::new(); // cycle -> (instance, at)
    let mut closes: Vec<(String, DateTime<Utc>, bool)> = Vec::new(); // (cycle, at, failed)
    let mut per_cycle_type: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut failed_events = Vec::new();
    let mut native_alerts = Vec::new();
    let mut native_readings = 0_usize;
    let mut instance_cycle_events: BTreeMap<(String, String), u32> = BTreeMap::new();
    for event in &events {
        match (event.aggregate_type.as_str(), event.event_type.as_str()) {
            ("BackupCycle", kind) => {
                *per_cycle_type
                    .entry((event.aggregate_id.clone(), kind.to_owned()))
                    .or_default() += 1;
                if kind == "Failed" {
                    failed_events.push(event.clone());
                }
            }
            ("Instance", kind @ ("CycleOpened" | "CycleClosed")) => {
                let cycle = event.body["cycle_id"].as_str().unwrap_or("?").to_owned();
                *instance_cycle_events
                    .entry((cycle.clone(), kind.to_owned()))
                    .or_default() += 1;
                let at_field = if kind == "CycleOpened" {
                    "opened_at"
                } else {
                    "closed_at"
                };
                let at = event.body[at_field]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                    .unwrap_or(faults_began);
                if kind == "CycleOpened" {
                    opened.insert(cycle, (event.aggregate_id.clone(), at));
                } else {
                    let failed = event.body["failed"].as_bool().unwrap_or(false);
                    closes.push((cycle, at, failed));
                }
            }
            ("InstanceAlerts", "AlertRaised")
                if event.body["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("native_backup")) =>
            {
                native_alerts.push(event.clone());
            }
            ("Instance", "NativeBackupsRead") => native_readings += 1,
            _ => {}
        }
    }
    closes.sort_by_key(|c| c.1);
    let closed: BTreeSet<&str> = closes.iter().map(|c| c.0.as_str()).collect();
    let in_flight: Vec<&String> = opened
        .keys()
        .filter(|c| !closed.contains(c.as_str()))
        .collect();
    let completed = closes.iter().filter(|c| !c.2).count();

    // 1. No cycle in flight.
    if !settled || !in_flight.is_empty() {
        let mut text = format!(
            "{} cycle(s) still in flight after settling for {} (settled={settled}):",
            in_flight.len(),
            fmt_secs(settle_time)
        );
        for cycle in &in_flight {
            let history: Vec<String> = events
                .iter()
                .filter(|e| e.aggregate_type == "BackupCycle" && &&e.aggregate_id == cycle)
                .map(|e| format!("#{} {}", e.sequence, e.event_type))
                .collect();
            let (instance, at) = &opened[*cycle];
            let _ = write!(
                text,
                "\n  cycle {cycle} of instance {instance}, opened {at}: history {history:?}"
            );
        }
        failures.push(text);
    }
    // 2. No Failed event: no PBX has a fault.
    if !failed_events.is_empty() {
        let mut text = format!(
            "{} Failed event(s) — false reds (no PBX has a fault):",
            failed_events.len()
        );
        for event in &failed_events {
            let _ = write!(
                text,
                "\n  cycle {}: stage={} reason={} retryable={} detail={:?} at {}",
                event.aggregate_id,
                event.body["stage"],
                event.body["reason"],
                event.body["retryable"],
                event.body["detail"].as_str().unwrap_or_default(),
                event.body["failed_at"].as_str().unwrap_or_default(),
            );
        }
        failures.push(text);
    }
    // 2b. No native backup alert: every PBX's own schedule is healthy.
    if !native_alerts.is_empty() {
        let mut text = format!(
            "{} native backup alert(s) — false reds (every PBX's own schedule is healthy):",
            native_alerts.len()
        );
        for event in &native_alerts {
            let _ = write!(
                text,
                "\n  instance {}: {} {:?}",
                event.aggregate_id,
                event.body["kind"],
                event.body["detail"].as_str().unwrap_or_default(),
            );
        }
        failures.push(text);
    }
    // 3. No event twice.
    let duplicated: Vec<String> = per_cycle_type
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((cycle, kind), n)| format!("cycle {cycle}: {kind} x{n}"))
        .chain(
            instance_cycle_events
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|((cycle, kind), n)| format!("instance event {kind} of cycle {cycle} x{n}")),
        )
        .collect();
    let duplicated_cycles: BTreeSet<&str> = per_cycle_type
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((cycle, _), _)| cycle.as_str())
        .chain(
            instance_cycle_events
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|((cycle, _), _)| cycle.as_str()),
        )
        .collect();
    if !duplicated.is_empty() {
        failures.push(format!(
            "events recorded twice:\n  {}",
            duplicated.join("\n  ")
        ));
    }
    // 4. Every event of the log in the stream.
    let logged: BTreeSet<String> = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence FROM event_log ORDER BY position",
    )
    .fetch_all(&pool)
    .await
    .expect("event_log")
    .into_iter()
    .map(|row| {
        let kind: String = row.get("aggregate_type");
        let id: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        format!("{kind}:{id}:{sequence}")
    })
    .collect();
    let (streamed, missing, stream_duplicates) = match stream_ids(&pipeline).await {
        Ok(ids) => {
            let missing: Vec<&String> = logged.iter().filter(|id| !ids.contains_key(*id)).collect();
            let duplicates = ids.values().filter(|n| **n > 1).count();
            if !missing.is_empty() {
                failures.push(format!(
                    "{} of {} logged events are not in the stream {EVENTS_STREAM} \
                     (relay caught up: {relay_caught_up}); first ones: {:?}",
                    missing.len(),
                    logged.len(),
                    missing.iter().take(10).collect::<Vec<_>>()
                ));
            }
            (ids.len(), missing.len(), duplicates)
        }
        Err(error) => {
            failures.push(format!("cannot read the stream {EVENTS_STREAM}: {error}"));
            (0, logged.len(), 0)
        }
    };
    // 5. The stored views equal a rebuild of the same history.
    let stored = view_rows(&pool).await.expect("stored views");
    let rebuild_log = knobs.log_dir.join("projections-rebuild.log");
    let rebuilt_ok = deployment
        .command(&rebuild_log)
        .args(["projections", "rebuild"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let rebuilt = view_rows(&pool).await.expect("rebuilt views");
    let mut view_diffs = Vec::new();
    for key in stored.keys().chain(rebuilt.keys()).collect::<BTreeSet<_>>() {
        let (before, after) = (stored.get(key), rebuilt.get(key));
        if before != after {
            view_diffs.push(format!(
                "{}/{}:\n    stored:  {}\n    rebuilt: {}",
                key.0,
                key.1,
                before.map_or("(none)", String::as_str),
                after.map_or("(none)", String::as_str)
            ));
        }
    }
    if !rebuilt_ok {
        failures.push(format!(
            "`restorable projections rebuild` failed:\n{}",
            tail(&rebuild_log, 20)
        ));
    }
    if !view_diffs.is_empty() {
        failures.push(format!(
            "{} stored view row(s) differ from a rebuild (projector caught up: \
             {projector_caught_up}):\n  {}",
            view_diffs.len(),
            view_diffs
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    // 6. No process exited by itself.
    if !deployment.self_exits.is_empty() {
        let mut text = format!(
            "{} process exit(s) nobody asked for:",
            deployment.self_exits.len()
        );
        for exit in &deployment.self_exits {
            let _ = write!(
                text,
                "\n  {} at t={:.1}s: {}; last log lines:\n    {}",
                exit.role,
                exit.at_secs,
                exit.status,
                exit.log_tail.replace('\n', "\n    ")
            );
        }
        failures.push(text);
    }

    // Figures.
    let first_close_after = |after: DateTime<Utc>| {
        closes
            .iter()
            .find(|(_, at, failed)| !failed && *at > after)
            .map(|(_, at, _)| (*at - after).to_std().unwrap_or_default())
    };
    let recovery =
        |after: DateTime<Utc>| first_close_after(after).map_or("never".to_owned(), fmt_secs);
    let failure_reasons: BTreeMap<String, usize> =
        failed_events.iter().fold(BTreeMap::new(), |mut m, e| {
            *m.entry(format!(
                "{}/{}",
                e.body["stage"].as_str().unwrap_or("?"),
                e.body["reason"].as_str().unwrap_or("?")
            ))
            .or_default() += 1;
            m
        });
    let mut figures: Vec<(String, String)> = vec![
        (
            "PBXes (healthy, one-minute schedule)".into(),
            format!(
                "{} ({} bytes of padding per backup, restore-tested every {} verified cycle(s))",
                knobs.pbxes, knobs.padding, knobs.restore_every
            ),
        ),
        (
            "processes".into(),
            "1 `serve` + 2 `worker --stage all` (shared data dir)".into(),
        ),
        ("fault phase".into(), fmt_secs(knobs.run)),
        ("seed of the kill schedule".into(), knobs.seed.to_string()),
        ("cycles opened".into(), opened.len().to_string()),
        (
            "cycles completed (closed, not failed)".into(),
            completed.to_string(),
        ),
        (
            "cycles completed during the fault phase".into(),
            closes
                .iter()
                .filter(|(_, at, failed)| !failed && *at <= faults_ended)
                .count()
                .to_string(),
        ),
        (
            "cycles lost or stuck (still in flight after settling)".into(),
            in_flight.len().to_string(),
        ),
        (
            "cycles with an event recorded twice".into(),
            duplicated_cycles.len().to_string(),
        ),
        (
            "false failures (Failed events)".into(),
            if failure_reasons.is_empty() {
                "0".into()
            } else {
                format!("{} ({failure_reasons:?})", failed_events.len())
            },
        ),
        (
            "false native backup alerts (captures' and the native watch's readings)".into(),
            native_alerts.len().to_string(),
        ),
        (
            "native watch readings (`NativeBackupsRead`)".into(),
            native_readings.to_string(),
        ),
        (
            "worker kills (SIGKILL)".into(),
            deployment.kills.to_string(),
        ),
        (
            "processes that exited by themselves".into(),
            deployment.self_exits.len().to_string(),
        ),
        (
            "time to the first completed cycle after start".into(),
            recovery(faults_began),
        ),
    ];
    for (n, outage) in deployment.outages.iter().enumerate() {
        figures.push((
            format!("outage {}: {} down", n + 1, outage.what),
            format!(
                "{} (from {} to {})",
                fmt_secs(outage.length),
                outage.began.format("%H:%M:%S"),
                outage.ended.format("%H:%M:%S")
            ),
        ));
        figures.push((
            format!(
                "outage {}: time to the first completed cycle after {} returned",
                n + 1,
                outage.what
            ),
            recovery(outage.ended),
        ));
        // Cycles the outage caught in flight (opened before it ended, not closed before it
        // began), and how long after its end the last of them closed.
        let caught: Vec<&String> = opened
            .iter()
            .filter(|(cycle, (_, at))| {
                *at < outage.ended
                    && !closes
                        .iter()
                        .any(|(c, closed_at, _)| c == *cycle && *closed_at < outage.began)
            })
            .map(|(cycle, _)| cycle)
            .collect();
        let last_close = caught
            .iter()
            .map(|cycle| closes.iter().find(|(c, _, _)| c == *cycle).map(|c| c.1))
            .collect::<Option<Vec<_>>>()
            .map(|at| at.into_iter().max());
        figures.push((
            format!(
                "outage {}: cycles caught in flight, and time after {} returned until all closed",
                n + 1,
                outage.what
            ),
            match last_close {
                _ if caught.is_empty() => "0".to_owned(),
                None => format!("{} (not all closed)", caught.len()),
                Some(last) => format!(
                    "{} ({})",
                    caught.len(),
                    last.map_or("-".to_owned(), |at| fmt_secs(
                        (at - outage.ended).to_std().unwrap_or_default()
                    ))
                ),
            },
        ));
    }
    figures.extend([
        (
            "settling time (faults stopped → nothing in flight)".into(),
            if settled {
                fmt_secs(settle_time)
            } else {
                format!("not settled within {}", fmt_secs(knobs.settle))
            },
        ),
        ("events in the store's log".into(), logged.len().to_string()),
        (
            "distinct events in the stream".into(),
            format!(
                "{streamed} ({missing} of the log missing; {stream_duplicates} published twice)"
            ),
        ),
        (
            "stored view rows differing from a rebuild".into(),
            format!(
                "{} of {}",
                view_diffs.len(),
                stored.len().max(rebuilt.len())
            ),
        ),
        (
            "exit of each process on SIGTERM at the end".into(),
            stop_exits
                .iter()
                .map(|(role, status)| format!("{role}: {status}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "wall time of the test".into(),
            fmt_secs(wall_start.elapsed()),
        ),
        (
            "result".into(),
            if failures.is_empty() {
                "PASS".into()
            } else {
                format!("FAIL ({} check(s))", failures.len())
            },
        ),
    ]);
    let _ = writeln!(report, "| figure | value |\n|---|---|");
    for (name, value) in &figures {
        let _ = writeln!(report, "| {name} | {} |", value.replace('|', "\\|"));
    }
    eprintln!("\nchaos figures:\n{report}");
    let summary = log_summary(&knobs.log_dir);
    eprintln!(
        "chaos: the most frequent ERROR/WARN log lines ({} distinct; logs in {}):",
        summary.len(),
        knobs.log_dir.display()
    );
    for (count, line) in summary.iter().take(25) {
        eprintln!("  {count:>5} × {line}");
    }
    if let Some(path) = &knobs.report {
        let mut text = report.clone();
        if !failures.is_empty() {
            text.push_str("\n### Failed checks\n\n");
            for failure in &failures {
                let _ = writeln!(text, "```text\n{failure}\n```\n");
            }
        }
        text.push_str("\n### Most frequent ERROR/WARN log lines\n\n```text\n");
        for (count, line) in summary.iter().take(25) {
            let _ = writeln!(text, "{count:>5} × {line}");
        }
        text.push_str("```\n");
        std::fs::write(path, text).expect("writing the report");
    }
    drop(pbxes);
    assert!(
        failures.is_empty(),
        "{} chaos check(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
