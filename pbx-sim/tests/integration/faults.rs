//! Every injectable fault, observed the way a backup client would see it.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{column, read_all, table, Pbx, PASSWORD};
use restorable_pbx_sim::native::NATIVE_BACKUP_NAME;
use restorable_pbx_sim::{Fault, SimPbxConfig};
use serde_json::Value;

async fn with_fault(name: &str, fault: Fault) -> Pbx {
    let mut config = SimPbxConfig::new(name, 21);
    config.fault = Some(fault);
    Pbx::start(config).await
}

#[tokio::test]
async fn bad_credentials_refuse_every_token() {
    let p = with_fault("f-creds", Fault::BadCredentials).await;
    let c = p.pbx.config().clone();
    let resp = p.token_response(&c.client_id, &c.client_secret).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn never_finishes_stays_busy_and_unlisted() {
    let p = with_fault("f-never", Fault::NeverFinishes).await;
    let token = p.token().await;
    assert_eq!(p.request_backup(&token, "n.zip").await.status(), 204);
    assert!(p
        .wait_listed(&token, "n.zip", Duration::from_millis(800))
        .await
        .is_none());
    let can = p
        .get_json(&token, "/xapi/v1/Backups/Pbx.GetCanCreateBackup()")
        .await;
    assert_eq!(can["value"], false);
    assert_eq!(p.listed_names(&token).await, vec![NATIVE_BACKUP_NAME]);
}

#[tokio::test]
async fn server_error_answers_500() {
    let p = with_fault("f-500", Fault::ServerError).await;
    let token = p.token().await;
    assert_eq!(p.request_backup(&token, "s.zip").await.status(), 500);
}

#[tokio::test]
async fn truncated_download_is_short_of_its_content_length() {
    let p = with_fault("f-trunc", Fault::TruncatedDownload).await;
    let token = p.token().await;
    let entry = p.backup(&token, "t.zip").await;
    let size = entry["Size"].as_u64().expect("size");
    let to = p.dir.path().join("t.zip");
    let (declared, received, failed) = p.download(&token, "/xapi/v1/BackupFiles/t.zip", &to).await;
    assert_eq!(declared, Some(size));
    assert!(received < size, "{received} of {size}");
    assert!(received <= size / 2 + 1);
    assert!(failed, "the body must end with an error");
    assert!(zip::ZipArchive::new(std::fs::File::open(&to).expect("open")).is_err());
}

#[tokio::test]
async fn flipped_byte_fails_authentication_of_one_entry() {
    let p = with_fault("f-flip", Fault::FlippedByte).await;
    let to = p.backup_and_download("f.zip").await;
    let err = read_all(&to, PASSWORD).expect_err("one entry must fail");
    assert!(err.to_lowercase().contains("authentication"), "{err}");
    // Everything else is intact: only one entry fails.
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(&to).expect("open")).expect("still opens");
    let mut failures = 0;
    for i in 0..archive.len() {
        let mut e = archive
            .by_index_decrypt(i, PASSWORD.as_bytes())
            .expect("password verifies");
        if std::io::copy(&mut e, &mut std::io::sink()).is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 1);
}

#[tokio::test]
async fn wrong_password_does_not_open_with_the_clients_password() {
    let p = with_fault("f-pw", Fault::WrongPassword).await;
    let to = p.backup_and_download("w.zip").await;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&to).expect("open")).expect("opens");
    let mut failures = 0;
    for i in 0..archive.len() {
        let failed = match archive.by_index_decrypt(i, PASSWORD.as_bytes()) {
            Err(_) => true,
            Ok(mut e) => std::io::copy(&mut e, &mut std::io::sink()).is_err(),
        };
        if failed {
            failures += 1;
        }
    }
    assert_eq!(
        failures,
        archive.len(),
        "no entry may decrypt with the client's password"
    );
}

#[tokio::test]
async fn missing_table_leaves_out_extension_csv() {
    let p = with_fault("f-missing", Fault::MissingTable).await;
    let entries =
        read_all(&p.backup_and_download("m.zip").await, PASSWORD).expect("valid otherwise");
    assert!(!entries.contains_key("DbTables/extension.csv"));
    assert!(entries.contains_key("DbTables/dn.csv"));
    assert!(entries.contains_key("DbTables/users.csv"));
}

#[tokio::test]
async fn dangling_foreign_key_is_in_an_otherwise_valid_archive() {
    let p = with_fault("f-fk", Fault::DanglingForeignKey).await;
    let entries = read_all(&p.backup_and_download("d.zip").await, PASSWORD).expect("valid archive");
    let dn: HashSet<String> = column(&table(&entries, "dn"), "iddn").into_iter().collect();
    let dangling: Vec<String> = column(&table(&entries, "queue2dn"), "fkiddn")
        .into_iter()
        .filter(|id| !dn.contains(id))
        .collect();
    assert_eq!(dangling.len(), 1, "{dangling:?}");
}

#[tokio::test]
async fn manifest_mismatch_reports_one_queue_too_many() {
    let p = with_fault("f-manifest", Fault::ManifestMismatch).await;
    let token = p.token().await;
    let truth = p.pbx.true_counts();
    let queues = p
        .get_json(&token, "/xapi/v1/Queues?$count=true&$top=0")
        .await;
    assert_eq!(queues["@odata.count"].as_u64(), Some(truth.queues + 1));
    let users = p
        .get_json(&token, "/xapi/v1/Users?$count=true&$top=0")
        .await;
    assert_eq!(users["@odata.count"].as_u64(), Some(truth.extensions));
    let entries = read_all(&p.backup_and_download("mm.zip").await, PASSWORD).expect("valid");
    assert_eq!(table(&entries, "queue").len() as u64 - 1, truth.queues);
}

#[tokio::test]
async fn slow_download_is_slow_but_complete() {
    let p = with_fault("f-slow", Fault::SlowDownload).await;
    let started = Instant::now();
    let to = p.backup_and_download("slow.zip").await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "took only {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    read_all(&to, PASSWORD).expect("complete and valid");
}

/// The native schedule and the age of the newest native backup, as the PBX tells them.
async fn native_status(p: &Pbx, token: &str) -> (Value, chrono::Duration) {
    let settings = p.get_json(token, "/xapi/v1/BackupSettings").await;
    let list = p.get_json(token, "/xapi/v1/Backups").await;
    let native = list["value"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["FileName"] == NATIVE_BACKUP_NAME))
        .expect("the native backup is listed");
    let created = chrono::DateTime::parse_from_rfc3339(
        native["CreationTime"].as_str().expect("a creation time"),
    )
    .expect("RFC 3339");
    (
        settings,
        chrono::Utc::now() - created.with_timezone(&chrono::Utc),
    )
}

#[tokio::test]
async fn native_backup_faults_show_in_the_schedule_and_the_list() {
    let healthy = Pbx::start(SimPbxConfig::new("n-healthy", 3)).await;
    let token = healthy.token().await;
    let (settings, age) = native_status(&healthy, &token).await;
    assert_eq!(settings["ScheduleEnabled"], true);
    assert_eq!(settings["Contents"]["EncryptBackup"], true);
    assert_eq!(settings["Schedule"]["ScheduleType"], "Daily");
    assert!(age < chrono::Duration::hours(7), "{age}");
    healthy.pbx.shutdown().await;

    for (fault, enabled, encrypted, old) in [
        (Fault::NativeBackupStale, true, true, true),
        (Fault::NativeBackupDisabled, false, true, true),
        (Fault::NativeBackupUnencrypted, true, false, false),
    ] {
        let p = with_fault(&format!("n-{fault}"), fault).await;
        let token = p.token().await;
        let (settings, age) = native_status(&p, &token).await;
        assert_eq!(settings["ScheduleEnabled"], enabled, "{fault}");
        assert_eq!(settings["Contents"]["EncryptBackup"], encrypted, "{fault}");
        assert_eq!(age > chrono::Duration::days(4), old, "{fault}: {age}");
        p.pbx.shutdown().await;
    }
}
