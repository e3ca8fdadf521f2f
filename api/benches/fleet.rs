//! The fleet page (`/`) and the fleet API (`/api/v1/fleet`) at 10,000 instances, under a load
//! tool (issue 5; target: p99 under 50 ms).
//!
//! A pipeline on a scratch PostgreSQL database gets 10,000 enrolled instances in 100 tenants
//! (100 each), each with one cycle up the ladder written through the aggregates (started,
//! captured, secured, verified; every 7th also restore-tested, every 10th failed at verify
//! instead), the projector's views are built, and the API is served on a free port of 127.0.0.1
//! in this process. `wrk` (a separate process, on the same 2-core machine) then loads each
//! endpoint with a `*`-scoped viewer's API token — the whole fleet as JSON, the fleet page's
//! first and last pages (200 rows each), one tenant's page and JSON, the Alerts page (an open
//! Backup Failed alert per failed instance: 1,000), the Audit page (an audited enrolment per
//! instance: its newest 100, and a filter matching none, which reads its 2,000-record bound),
//! and `/api/v1/alerts` as the floor (token lookup, routing, and the alerts held in memory) —
//! and the peer: the same JSON and
//! page as static files from `python3 -m http.server`, under the same load. Then the
//! whole-fleet JSON and the first page again while the fleet changes (the projector running,
//! one instance stopped or resumed every second), so cached answers are rendered again every
//! second. A Markdown table of requests/s, p50, p90, p99 and the response size is printed.
//! Before the load, in-process on the same rows: what a full-fleet answer costs (rows, JSON)
//! and what two cheaper ways of building it would cost (borrowed rows into a sized buffer;
//! timestamps without a strftime pattern).
//!
//! `cargo bench -p restorable-api --bench fleet [-- INSTANCES [SECONDS [CONNECTIONS]]]`
//! (defaults 10000, 10, 8; the connections are also run with 1, a single user). Needs
//! PostgreSQL (`RESTORABLE_TEST_DATABASE_URL`, see `scripts/services.sh`) and `wrk`.

mod serving;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{Datelike, Timelike, Utc};
use futures_util::stream::{self, StreamExt};
use restorable_api::auth::{Credential, Principal, Role, Scope};
use restorable_api::json::{fleet_entries, FleetFilter};
use restorable_api::pages::{ALERTS_PAGE_ROWS, AUDIT_PAGE_ROWS, FLEET_PAGE_ROWS};
use restorable_api::AppState;
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::cycle::{
    examples, BackupCycleCommand, Captured, CycleStarted, Failed, RestoreTested, Secured, Verified,
};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{CycleClosed, InstanceCommand, RestorePolicy, Schedule};
use restorable_domain::ladder::{FailureReason, LockMode, Rung, Stage, Trigger};
use restorable_pipeline::enrolment::{enrol, ensure_tenant_key, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::setup::Backends;
use restorable_projections::fleet::{FleetRow, Status};
use restorable_testkit::{test_server_url, ScratchDatabase};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// A fleet row as the API answers it, borrowed from the view.
#[derive(serde::Serialize)]
struct Borrowed<'a> {
    #[serde(flatten)]
    row: &'a FleetRow,
    status: Status,
}

/// Instances per tenant.
const PER_TENANT: usize = 100;

/// The `wrk` script: headers come from the command line; this prints the figures on one line
/// (latencies in microseconds).
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, latency:percentile(90)))
end
"#;

fn tenant(n: usize) -> TenantId {
    TenantId::new(&format!("t-{:04}", n / PER_TENANT)).expect("a valid slug")
}

/// Enrols instance `n` and takes one cycle of it up the ladder (or to a failure).
async fn one_instance(pipeline: Pipeline, n: usize) {
    let tenant = tenant(n);
    let instance = enrol(
        &pipeline,
        EnrolRequest {
            tenant: tenant.clone(),
            name: format!("pbx-{n:05}"),
            fqdn: format!("pbx-{n:05}.{}.example", tenant.as_str()),
            api_url: format!("https://pbx-{n:05}.{}.example", tenant.as_str()),
            credentials: PbxCredentials {
                client_id: SecretString::from(format!("client-{n}")),
                client_secret: SecretString::from("bench-secret-not-used".to_owned()),
            },
            schedule: Schedule::DAILY,
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol");
    let cycle: CycleId = open_cycle(&pipeline, instance, Trigger::Scheduled)
        .await
        .expect("open a cycle");
    let id = cycle.to_string();
    let now = Utc::now();
    let sha256 = format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15);
    let retain_until = now + chrono::Duration::days(30);
    let mut commands = vec![
        BackupCycleCommand::Start(CycleStarted {
            cycle_id: cycle,
            tenant_id: tenant.clone(),
            instance_id: instance,
            trigger: Trigger::Scheduled,
            started_at: now,
        }),
        BackupCycleCommand::RecordCaptured(Captured {
            object_key: format!("{}/{instance}/{cycle}.zip", tenant.as_str()),
            pbx_file_name: format!("restorable-{n}.zip"),
            sha256: sha256.clone(),
            size: 40_000_000 + n as u64,
            retain_until,
            captured_at: now,
            ..examples::captured()
        }),
        BackupCycleCommand::RecordSecured(Secured {
            sha256,
            lock_mode: LockMode::Compliance,
            retain_until,
            secured_at: now,
        }),
    ];
    let (reached, failed) = if n % 10 == 3 {
        commands.push(BackupCycleCommand::RecordFailure(Failed {
            failed_at: now,
            ..examples::failed(Stage::Verify, FailureReason::WrongKey)
        }));
        (Rung::Secured, true)
    } else {
        commands.push(BackupCycleCommand::RecordVerified(Verified {
            verified_at: now,
            ..examples::verified()
        }));
        if n.is_multiple_of(7) {
            commands.push(BackupCycleCommand::RecordRestoreTested(RestoreTested {
                restore_tested_at: now,
                ..examples::restore_tested()
            }));
            (Rung::RestoreTested, false)
        } else {
            (Rung::Verified, false)
        }
    };
    for command in commands {
        pipeline
            .store
            .cycle(&id, command)
            .await
            .expect("cycle command");
    }
    pipeline
        .store
        .instance(
            &instance.to_string(),
            InstanceCommand::CloseCycle(CycleClosed {
                cycle_id: cycle,
                reached,
                failed,
                retryable: false,
                restore_tested_copy: None,
                closed_at: now,
            }),
        )
        .await
        .expect("close the cycle");
    if failed {
        pipeline
            .store
            .alerts(
                &instance.to_string(),
                AlertCommand::Raise(AlertRaised {
                    alert_id: String::new(),
                    kind: AlertKind::BackupFailed,
                    tenant_id: tenant.clone(),
                    instance_id: instance,
                    cycle_id: Some(cycle),
                    stage: Some(Stage::Verify),
                    reason: Some(FailureReason::WrongKey),
                    detail: "the archive did not open with the tenant's key".into(),
                    raised_at: now,
                    position: i64::MAX,
                }),
            )
            .await
            .expect("raise");
    }
}

/// The audited enrolment of every instance of the tenant of instance `first`, one after another
/// (a tenant's trail is one aggregate: its records are written in turn).
async fn audit_tenant(pipeline: Pipeline, first: usize, instances: usize) {
    let tenant = tenant(first);
    for n in first..(first + PER_TENANT).min(instances) {
        let instance = InstanceId::for_name(&tenant, &format!("pbx-{n:05}"));
        pipeline
            .store
            .audit(
                tenant.as_str(),
                ActionRecorded {
                    tenant_id: tenant.clone(),
                    actor: format!("admin@{}.example", tenant.as_str()),
                    action: AuditAction::Enrol,
                    instance_id: Some(instance),
                    cycle_id: None,
                    key_version: None,
                    at: Utc::now(),
                },
            )
            .await
            .expect("audit");
    }
}

/// One `wrk` run's figures.
struct Load {
    requests: u64,
    seconds: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    bad_status: u64,
    socket_errors: u64,
    timeouts: u64,
}

async fn wrk(url: &str, token: &str, script: &std::path::Path, secs: u64, conns: u32) -> Load {
    let threads = conns.clamp(1, 2);
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "--timeout",
            "10s",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .await
        .expect("wrk runs (Debian package wrk; scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from wrk: {text}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().expect("wrk prints whole numbers"))
        .collect();
    assert_eq!(f.len(), 10, "wrk's RESULT line: {line}");
    let ms = |us: u64| us as f64 / 1000.0;
    Load {
        requests: f[0],
        seconds: f[1] as f64 / 1e6,
        p50_ms: ms(f[3]),
        p99_ms: ms(f[4]),
        max_ms: ms(f[5]),
        bad_status: f[6],
        socket_errors: f[7],
        timeouts: f[8],
        p90_ms: ms(f[9]),
    }
}

/// Loads one endpoint: a single request first (right answer, its size), then `wrk`.
struct EndpointLoad<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    script: &'a std::path::Path,
    seconds: u64,
}

impl<'a> EndpointLoad<'a> {
    fn new(
        http: &'a reqwest::Client,
        base: &'a str,
        token: &'a str,
        script: &'a std::path::Path,
        seconds: u64,
    ) -> Self {
        Self {
            http,
            base,
            token,
            script,
            seconds,
        }
    }

    /// The table row of `path` under `conns` connections.
    async fn row(&self, label: &str, path: &str, shown: usize, conns: u32) -> String {
        let url = format!("{}{path}", self.base);
        let one = Instant::now();
        let response = self
            .http
            .get(&url)
            .bearer_auth(self.token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let body = response.bytes().await.expect("body");
        let single_ms = one.elapsed().as_secs_f64() * 1000.0;
        let marker: &[u8] = if path.starts_with("/api") {
            b"\"instance_id\""
        } else if path.starts_with("/audit") {
            b"<tr data-position="
        } else {
            b"<tr data-instance="
        };
        let found = body.windows(marker.len()).filter(|w| *w == marker).count();
        assert_eq!(found, shown, "{path} shows the rows it should");
        let load = wrk(&url, self.token, self.script, self.seconds, conns).await;
        assert_eq!(
            load.bad_status + load.socket_errors + load.timeouts,
            0,
            "{path}: every request answered 200"
        );
        eprintln!(
            "fleet bench: {path} with {conns} connection(s): {} requests",
            load.requests
        );
        format!(
            "| {label} | {shown} | {conns} | {:.0} | {:.1} ms | {:.1} ms | **{:.1} ms** | {:.1} ms | {:.2} MB | {single_ms:.1} ms |",
            load.requests as f64 / load.seconds,
            load.p50_ms,
            load.p90_ms,
            load.p99_ms,
            load.max_ms,
            body.len() as f64 / 1e6,
        )
    }
}

/// The peer: the same two answers (whole-fleet JSON, first page) as static files served by
/// `python3 -m http.server` — no rendering, no token lookup, no views — loaded the same way.
async fn peer_rows(
    load: &EndpointLoad<'_>,
    dir: &std::path::Path,
    shown: [usize; 2],
    connections: u32,
) -> Vec<String> {
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).expect("the peer's directory");
    let files = [("fleet.json", "/api/v1/fleet"), ("page.html", "/")];
    for (file, path) in files {
        let body = load
            .http
            .get(format!("{}{path}", load.base))
            .bearer_auth(load.token)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body");
        std::fs::write(peer_dir.join(file), &body).expect("write the peer's file");
    }
    let (mut server, port) = serving::static_peer(&peer_dir).await;
    let peer_base = format!("http://127.0.0.1:{port}");
    let mut rows = Vec::new();
    for ((file, _), shown) in files.into_iter().zip(shown) {
        let url = format!("{peer_base}/{file}");
        let size = std::fs::metadata(peer_dir.join(file)).expect("size").len();
        for conns in [1, connections] {
            let run = wrk(&url, load.token, load.script, load.seconds, conns).await;
            assert_eq!(
                run.bad_status + run.socket_errors + run.timeouts,
                0,
                "the peer answered every request"
            );
            rows.push(format!(
                "| peer: `python3 -m http.server`, `{file}` (the same bytes as a static file) | {shown} | {conns} | {:.0} | {:.1} ms | {:.1} ms | **{:.1} ms** | {:.1} ms | {:.2} MB | — |",
                run.requests as f64 / run.seconds,
                run.p50_ms,
                run.p90_ms,
                run.p99_ms,
                run.max_ms,
                size as f64 / 1e6,
            ));
        }
    }
    let _ = server.kill().await;
    rows
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let instances = args.first().map_or(10_000, |&n| n as usize);
    let seconds = args.get(1).copied().unwrap_or(10);
    let connections = args.get(2).map_or(8, |&c| c as u32);

    let database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("a PostgreSQL server (RESTORABLE_TEST_DATABASE_URL; source scripts/services.sh)");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::open(
        &Backends {
            data_dir: dir.path().join("data"),
            database_url: Some(database.url().to_owned()),
            ..Backends::default()
        },
        Settings::default(),
    )
    .await
    .expect("pipeline");

    let started = Instant::now();
    for t in (0..instances).step_by(PER_TENANT) {
        ensure_tenant_key(&pipeline, &tenant(t))
            .await
            .expect("tenant key");
    }
    stream::iter(0..instances)
        .map(|n| tokio::spawn(one_instance(pipeline.clone(), n)))
        .buffer_unordered(32)
        .for_each(|done| async move { done.expect("an instance's history") })
        .await;
    stream::iter((0..instances).step_by(PER_TENANT))
        .map(|first| tokio::spawn(audit_tenant(pipeline.clone(), first, instances)))
        .buffer_unordered(32)
        .for_each(|done| async move { done.expect("a tenant's audit trail") })
        .await;
    let written = started.elapsed();
    let started = Instant::now();
    let read = ReadSide::load(&pipeline.store).await.expect("views");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    let folded = started.elapsed();
    let rows = read.read().fleet.rows().len();
    assert_eq!(rows, instances, "every instance has a fleet row");
    eprintln!(
        "fleet bench: wrote {instances} instances' histories in {:.1} s; views built in {:.1} s",
        written.as_secs_f64(),
        folded.as_secs_f64()
    );

    let served = serving::serve_api(
        &pipeline,
        &read,
        "viewer@provider.example",
        Role::Viewer,
        &Scope::All,
    )
    .await;
    let (base, token) = (&served.base, &served.token);
    // The same views, for timing a rendering in-process.
    let state = AppState::new(pipeline.clone(), read.clone());

    // Where a full-fleet request's time goes, in-process: the rows (filter, clone, status) and
    // their JSON, medians of 21.
    let principal = Principal {
        actor: "bench".into(),
        role: Role::Viewer,
        scope: Scope::All,
        credential: Credential::Token,
    };
    let (mut rows_ms, mut json_ms) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let at = Instant::now();
        let entries =
            fleet_entries(&state, &principal, &FleetFilter::default()).expect("the fleet rows");
        rows_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        let at = Instant::now();
        let json = serde_json::to_vec(&entries).expect("JSON");
        json_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(entries.len(), instances, "{} bytes", json.len());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rows_ms, json_ms) = (median(&mut rows_ms), median(&mut json_ms));

    // What the two changes the profile points at would save, measured here on the same rows:
    // JSON of the rows borrowed under the lock (no clone) into a buffer sized like the last
    // answer, and the page's 4 timestamps per row formatted without re-parsing a strftime pattern.
    let (mut borrowed_ms, mut strftime_ms, mut direct_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_len = 0;
    for _ in 0..21 {
        let at = Instant::now();
        let now = Utc::now();
        let model = read.read();
        let rows: Vec<Borrowed<'_>> = model
            .fleet
            .rows()
            .into_iter()
            .map(|row| Borrowed {
                status: row.status(now),
                row,
            })
            .collect();
        let mut json = Vec::with_capacity(last_len + 4096);
        serde_json::to_writer(&mut json, &rows).expect("JSON");
        drop(rows);
        drop(model);
        last_len = json.len();
        borrowed_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        let model = read.read();
        let stamps: Vec<_> = model
            .fleet
            .rows()
            .into_iter()
            .flat_map(|r| {
                [
                    r.last_cycle_at,
                    r.last_secured,
                    r.last_verified,
                    r.last_restore_tested,
                ]
            })
            .collect();
        drop(model);
        let at = Instant::now();
        let mut out = String::new();
        for t in &stamps {
            out.push_str(&t.map_or("—".to_owned(), |t| {
                t.format("%Y-%m-%d %H:%M UTC").to_string()
            }));
        }
        strftime_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        let at = Instant::now();
        let mut direct = String::with_capacity(out.len());
        for t in &stamps {
            match t {
                Some(t) => {
                    let _ = write!(
                        direct,
                        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                        t.year(),
                        t.month(),
                        t.day(),
                        t.hour(),
                        t.minute()
                    );
                }
                None => direct.push('—'),
            }
        }
        direct_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(out, direct, "the same text");
    }
    let (borrowed_ms, strftime_ms, direct_ms) = (
        median(&mut borrowed_ms),
        median(&mut strftime_ms),
        median(&mut direct_ms),
    );

    let script = dir.path().join("report.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("write the wrk script");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let first_tenant = tenant(0);
    let pages = instances.div_ceil(FLEET_PAGE_ROWS).max(1);
    let endpoints = [
        (
            "`GET /api/v1/fleet` (JSON, whole fleet)",
            "/api/v1/fleet".to_owned(),
            instances,
        ),
        (
            "`GET /` (fleet page, page 1)",
            "/".to_owned(),
            FLEET_PAGE_ROWS.min(instances),
        ),
        (
            "`GET /?page=…` (fleet page, last page)",
            format!("/?page={pages}"),
            instances - (pages - 1) * FLEET_PAGE_ROWS,
        ),
        (
            "`GET /?tenant=…` (page, one tenant)",
            format!("/?tenant={}", first_tenant.as_str()),
            PER_TENANT.min(instances),
        ),
        (
            "`GET /api/v1/fleet?tenant=…` (JSON, one tenant)",
            format!("/api/v1/fleet?tenant={}", first_tenant.as_str()),
            PER_TENANT.min(instances),
        ),
        (
            "`GET /alerts` (Alerts page, page 1 of the open alerts)",
            "/alerts".to_owned(),
            ALERTS_PAGE_ROWS.min(instances / 10),
        ),
        (
            "`GET /audit` (Audit page, the newest of every tenant)",
            "/audit".to_owned(),
            AUDIT_PAGE_ROWS.min(instances),
        ),
        (
            "`GET /audit?action=download` (Audit page, a filter matching none)",
            "/audit?action=download".to_owned(),
            0,
        ),
        (
            "`GET /api/v1/alerts` (the floor: token lookup, routing, the alerts held)",
            "/api/v1/alerts".to_owned(),
            instances / 10,
        ),
    ];
    let mut lines = Vec::new();
    for (label, path, shown) in &endpoints {
        let load = EndpointLoad::new(&http, base, token, &script, seconds);
        for conns in [1, connections] {
            lines.push(load.row(label, path, *shown, conns).await);
        }
    }

    lines.extend(
        peer_rows(
            &EndpointLoad::new(&http, base, token, &script, seconds),
            dir.path(),
            [instances, FLEET_PAGE_ROWS.min(instances)],
            connections,
        )
        .await,
    );

    // The same answers while the fleet changes: the projector follows the log and one instance
    // is stopped or resumed every second, so every cached answer is rendered again each second.
    let shutdown = CancellationToken::new();
    let projector = tokio::spawn(read.clone().run(
        pipeline.store.clone(),
        Duration::from_secs(3600),
        shutdown.clone(),
    ));
    let changing = read.read().fleet.rows()[0].instance_id.to_string();
    let churn = tokio::spawn({
        let pipeline = pipeline.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut stopped = false;
            let mut changes = 0_u64;
            while !shutdown.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let at = Utc::now();
                let command = if stopped {
                    InstanceCommand::Resume { at }
                } else {
                    InstanceCommand::Stop { at }
                };
                pipeline
                    .store
                    .instance(&changing, command)
                    .await
                    .expect("stop or resume");
                stopped = !stopped;
                changes += 1;
            }
            changes
        }
    });
    let before = read.position();
    for (label, path, shown) in &endpoints[..2] {
        let load = EndpointLoad::new(&http, base, token, &script, seconds);
        let label = format!("{label}, one change a second");
        lines.push(load.row(&label, path, *shown, connections).await);
    }
    assert!(read.position() > before, "the views moved during the load");
    println!(
        "| endpoint | instances shown | connections | requests/s | p50 | p90 | p99 | max | response body | one request alone |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!();
    println!(
        "{instances} instances in {} tenants; histories written in {:.1} s, views built in {:.1} s; \
         `wrk` {seconds} s per row, with a `*`-scoped viewer's API token.",
        instances.div_ceil(PER_TENANT),
        written.as_secs_f64(),
        folded.as_secs_f64()
    );
    println!(
        "In-process, one full-fleet request (medians of 21): the rows (scope and filter, clone of \
         {instances} rows, status) {rows_ms:.1} ms; `serde_json` of them {json_ms:.1} ms; the HTML \
         page builds its markup from the same rows instead of the JSON."
    );
    println!(
        "Measured alternatives on the same rows: rows borrowed under the lock (no clone) and \
         serialized into a buffer sized like the last answer {borrowed_ms:.1} ms (vs \
         {:.1} ms); the page's {} timestamps with `format(\"%Y-%m-%d %H:%M UTC\")` \
         {strftime_ms:.1} ms vs `write!` of the fields {direct_ms:.1} ms.",
        rows_ms + json_ms,
        instances * 4
    );
    shutdown.cancel();
    let changes = churn.await.expect("the changes");
    eprintln!("fleet bench: {changes} changes during the changing rows");
    let _ = tokio::time::timeout(Duration::from_secs(10), projector).await;
    served.stop().await;
    pipeline.store.close().await;
}
