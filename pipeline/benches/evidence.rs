//! `audit verify`'s throughput (issue 14): an export of N events (default 1 million) of one
//! tenant — real event payloads (`Captured`, the largest of a cycle), chained exactly as the
//! store chains them, covered by one signed checkpoint with the tenant's Merkle proof among
//! 100 tenants — verified by [`verify_export`], timed; beside it, the physical ceiling on the
//! same file and machine: `sha256sum events.jsonl` (one SHA-256 pass over the bytes; the chain
//! hashes each line once more with the previous link).
//!
//! `cargo bench -p restorable-pipeline --bench evidence [-- EVENTS]` prints Markdown.

use std::io::Write;
use std::time::Instant;

use restorable_domain::cycle::{examples, BackupCycleEvent};
use restorable_domain::evidence::{
    inclusion_proof, link, merkle_root, ChainedEvent, TenantHead, GENESIS,
};
use restorable_pipeline::evidence::{
    verify_export, CheckpointHeader, ExportManifest, ExportedCheckpoint, LocalSigner, Signer,
    EXPORT_FORMAT,
};

#[tokio::main]
async fn main() {
    let events: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path();
    let signer = LocalSigner::open_or_create(&out.join("signing-key")).expect("key");
    let payload =
        serde_json::to_value(BackupCycleEvent::Captured(examples::captured())).expect("json");
    let writing = Instant::now();
    let mut lines =
        std::io::BufWriter::new(std::fs::File::create(out.join("events.jsonl")).expect("f"));
    let mut links =
        std::io::BufWriter::new(std::fs::File::create(out.join("links.txt")).expect("f"));
    let mut previous = GENESIS.to_owned();
    for index in 1..=events {
        let line = ChainedEvent {
            tenant: "acme".into(),
            index,
            aggregate_type: "BackupCycle".into(),
            aggregate_id: format!("00000000-0000-4000-8000-{index:012}"),
            sequence: 2,
            event_type: "Captured".into(),
            event_version: "1.0".into(),
            payload: payload.clone(),
            metadata: serde_json::json!({}),
        }
        .line();
        previous = link(&previous, &line);
        writeln!(lines, "{line}").expect("write");
        writeln!(links, "{previous}").expect("write");
    }
    lines.flush().expect("flush");
    links.flush().expect("flush");
    let mut heads: Vec<TenantHead> = (0..99)
        .map(|n| TenantHead {
            tenant: format!("tenant-{n:03}"),
            index: 10,
            head: link(GENESIS, &n.to_string()),
        })
        .collect();
    heads.push(TenantHead {
        tenant: "acme".into(),
        index: events,
        head: previous,
    });
    heads.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let position = heads.iter().position(|h| h.tenant == "acme").expect("acme");
    let header = CheckpointHeader {
        version: 1,
        sequence: 1,
        at: chrono::Utc::now(),
        key_id: signer.key_id(),
        root: merkle_root(&heads),
        leaves: heads.len(),
        previous: None,
    };
    let checkpoint = ExportedCheckpoint {
        signature: signer
            .sign(header.canonical().as_bytes())
            .await
            .expect("sign"),
        header,
        leaf: Some(heads[position].clone()),
        leaf_index: position,
        proof: inclusion_proof(&heads, position),
    };
    std::fs::write(
        out.join("checkpoints.jsonl"),
        serde_json::to_string(&checkpoint).expect("json") + "\n",
    )
    .expect("write");
    let manifest = ExportManifest {
        format: EXPORT_FORMAT.into(),
        tenant: "acme".into(),
        first_index: 1,
        last_index: events,
        start_link: GENESIS.into(),
        checkpoint_interval_seconds: 3600,
        exported_at: chrono::Utc::now(),
    };
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string(&manifest).expect("json"),
    )
    .expect("write");
    std::fs::write(
        out.join("keys.json"),
        serde_json::json!({ signer.key_id(): signer.public_key_hex() }).to_string(),
    )
    .expect("write");
    let written = writing.elapsed().as_secs_f64();
    let size = std::fs::metadata(out.join("events.jsonl"))
        .expect("size")
        .len();

    let verifying = Instant::now();
    let proven = verify_export(out).expect("readable").expect("intact");
    let verified = verifying.elapsed().as_secs_f64();
    assert_eq!(proven.events, u64::try_from(events).expect("events"));

    let hashing = Instant::now();
    let status = std::process::Command::new("sha256sum")
        .arg(out.join("events.jsonl"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sha256sum");
    assert!(status.success());
    let hashed = hashing.elapsed().as_secs_f64();
    let mib = size as f64 / (1024.0 * 1024.0);
    println!("| events | export size | written (chain computed) in | `audit verify` | verify rate | `sha256sum events.jsonl` (ceiling) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {events} | {mib:.0} MiB | {written:.1} s | {verified:.1} s | {:.0} events/s ({:.0} MiB/s) | {hashed:.1} s ({:.0} MiB/s) |",
        events as f64 / verified,
        mib / verified,
        mib / hashed
    );
}
