//! The authorization matrix: every route × every role × own / other tenant, asserting the
//! status code. Another tenant's ids answer exactly like ids that do not exist (404, same
//! body), lists never show another tenant's data, and nothing answers without signing in
//! except `/healthz` and `/metrics`. Also: a cookie-authenticated write needs the CSRF token,
//! and no response carries a PBX secret or a backup password except the owner's reveal.

use crate::common;

use common::{World, PASSWORD};
use reqwest::{Method, StatusCode};
use restorable_api::auth::Role;
use restorable_api::json::ROUTES;

const ROLES: [Role; 3] = [Role::Administrator, Role::Owner, Role::Viewer];

/// The status `role` must get for `method path` on its own tenant's data (`own`) or another's.
fn expected(method: &str, path: &str, role: Role, own: bool) -> StatusCode {
    use Role::*;
    let by_id = path.contains("{instance_id}")
        || path.contains("{cycle_id}")
        || path.contains("{alert_id}");
    if path == "/api/v1/instances" && method == "post" {
        return match (own, role) {
            (false, _) => StatusCode::NOT_FOUND,
            (true, Administrator) => StatusCode::CREATED,
            (true, _) => StatusCode::FORBIDDEN,
        };
    }
    if by_id && !own {
        return StatusCode::NOT_FOUND;
    }
    match (method, path.rsplit('/').next().unwrap_or_default(), role) {
        ("post", "backup-now", Administrator) => StatusCode::ACCEPTED,
        ("post", "stop" | "resume" | "remove", Administrator) => StatusCode::OK,
        ("post", "stop" | "resume" | "backup-now" | "remove", _) => StatusCode::FORBIDDEN,
        ("get", "download", Administrator | Owner) => StatusCode::OK,
        ("get", "download", Viewer) => StatusCode::FORBIDDEN,
        ("post", "reveal-password", Owner) => StatusCode::OK,
        ("post", "reveal-password", _) => StatusCode::FORBIDDEN,
        ("post", "acknowledge" | "snooze", Administrator | Owner) => StatusCode::OK,
        ("post", "acknowledge" | "snooze", Viewer) => StatusCode::FORBIDDEN,
        // Only for administrators of every tenant (scope `*`); these users are of one tenant.
        ("get", "dead-letters", _) => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    }
}

fn concrete(world: &World, path: &str, own: bool) -> String {
    // Acme's users act on acme (own) or on globex (other).
    let target = if own { &world.acme } else { &world.globex };
    path.replace("{instance_id}", &target.instance.to_string())
        .replace("{cycle_id}", &target.cycle.to_string())
        .replace("{alert_id}", &open_alert(world, &target.tenant))
}

/// The open alert of `tenant`'s instance.
fn open_alert(world: &World, tenant: &restorable_domain::ids::TenantId) -> String {
    world
        .read
        .read()
        .alerts
        .rows()
        .into_iter()
        .find(|row| row.tenant_id == *tenant && row.resolved_at.is_none())
        .map(|row| row.alert_id.clone())
        .unwrap_or_default()
}

async fn call(
    world: &World,
    method: &str,
    path: &str,
    token: Option<&str>,
    own: bool,
) -> (StatusCode, String) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = world.http.request(method, world.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if path.ends_with("/acknowledge") {
        request = request.json(&serde_json::json!({ "note": "on it" }));
    }
    if path.ends_with("/snooze") {
        request = request.json(&serde_json::json!({ "hours": 1 }));
    }
    if path == "/api/v1/instances" {
        let tenant = if own { "acme" } else { "globex" };
        request = request.json(&serde_json::json!({
            "tenant": tenant,
            "name": format!("new-{}", uuid::Uuid::new_v4()),
            "url": "https://pbx.example.test",
            "client_id": "id",
            "client_secret": "a-secret-that-must-not-echo",
        }));
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    if path.ends_with("/stream") {
        return (status, String::new()); // an endless stream: the status is what counts
    }
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_every_role_own_and_other_tenant() {
    let world = World::sqlite().await;
    // Acme's PBX is healthy: give it an open alert to act on (globex's fails: it has one).
    world
        .pipeline
        .store
        .alerts(
            &world.acme.instance.to_string(),
            restorable_domain::alert::AlertCommand::Raise(restorable_domain::alert::AlertRaised {
                alert_id: String::new(),
                kind: restorable_domain::alert::AlertKind::BackupStale,
                tenant_id: world.acme.tenant.clone(),
                instance_id: world.acme.instance,
                cycle_id: None,
                stage: None,
                reason: None,
                detail: "no copy".into(),
                raised_at: chrono::Utc::now(),
                position: i64::MAX,
            }),
        )
        .await
        .expect("raise");
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("fold");
    assert!(!open_alert(&world, &world.acme.tenant).is_empty());
    let missing_instance = uuid::Uuid::new_v4().to_string();
    let mut failures = Vec::new();
    // Order matters only for the instance actions: stop, resume, back up, and last remove.
    for own in [true, false] {
        for role in ROLES {
            let token = world.acme.tokens[&role].clone();
            for (method, template) in ROUTES {
                let path = concrete(&world, template, own);
                let (status, body) = call(&world, method, &path, Some(&token), own).await;
                let want = expected(method, template, role, own);
                if status != want {
                    failures.push(format!(
                        "{} {method} {path} as {}: {status}, expected {want}: {body}",
                        if own { "own" } else { "other" },
                        role.as_str()
                    ));
                }
                if !own && want == StatusCode::NOT_FOUND {
                    // Exactly what an id that does not exist gets.
                    let fake = template
                        .replace("{instance_id}", &missing_instance)
                        .replace("{cycle_id}", &missing_instance)
                        .replace("{alert_id}", &format!("{missing_instance}-1"));
                    let (fake_status, fake_body) =
                        call(&world, method, &fake, Some(&token), own).await;
                    if path != "/api/v1/instances" && (fake_status, &fake_body) != (status, &body) {
                        failures.push(format!(
                            "{method} {path}: other tenant answers {status} {body}, a missing id {fake_status} {fake_body}"
                        ));
                    }
                }
                for secret in [
                    world.acme.pbx_secret.as_str(),
                    world.globex.pbx_secret.as_str(),
                    "a-secret-that-must-not-echo",
                ] {
                    assert!(!body.contains(secret), "{method} {path} leaks a PBX secret");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_answers_without_signing_in_but_health_and_metrics() {
    let world = World::sqlite().await;
    for (method, template) in ROUTES {
        let path = concrete(&world, template, true);
        let (status, _) = call(&world, method, &path, None, true).await;
        let want = if matches!(*template, "/healthz" | "/metrics") {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, want, "{method} {path} without credentials");
    }
    let (status, _) = call(&world, "get", "/api/v1/fleet", Some("not-a-token"), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong token");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_show_only_the_callers_tenant() {
    let world = World::sqlite().await;
    for role in ROLES {
        let token = &world.acme.tokens[&role];
        for path in [
            "/api/v1/fleet",
            "/api/v1/alerts",
            "/api/v1/audit",
            "/api/v1/export/instances.csv",
            "/api/v1/export/alerts.csv",
            "/api/v1/export/backups.csv",
        ] {
            let (status, body) = call(&world, "get", path, Some(token), true).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                !body.contains(&world.globex.instance.to_string()),
                "{path} shows globex's instance"
            );
            assert!(!body.contains("globex"), "{path} names globex");
        }
        let (_, fleet) = call(&world, "get", "/api/v1/fleet", Some(token), true).await;
        assert!(
            fleet.contains(&world.acme.instance.to_string()),
            "own instance listed"
        );
    }
    // Globex's alert (its copy failed) is visible to globex only.
    let (_, alerts) = call(
        &world,
        "get",
        "/api/v1/alerts",
        Some(&world.globex.tokens[&Role::Viewer]),
        true,
    )
    .await;
    assert!(
        alerts.contains("backup_failed"),
        "globex sees its alert: {alerts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_write_needs_the_csrf_token() {
    let world = World::sqlite().await;
    let login = world
        .http
        .post(world.url("/login"))
        .form(&[
            ("email", "administrator@acme.example"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    for attribute in [
        "__Secure-restorable_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let stop = world.url(&format!("/api/v1/instances/{}/stop", world.acme.instance));
    let without = world
        .http
        .post(&stop)
        .header("cookie", &pair)
        .send()
        .await
        .expect("post");
    assert_eq!(without.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let wrong = world
        .http
        .post(&stop)
        .header("cookie", &pair)
        .header("x-csrf-token", "guess")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "a wrong CSRF token");
    // The page carries the real token in its forms.
    let page = world
        .http
        .get(world.url(&format!("/instances/{}", world.acme.instance)))
        .header("cookie", &pair)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field in the page")
        .to_owned();
    let right = world
        .http
        .post(&stop)
        .header("cookie", &pair)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(right.status(), StatusCode::OK, "the session's CSRF token");
}

#[tokio::test(flavor = "multi_thread")]
async fn download_and_reveal_are_audited_and_the_download_is_the_recorded_copy() {
    use sha2::Digest;
    let world = World::sqlite().await;
    let owner = &world.acme.tokens[&Role::Owner];
    let download = world
        .http
        .get(world.url(&format!("/api/v1/cycles/{}/download", world.acme.cycle)))
        .bearer_auth(owner)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let bytes = download.bytes().await.expect("bytes");
    let row = restorable_pipeline::read_model::backup_row(&world.pipeline.store, &world.acme.cycle)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(Some(hex::encode(sha2::Sha256::digest(&bytes))), row.sha256);
    let reveal = world
        .http
        .post(world.url(&format!(
            "/api/v1/cycles/{}/reveal-password",
            world.acme.cycle
        )))
        .bearer_auth(owner)
        .send()
        .await
        .expect("reveal");
    assert_eq!(reveal.status(), StatusCode::OK);
    assert_eq!(
        reveal
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: serde_json::Value = reveal.json().await.expect("json");
    let password = body["password"].as_str().expect("password").to_owned();
    assert!(password.len() >= 20, "a real password");
    let expected = world
        .pipeline
        .tenant_password(&world.acme.tenant, row.key_version.expect("version"))
        .await
        .expect("unseal");
    assert_eq!(password, secrecy::ExposeSecret::expose_secret(&expected));
    // Both are in the audit log with actor, instance, cycle and key version (the audit view is
    // the read model, which follows the log: give it a few seconds to catch up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (audit, records) = loop {
        let audit = world
            .http
            .get(world.url("/api/v1/audit"))
            .bearer_auth(owner)
            .send()
            .await
            .expect("audit")
            .text()
            .await
            .expect("text");
        let records: Vec<serde_json::Value> = serde_json::from_str(&audit).expect("json");
        let both = ["download", "reveal_password"]
            .iter()
            .all(|action| records.iter().any(|r| r["action"] == *action));
        if both || std::time::Instant::now() > deadline {
            break (audit, records);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for action in ["download", "reveal_password"] {
        let record = records
            .iter()
            .find(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("{action} recorded: {audit}"));
        assert_eq!(record["actor"], "token:tests (owner@acme.example)");
        assert_eq!(record["cycle_id"], world.acme.cycle.to_string());
        assert_eq!(record["instance_id"], world.acme.instance.to_string());
        assert_eq!(record["key_version"], row.key_version.expect("version"));
    }
    // The password is in no other response, and not in the event history.
    assert!(!audit.contains(&password));
    let history = world
        .pipeline
        .store
        .read_after(0, 100_000)
        .await
        .expect("log");
    assert!(history.iter().all(|e| !e.payload.contains(&password)));
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_for_administrators_of_every_tenant_and_counted_in_metrics() {
    use restorable_api::auth::{add_user, issue_token, Scope};
    use secrecy::SecretString;

    let world = World::sqlite().await;
    let store = &world.pipeline.store;
    let mut tokens = std::collections::HashMap::new();
    for role in ROLES {
        let email = format!("{}@provider.example", role.as_str());
        let password = SecretString::from(PASSWORD.to_owned());
        add_user(store, &email, &password, role, &Scope::All)
            .await
            .expect("add user");
        let token = issue_token(store, &email, "tests").await.expect("token");
        tokens.insert(role, token);
    }
    let get = |path: &'static str, token: String| {
        let request = world.http.get(world.url(path)).bearer_auth(token);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status();
            (status, response.text().await.expect("body"))
        }
    };
    let metric = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
    };
    let metrics = world
        .http
        .get(world.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(&metrics, "restorable_dead_letters_pending").as_deref(),
        Some("0"),
        "{metrics}"
    );
    // Every status by the name a query string uses, counting every instance once.
    let rows = world.read.read().fleet.rows().len();
    let mut counted = 0;
    for name in ["healthy", "needs_attention", "stopped"] {
        let line = format!("restorable_instances{{status=\"{name}\"}}");
        let n: usize = metric(&metrics, &line)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {line}: {metrics}"));
        counted += n;
    }
    assert!(rows >= 2, "acme and globex are enrolled");
    assert_eq!(counted, rows, "{metrics}");

    // A real event of globex's cycle, given up on by the verify stage.
    let cycle = world.globex.cycle.to_string();
    let event = store
        .history("BackupCycle", &cycle)
        .await
        .expect("history")
        .into_iter()
        .find(|e| e.event_type == "Secured")
        .expect("a Secured event");
    store
        .add_dead_letter("verify", &event, "the reaction panicked", 5)
        .await
        .expect("dead letter");

    let (status, body) = get("/api/v1/dead-letters", tokens[&Role::Administrator].clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let letters: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["consumer"], "verify");
    assert_eq!(letters[0]["position"], event.position);
    assert_eq!(letters[0]["aggregate_id"], cycle);
    assert_eq!(letters[0]["attempts"], 5);
    assert!(letters[0]["replayed_at"].is_null());

    for role in [Role::Owner, Role::Viewer] {
        let (status, body) = get("/api/v1/dead-letters", tokens[&role].clone()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} of '*': {body}",
            role.as_str()
        );
    }
    for tenant in [&world.acme, &world.globex] {
        for role in ROLES {
            let (status, body) = get("/api/v1/dead-letters", tenant.tokens[&role].clone()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} of {}: {body}",
                role.as_str(),
                tenant.tenant
            );
            assert!(!body.contains(&cycle), "a refusal names no aggregate");
        }
    }

    let metrics = world
        .http
        .get(world.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(&metrics, "restorable_dead_letters_pending").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert!(
        matches!(
            metric(&metrics, "restorable_relay_held").as_deref(),
            Some("0" | "1")
        ),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE restorable_dead_letters_pending gauge"));
    assert!(
        metric(&metrics, "restorable_operations_alerts_open")
            .is_some_and(|open| open.parse::<u64>().is_ok()),
        "{metrics}"
    );

    // Replayed letters are no longer pending.
    store
        .mark_dead_letter_replayed("verify", event.position)
        .await
        .expect("mark");
    let (status, body) = get("/api/v1/dead-letters", tokens[&Role::Administrator].clone()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
}
