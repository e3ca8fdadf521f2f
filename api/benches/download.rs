//! Downloading a 1 GiB backup through the API (issue 5): the body streams from the vault with
//! flat memory, and the bytes the client receives have the SHA-256 recorded at capture.
//!
//! A pipeline on a temp dir (embedded SQLite, local vault) captures one cycle of a simulated PBX
//! whose backup is padded to 1 GiB (`restorable-pbx-sim`, in this process) through the real
//! stages (`driver::run_until_closed`), then this process serves the API on a free port of
//! 127.0.0.1 and `curl` (a separate process) downloads `/api/v1/cycles/{id}/download` with an
//! owner's API token: once through `sha256sum` (compared with the SHA-256 of the backups view),
//! and three times to `/dev/null` for throughput. The peer is `python3 -m http.server` serving
//! the same stored file to the same `curl`. The server's memory is this process's: its peak RSS
//! (`VmHWM`) is reset (`/proc/self/clear_refs`) after setup, so the figure is the downloads'
//! own peak, and `VmRSS` before the downloads is the baseline.
//!
//! `cargo bench -p restorable-api --bench download [-- PADDING_BYTES]` (default 1 GiB) prints a
//! Markdown table. Needs `curl`, `sha256sum` and `python3`.

mod serving;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use restorable_api::auth::{Role, Scope};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_pbx_sim::{RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::runtime::driver::run_until_closed;
use restorable_pipeline::setup::Backends;
use secrecy::SecretString;
use tokio::process::Command;

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The largest file under `dir` (the stored copy in the local vault).
fn largest_file(dir: &Path) -> Option<(PathBuf, u64)> {
    let mut best: Option<(PathBuf, u64)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            largest_file(&path)
        } else {
            entry.metadata().ok().map(|m| (path, m.len()))
        };
        if let Some((path, len)) = found {
            if best.as_ref().is_none_or(|(_, b)| len > *b) {
                best = Some((path, len));
            }
        }
    }
    best
}

/// `curl` to `/dev/null`: (bytes, seconds as curl measured them).
async fn curl_to_null(url: &str, header: Option<&str>) -> (u64, f64) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "-f",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
    ]);
    if let Some(header) = header {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "curl {url}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut fields = text.split_whitespace();
    let bytes = fields
        .next()
        .and_then(|v| v.parse().ok())
        .expect("curl's size");
    let secs = fields
        .next()
        .and_then(|v| v.parse().ok())
        .expect("curl's time");
    (bytes, secs)
}

/// Best of three `curl` runs: (bytes, seconds).
async fn best_of_three(url: &str, header: Option<&str>) -> (u64, f64) {
    let mut best = curl_to_null(url, header).await;
    for _ in 0..2 {
        let run = curl_to_null(url, header).await;
        if run.1 < best.1 {
            best = run;
        }
    }
    best
}

#[tokio::main]
async fn main() {
    let padding: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1 << 30);
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        poll_interval: Duration::from_millis(200),
        ..Settings::default()
    };
    let pipeline = Pipeline::open(
        &Backends {
            data_dir: dir.path().join("data"),
            ..Backends::default()
        },
        settings,
    )
    .await
    .expect("pipeline");

    // One cycle of a PBX whose backup carries `padding` bytes of recordings.
    let setup = Instant::now();
    let sims = tempfile::tempdir().expect("tempdir");
    let mut config = SimPbxConfig::new("big-hq", 7);
    config.padding_bytes = padding;
    let pbx = RunningPbx::start(config, sims.path())
        .await
        .expect("simulator");
    let tenant = TenantId::new("bench").expect("slug");
    let instance = enrol(
        &pipeline,
        EnrolRequest {
            tenant: tenant.clone(),
            name: "big".into(),
            fqdn: "big.bench.example".into(),
            api_url: pbx.base_url(),
            credentials: PbxCredentials {
                client_id: SecretString::from(pbx.config().client_id.clone()),
                client_secret: SecretString::from(pbx.config().client_secret.clone()),
            },
            schedule: Schedule::DAILY,
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol");
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
        .await
        .expect("open a cycle");
    run_until_closed(
        &pipeline,
        HashSet::from([cycle]),
        0,
        Duration::from_secs(1800),
        |_| {},
    )
    .await
    .expect("the cycle closes");
    drop(pbx);
    drop(sims);
    let read = ReadSide::load(&pipeline.store).await.expect("views");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    let (sha256, size, rung) = {
        let row = restorable_pipeline::read_model::backup_row(&pipeline.store, &cycle)
            .await
            .expect("read the view")
            .expect("the cycle's row");
        (
            row.sha256.clone().expect("a captured copy has a SHA-256"),
            row.size.expect("a captured copy has a size"),
            row.rung,
        )
    };
    assert!(
        rung >= Rung::Secured,
        "the cycle reached {rung:?}, not Secured"
    );
    let served = serving::serve_api(
        &pipeline,
        &read,
        "owner@bench.example",
        Role::Owner,
        &Scope::Tenant(tenant.clone()),
    )
    .await;
    let (base, token) = (served.base.clone(), served.token.clone());
    let setup_secs = setup.elapsed().as_secs_f64();
    let (object, object_len) =
        largest_file(&dir.path().join("data")).expect("the stored copy in the vault");
    assert_eq!(object_len, size, "the stored copy is {object:?}");
    let url = format!("{base}/api/v1/cycles/{cycle}/download");
    let auth = format!("Authorization: Bearer {token}");

    // Memory: the peak so far is setup's (the simulator and the stages ran here); reset it.
    let setup_hwm = status_kib("VmHWM");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let baseline = status_kib("VmRSS");

    // 1. The bytes are the recorded ones: `curl | sha256sum`.
    let checked = Instant::now();
    let output = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; curl -sS -f -H \"$AUTH\" \"$URL\" | sha256sum",
        ])
        .env("AUTH", &auth)
        .env("URL", &url)
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("curl | sha256sum runs");
    let checked_secs = checked.elapsed().as_secs_f64();
    let peak_checked = status_kib("VmHWM");
    let reset = reset && std::fs::write("/proc/self/clear_refs", "5").is_ok();
    assert!(output.status.success(), "curl | sha256sum failed");
    let received = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(received, sha256, "the downloaded bytes' SHA-256");

    // 2. Throughput, best of three, against a plain static file server of the same file.
    let (ours_bytes, ours_secs) = best_of_three(&url, Some(&auth)).await;
    assert_eq!(ours_bytes, size, "the whole copy is downloaded");
    let peak_fast = status_kib("VmHWM");
    let peak = peak_checked.max(peak_fast);
    let after = status_kib("VmRSS");

    let serve_dir = object.parent().expect("the object's directory");
    let file = object
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 file name");
    let (mut python, port) = serving::static_peer(serve_dir).await;
    let peer_url = format!("http://127.0.0.1:{port}/{file}");
    let (peer_bytes, peer_secs) = best_of_three(&peer_url, None).await;
    assert_eq!(peer_bytes, size, "the peer serves the whole file");
    let peer_pid = python.id();
    let peer_rss = peer_pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    let _ = python.kill().await;

    let mb_s = |bytes: u64, secs: f64| bytes as f64 / secs / 1e6;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| copy | {size} bytes ({:.2} GiB), cycle reached {rung:?}; setup (capture → … → close) {setup_secs:.1} s |",
        size as f64 / f64::from(1u32 << 30)
    );
    println!("| SHA-256 of `curl … \\| sha256sum` | matches the recorded `{}…` ({checked_secs:.2} s, `sha256sum`-bound) |", &sha256[..16]);
    println!(
        "| server RSS before the downloads (after setup) | {:.1} MiB |",
        mib(baseline)
    );
    if reset {
        println!(
            "| server peak RSS during 4 downloads of the copy (`VmHWM` reset after setup) | **{:.1} MiB** (+{:.1} MiB over the baseline) |",
            mib(peak),
            mib(peak.saturating_sub(baseline))
        );
        println!(
            "| … of which: to a slow reader (`curl \\| sha256sum`, ~250 MB/s) / 3 fast ones (`curl -o /dev/null`) | {:.1} MiB / {:.1} MiB |",
            mib(peak_checked),
            mib(peak_fast)
        );
    } else {
        println!(
            "| server peak RSS (`VmHWM`, could not be reset: includes setup) | {:.1} MiB (setup's peak: {:.1} MiB) |",
            mib(peak),
            mib(setup_hwm)
        );
    }
    println!("| server RSS after the downloads | {:.1} MiB |", mib(after));
    println!(
        "| Restorable `GET /api/v1/cycles/{{id}}/download` → `curl -o /dev/null` (best of 3) | {ours_secs:.2} s — {:.0} MB/s |",
        mb_s(size, ours_secs)
    );
    println!(
        "| peer: `python3 -m http.server`, same file → `curl -o /dev/null` (best of 3) | {peer_secs:.2} s — {:.0} MB/s{} |",
        mb_s(size, peer_secs),
        peer_rss.map_or(String::new(), |k| format!(", its peak RSS {:.1} MiB", mib(k)))
    );
    println!(
        "| setup's own peak RSS (simulator + stages in this process) | {:.1} MiB |",
        mib(setup_hwm)
    );
    served.stop().await;
    pipeline.store.close().await;
}
