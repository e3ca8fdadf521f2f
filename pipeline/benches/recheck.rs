//! The rotating re-checks' throughput and cost (issue 15): COPIES stored copies of SIZE MiB
//! each (random bytes, in the local vault under a compliance lock, Secured through the cycle
//! aggregate as the pipeline records them), all made due, then one sweep re-checks them —
//! read back, hashed, lock checked, `Rechecked` recorded — timed; beside it, the physical
//! ceiling on the same files and machine: `sha256sum` and `openssl dgst -sha256` over every
//! object (one hashing pass each).
//! Then what a fleet costs: the vault bytes a window reads per day per 1,000 PBXes, and the
//! worker time that takes at the measured rate.
//!
//! `cargo bench -p restorable-pipeline --bench recheck [-- COPIES SIZE_MIB]` prints Markdown.

use std::time::Instant;

use chrono::Utc;
use restorable_domain::cycle::{examples, BackupCycleCommand, Captured, CycleStarted, Secured};
use restorable_domain::ids::CycleId;
use restorable_domain::ladder::LockMode;
use restorable_pipeline::recheck::{index, sweep_at};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::vault::{LockMode as VaultLock, ObjectLock};
use restorable_pipeline::{Pipeline, Settings};

const MIB: usize = 1 << 20;

#[tokio::main]
async fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let copies = numbers.first().copied().unwrap_or(64);
    let size_mib = numbers.get(1).copied().unwrap_or(16);
    let dir = tempfile::tempdir().expect("dir");
    let backends = Backends {
        data_dir: dir.path().join("data"),
        ..Backends::default()
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let mut bytes = vec![0u8; size_mib * MIB];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let now = Utc::now();
    for n in 0..copies {
        bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let cycle = CycleId::random();
        let key = format!("acme/bench/{cycle}.zip");
        let retain_until = now + chrono::Duration::days(30);
        let lock = ObjectLock {
            mode: VaultLock::Compliance,
            retain_until,
        };
        let stored = pipeline
            .vault
            .put(&key, &mut &bytes[..], Some(lock))
            .await
            .expect("put");
        let id = cycle.to_string();
        let commands = [
            BackupCycleCommand::Start(CycleStarted {
                cycle_id: cycle,
                ..examples::started()
            }),
            BackupCycleCommand::RecordCaptured(Captured {
                object_key: key,
                version_id: stored.version_id,
                size: stored.size,
                sha256: stored.sha256.clone(),
                retain_until,
                captured_at: now,
                ..examples::captured()
            }),
            BackupCycleCommand::RecordSecured(Secured {
                sha256: stored.sha256,
                lock_mode: LockMode::Compliance,
                retain_until,
                secured_at: now,
            }),
        ];
        for command in commands {
            pipeline.store.cycle(&id, command).await.expect("command");
        }
    }
    let window = pipeline.settings.recheck_window;
    index::refresh(&pipeline.store, window, now)
        .await
        .expect("index");
    let due = now + window + chrono::Duration::minutes(1);
    let started = Instant::now();
    let sweep = sweep_at(&pipeline, due).await.expect("sweep");
    let sweep_secs = started.elapsed().as_secs_f64();
    assert_eq!(sweep.proven.len(), copies, "{sweep:?}");
    let objects = dir.path().join("data").join("vault").join("objects");
    let timed = |command: &str| {
        let started = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find . -type f -print0 | xargs -0 {command} > /dev/null"
            ))
            .current_dir(&objects)
            .status()
            .expect("peer");
        assert!(status.success(), "{command}");
        started.elapsed().as_secs_f64()
    };
    let peer_secs = timed("sha256sum");
    let openssl_secs = timed("openssl dgst -sha256");
    let total_mib = (copies * size_mib) as f64;
    let rate = total_mib / sweep_secs;
    println!(
        "| copies | bytes | re-check sweep | rate | `sha256sum` over the same objects | `openssl dgst -sha256` |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {copies} × {size_mib} MiB | {total_mib:.0} MiB | {sweep_secs:.2} s ({:.1} copies/s) | {rate:.0} MiB/s | {peer_secs:.2} s ({:.0} MiB/s) | {openssl_secs:.2} s ({:.0} MiB/s) |",
        copies as f64 / sweep_secs,
        total_mib / peer_secs,
        total_mib / openssl_secs
    );
    println!();
    println!(
        "What a fleet reads: 1,000 PBXes, one copy a day kept 30 days (30,000 copies), each read \
         once per {}-day window, at this rate on one worker:",
        window.num_days()
    );
    println!();
    println!("| average copy | vault bytes read per day | one worker's time per day |");
    println!("|---|---|---|");
    for average_mib in [10.0_f64, 100.0, 1024.0] {
        let per_day_mib = 30_000.0 * average_mib / window.num_days() as f64;
        let hours = per_day_mib / rate / 3600.0;
        println!(
            "| {} | {:.0} GiB | {hours:.2} h |",
            if average_mib >= 1024.0 {
                format!("{:.0} GiB", average_mib / 1024.0)
            } else {
                format!("{average_mib:.0} MiB")
            },
            per_day_mib / 1024.0
        );
    }
}
