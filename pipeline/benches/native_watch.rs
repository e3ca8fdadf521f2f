//! The native backup watch's cost at fleet scale (issue 15): INSTANCES enrolled PBXes, spread
//! over SIMS simulators that speak the real XAPI over HTTP, all due; one sweep reads them all —
//! for each: the scheduler's index page, the instance's aggregate, its credentials unsealed, a
//! token, `BackupSettings` and the backups list, a `NativeBackupsRead` recorded — timed, then two
//! sweeps with nothing due (the first brings the scheduler's index up to the readings, the
//! second is the steady cost of looking). Beside it in the same run, the peer: a
//! bare HTTP client making the very same three calls per PBX at the same concurrency
//! ([`CONCURRENT_READS`]) with nothing recorded — what a monitoring script polling the PBXes
//! would cost (one client, its connections kept open across PBXes of one simulator; the watch
//! opens a client per PBX, as its PBXes are distinct hosts), and so what the watch adds on top
//! of the PBXes' own answers.
//! Then what the default period costs a fleet: reads per minute and one worker's share.
//!
//! `cargo bench -p restorable-pipeline --bench native_watch [-- INSTANCES SIMS]` prints Markdown.

use std::time::Instant;

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_pbx_sim::{RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, EnrolRequest};
use restorable_pipeline::native_watch::{sweep_at, CONCURRENT_READS, DEFAULT_EVERY_HOURS};
use restorable_pipeline::pipeline::PbxCredentials;
use restorable_pipeline::setup::Backends;
use restorable_pipeline::{Pipeline, Settings};
use secrecy::SecretString;

#[tokio::main]
async fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let instances = numbers.first().copied().unwrap_or(1000);
    let sims = numbers.get(1).copied().unwrap_or(20).max(1);
    let dir = tempfile::tempdir().expect("dir");
    let backends = Backends {
        data_dir: dir.path().join("data"),
        ..Backends::default()
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let mut pbxes = Vec::new();
    for n in 0..sims {
        let config = SimPbxConfig::new(&format!("watch-{n}"), n as u64);
        let pbx = RunningPbx::start(config, dir.path())
            .await
            .expect("simulator");
        pbxes.push(pbx);
    }
    let tenant = TenantId::new("bench").expect("tenant");
    let enrolling = Instant::now();
    for n in 0..instances {
        let pbx = &pbxes[n % sims];
        let config = pbx.config();
        enrol(
            &pipeline,
            EnrolRequest {
                tenant: tenant.clone(),
                name: format!("pbx-{n}"),
                fqdn: format!("pbx-{n}.example"),
                api_url: pbx.base_url(),
                credentials: PbxCredentials {
                    client_id: SecretString::from(config.client_id.clone()),
                    client_secret: SecretString::from(config.client_secret.clone()),
                },
                schedule: Schedule {
                    interval_minutes: 24 * 60,
                },
                restore_policy: RestorePolicy::default(),
            },
        )
        .await
        .expect("enrol");
    }
    let enrolled_in = enrolling.elapsed();

    let now = Utc::now();
    let started = Instant::now();
    let sweep = sweep_at(&pipeline, now).await.expect("sweep");
    let watch = started.elapsed();
    assert_eq!(sweep.read.len(), instances, "every PBX read: {sweep:?}");
    assert!(sweep.unreadable.is_empty(), "{:?}", sweep.unreadable);
    // The next sweep first brings the scheduler's index up to the readings just recorded; the
    // one after that is the steady cost of looking when nothing is due.
    let mut looking = Vec::new();
    for minutes in [10, 20] {
        let started = Instant::now();
        let idle = sweep_at(&pipeline, now + chrono::Duration::minutes(minutes))
            .await
            .expect("sweep");
        looking.push(started.elapsed());
        assert!(idle.read.is_empty(), "nothing due within the period");
    }

    let http = reqwest::Client::new();
    let targets: Vec<(String, String, String)> = (0..instances)
        .map(|n| {
            let pbx = &pbxes[n % sims];
            let config = pbx.config();
            (
                pbx.base_url(),
                config.client_id.clone(),
                config.client_secret.clone(),
            )
        })
        .collect();
    let started = Instant::now();
    let answered: usize = stream::iter(targets)
        .map(|(base, id, secret)| {
            let http = http.clone();
            async move { bare_read(&http, &base, &id, &secret).await }
        })
        .buffer_unordered(CONCURRENT_READS)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let bare = started.elapsed();
    assert_eq!(answered, instances, "the peer read every PBX");

    let rate = instances as f64 / watch.as_secs_f64();
    let bare_rate = instances as f64 / bare.as_secs_f64();
    println!(
        "| instances (simulators) | watch sweep, all due | rate | next sweep (index catches up), none due | steady sweep, none due | bare HTTP client, same 3 calls | rate |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {instances} ({sims}) | {:.2} s | {rate:.0} PBX/s | {:.1} ms | {:.1} ms | {:.2} s | {bare_rate:.0} PBX/s |",
        watch.as_secs_f64(),
        looking[0].as_secs_f64() * 1000.0,
        looking[1].as_secs_f64() * 1000.0,
        bare.as_secs_f64(),
    );
    println!();
    println!(
        "Enrolling the fleet took {:.1} s (not timed above). The watch reaches {:.0} % of the bare client's rate.",
        enrolled_in.as_secs_f64(),
        100.0 * rate / bare_rate
    );
    println!();
    println!(
        "What the default period ({DEFAULT_EVERY_HOURS} h) costs, at this rate on one worker:"
    );
    println!();
    println!("| fleet | PBXes read per minute | one worker's busy share |");
    println!("|---|---|---|");
    let period_secs = f64::from(DEFAULT_EVERY_HOURS) * 3600.0;
    for fleet in [1_000.0_f64, 10_000.0] {
        println!(
            "| {fleet:.0} | {:.1} | {:.2} % |",
            fleet / period_secs * 60.0,
            100.0 * fleet / rate / period_secs
        );
    }
    for pbx in pbxes {
        pbx.shutdown().await;
    }
}

/// One PBX read as a bare script would: a token, then `BackupSettings` and the backups list.
async fn bare_read(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
    }
    let Ok(answer) = http
        .post(format!("{base}/connect/token"))
        .form(&[
            ("client_id", id),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
    else {
        return false;
    };
    let Ok(token) = answer.json::<Token>().await else {
        return false;
    };
    for path in ["/xapi/v1/BackupSettings", "/xapi/v1/Backups"] {
        let answered = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token.access_token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let Ok(response) = answered else {
            return false;
        };
        if response.bytes().await.is_err() {
            return false;
        }
    }
    true
}
