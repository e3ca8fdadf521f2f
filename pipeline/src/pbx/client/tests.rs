//! Tests of the XAPI client against a scripted HTTP server.

use super::*;
use restorable_domain::ids::TenantId;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[test]
fn https_is_required_except_loopback_or_when_allowed() {
    assert!(check_endpoint("https://pbx.acme.example", false).is_ok());
    assert!(check_endpoint("https://pbx.acme.example:5001/", false).is_ok());
    for loopback in [
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://localhost:5000",
        "http://[::1]:80",
    ] {
        assert!(check_endpoint(loopback, false).is_ok(), "{loopback}");
    }
    assert_eq!(
        check_endpoint("http://pbx.acme.example", false),
        Err(EndpointError::InsecureHttp(
            "http://pbx.acme.example".into()
        ))
    );
    assert_eq!(
        check_endpoint("http://10.0.0.5:5000", false),
        Err(EndpointError::InsecureHttp("http://10.0.0.5:5000".into()))
    );
    assert!(check_endpoint("http://pbx.acme.example", true).is_ok());
    assert_eq!(
        check_endpoint("ftp://pbx.acme.example", true),
        Err(EndpointError::Scheme("ftp".into()))
    );
    assert_eq!(
        check_endpoint("https://user:pw@pbx.acme.example", false),
        Err(EndpointError::Userinfo)
    );
    assert!(matches!(
        check_endpoint("pbx.acme.example", false),
        Err(EndpointError::NotAUrl(_))
    ));
    // A host that merely starts with "127." or "localhost" is not loopback.
    assert!(check_endpoint("http://localhost.evil.example", false).is_err());
    assert!(check_endpoint("http://127.0.0.1.evil.example", false).is_err());
}

#[test]
fn the_limits_default_generously_and_per_tenant() {
    let mut limits = PbxLimits::default();
    let acme = TenantId::new("acme").expect("slug");
    let other = TenantId::new("other").expect("slug");
    assert_eq!(limits.max_backup_for(&acme), 50 * GIB);
    limits.tenant_max_backup_bytes.insert(acme.clone(), GIB);
    assert_eq!(limits.max_backup_for(&acme), GIB);
    assert_eq!(limits.max_backup_for(&other), 50 * GIB);
    assert_eq!(limits.max_json_bytes, 4 * MIB);
}

fn client(base: &str) -> PbxClient {
    let url = Url::parse(base).expect("url");
    PbxClient {
        http: reqwest::Client::new(),
        base_url: base.trim_end_matches('/').to_owned(),
        origin: origin_key(&url).expect("a tuple origin"),
        limits: PbxLimits::default(),
        token: SecretString::from(String::new()),
    }
}

/// A PBX that answers every request with `answer` (raw HTTP/1.1), then trickles `trickle`
/// bytes one per 50 ms (if any).
async fn raw_pbx(answer: impl Into<String>, trickle: usize) -> String {
    let answer: &'static str = Box::leak(answer.into().into_boxed_str());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..trickle {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if socket.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn bounded_client(base: &str) -> PbxClient {
    let mut pbx = client(base);
    pbx.limits.call_deadline = Duration::from_millis(400);
    pbx.limits.max_json_bytes = 64 * 1024;
    pbx
}

#[tokio::test]
async fn a_trickling_json_answer_hits_the_call_deadline() {
    let base = raw_pbx(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        10_000,
    )
    .await;
    let started = std::time::Instant::now();
    let error = bounded_client(&base)
        .list_backups()
        .await
        .expect_err("trickle");
    assert!(matches!(error, PbxError::Deadline { .. }), "{error}");
    assert!(error.retryable());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_announced_or_streamed_json_answer_over_the_cap_is_refused() {
    let announced = raw_pbx(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\n{",
        0,
    )
    .await;
    let error = bounded_client(&announced)
        .list_backups()
        .await
        .expect_err("cap");
    assert!(matches!(error, PbxError::AnswerTooLarge { .. }), "{error}");
    // No length: read up to the cap, then refused.
    let streamed = raw_pbx(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{{\"value\": [{}",
            "{},".repeat(100_000)
        ),
        0,
    )
    .await;
    let error = bounded_client(&streamed)
        .list_backups()
        .await
        .expect_err("cap");
    assert!(matches!(error, PbxError::AnswerTooLarge { .. }), "{error}");
}

#[tokio::test]
async fn a_redirect_off_the_origin_is_not_followed() {
    let base = raw_pbx(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/internal\r\ncontent-length: 0\r\n\r\n",
        0,
    )
    .await;
    let mut pbx = bounded_client(&base);
    pbx.http = reqwest::Client::builder()
        .redirect(same_origin(pbx.origin.clone()))
        .build()
        .expect("client");
    let error = pbx.list_backups().await.expect_err("redirect");
    match error {
        PbxError::OffOrigin { target, .. } => assert_eq!(target, "http://127.0.0.1:9"),
        other => panic!("{other}"),
    }
}

#[test]
fn links_stay_on_the_enrolled_origin() {
    let pbx = client("https://pbx.acme.example:5001");
    let on = |link: &str| pbx.url("download", link).map(|u| u.to_string());
    assert_eq!(
        on("/xapi/v1/BackupFiles/a.zip").expect("relative"),
        "https://pbx.acme.example:5001/xapi/v1/BackupFiles/a.zip"
    );
    assert!(on("https://pbx.acme.example:5001/x.zip").is_ok());
    for off in [
        "https://pbx.acme.example/x.zip",     // another port
        "http://pbx.acme.example:5001/x.zip", // another scheme
        "https://169.254.169.254/latest/meta-data",
        "//evil.example/x.zip",
        "http://127.0.0.1:5432/",
    ] {
        assert!(
            matches!(on(off), Err(PbxError::OffOrigin { .. })),
            "{off}: {:?}",
            on(off)
        );
    }
}

/// A PBX serving `settings` at `BackupSettings` and `backups` at `GET Backups`.
async fn native_pbx(settings: serde_json::Value, backups: serde_json::Value) -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/xapi/v1/BackupSettings",
            get(move || async move { axum::Json(settings) }),
        )
        .route(
            "/xapi/v1/Backups",
            get(move || async move { axum::Json(serde_json::json!({ "value": backups })) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn the_native_backup_watch_believes_no_future_no_nonsense_and_not_our_own_backups() {
    use restorable_domain::native_backups::NativeScheduleType;
    let now = "2026-11-28T12:00:00Z"
        .parse::<DateTime<Utc>>()
        .expect("now");
    let entry = |name: &str, created: &str| serde_json::json!({"FileName": name, "CreationTime": created, "DownloadLink": "/x"});
    let base = native_pbx(
        serde_json::json!({"ScheduleEnabled": true, "Rotation": 5,
            "Contents": {"EncryptBackup": true,
                "EncryptBackupPassword": {"Value": "the-native-password", "Concealed": false}},
            "Schedule": {"ScheduleType": "Hourly", "RepeatHours": 6}}),
        serde_json::json!([
            entry("restorable-cycle.zip", "2026-11-28T11:59:00Z"),
            entry("future.zip", "2027-01-01T00:00:00Z"),
            entry("nonsense.zip", "yesterday"),
            entry("old.zip", "2026-11-20T02:00:00+01:00"),
            {"FileName": "undated.zip", "DownloadLink": "/y"},
        ]),
    )
    .await;
    let native = client(&base)
        .native_backups("restorable-", now)
        .await
        .expect("read");
    assert!(native.schedule_enabled && native.encrypted);
    assert_eq!(
        native.schedule,
        NativeScheduleType::Hourly { repeat_hours: 6 }
    );
    assert_eq!(
        native.last_backup_at,
        Some("2026-11-20T01:00:00Z".parse().expect("at")),
        "only the old native backup is believed"
    );
    assert_eq!(native.backups_on_disk, 4, "ours is not counted");
    assert_eq!(native.read_at, now);
    let recorded = serde_json::to_string(&native).expect("json");
    assert!(
        !recorded.contains("the-native-password"),
        "the native schedule's password is never read: {recorded}"
    );

    // An answer that will not say whether its backups are encrypted says nothing.
    let silent = native_pbx(
        serde_json::json!({"ScheduleEnabled": true, "Contents": {}}),
        serde_json::json!([]),
    )
    .await;
    let error = client(&silent)
        .native_backups("restorable-", now)
        .await
        .expect_err("incomplete");
    assert!(matches!(error, PbxError::Protocol { .. }), "{error}");
}
