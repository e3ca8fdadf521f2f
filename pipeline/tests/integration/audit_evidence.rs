//! The tamper-evident history, on SQLite and PostgreSQL: every command's events are chained per
//! tenant in the transaction that stores them (also under concurrent writers and across a
//! reopen); `audit check` finds nothing on an untouched store and names precisely each kind of
//! tampering through SQL — an edited payload, a deleted row, an inserted row, two rows swapped,
//! a truncated tail, a rewrite that recomputes the links, a removed checkpoint — and an export
//! of one tenant verifies offline, holds nothing of the other tenant, and names an edited,
//! removed or reordered line; a restore certificate is signed, a changed byte is found
//! offline, and its public standing follows the history.

use chrono::{DateTime, TimeZone, Utc};
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted};
use restorable_domain::evidence::{link, GENESIS};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::Trigger;
use restorable_pipeline::evidence::{
    certificate_fault, certificate_standing, check_live, export_tenant, issue_certificate,
    verify_export, write_checkpoint, Break, Certificate, EvidenceSchedule, ExportRange,
    ExportSummary, LocalSigner, Standing, CHECKPOINT_PREFIX, CHECKPOINT_RETENTION,
};
use restorable_pipeline::store::Store;
use restorable_pipeline::vault::LocalVault;
use restorable_testkit::{test_server_url, ScratchDatabase};
use rstest::rstest;
use std::path::Path;

use super::evidence_support::{enrol, open_pipeline, tampered_alerts, verify_with_events};

struct Fixture {
    store: Store,
    vault: LocalVault,
    signer: LocalSigner,
    dir: tempfile::TempDir,
    _database: Option<ScratchDatabase>,
}

async fn fixture(postgres: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let (store, database) = if postgres {
        let database = ScratchDatabase::create(&test_server_url())
            .await
            .expect("PostgreSQL for tests");
        let store = Store::connect(database.url()).await.expect("connect");
        (store, Some(database))
    } else {
        (Store::open(dir.path()).await.expect("open"), None)
    };
    let vault = LocalVault::open(dir.path().join("vault")).expect("vault");
    let signer = LocalSigner::open_or_create(&dir.path().join("signing-key")).expect("key");
    Fixture {
        store,
        vault,
        signer,
        dir,
        _database: database,
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant")
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::minutes(minute)
}

/// Enrols `name` of `tenant`, runs `cycles` cycles to Verified and records an audit action.
async fn history(store: &Store, tenant_name: &str, name: &str, cycles: usize) {
    let tenant = tenant(tenant_name);
    let instance = enrol(store, &tenant, name, at(0)).await;
    for n in 0..cycles {
        let cycle = CycleId::random();
        let id = cycle.to_string();
        let commands = [
            BackupCycleCommand::Start(CycleStarted {
                cycle_id: cycle,
                instance_id: instance,
                tenant_id: tenant.clone(),
                trigger: Trigger::Scheduled,
                started_at: at(i64::try_from(n).unwrap_or(0)),
            }),
            BackupCycleCommand::RecordCaptured(examples::captured()),
            BackupCycleCommand::RecordSecured(examples::secured()),
            BackupCycleCommand::RecordVerified(examples::verified()),
        ];
        for command in commands {
            store.cycle(&id, command).await.expect("cycle");
        }
    }
    store
        .audit(
            tenant.as_str(),
            ActionRecorded {
                tenant_id: tenant.clone(),
                actor: "owner@example".into(),
                action: AuditAction::BackupNow,
                instance_id: Some(instance),
                cycle_id: None,
                key_version: None,
                at: at(1),
            },
        )
        .await
        .expect("audit");
}

/// Recomputes a tenant's chain from the events as stored; the number of places.
async fn recomputed(store: &Store, tenant: &str) -> usize {
    let rows = store.chain_rows(tenant, 0, 100_000).await.expect("rows");
    let mut previous = GENESIS.to_owned();
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(
            row.index,
            i64::try_from(n).unwrap_or(0) + 1,
            "indexes in order"
        );
        let event = row.event.as_ref().expect("the event is there");
        assert_eq!(event.tenant, tenant);
        previous = link(&previous, &event.line());
        assert_eq!(previous, row.hash, "link {}", row.index);
    }
    rows.len()
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn every_event_is_chained_in_its_tenants_chain_under_concurrent_writers_and_a_reopen(
    #[case] postgres: bool,
) {
    let f = fixture(postgres).await;
    let mut writers = Vec::new();
    for n in 0..6 {
        let store = f.store.clone();
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        writers.push(tokio::spawn(async move {
            history(&store, tenant, &format!("pbx-{n}"), 3).await;
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    // 3 instances per tenant × (1 enrolment + 3 cycles × 4 events + 1 audit record).
    assert_eq!(recomputed(&f.store, "acme").await, 3 * (1 + 3 * 4 + 1));
    assert_eq!(recomputed(&f.store, "globex").await, 3 * (1 + 3 * 4 + 1));
    assert!(f
        .store
        .unchained_events(10)
        .await
        .expect("unchained")
        .is_empty());
    // A reopen neither re-chains nor breaks anything; new events continue the chain.
    let reopened = other_process(&f).await;
    history(&reopened, "acme", "pbx-late", 1).await;
    assert_eq!(recomputed(&reopened, "acme").await, 3 * 14 + 1 + 4 + 1);
    let report = check_live(&reopened, &f.vault).await.expect("check");
    assert!(report.intact(), "{:?}", report.breaks);
}

/// A store with two tenants' history and one checkpoint.
async fn checkpointed(postgres: bool) -> Fixture {
    let f = fixture(postgres).await;
    history(&f.store, "acme", "hq", 2).await;
    history(&f.store, "globex", "branch", 1).await;
    write_checkpoint(&f.store, &f.vault, &f.signer, CHECKPOINT_RETENTION)
        .await
        .expect("checkpoint");
    let report = check_live(&f.store, &f.vault).await.expect("check");
    assert!(report.intact(), "{:?}", report.breaks);
    assert_eq!(
        (report.tenants, report.checkpoints, report.events),
        (2, 1, 10 + 6)
    );
    f
}

/// Exports acme's history of `range` to `out`.
async fn export(f: &Fixture, out: &Path, range: ExportRange) -> ExportSummary {
    export_tenant(
        &f.store,
        &f.vault,
        &f.signer,
        "acme",
        out,
        range,
        &EvidenceSchedule::default(),
    )
    .await
    .expect("export")
}

/// The break `audit check` reports for acme's chain, or for the store as a whole (`*`).
async fn break_found(f: &Fixture) -> (String, Break) {
    let report = check_live(&f.store, &f.vault).await.expect("check");
    assert!(!report.intact(), "the tampering is found");
    report.breaks.into_iter().next().expect("a break")
}

/// acme's event at chain index `index`: (aggregate type, id, sequence).
async fn place(store: &Store, index: i64) -> (String, String, i64) {
    let rows = store.chain_rows("acme", index - 1, 1).await.expect("rows");
    let event = rows[0].event.clone().expect("event");
    (event.aggregate_type, event.aggregate_id, event.sequence)
}

fn cast(postgres: bool, text: &str) -> String {
    if postgres {
        format!("CAST({text} AS jsonb)")
    } else {
        text.to_owned()
    }
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_edited_payload_is_named_by_its_index(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    let (kind, id, sequence) = place(&f.store, 3).await;
    f.store
        .execute_sql(&format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = '{kind}' \
             AND aggregate_id = '{id}' AND sequence = {sequence}",
            cast(postgres, "'{\"Captured\": {\"edited\": true}}'")
        ))
        .await
        .expect("edit");
    let (tenant, broken) = break_found(&f).await;
    assert_eq!(tenant, "acme");
    assert!(
        matches!(&broken, Break::Altered { index: 3, at } if at.contains(&id)),
        "{broken}"
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_deleted_row_is_named_as_removed(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    let (kind, id, sequence) = place(&f.store, 4).await;
    f.store
        .execute_sql(&format!(
            "DELETE FROM events WHERE aggregate_type = '{kind}' AND aggregate_id = '{id}' \
             AND sequence = {sequence}"
        ))
        .await
        .expect("delete");
    assert_eq!(
        break_found(&f).await,
        ("acme".into(), Break::Removed { index: 4 })
    );
    // Deleting its link too leaves a gap in the indexes: the same place is named.
    f.store
        .execute_sql("DELETE FROM event_chain WHERE tenant = 'acme' AND tenant_index = 4")
        .await
        .expect("delete link");
    assert_eq!(
        break_found(&f).await,
        ("acme".into(), Break::Removed { index: 4 })
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_inserted_row_is_named_by_its_position(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    f.store
        .execute_sql(&format!(
            "INSERT INTO events VALUES ('AuditTrail', 'acme', 99, 'ActionRecorded', '1.0', {}, {})",
            cast(
                postgres,
                "'{\"ActionRecorded\": {\"tenant_id\": \"acme\"}}'"
            ),
            cast(postgres, "'{}'")
        ))
        .await
        .expect("insert");
    let (scope, broken) = break_found(&f).await;
    assert_eq!(scope, "*");
    assert!(
        matches!(&broken, Break::Inserted { at, .. } if at.contains("AuditTrail acme #99")),
        "{broken}"
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn two_swapped_rows_are_named_at_the_first(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    // The first cycle's CycleStarted and the second's.
    let (_, a, _) = place(&f.store, 2).await;
    let (_, b, _) = place(&f.store, 6).await;
    // The two rows swapped: each event now sits in the other's place.
    for (from, to) in [
        (a.as_str(), "swap"),
        (b.as_str(), a.as_str()),
        ("swap", b.as_str()),
    ] {
        f.store
            .execute_sql(&format!(
                "UPDATE events SET aggregate_id = '{to}' WHERE aggregate_type = 'BackupCycle' \
                 AND aggregate_id = '{from}' AND sequence = 1"
            ))
            .await
            .expect("swap");
    }
    let (tenant, broken) = break_found(&f).await;
    assert_eq!(tenant, "acme");
    assert!(
        matches!(broken, Break::Altered { index: 2, .. }),
        "{broken}"
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_truncated_tail_is_named_against_the_checkpoint(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    f.store
        .execute_sql("DELETE FROM event_chain WHERE tenant = 'acme' AND tenant_index > 7")
        .await
        .expect("truncate");
    assert_eq!(
        break_found(&f).await,
        (
            "acme".into(),
            Break::Truncated {
                last: 7,
                covered: 10,
                checkpoint: 1
            }
        )
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_rewrite_that_recomputes_every_link_is_named_by_the_checkpoint(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    let (kind, id, sequence) = place(&f.store, 9).await;
    f.store
        .execute_sql(&format!(
            "UPDATE events SET metadata = {} WHERE aggregate_type = '{kind}' \
             AND aggregate_id = '{id}' AND sequence = {sequence}",
            cast(postgres, "'{\"forged\": \"yes\"}'")
        ))
        .await
        .expect("edit");
    // The forger recomputes acme's links from the edited events.
    let rows = f.store.chain_rows("acme", 0, 1000).await.expect("rows");
    let mut previous = GENESIS.to_owned();
    for row in rows {
        previous = link(&previous, &row.event.expect("event").line());
        f.store
            .execute_sql(&format!(
                "UPDATE event_chain SET hash = '{previous}' WHERE position = {}",
                row.position
            ))
            .await
            .expect("forge");
    }
    assert_eq!(
        break_found(&f).await,
        (
            "acme".into(),
            Break::Rewritten {
                index: 10,
                checkpoint: 1
            }
        )
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_removed_checkpoint_is_named(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    for _ in 0..2 {
        write_checkpoint(&f.store, &f.vault, &f.signer, CHECKPOINT_RETENTION)
            .await
            .expect("checkpoint");
    }
    // Removed behind the vault's back (root can; the lock is a file mode here).
    let object = f
        .dir
        .path()
        .join("vault/objects")
        .join(format!("{CHECKPOINT_PREFIX}000000000002.json"));
    std::fs::remove_file(&object).expect("remove");
    let (scope, broken) = break_found(&f).await;
    assert_eq!(scope, "*");
    assert!(
        matches!(&broken, Break::Checkpoint { sequence: 2, why } if why.contains("missing")),
        "{broken}"
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_export_verifies_offline_holds_one_tenant_and_names_each_edit(#[case] postgres: bool) {
    let f = checkpointed(postgres).await;
    let out = f.dir.path().join("export");
    let summary = export(&f, &out, ExportRange::default()).await;
    assert_eq!(
        (summary.events, summary.checkpoints, summary.taken),
        (10, 2, 2)
    );
    let proven = verify_export(&out).expect("readable").expect("intact");
    assert_eq!(proven.events, 10);
    assert_eq!(proven.checkpoints, 2);
    assert_eq!(proven.unsigned_tail, 0);
    assert!(
        proven.to_string().contains("10 events of tenant acme"),
        "{proven}"
    );
    // Nothing of the other tenant, in any file.
    for entry in std::fs::read_dir(&out).expect("dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("text");
        assert!(
            !text.contains("globex") && !text.contains("branch"),
            "{text}"
        );
    }
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("events");
    let lines: Vec<&str> = events.lines().collect();
    let copy =
        |label: &str, lines: &[String]| verify_with_events(&out, &f.dir.path().join(label), lines);
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    // An edited line.
    let mut edited = owned.clone();
    edited[4] = edited[4].replacen("\"sequence\":", "\"sequence\":1", 1);
    let broken = copy("edited", &edited).expect_err("edited");
    assert!(
        matches!(broken, Break::Altered { index: 5, .. }),
        "{broken}"
    );
    // A removed line.
    let mut removed = owned.clone();
    removed.remove(6);
    assert_eq!(copy("removed", &removed), Err(Break::Removed { index: 7 }));
    // Two lines swapped.
    let mut swapped = owned.clone();
    swapped.swap(2, 3);
    let broken = copy("swapped", &swapped).expect_err("swapped");
    assert!(
        matches!(broken, Break::Reordered { index: 4, .. }),
        "{broken}"
    );
    // The tail cut.
    let cut = owned[..8].to_vec();
    assert_eq!(copy("cut", &cut), Err(Break::Removed { index: 9 }));
    // A checkpoint's signature broken.
    let dir = f.dir.path().join("resigned");
    std::fs::create_dir_all(&dir).expect("dir");
    for name in ["manifest.json", "keys.json", "links.txt", "events.jsonl"] {
        std::fs::copy(out.join(name), dir.join(name)).expect("copy");
    }
    let checkpoints = std::fs::read_to_string(out.join("checkpoints.jsonl")).expect("read");
    std::fs::write(
        dir.join("checkpoints.jsonl"),
        checkpoints.replacen("\"leaves\":2", "\"leaves\":3", 1),
    )
    .expect("write");
    let broken = verify_export(&dir).expect("readable").expect_err("forged");
    assert!(
        matches!(&broken, Break::Checkpoint { sequence: 1, why } if why.contains("signature")),
        "{broken}"
    );
}

#[tokio::test]
async fn the_readmes_shell_check_recomputes_the_chain_with_sha256sum() {
    let f = checkpointed(false).await;
    let out = f.dir.path().join("export");
    export(&f, &out, ExportRange::default()).await;
    let readme = std::fs::read_to_string(out.join("README.md")).expect("readme");
    let script = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's shell snippet");
    // `jq` may be missing: the start link is the genesis in a full export.
    let script = script.replace(
        "prev=$(jq -r .start_link manifest.json)",
        &format!("prev={GENESIS}"),
    );
    let run = |dir: &std::path::Path| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir)
            .output()
            .expect("bash")
    };
    let intact = run(&out);
    assert!(intact.status.success(), "{intact:?}");
    assert!(String::from_utf8_lossy(&intact.stdout).contains("chain intact"));
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("events");
    std::fs::write(out.join("events.jsonl"), events.replacen("hq", "hQ", 1)).expect("edit");
    let broken = run(&out);
    assert!(!broken.status.success(), "{broken:?}");
    assert!(String::from_utf8_lossy(&broken.stdout).contains("altered"));
}

/// A Restore-Tested cycle of acme's `hq`; its id.
async fn restore_tested(store: &Store) -> String {
    history(store, "acme", "hq", 0).await;
    let tenant = tenant("acme");
    let instance = InstanceId::for_name(&tenant, "hq");
    let cycle = CycleId::random();
    let id = cycle.to_string();
    let commands = [
        BackupCycleCommand::Start(CycleStarted {
            cycle_id: cycle,
            instance_id: instance,
            tenant_id: tenant,
            trigger: Trigger::Scheduled,
            started_at: at(5),
        }),
        BackupCycleCommand::RecordCaptured(examples::captured()),
        BackupCycleCommand::RecordSecured(examples::secured()),
        BackupCycleCommand::RecordVerified(examples::verified()),
        BackupCycleCommand::RecordRestoreTested(examples::restore_tested()),
    ];
    for command in commands {
        store.cycle(&id, command).await.expect("cycle");
    }
    id
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_restore_certificate_is_signed_checkable_offline_and_its_standing_follows_the_history(
    #[case] postgres: bool,
) {
    let f = fixture(postgres).await;
    let cycle = restore_tested(&f.store).await;
    let certificate = issue_certificate(&f.store, &f.signer, &cycle)
        .await
        .expect("issue")
        .expect("a Restore-Tested cycle has one");
    let captured = examples::captured();
    assert_eq!(certificate.facts.copy_sha256, captured.sha256);
    assert_eq!(certificate.facts.copy_size, captured.size);
    assert_eq!(certificate.facts.tenant, "acme");
    assert_eq!(certificate.facts.chain_index, 7); // enrolment, audit record, 5 cycle events
    assert!(certificate.id.starts_with(&cycle));
    assert_eq!(certificate_fault(&certificate), None);
    // One changed byte anywhere in the facts, the id or the signature is found.
    let text = serde_json::to_string(&certificate).expect("json");
    let changed = text.replacen(&captured.sha256[..4], "ffff", 1);
    let forged: Certificate = serde_json::from_str(&changed).expect("still JSON");
    assert!(certificate_fault(&forged).is_some());
    let mut resigned = certificate.clone();
    resigned.signature.replace_range(
        0..2,
        if &resigned.signature[0..2] == "00" {
            "01"
        } else {
            "00"
        },
    );
    assert!(certificate_fault(&resigned)
        .expect("fault")
        .contains("signature"));
    // A cycle not restore-tested has none.
    let verified_only = CycleId::random().to_string();
    assert!(issue_certificate(&f.store, &f.signer, &verified_only)
        .await
        .expect("issue")
        .is_none());
    // The public page's standing: genuine, not yet covered by a checkpoint, then intact.
    let standing = certificate_standing(&f.store, &f.vault, &certificate.id)
        .await
        .expect("standing");
    let Standing::Genuine { chain_fault, .. } = standing else {
        panic!("genuine: {standing:?}")
    };
    assert!(chain_fault.expect("not covered yet").contains("checkpoint"));
    write_checkpoint(&f.store, &f.vault, &f.signer, CHECKPOINT_RETENTION)
        .await
        .expect("checkpoint");
    assert!(matches!(
        certificate_standing(&f.store, &f.vault, &certificate.id)
            .await
            .expect("standing"),
        Standing::Genuine {
            chain_fault: None,
            ..
        }
    ));
    assert_eq!(
        certificate_standing(&f.store, &f.vault, &format!("{cycle}.{}", "0".repeat(32)))
            .await
            .expect("standing"),
        Standing::Unknown
    );
    // An edit of the restore test's event through SQL: the facts no longer make the id.
    f.store
        .execute_sql(&format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = 'BackupCycle' \
             AND aggregate_id = '{cycle}' AND sequence = 5",
            cast(
                postgres,
                &format!(
                    "'{}'",
                    serde_json::to_string(&serde_json::json!({"RestoreTested": {
                        "sandbox": "process", "duration_ms": 1, "counts": captured.manifest,
                        "restore_tested_at": at(9)}}))
                    .expect("json")
                )
            )
        ))
        .await
        .expect("edit");
    assert_eq!(
        certificate_standing(&f.store, &f.vault, &certificate.id)
            .await
            .expect("standing"),
        Standing::Unknown
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn the_scheduled_round_raises_history_tampered_once_and_resolves_it_when_the_history_is_whole(
    #[case] postgres: bool,
) {
    use restorable_pipeline::evidence::{round, HISTORY_TAMPERED};
    use restorable_pipeline::pipeline::Settings;

    let dir = tempfile::tempdir().expect("dir");
    let database = if postgres {
        Some(
            ScratchDatabase::create(&test_server_url())
                .await
                .expect("PostgreSQL for tests"),
        )
    } else {
        None
    };
    let pipeline = open_pipeline(
        dir.path(),
        database.as_ref().map(|d| d.url().to_owned()),
        Settings::default(),
    )
    .await;
    let signer = LocalSigner::open_or_create(&dir.path().join("signing-key")).expect("key");
    history(&pipeline.store, "acme", "hq", 1).await;
    // Intact: a checkpoint, a check that passes, no alert.
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));
    assert_eq!(tampered_alerts(&pipeline).await, 0);
    // An edit through SQL: the next round's check raises the alert, once however often it runs.
    let (kind, id, sequence) = place(&pipeline.store, 3).await;
    let stored = pipeline
        .store
        .chain_rows("acme", 2, 1)
        .await
        .expect("rows")
        .remove(0)
        .event
        .expect("event")
        .payload;
    let set_payload = |payload: String| {
        format!(
            "UPDATE events SET payload = {} WHERE aggregate_type = '{kind}' \
             AND aggregate_id = '{id}' AND sequence = {sequence}",
            cast(postgres, &format!("'{}'", payload.replace('\'', "''")))
        )
    };
    pipeline
        .store
        .execute_sql(&set_payload("{\"Captured\": {\"forged\": true}}".into()))
        .await
        .expect("edit");
    assert_eq!(round(&pipeline, &signer, true).await, Some(false));
    assert_eq!(round(&pipeline, &signer, true).await, Some(false));
    assert_eq!(
        tampered_alerts(&pipeline).await,
        1,
        "one alert, not one per round"
    );
    let raised = pipeline
        .store
        .operations_alerts(true)
        .await
        .expect("alerts")
        .into_iter()
        .find(|a| a.key == HISTORY_TAMPERED)
        .expect("raised");
    assert!(raised.detail.contains("event 3"), "{}", raised.detail);
    // The payload put back: the chain is whole again, the alert resolved.
    pipeline
        .store
        .execute_sql(&set_payload(stored.to_string()))
        .await
        .expect("restore");
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));
    assert_eq!(tampered_alerts(&pipeline).await, 0);
}

/// A second store on the fixture's database: another process, with its own memory of heads.
async fn other_process(f: &Fixture) -> Store {
    match &f._database {
        Some(database) => Store::connect(database.url()).await.expect("connect"),
        None => Store::open(f.dir.path()).await.expect("open"),
    }
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn two_processes_writing_one_tenant_keep_one_chain(#[case] postgres: bool) {
    let f = fixture(postgres).await;
    let other = other_process(&f).await;
    // Each writes after the other moved the tenant's head on: the head each remembers is stale
    // at every turn, so each commit is refused at the chain's place and redone.
    history(&f.store, "acme", "a", 1).await;
    history(&other, "acme", "b", 1).await;
    history(&f.store, "acme", "c", 1).await;
    history(&other, "acme", "d", 1).await;
    // And at once.
    let (one, two) = (f.store.clone(), other.clone());
    let first = tokio::spawn(async move { history(&one, "acme", "e", 2).await });
    let second = tokio::spawn(async move { history(&two, "acme", "f", 2).await });
    first.await.expect("first");
    second.await.expect("second");
    // 4 × (enrolment + 4 cycle events + audit) + 2 × (enrolment + 8 + audit).
    assert_eq!(recomputed(&f.store, "acme").await, 4 * 6 + 2 * 10);
    assert!(f
        .store
        .unchained_events(10)
        .await
        .expect("unchained")
        .is_empty());
    write_checkpoint(&other, &f.vault, &f.signer, CHECKPOINT_RETENTION)
        .await
        .expect("checkpoint");
    let report = check_live(&f.store, &f.vault).await.expect("check");
    assert!(report.intact(), "{:?}", report.breaks);
    assert_eq!(report.events, 44);
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_export_of_dates_is_cut_at_the_checkpoints_around_them_and_verifies(
    #[case] postgres: bool,
) {
    let f = fixture(postgres).await;
    // Checkpoints are stamped to the second: each step waits into the next one.
    let pause = || {
        let left = 1_050 - u64::from(Utc::now().timestamp_subsec_millis());
        tokio::time::sleep(std::time::Duration::from_millis(left))
    };
    let checkpoint = || async {
        write_checkpoint(&f.store, &f.vault, &f.signer, CHECKPOINT_RETENTION)
            .await
            .expect("checkpoint")
    };
    history(&f.store, "acme", "hq", 1).await; // indexes 1..=6
    checkpoint().await; // 1: acme at 6
    pause().await;
    let from = Utc::now();
    pause().await;
    history(&f.store, "acme", "branch", 2).await; // 7..=16
    pause().await;
    checkpoint().await; // 2: at 16
    pause().await;
    let to = Utc::now();
    pause().await;
    history(&f.store, "acme", "depot", 1).await; // 17..=22
    pause().await;
    checkpoint().await; // 3: at 22
    history(&f.store, "acme", "annex", 1).await; // 23..=28, covered by the export's own
    let out = f.dir.path().join("range");
    let summary = export(
        &f,
        &out,
        ExportRange {
            from: Some(from),
            to: Some(to),
        },
    )
    .await;
    // From the last checkpoint at or before `from` (1) to the first at or after `to` (3).
    assert_eq!((summary.events, summary.checkpoints), (16, 3));
    let proven = verify_export(&out).expect("readable").expect("intact");
    assert_eq!(proven.events, 16);
    assert_eq!(proven.indexes, Some((7, 22)));
    assert_eq!(proven.checkpoints, 3);
    assert_eq!(proven.unsigned_tail, 0);
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("events");
    assert!(!events.contains("\"annex\"") && events.contains("branch"));
    // Only `from`: to the newest events, the export's own checkpoint (4) closing it.
    let tail = f.dir.path().join("tail");
    let summary = export(
        &f,
        &tail,
        ExportRange {
            from: Some(to),
            to: None,
        },
    )
    .await;
    let proven = verify_export(&tail).expect("readable").expect("intact");
    assert_eq!(proven.indexes, Some((17, 28)), "{summary:?}");
    // A line removed from the cut export is still named.
    let mut lines: Vec<&str> = events.lines().collect();
    lines.remove(3);
    assert_eq!(
        verify_with_events(&out, &f.dir.path().join("range-removed"), &lines),
        Err(Break::Removed { index: 10 })
    );
}
