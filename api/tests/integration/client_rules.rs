//! The rules clients meet (issue 10): security headers on every answer, CSV cells that cannot
//! run as formulas, sign-in throttling (per account, per address) with `Retry-After`, API
//! tokens that expire and can be revoked, removed users and reset passwords that end sessions
//! and tokens, live streams that end with their credential, slow clients disconnected, and a
//! download of a corrupted copy that never completes.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{email, World, PASSWORD};
use reqwest::StatusCode;
use restorable_api::auth::{
    add_user, issue_token_for, list_tokens, log_in, remove_user, revoke_token, Added, Role, Scope,
};
use restorable_api::throttle::ThrottleLimits;
use restorable_api::ServerOptions;
use restorable_domain::audit::{AuditAction, AuditEvent};
use restorable_domain::cycle::BackupCycle;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn options() -> ServerOptions {
    ServerOptions {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        trust_forwarded_proto: true,
        throttle: ThrottleLimits {
            per_account: 3,
            per_address: 6,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
        },
        stream_recheck: Duration::from_secs(1),
        ..ServerOptions::default()
    }
}

/// A client whose requests come from `127.0.0.<last>` (any 127/8 address is loopback).
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

async fn sign_in(
    world: &World,
    client: &reqwest::Client,
    who: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(world.url("/login"))
        .form(&[("email", who), ("password", password)])
        .send()
        .await
        .expect("sign-in answered")
}

fn cookie_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

fn assert_security_headers(response: &reqwest::Response, what: &str, tls: bool) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header("referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
    let csp = header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    let hsts = header("strict-transport-security");
    if tls {
        assert!(
            hsts.as_deref().is_some_and(|h| h.starts_with("max-age=")),
            "{what}: HSTS behind TLS: {hsts:?}"
        );
    } else {
        assert_eq!(hsts, None, "{what}: no HSTS over plain HTTP");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_csv_escaping_and_slow_clients() {
    let world = World::sqlite_with(options()).await;
    let admin = &world.acme.tokens[&Role::Administrator];

    // Headers on JSON, CSV, HTML, errors and unknown routes; HSTS only behind TLS.
    for (path, auth) in [
        ("/api/v1/fleet", true),
        ("/api/v1/export/instances.csv", true),
        ("/login", false),
        ("/api/v1/fleet", false),
        ("/no/such/route", false),
        ("/healthz", false),
    ] {
        for tls in [false, true] {
            let mut request = world.http.get(world.url(path));
            if auth {
                request = request.bearer_auth(admin);
            }
            if tls {
                request = request.header("x-forwarded-proto", "https");
            }
            let response = request.send().await.expect("answer");
            assert_security_headers(
                &response,
                &format!("GET {path} ({})", response.status()),
                tls,
            );
        }
    }

    // A name a spreadsheet would run: enrolled through the API, exported with a leading quote.
    let enrolled = world
        .http
        .post(world.url("/api/v1/instances"))
        .bearer_auth(admin)
        .json(&serde_json::json!({
            "tenant": "acme",
            "name": "=HYPERLINK(\"http://evil.example\",\"x\")",
            "url": "http://127.0.0.1:9",
            "fqdn": "@pbx.acme.example",
            "client_id": "id",
            "client_secret": "secret",
        }))
        .send()
        .await
        .expect("enrol");
    assert!(
        enrolled.status().is_success(),
        "enrol: {}",
        enrolled.status()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let csv = loop {
        let response = world
            .http
            .get(world.url("/api/v1/export/instances.csv"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("csv");
        assert_security_headers(&response, "instances.csv", false);
        let text = response.text().await.expect("text");
        if text.contains("HYPERLINK") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let row = reader
        .records()
        .map(|r| r.expect("a CSV record"))
        .find(|r| r.iter().any(|cell| cell.contains("HYPERLINK")))
        .unwrap_or_else(|| panic!("the new instance in {csv}"));
    let cells: Vec<&str> = row.iter().collect();
    assert!(
        cells.contains(&"'=HYPERLINK(\"http://evil.example\",\"x\")"),
        "the name is quoted: {cells:?}"
    );
    assert!(
        cells.contains(&"'@pbx.acme.example"),
        "the fqdn is quoted: {cells:?}"
    );
    for cell in &cells {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "no cell starts a formula: {cell:?}"
        );
    }

    // Slow clients: half a request head, or nothing at all, is cut off after the header timeout.
    let address = world.base.trim_start_matches("http://").to_owned();
    for (what, sent) in [
        ("half a head", &b"GET /healthz HTTP/1.1\r\nHost: x\r\n"[..]),
        ("nothing", &b""[..]),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream.write_all(sent).await.expect("send");
        let started = Instant::now();
        let mut buffer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
        assert!(
            read.is_ok(),
            "{what}: the server kept the connection for 10 s"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{what}: closed only after the header timeout ({:?})",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&buffer);
        assert!(
            !text.contains(" 200 "),
            "{what}: no answer to a partial request: {text}"
        );
    }
    // A body that never arrives in full: the request fails and the connection closes.
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=a",
        )
        .await
        .expect("send");
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "a trickled body held the connection for 10 s");
    let text = String::from_utf8_lossy(&buffer);
    assert!(
        !text.starts_with("HTTP/1.1 2") && !text.starts_with("HTTP/1.1 3"),
        "a late body is not accepted: {text}"
    );

    // A request that is on time is still served on a kept-alive connection.
    let healthy = world
        .http
        .get(world.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(healthy.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_per_account_and_per_address() {
    let world = World::sqlite_with(options()).await;
    let viewer = email("acme", Role::Viewer);
    let owner = email("acme", Role::Owner);

    // Per account: 3 wrong passwords (from two addresses), then 429 with Retry-After, before
    // any password is checked, even the right one, from anywhere (the documented rule).
    let a = client_from(2);
    let b = client_from(3);
    for client in [&a, &b, &a] {
        let wrong = sign_in(&world, client, &viewer, "not the password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let started = Instant::now();
    for (client, password) in [
        (&a, "still wrong"),
        (&b, PASSWORD),
        (&client_from(4), PASSWORD),
    ] {
        let locked = sign_in(&world, client, &viewer, password).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = locked
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_security_headers(&locked, "429", false);
        assert!(
            locked.headers().get("set-cookie").is_none(),
            "no session while locked"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a locked account costs no hashing ({:?})",
        started.elapsed()
    );
    // Another account is not affected.
    let other = sign_in(&world, &client_from(5), &owner, PASSWORD).await;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);

    // Per address: 6 wrong passwords for 6 different accounts from one address lock that
    // address for every account; another address signs in as usual.
    let c = client_from(6);
    for i in 0..6 {
        let wrong = sign_in(&world, &c, &format!("nobody{i}@acme.example"), "wrong").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let locked = sign_in(&world, &c, &email("acme", Role::Administrator), PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().get("retry-after").is_some());
    let elsewhere = sign_in(
        &world,
        &client_from(7),
        &email("acme", Role::Administrator),
        PASSWORD,
    )
    .await;
    assert_eq!(
        elsewhere.status(),
        StatusCode::SEE_OTHER,
        "another address signs in"
    );
}

async fn status_with_token(world: &World, token: &str) -> StatusCode {
    world
        .http
        .get(world.url("/api/v1/fleet"))
        .bearer_auth(token)
        .send()
        .await
        .expect("fleet")
        .status()
}

async fn status_with_cookie(world: &World, cookie: &str) -> StatusCode {
    world
        .http
        .get(world.url("/api/v1/fleet"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("fleet")
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_and_are_revoked_and_users_end_with_their_credentials() {
    tokens_and_users(World::sqlite_with(options()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_and_are_revoked_and_users_end_with_their_credentials_on_postgres() {
    tokens_and_users(World::postgres_with(options()).await).await;
}

async fn tokens_and_users(world: World) {
    let store = &world.pipeline.store;
    let viewer = email("acme", Role::Viewer);

    // Expiry: a token issued for 2 s works, then answers 401.
    let short = issue_token_for(store, &viewer, "short", chrono::Duration::seconds(2))
        .await
        .expect("token");
    assert_eq!(status_with_token(&world, &short).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        status_with_token(&world, &short).await,
        StatusCode::UNAUTHORIZED
    );

    // List and revoke: the list shows ids and names, never a secret; a revoked token is 401.
    let ci = issue_token_for(store, &viewer, "ci", chrono::Duration::days(90))
        .await
        .expect("token");
    let listed = list_tokens(store, Some(&viewer)).await.expect("list");
    let entry = listed
        .iter()
        .find(|t| t.name == "ci")
        .expect("ci is listed");
    assert!(listed.iter().all(|t| !t.token_hash.contains(&ci)));
    let in_90_days = chrono::Utc::now().timestamp() + 90 * 86_400;
    assert!(
        (entry.expires_at - in_90_days).abs() < 60,
        "90 days: {}",
        entry.expires_at
    );
    assert!(
        revoke_token(store, "zz").await.is_err(),
        "a malformed id is refused"
    );
    assert!(revoke_token(store, "00000000").await.is_err() || entry.id().starts_with("00000000"));
    assert_eq!(status_with_token(&world, &ci).await, StatusCode::OK);
    revoke_token(store, entry.id()).await.expect("revoke");
    assert_eq!(
        status_with_token(&world, &ci).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(list_tokens(store, Some(&viewer))
        .await
        .expect("list")
        .iter()
        .all(|t| t.name != "ci"));

    // A password reset ends the user's sessions and tokens (the new password works).
    let owner = email("acme", Role::Owner);
    let session = log_in(store, &owner, SecretString::from(PASSWORD.to_owned()))
        .await
        .expect("log in")
        .expect("right password");
    let cookie = format!("{}={}", restorable_api::auth::SESSION_COOKIE, session.token);
    let owner_token = world.acme.tokens[&Role::Owner].clone();
    assert_eq!(status_with_cookie(&world, &cookie).await, StatusCode::OK);
    assert_eq!(
        status_with_token(&world, &owner_token).await,
        StatusCode::OK
    );
    let new_password = "a brand new long password";
    let added = add_user(
        store,
        &owner,
        &SecretString::from(new_password.to_owned()),
        Role::Owner,
        &Scope::Tenant(world.acme.tenant.clone()),
    )
    .await
    .expect("reset");
    assert!(
        matches!(
            added,
            Added::Reset {
                sessions: 1..,
                tokens: 1..
            }
        ),
        "{added:?}"
    );
    assert_eq!(
        status_with_cookie(&world, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with_token(&world, &owner_token).await,
        StatusCode::UNAUTHORIZED
    );
    let signed_in = sign_in(&world, &client_from(8), &owner, new_password).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);

    // Removing a user ends their sessions and tokens; they cannot sign in again.
    let admin = email("acme", Role::Administrator);
    let admin_token = world.acme.tokens[&Role::Administrator].clone();
    let signed_in = sign_in(&world, &client_from(9), &admin, PASSWORD).await;
    let admin_cookie = cookie_of(&signed_in);
    assert_eq!(
        status_with_cookie(&world, &admin_cookie).await,
        StatusCode::OK
    );
    let removed = remove_user(store, &admin).await.expect("remove");
    assert_eq!(removed.email, admin);
    assert_eq!(
        status_with_token(&world, &admin_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with_cookie(&world, &admin_cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let again = sign_in(&world, &client_from(10), &admin, PASSWORD).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(
        remove_user(store, &admin).await.is_err(),
        "no such user any more"
    );
}

/// Reads the stream until it ends or `limit` passes; `true` if it ended.
async fn ends_within(response: &mut reqwest::Response, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_streams_end_with_their_session_or_token() {
    let world = World::sqlite_with(options()).await;
    let viewer = email("acme", Role::Viewer);

    // Sign-out ends a stream opened with that session.
    let signed_in = sign_in(&world, &client_from(11), &viewer, PASSWORD).await;
    let cookie = cookie_of(&signed_in);
    let mut stream = world
        .http
        .get(world.url("/api/v1/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        !ends_within(&mut stream, Duration::from_millis(2500)).await,
        "a stream stays open while its session holds"
    );
    let out = world
        .http
        .post(world.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        ends_within(&mut stream, Duration::from_secs(5)).await,
        "the stream ends at sign-out"
    );

    // Revoking a token (as another process would: straight in the store) ends its stream.
    let token = issue_token_for(
        &world.pipeline.store,
        &viewer,
        "live",
        chrono::Duration::days(1),
    )
    .await
    .expect("token");
    let mut stream = world
        .http
        .get(world.url("/api/v1/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let id = list_tokens(&world.pipeline.store, Some(&viewer))
        .await
        .expect("list")
        .into_iter()
        .find(|t| t.name == "live")
        .expect("listed");
    revoke_token(&world.pipeline.store, id.id())
        .await
        .expect("revoke");
    assert!(
        ends_within(&mut stream, Duration::from_secs(5)).await,
        "the stream ends when its token is revoked"
    );
}

/// A raw HTTP/1.1 GET; returns the head (none if the connection ended before one) and the
/// body bytes read until the connection ended, and whether it ended with an error.
async fn raw_get(world: &World, path: &str, token: &str) -> (Option<String>, Vec<u8>, bool) {
    let address = world.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut failed = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => {
                failed = true;
                break;
            }
            Err(_) => panic!("the download neither finished nor failed in 30 s"),
        }
    }
    let Some(split) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (None, buffer, failed);
    };
    let head = String::from_utf8_lossy(&buffer[..split]).into_owned();
    let body = buffer[split + 4..].to_vec();
    (Some(head), body, failed)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .expect("a Content-Length")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_copy_is_never_delivered_complete() {
    let world = World::sqlite_with(options()).await;
    let token = world.acme.tokens[&Role::Owner].clone();
    let path = format!("/api/v1/cycles/{}/download", world.acme.cycle);

    // The intact copy: complete, Content-Length bytes, over HTTP/1.1.
    let (head, body, _) = raw_get(&world, &path, &token).await;
    let head = head.expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length = content_length(&head);
    assert_eq!(body.len(), length, "the intact copy arrives whole");

    // Flip one byte in the middle of the stored file.
    let stored: BackupCycle = world
        .pipeline
        .store
        .load(&world.acme.cycle.to_string())
        .await
        .expect("cycle");
    let captured = stored.captured.expect("a stored copy");
    let file = world
        .data_dir
        .join("vault")
        .join("objects")
        .join(&captured.object_key);
    assert!(
        file.is_file(),
        "the local vault keeps the copy at {}",
        file.display()
    );
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("unlock the file for the test");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write");

    assert!(
        length > 3 * 256 * 1024,
        "a copy of several chunks: {length} bytes"
    );
    let mut partial = 0;
    for attempt in 0..3 {
        // Either the connection ends before a head (a copy held back whole) or the body stops
        // short of its Content-Length: never a complete answer.
        let (head, body, _) = raw_get(&world, &path, &token).await;
        if let Some(head) = head {
            partial += 1;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(content_length(&head), length);
            assert!(
                body.len() < length,
                "attempt {attempt}: the corrupted copy was delivered complete ({} of {length} bytes)",
                body.len()
            );
        } else {
            assert!(
                body.len() < length,
                "attempt {attempt}: {} bytes without a head",
                body.len()
            );
        }
    }
    assert!(
        partial > 0,
        "the first chunks of a large copy are streamed, then it is cut off"
    );
    // And through reqwest (HTTP/1.1 only): an error, before the head or in the body.
    let client = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let answer = client
        .get(world.url(&path))
        .bearer_auth(&token)
        .send()
        .await;
    if let Ok(answer) = answer {
        assert!(answer.bytes().await.is_err(), "reading the body fails");
    }

    // The refusal is audited.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = world
            .pipeline
            .store
            .history("AuditTrail", world.acme.tenant.as_str())
            .await
            .expect("audit events");
        let refused = events.iter().any(|e| {
            matches!(e.decode::<AuditEvent>(), Ok(AuditEvent::ActionRecorded(r))
                if r.action == AuditAction::DownloadCorrupt && r.cycle_id == Some(world.acme.cycle))
        });
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "download_corrupt was not audited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_are_hashed_a_few_at_a_time() {
    let world = World::sqlite_with(ServerOptions {
        concurrent_hashes: 1,
        hash_queue_wait: Duration::from_millis(50),
        ..options()
    })
    .await;
    // Six sign-ins at once (distinct accounts and addresses: no throttle applies): one hashes,
    // those that cannot get a turn within 50 ms are answered 429 with Retry-After.
    let attempts = (0..6u8).map(|i| {
        let client = client_from(20 + i);
        let url = world.url("/login");
        async move {
            client
                .post(url)
                .form(&[
                    ("email", format!("someone{i}@acme.example")),
                    ("password", "wrong".into()),
                ])
                .send()
                .await
                .expect("answer")
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|a| a.status()).collect();
    assert!(
        statuses.contains(&StatusCode::UNAUTHORIZED),
        "at least one was checked: {statuses:?}"
    );
    let busy: Vec<_> = answers
        .iter()
        .filter(|a| a.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !busy.is_empty(),
        "some waited too long for a turn: {statuses:?}"
    );
    assert!(busy
        .iter()
        .all(|a| a.headers().get("retry-after").is_some()));
}
