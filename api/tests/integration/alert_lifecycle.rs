//! Acknowledging and snoozing an alert through the API and the Alerts page: who may (owners
//! and administrators of its tenant; viewers 403; another tenant 404), what is refused (a
//! resolved or unknown alert, a hostile note, a snooze too long), that each is recorded in the
//! alert's row and audited, and that the page shows and filters by the new states. SQLite and
//! PostgreSQL.

use reqwest::StatusCode;
use restorable_api::auth::Role;
use serde_json::json;

use crate::common::{World, PASSWORD};

/// The open alert of globex (its PBX refuses the password: Backup Failed).
fn globex_alert(world: &World) -> String {
    world
        .read
        .read()
        .alerts
        .rows()
        .into_iter()
        .find(|row| row.tenant_id == world.globex.tenant && row.resolved_at.is_none())
        .map(|row| row.alert_id.clone())
        .expect("globex has an open alert")
}

async fn post(
    world: &World,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> (StatusCode, String) {
    let response = world
        .http
        .post(world.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

async fn folded(world: &World) {
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("fold");
}

async fn lifecycle(world: World) {
    let alert = globex_alert(&world);
    let ack = format!("/api/v1/alerts/{alert}/acknowledge");
    let snooze = format!("/api/v1/alerts/{alert}/snooze");
    let globex = |role| world.globex.tokens[&role].clone();
    let acme_owner = world.acme.tokens[&Role::Owner].clone();

    // Who may: another tenant sees nothing; a viewer may not.
    let (status, _) = post(&world, &acme_owner, &ack, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's alert");
    let (status, _) = post(&world, &globex(Role::Viewer), &ack, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer");
    let (status, _) = post(
        &world,
        &globex(Role::Owner),
        "/api/v1/alerts/nope-1/acknowledge",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown alert");

    // What is refused, and loses nothing.
    let long = "x".repeat(501);
    for (body, wanted) in [
        (json!({ "note": long }), StatusCode::CONFLICT),
        (json!({ "note": "two\nlines" }), StatusCode::CONFLICT),
        (json!({ "note": 7 }), StatusCode::BAD_REQUEST),
        (json!({ "notes": "typo" }), StatusCode::BAD_REQUEST),
    ] {
        let (status, text) = post(&world, &globex(Role::Owner), &ack, body.clone()).await;
        assert_eq!(status, wanted, "{body}: {text}");
    }
    for body in [
        json!({ "hours": 721 }),
        json!({ "hours": 1, "until": "2030-01-01T00:00:00Z" }),
        json!({}),
        json!({ "until": "tomorrow" }),
    ] {
        let (status, text) = post(&world, &globex(Role::Owner), &snooze, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
    }
    let (status, _) = post(
        &world,
        &globex(Role::Owner),
        &snooze,
        json!({ "until": "2001-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a snooze in the past");
    folded(&world).await;
    let row = world.read.read().alerts.row(&alert).cloned().expect("row");
    assert!(
        row.acknowledged.is_none() && row.snoozed.is_none(),
        "nothing recorded"
    );

    // Snoozed by the owner, acknowledged by the administrator: both kept, still open.
    let (status, text) = post(
        &world,
        &globex(Role::Owner),
        &snooze,
        json!({ "hours": 4, "note": "PBX migration tonight" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    folded(&world).await;
    let row = world.read.read().alerts.row(&alert).cloned().expect("row");
    let snoozed = row.snoozed.clone().expect("snoozed");
    assert!(
        snoozed.by.contains("owner@globex.example"),
        "{}",
        snoozed.by
    );
    assert_eq!(snoozed.note, "PBX migration tonight");
    assert!(snoozed.until > chrono::Utc::now() + chrono::Duration::minutes(230));
    assert_eq!(
        row.state(chrono::Utc::now()),
        restorable_projections::alerts::AlertState::Snoozed
    );
    let (status, text) = post(
        &world,
        &globex(Role::Administrator),
        &ack,
        json!({ "note": "<b>taking it</b>" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    folded(&world).await;
    let row = world.read.read().alerts.row(&alert).cloned().expect("row");
    let acknowledged = row.acknowledged.clone().expect("acknowledged");
    assert!(
        acknowledged.by.contains("administrator@globex.example"),
        "{}",
        acknowledged.by
    );
    assert!(row.resolved_at.is_none(), "still open");

    // Audited, each under its actor.
    let audit: Vec<serde_json::Value> = world
        .http
        .get(world.url("/api/v1/audit"))
        .bearer_auth(globex(Role::Viewer))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter_map(|r| Some((r["action"].as_str()?, r["actor"].as_str()?)))
        .filter(|(action, _)| action.starts_with("alert_"))
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0].0, "alert_acknowledge", "newest first");
    assert!(actions[0].1.contains("administrator@globex.example"));
    assert_eq!(actions[1].0, "alert_snooze");
    assert!(actions[1].1.contains("owner@globex.example"));

    // The page: filtered by state, the note escaped, the actions for an owner.
    let login = world
        .http
        .post(world.url("/login"))
        .form(&[("email", "owner@globex.example"), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = |state: &'static str| {
        let request = world
            .http
            .get(world.url(&format!("/alerts?state={state}")))
            .header("cookie", &cookie);
        async move {
            request
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let acknowledged_page = page("acknowledged").await;
    assert!(acknowledged_page.contains(&format!("data-alert=\"{alert}\"")));
    assert!(acknowledged_page.contains("&lt;b&gt;taking it&lt;/b&gt;"));
    assert!(!acknowledged_page.contains("<b>taking it</b>"));
    assert!(acknowledged_page.contains(&format!("action=\"/alerts/{alert}/snooze\"")));
    assert!(!page("open")
        .await
        .contains(&format!("data-alert=\"{alert}\"")));
    // A form post without the form token is refused.
    let refused = world
        .http
        .post(world.url(&format!("/alerts/{alert}/acknowledge")))
        .header("cookie", &cookie)
        .form(&[("note", "no token")])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_acknowledged_and_snoozed_by_whom_may_on_sqlite() {
    lifecycle(World::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_acknowledged_and_snoozed_by_whom_may_on_postgresql() {
    lifecycle(World::postgres().await).await;
}

/// The instance page shows the maintenance windows that apply to the instance (its own and its
/// tenant's, which is in effect now) and its tenant's quiet hours and reminders, written
/// escaped; another instance's window is not shown.
#[tokio::test(flavor = "multi_thread")]
async fn the_instance_page_shows_its_windows_quiet_hours_and_reminders() {
    use restorable_domain::alert::AlertKind;
    use restorable_domain::ids::{InstanceId, TenantId};
    use restorable_pipeline::alerting::{
        AlertRoutes, MaintenanceWindow, QuietHours, RouteTimes, TenantRoutes, WindowTime,
    };
    use std::collections::{BTreeMap, HashMap};

    let now = chrono::Utc::now();
    let window = |instance: Option<InstanceId>, reason: &str| MaintenanceWindow {
        instance,
        when: WindowTime::Once {
            start: now - chrono::Duration::hours(1),
            end: now + chrono::Duration::hours(1),
        },
        reason: reason.into(),
    };
    let routes = AlertRoutes {
        tenants: HashMap::from([(
            TenantId::new("acme").expect("slug"),
            TenantRoutes {
                email_to: vec!["ops@acme.example".into()],
                times: RouteTimes {
                    remind_every_hours: BTreeMap::from([("email".to_owned(), 24)]),
                    quiet_hours: BTreeMap::from([(
                        "email".to_owned(),
                        QuietHours::parse("22:00-07:00").expect("parses"),
                    )]),
                    urgent_kinds: vec![AlertKind::BackupFailed],
                    windows: vec![
                        window(None, "<b>patching</b>"),
                        window(Some(InstanceId::random()), "another PBX"),
                    ],
                    routes: Vec::new(),
                },
                digest_hour: Some(7),
                ..TenantRoutes::default()
            },
        )]),
        smtp: Some(restorable_pipeline::alerting::SmtpRelay {
            host: "127.0.0.1".into(),
            port: 2525,
            from: "alerts@example.com".into(),
            username: None,
            password: None,
            starttls: false,
        }),
        ..AlertRoutes::default()
    };
    let world = World::sqlite_routed(routes).await;
    let page = world
        .http
        .get(world.url(&format!("/instances/{}", world.acme.instance)))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Alert routing"), "{page}");
    assert!(page.contains("Maintenance window (every instance of the tenant)"));
    assert!(
        page.contains("&lt;b&gt;patching&lt;/b&gt; — in effect now"),
        "{page}"
    );
    assert!(!page.contains("another PBX"), "another instance's window");
    assert!(page.contains("Quiet hours on email: 22:00-07:00 UTC (except Backup Failed)"));
    assert!(page.contains("Reminders on email: every 24 h"));
    assert!(
        page.contains("Daily digest: e-mailed at 07:00 UTC"),
        "{page}"
    );
    // Globex has no routes: no section.
    let globex = world
        .http
        .get(world.url(&format!("/instances/{}", world.globex.instance)))
        .bearer_auth(&world.globex.tokens[&Role::Viewer])
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(!globex.contains("Alert routing"));
}
