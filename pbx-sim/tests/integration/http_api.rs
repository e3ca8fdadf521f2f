//! The XAPI calls of a fault-free PBX over real HTTP: tokens, bearer checks, the backup cycle,
//! counts, status, deletion, refusals.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{backup_body, column, read_all, table, Pbx, PASSWORD};
use restorable_pbx_sim::database::TABLES;
use restorable_pbx_sim::native::NATIVE_BACKUP_NAME;
use restorable_pbx_sim::{SimPbxConfig, CORE_TABLES};
use serde_json::{json, Value};

#[tokio::test]
async fn token_is_issued_for_the_right_client_only() {
    let p = Pbx::start(SimPbxConfig::new("tok", 1)).await;
    let c = p.pbx.config().clone();
    let resp = p.token_response(&c.client_id, &c.client_secret).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));

    let resp = p.token_response(&c.client_id, "wrong").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"error": "invalid_client"}));
    assert_eq!(
        p.token_response("someone-else", &c.client_secret)
            .await
            .status(),
        401
    );

    let resp = p
        .http
        .post(p.url("/connect/token"))
        .form(&[
            ("client_id", c.client_id.as_str()),
            ("client_secret", &c.client_secret),
            ("grant_type", "password"),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn xapi_calls_need_a_bearer_token_of_this_pbx() {
    let p = Pbx::start(SimPbxConfig::new("bearer", 2)).await;
    let other = Pbx::start(SimPbxConfig::new("other", 2)).await;
    let foreign = other.token().await;
    for path in [
        "/xapi/v1/Backups",
        "/xapi/v1/SystemStatus",
        "/xapi/v1/Users?$count=true&$top=0",
        "/xapi/v1/Backups('x.zip')/Pbx.GetBackupExtras()",
        "/xapi/v1/BackupFiles/x.zip",
    ] {
        let bare = p.http.get(p.url(path)).send().await.expect("sent");
        assert_eq!(bare.status(), 401, "{path} without token");
        assert_eq!(
            p.get("not-a-token", path).await.status(),
            401,
            "{path} bogus"
        );
        assert_eq!(
            p.get(&foreign, path).await.status(),
            401,
            "{path} foreign token"
        );
    }
    let bare = p
        .http
        .post(p.url("/xapi/v1/Backups/Pbx.Backup"))
        .json(&backup_body("x.zip", json!(PASSWORD)))
        .send()
        .await
        .expect("sent");
    assert_eq!(bare.status(), 401);
    let token = p.token().await;
    assert_eq!(p.get(&token, "/xapi/v1/Backups").await.status(), 200);
}

#[tokio::test]
async fn backup_is_made_listed_described_downloaded_and_deleted() {
    let mut config = SimPbxConfig::new("cycle", 11);
    config.extensions = 40;
    config.backup_delay = Duration::from_millis(300);
    let p = Pbx::start(config).await;
    let token = p.token().await;

    let status = p.get_json(&token, "/xapi/v1/SystemStatus").await;
    assert_eq!(status["FQDN"], "cycle.pbx.example");
    assert!(status["LastBackupDateTime"].is_null());
    assert!(status["Version"]
        .as_str()
        .is_some_and(|v| v.starts_with("20.0.10.")));

    let resp = p.request_backup(&token, "nightly.zip").await;
    assert_eq!(resp.status(), 204);
    let can = p
        .get_json(&token, "/xapi/v1/Backups/Pbx.GetCanCreateBackup()")
        .await;
    assert_eq!(
        can,
        json!({"value": false}),
        "busy while the backup is made"
    );
    assert_eq!(
        p.listed_names(&token).await,
        vec![NATIVE_BACKUP_NAME],
        "not listed before it is written (only the PBX's own backup is)"
    );
    let resp = p.request_backup(&token, "second.zip").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "WARNINGS.XAPI.BACKUP_IN_PROGRESS");
    let resp = p.request_backup(&token, "nightly.zip").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "WARNINGS.XAPI.DUPLICATE",
        "being written counts as existing"
    );

    let entry = p
        .wait_listed(&token, "nightly.zip", Duration::from_secs(30))
        .await
        .expect("listed");
    assert_eq!(entry["DownloadLink"], "/xapi/v1/BackupFiles/nightly.zip");
    assert!(
        chrono::DateTime::parse_from_rfc3339(entry["CreationTime"].as_str().expect("time")).is_ok()
    );
    let size = entry["Size"].as_u64().expect("size");
    assert!(size > 1000);

    let extras = p
        .get_json(
            &token,
            "/xapi/v1/Backups('nightly.zip')/Pbx.GetBackupExtras()",
        )
        .await;
    assert_eq!(extras["IsEncrypted"], true);
    assert!(extras["Footprint"].as_i64().is_some());
    assert_eq!(extras["Version"], status["Version"]);
    assert_eq!(
        p.get(&token, "/xapi/v1/Backups('nope.zip')/Pbx.GetBackupExtras()")
            .await
            .status(),
        404
    );
    // Percent-encoded quotes are understood too.
    assert_eq!(
        p.get(
            &token,
            "/xapi/v1/Backups(%27nightly.zip%27)/Pbx.GetBackupExtras()"
        )
        .await
        .status(),
        200
    );
    let status = p.get_json(&token, "/xapi/v1/SystemStatus").await;
    assert!(status["LastBackupDateTime"].is_string());

    let to = p.dir.path().join("dl.zip");
    let (declared, received, failed) = p
        .download(&token, "/xapi/v1/BackupFiles/nightly.zip", &to)
        .await;
    assert!(!failed);
    assert_eq!(declared, Some(size));
    assert_eq!(received, size);

    let entries = read_all(&to, PASSWORD).expect("every entry decrypts and authenticates");
    assert!(read_all(&to, "not the password").is_err());
    for t in CORE_TABLES {
        assert!(entries.contains_key(&format!("DbTables/{t}.csv")), "{t}");
    }
    for def in TABLES {
        let rows = table(&entries, def.name);
        let header: Vec<&str> = rows[0]
            .iter()
            .map(|h| h.as_deref().expect("header"))
            .collect();
        let expected: Vec<&str> = def.columns.iter().map(|c| c.name).collect();
        assert_eq!(header, expected, "{} header", def.name);
        assert!(rows.len() > 1, "{} has rows", def.name);
        assert!(
            rows.iter().all(|r| r.len() == expected.len()),
            "{} widths",
            def.name
        );
    }
    for name in ["FQDN.txt", "License.txt", "Prompts/welcome.wav"] {
        assert!(entries.contains_key(name), "{name}");
    }
    assert_eq!(entries["FQDN.txt"], b"cycle.pbx.example\n");

    // Foreign keys, checked from the parsed CSVs.
    let ext: HashSet<String> = column(&table(&entries, "extension"), "fkiddn")
        .into_iter()
        .collect();
    let dn: HashSet<String> = column(&table(&entries, "dn"), "iddn").into_iter().collect();
    let queues: HashSet<String> = column(&table(&entries, "queue"), "fkiddn")
        .into_iter()
        .collect();
    let q2dn = table(&entries, "queue2dn");
    assert!(column(&q2dn, "fkiddn").iter().all(|id| ext.contains(id)));
    assert!(column(&q2dn, "fkidqueue")
        .iter()
        .all(|id| queues.contains(id)));
    assert!(ext.iter().all(|id| dn.contains(id)));
    let users = table(&entries, "users");
    assert!(column(&users, "fkidextension")
        .iter()
        .all(|id| ext.contains(id)));
    assert_eq!(users.len() - 1, ext.len(), "one user per extension");
    // fkidcalendar is NULL for extensions: empty unquoted fields exist.
    let dn_rows = table(&entries, "dn");
    assert!(dn_rows[1..].iter().any(|r| r[4].is_none()));
    let params: HashSet<String> = column(&table(&entries, "parameter"), "name")
        .into_iter()
        .collect();
    for required in restorable_pbx_sim::required_parameters() {
        assert!(params.contains(*required), "{required}");
    }

    // Counts as the API reports them match the data.
    let truth = p.pbx.true_counts();
    assert_eq!(truth.extensions, 40);
    assert_eq!(truth.extensions as usize, ext.len());
    assert_eq!(truth.queues as usize, queues.len());
    for (collection, expected) in [
        ("Users", truth.extensions),
        ("Queues", truth.queues),
        ("RingGroups", truth.ring_groups),
        ("Receptionists", truth.ivrs),
        ("Trunks", truth.trunks),
        ("Parameters", truth.settings),
    ] {
        let body = p
            .get_json(&token, &format!("/xapi/v1/{collection}?$count=true&$top=0"))
            .await;
        assert_eq!(body["@odata.count"], expected, "{collection}");
    }

    let resp = p
        .http
        .delete(p.url("/xapi/v1/Backups('nightly.zip')"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 204);
    assert!(!p.dir.path().join("cycle").join("nightly.zip").exists());
    assert_eq!(p.listed_names(&token).await, vec![NATIVE_BACKUP_NAME]);
    assert_eq!(
        p.get(&token, "/xapi/v1/BackupFiles/nightly.zip")
            .await
            .status(),
        404
    );
    p.pbx.shutdown().await;
}

#[tokio::test]
async fn plain_string_password_of_older_builds_is_accepted() {
    let p = Pbx::start(SimPbxConfig::new("older", 3)).await;
    let token = p.token().await;
    let resp = p
        .request_backup_body(&token, &backup_body("old.zip", json!("plain-pw")))
        .await;
    assert_eq!(resp.status(), 204);
    let entry = p
        .wait_listed(&token, "old.zip", Duration::from_secs(30))
        .await
        .expect("listed");
    let to = p.dir.path().join("old.zip");
    p.download(&token, entry["DownloadLink"].as_str().expect("link"), &to)
        .await;
    let entries = read_all(&to, "plain-pw").expect("decrypts with the plain password");
    assert!(entries.contains_key("DbTables/extension.csv"));
}

#[tokio::test]
async fn duplicate_and_malformed_requests_are_refused_without_echoing_the_password() {
    let p = Pbx::start(SimPbxConfig::new("dup", 4)).await;
    let token = p.token().await;
    p.backup(&token, "a.zip").await;
    let resp = p.request_backup(&token, "a.zip").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "WARNINGS.XAPI.DUPLICATE");

    let secret = "do-not-echo-me-7731";
    let malformed = [
        json!({"description": {"Contents": {"EncryptBackupPassword": secret}}}),
        json!({"description": {"Name": "b.zip", "Contents": {"EncryptBackupPassword": {"Value": 5, "Other": secret}}}}),
        json!({"description": {"Name": "../b.zip", "Contents": {"EncryptBackupPassword": secret}}}),
        json!({"description": {"Name": 12, "Contents": {"EncryptBackupPassword": secret}}}),
        json!({"description": {"Name": "c.zip", "Contents": {"EncryptBackup": true}}}),
    ];
    for body in malformed {
        let resp = p.request_backup_body(&token, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.text().await.expect("text");
        assert!(!text.contains(secret), "password echoed: {text}");
    }
    let resp = p
        .http
        .post(p.url("/xapi/v1/Backups/Pbx.Backup"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"description\": {{\"Name\": \"x.zip\", \"Contents\": {{\"EncryptBackupPassword\": \"{secret}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.expect("text").contains(secret));
    // Nothing was started by the refused requests.
    let can = p
        .get_json(&token, "/xapi/v1/Backups/Pbx.GetCanCreateBackup()")
        .await;
    assert_eq!(can["value"], true);
}

#[tokio::test]
async fn same_seed_gives_the_same_database_and_another_seed_does_not() {
    let a = Pbx::start(SimPbxConfig::new("twin", 99)).await;
    let b = Pbx::start(SimPbxConfig::new("twin", 99)).await;
    let c = Pbx::start(SimPbxConfig::new("twin", 100)).await;
    let ea = read_all(&a.backup_and_download("x.zip").await, PASSWORD).expect("a");
    let eb = read_all(&b.backup_and_download("x.zip").await, PASSWORD).expect("b");
    let ec = read_all(&c.backup_and_download("x.zip").await, PASSWORD).expect("c");
    let csvs = |e: &std::collections::BTreeMap<String, Vec<u8>>| {
        e.iter()
            .filter(|(k, _)| k.starts_with("DbTables/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(csvs(&ea).len(), TABLES.len());
    assert_eq!(csvs(&ea), csvs(&eb));
    assert_ne!(ea["DbTables/extension.csv"], ec["DbTables/extension.csv"]);
    // The encrypted files differ (random AES salts) even though the contents are equal.
    assert_eq!(a.pbx.true_counts(), b.pbx.true_counts());
}

#[tokio::test]
async fn padding_goes_into_stored_recordings() {
    const PADDING: u64 = 100 * 1024 * 1024 + 12345;
    let mut config = SimPbxConfig::new("big", 5);
    config.padding_bytes = PADDING;
    let p = Pbx::start(config).await;
    let token = p.token().await;
    let started = std::time::Instant::now();
    let entry = p.backup(&token, "big.zip").await;
    let took = started.elapsed();
    let size = entry["Size"].as_u64().expect("size");
    assert!(size >= PADDING, "{size} < {PADDING}");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    let to = p.dir.path().join("big-dl.zip");
    let (declared, received, failed) = p
        .download(&token, "/xapi/v1/BackupFiles/big.zip", &to)
        .await;
    assert!(!failed);
    assert_eq!((declared, received), (Some(size), size));

    let mut archive = zip::ZipArchive::new(std::fs::File::open(&to).expect("open")).expect("zip");
    let mut recordings = 0u64;
    let mut count = 0;
    for i in 0..archive.len() {
        let mut e = archive
            .by_index_decrypt(i, PASSWORD.as_bytes())
            .expect("decrypt");
        let name = e.name().expect("name").into_owned();
        if name.starts_with("Recordings/") {
            assert_eq!(e.compression(), zip::CompressionMethod::Stored, "{name}");
            assert!(e.size() <= 64 * 1024 * 1024);
            let read = std::io::copy(&mut e, &mut std::io::sink()).expect("authenticates");
            recordings += read;
            count += 1;
        }
    }
    assert_eq!(recordings, PADDING);
    assert_eq!(count, 2, "64 MiB + the rest");
}
