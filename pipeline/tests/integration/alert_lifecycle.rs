//! An open alert's lifecycle against a real store and a real webhook receiver: the projector's
//! sweep asks for reminders per route interval; only an alert left open and not taken on is
//! reminded (acknowledged: never; snoozed: not until the snooze ends; resolved: never); the
//! reminder reaches its route as `AlertReminded`, and the interval then counts from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use restorable_pipeline::alerting::{
    AlertDelivery, AlertRoutes, MaintenanceWindow, QuietHours, RouteTimes, TenantRoutes,
    WebhookRoute, WindowTime, EVENT_HEADER,
};
use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::transport::Consumer;
use secrecy::SecretString;
use tokio::net::TcpListener;

use super::alert_routes::{pipeline_with, quick_retries, settle, tenant};

type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn record(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let event = headers
        .get(EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    received.lock().expect("lock").push((event, body));
    StatusCode::OK
}

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(received.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{address}/hook"), received)
}

/// Raises a Backup Failed alert on a new instance, raised `hours_ago`; its instance and id.
async fn raise(pipeline: &Pipeline, tenant: &TenantId, hours_ago: i64) -> (InstanceId, String) {
    raise_of(
        pipeline,
        tenant,
        AlertKind::BackupFailed,
        Utc::now() - Duration::hours(hours_ago),
    )
    .await
}

/// Raises an alert of `kind` on a new instance, raised at `raised_at`; its instance and id.
async fn raise_of(
    pipeline: &Pipeline,
    tenant: &TenantId,
    kind: AlertKind,
    raised_at: DateTime<Utc>,
) -> (InstanceId, String) {
    raise_on(pipeline, tenant, InstanceId::random(), kind, raised_at).await
}

/// Raises an alert of `kind` on `instance`, raised at `raised_at`; its instance and id.
async fn raise_on(
    pipeline: &Pipeline,
    tenant: &TenantId,
    instance: InstanceId,
    kind: AlertKind,
    raised_at: DateTime<Utc>,
) -> (InstanceId, String) {
    let command = AlertCommand::Raise(AlertRaised {
        alert_id: String::new(),
        kind,
        tenant_id: tenant.clone(),
        instance_id: instance,
        cycle_id: Some(CycleId::random()),
        stage: Some(Stage::Verify),
        reason: Some(FailureReason::WrongKey),
        detail: "the copy does not open".into(),
        raised_at,
        position: 1,
    });
    let id = instance.to_string();
    pipeline.store.alerts(&id, command).await.expect("raise");
    (instance, format!("{instance}-1"))
}

async fn tell(pipeline: &Pipeline, instance: InstanceId, command: AlertCommand) {
    pipeline
        .store
        .alerts(&instance.to_string(), command)
        .await
        .expect("alert command");
}

/// The `AlertReminded` events after `after`: (alert id, route).
async fn reminders_after(pipeline: &Pipeline, after: i64) -> Vec<(String, String)> {
    let events = pipeline.store.read_after(after, 1000).await.expect("log");
    events
        .iter()
        .filter(|e| e.event_type == "AlertReminded")
        .map(|e| {
            let payload: serde_json::Value = serde_json::from_str(&e.payload).expect("json");
            let reminded = &payload["AlertReminded"];
            (
                reminded["alert_id"].as_str().unwrap_or_default().to_owned(),
                reminded["route"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_alerts_left_open_and_not_taken_on_are_reminded_per_route_interval() {
    let (url, received) = receiver().await;
    let tenant = tenant();
    let routes = AlertRoutes {
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url,
                    secret: SecretString::from("whsec-lifecycle"),
                }),
                times: RouteTimes {
                    remind_every_hours: BTreeMap::from([("webhook".to_owned(), 24)]),
                    ..RouteTimes::default()
                },
                ..TenantRoutes::default()
            },
        )]),
        ..AlertRoutes::default()
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let now = Utc::now();
    let (_, left_open) = raise(&pipeline, &tenant, 25).await;
    let (acked, acked_id) = raise(&pipeline, &tenant, 25).await;
    tell(
        &pipeline,
        acked,
        AlertCommand::Acknowledge {
            alert_id: acked_id,
            by: "owner@acme.example".into(),
            note: "on it".into(),
            at: now,
        },
    )
    .await;
    let (snoozed, snoozed_id) = raise(&pipeline, &tenant, 25).await;
    tell(
        &pipeline,
        snoozed,
        AlertCommand::Snooze {
            alert_id: snoozed_id,
            by: "owner@acme.example".into(),
            until: now + Duration::hours(2),
            note: String::new(),
            at: now,
        },
    )
    .await;
    let (woken, woken_id) = raise(&pipeline, &tenant, 25).await;
    tell(
        &pipeline,
        woken,
        AlertCommand::Snooze {
            alert_id: woken_id.clone(),
            by: "owner@acme.example".into(),
            until: now - Duration::hours(1),
            note: String::new(),
            at: now - Duration::hours(5),
        },
    )
    .await;
    raise(&pipeline, &tenant, 2).await;
    let (resolved, _) = raise(&pipeline, &tenant, 30).await;
    tell(
        &pipeline,
        resolved,
        AlertCommand::Resolve {
            cycle_id: CycleId::random(),
            reached: Rung::Verified,
            ended: true,
            position: i64::MAX,
            at: now,
        },
    )
    .await;
    // Another tenant without reminders: never reminded.
    raise(&pipeline, &TenantId::new("globex").expect("slug"), 99).await;

    let read = ReadSide::load(&pipeline.store).await.expect("load");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    let before = pipeline.store.log_end().await.expect("end");
    let stale_view = ReadSide::load(&pipeline.store).await.expect("load");
    let reminders = pipeline.settings.alert_routes.reminders();
    read.sweep_reminders(&pipeline.store, &reminders)
        .await
        .expect("sweep");
    let mut reminded = reminders_after(&pipeline, before).await;
    reminded.sort();
    let mut expected = vec![
        (left_open.clone(), "webhook".to_owned()),
        (woken_id.clone(), "webhook".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        reminded, expected,
        "the open one and the one whose snooze ended"
    );

    // Delivered to the route as reminders.
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    for event in pipeline.store.read_after(before, 100).await.expect("log") {
        if delivery.wants(&event) {
            delivery.react(event).await.expect("react");
        }
    }
    settle(&delivery).await;
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "{got:?}");
    for (event, body) in &got {
        assert_eq!(event, "AlertReminded");
        assert_eq!(body["state"], "reminder");
        assert_eq!(body["alert"], "Backup Failed");
    }
    let mut ids: Vec<String> = got
        .iter()
        .map(|(_, body)| body["alert_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    let mut wanted = vec![left_open, woken_id];
    wanted.sort();
    assert_eq!(ids, wanted);

    // The interval now counts from the reminder: the next sweep asks for nothing.
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    let after_first = pipeline.store.log_end().await.expect("end");
    read.sweep_reminders(&pipeline.store, &reminders)
        .await
        .expect("sweep");
    assert!(reminders_after(&pipeline, after_first).await.is_empty());
    // A sweep from a view that has not seen the reminders yet reminds nobody twice: the
    // aggregate decides.
    stale_view
        .sweep_reminders(&pipeline.store, &reminders)
        .await
        .expect("sweep");
    assert!(reminders_after(&pipeline, after_first).await.is_empty());
}

/// Delivers every alert event after `after` as the `alert_delivery` stage would; the log end.
async fn deliver_after(pipeline: &Pipeline, delivery: &AlertDelivery, after: i64) -> i64 {
    for event in pipeline.store.read_after(after, 1000).await.expect("log") {
        if delivery.wants(&event) {
            delivery.react(event).await.expect("react");
        }
    }
    settle(delivery).await;
    pipeline.store.log_end().await.expect("end")
}

/// Quiet hours hold a raise (by its raise time): the route gets it when they end, as a
/// catch-up reminder, and then its resolution; an alert taken on meanwhile is never sent, nor
/// its resolution; an urgent kind goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_raise_until_they_end_and_urgent_kinds_go_at_once() {
    let (url, received) = receiver().await;
    let tenant = tenant();
    let raised_at = Utc::now() - Duration::hours(2);
    let hhmm = |t: DateTime<Utc>| t.format("%H:%M").to_string();
    let quiet = QuietHours::parse(&format!(
        "{}-{}",
        hhmm(raised_at - Duration::minutes(30)),
        hhmm(raised_at + Duration::minutes(30))
    ))
    .expect("quiet hours");
    assert!(quiet.covers(raised_at) && !quiet.covers(Utc::now()));
    let routes = AlertRoutes {
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url,
                    secret: SecretString::from("whsec-quiet"),
                }),
                times: RouteTimes {
                    quiet_hours: BTreeMap::from([("webhook".to_owned(), quiet)]),
                    urgent_kinds: vec![AlertKind::BackupFailed],
                    ..RouteTimes::default()
                },
                ..TenantRoutes::default()
            },
        )]),
        ..AlertRoutes::default()
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    let (held, held_id) = raise_of(&pipeline, &tenant, AlertKind::BackupStale, raised_at).await;
    let (taken, taken_id) = raise_of(&pipeline, &tenant, AlertKind::BackupStale, raised_at).await;
    let (_, urgent_id) = raise_of(&pipeline, &tenant, AlertKind::BackupFailed, raised_at).await;
    tell(
        &pipeline,
        taken,
        AlertCommand::Acknowledge {
            alert_id: taken_id,
            by: "owner@acme.example".into(),
            note: String::new(),
            at: Utc::now(),
        },
    )
    .await;
    let end = deliver_after(&pipeline, &delivery, 0).await;
    let seen = |received: &Received| {
        received
            .lock()
            .expect("lock")
            .iter()
            .map(|(event, body)| {
                (
                    event.clone(),
                    body["alert_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen(&received),
        vec![("AlertRaised".to_owned(), urgent_id.clone())],
        "only the urgent kind goes during quiet hours"
    );

    // The quiet hours are over: the sweep catches the held one up (not the one taken on).
    let read = ReadSide::load(&pipeline.store).await.expect("load");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    let reminders = pipeline.settings.alert_routes.reminders();
    read.sweep_reminders(&pipeline.store, &reminders)
        .await
        .expect("sweep");
    assert_eq!(
        reminders_after(&pipeline, end).await,
        vec![(held_id.clone(), "webhook".to_owned())]
    );
    let end = deliver_after(&pipeline, &delivery, end).await;
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    read.sweep_reminders(&pipeline.store, &reminders)
        .await
        .expect("sweep");
    assert!(
        reminders_after(&pipeline, end).await.is_empty(),
        "caught up once"
    );

    // Resolutions: the route heard of the held one (caught up), never of the one taken on.
    for instance in [held, taken] {
        tell(
            &pipeline,
            instance,
            AlertCommand::Resolve {
                cycle_id: CycleId::random(),
                reached: Rung::Secured,
                ended: true,
                position: i64::MAX,
                at: Utc::now(),
            },
        )
        .await;
    }
    deliver_after(&pipeline, &delivery, end).await;
    assert_eq!(
        seen(&received),
        vec![
            ("AlertRaised".to_owned(), urgent_id),
            ("AlertReminded".to_owned(), held_id.clone()),
            ("AlertResolved".to_owned(), held_id),
        ]
    );
}

/// A maintenance window of one instance holds its raises on every configured route, urgent
/// kinds too, while the history records them; another instance's raise goes at once; when the
/// window has ended, what is still open is caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_holds_its_instances_alerts_and_the_rest_go() {
    let (url, received) = receiver().await;
    let tenant = tenant();
    let raised_at = Utc::now() - Duration::hours(2);
    let migrated = InstanceId::random();
    let routes = AlertRoutes {
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url,
                    secret: SecretString::from("whsec-window"),
                }),
                times: RouteTimes {
                    urgent_kinds: vec![AlertKind::BackupFailed],
                    windows: vec![MaintenanceWindow {
                        instance: Some(migrated),
                        when: WindowTime::Once {
                            start: raised_at - Duration::minutes(10),
                            end: raised_at + Duration::minutes(10),
                        },
                        reason: "PBX migration".into(),
                    }],
                    ..RouteTimes::default()
                },
                ..TenantRoutes::default()
            },
        )]),
        ..AlertRoutes::default()
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    raise_on(
        &pipeline,
        &tenant,
        migrated,
        AlertKind::BackupFailed,
        raised_at,
    )
    .await;
    let (_, other_id) = raise_of(&pipeline, &tenant, AlertKind::BackupFailed, raised_at).await;
    let end = deliver_after(&pipeline, &delivery, 0).await;
    let seen = || {
        received
            .lock()
            .expect("lock")
            .iter()
            .map(|(event, body)| {
                (
                    event.clone(),
                    body["alert_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(seen(), vec![("AlertRaised".to_owned(), other_id.clone())]);
    let recorded = pipeline
        .store
        .history("InstanceAlerts", &migrated.to_string())
        .await
        .expect("history");
    assert_eq!(recorded.len(), 1, "the held alert is in the history");

    let read = ReadSide::load(&pipeline.store).await.expect("load");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    read.sweep_reminders(&pipeline.store, &pipeline.settings.alert_routes.reminders())
        .await
        .expect("sweep");
    deliver_after(&pipeline, &delivery, end).await;
    assert_eq!(
        seen(),
        vec![
            ("AlertRaised".to_owned(), other_id),
            ("AlertReminded".to_owned(), format!("{migrated}-1")),
        ],
        "caught up once the window ended"
    );
}
