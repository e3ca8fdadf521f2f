//! Operations alerts reach the operator's routes (`[operations_alerts]`), once per condition:
//! the dead letter of a consumer that is no ladder stage (`alerts`), given up on by the
//! in-process transport on real PostgreSQL, raises one alert however many letters and sweeps
//! follow and is resolved when its letters are replayed; a NATS relay held by a store error
//! (a renamed table) and then by an event of an unknown version raises one alert per hold and
//! resolves each when it passes. The routes are an axum webhook receiver on port 0 and the
//! test's own nats-server.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use chrono::Utc;
use common::{Backend, Harness};
use futures_util::StreamExt;
use restorable_pipeline::alerting::{
    verify, AlertDelivery, AlertRoutes, RetryPolicy, TenantRoutes, WebhookRoute, DELIVERY_HEADER,
    EVENT_HEADER, OPERATIONS_SUBJECT, SIGNATURE_HEADER,
};
use restorable_pipeline::operations_alerts::{sweep_dead_letters, RelayAlarm};
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::runtime::driver::head_position;
use restorable_pipeline::runtime::run_stages;
use restorable_pipeline::store::Store;
use restorable_pipeline::transport::nats::relay::{Relay, CHECKPOINT};
use restorable_pipeline::transport::nats::worker::WorkerSettings;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "ops-whsec-0123456789";
/// A value in the poison payloads: it must never appear in an alert.
const PAYLOAD_MARKER: &str = "payload-marker-7f3a";

/// One webhook call as received.
#[derive(Clone, Debug)]
struct Call {
    event: String,
    delivery: String,
    signed: bool,
    body: serde_json::Value,
    raw: String,
}

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Receiver {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let calls = self.calls();
            if calls.len() >= count {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} webhook calls, got {calls:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver.calls.lock().expect("lock").push(Call {
        event: header(EVENT_HEADER),
        delivery: header(DELIVERY_HEADER),
        signed: verify(SECRET.as_bytes(), &body, &header(SIGNATURE_HEADER)),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
    });
    StatusCode::OK
}

async fn webhook_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/ops", post(receive))
        .with_state(receiver.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{address}/ops"), receiver)
}

/// Settings whose only alert route is the operator's webhook at `url`.
fn operations_routes(url: &str) -> Settings {
    let routes = AlertRoutes {
        smtp: None,
        tenants: std::collections::HashMap::new(),
        operations: Some(TenantRoutes {
            webhook: Some(WebhookRoute {
                url: url.to_owned(),
                secret: SecretString::from(SECRET),
            }),
            email_to: vec![],
            ..TenantRoutes::default()
        }),
        console_url: None,
    };
    routes.check().expect("valid routes");
    Settings {
        alert_routes: routes,
        ..Settings::default()
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(50),
        attempt_timeout: Duration::from_secs(5),
    }
}

/// A `Failed` event of a new cycle whose payload is not a failure, written behind the
/// pipeline's back: the `alerts` consumer can never read it.
async fn poison_failed(store: &Store, cycle: &str) {
    store
        .execute_sql(&format!(
            "INSERT INTO events VALUES ('BackupCycle', '{cycle}', 1, 'Failed', '1.0', \
             '{{\"Failed\": {{\"secret\": \"{PAYLOAD_MARKER}\"}}}}', '{{}}')"
        ))
        .await
        .expect("a poison event");
}

async fn pending_letters(store: &Store, consumer: &str) -> usize {
    store
        .dead_letters(true)
        .await
        .expect("dead letters")
        .iter()
        .filter(|l| l.consumer == consumer)
        .count()
}

async fn wait_for_letters(store: &Store, consumer: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pending_letters(store, consumer).await < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer} never gave up on {count} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_clean(call: &Call) {
    assert!(call.signed, "signed with the route's secret: {call:?}");
    assert!(
        !call.raw.contains(PAYLOAD_MARKER),
        "no payload: {}",
        call.raw
    );
    assert!(!call.raw.contains(SECRET), "no secret: {}", call.raw);
    assert_eq!(call.body["scope"], "operations");
}

/// The `alerts` consumer (no ladder stage: its give-ups fail no cycle, so no Backup Failed
/// says anything) gives up on a poison event; the running `alert_delivery` process raises one
/// operations alert on the operator's webhook. More letters of the same consumer and more
/// sweeps, also two processes sweeping at once, raise nothing more; replaying the letters
/// resolves it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ladder_consumers_dead_letters_raise_one_operations_alert_until_replayed() {
    let (url, receiver) = webhook_receiver().await;
    let harness = Harness::with_backend(Backend::Postgres, operations_routes(&url)).await;
    let pipeline = harness.pipeline.clone();
    let store = pipeline.store.clone();
    let shutdown = CancellationToken::new();
    let stages = tokio::spawn({
        let (pipeline, shutdown) = (pipeline.clone(), shutdown.clone());
        async move {
            run_stages(
                &pipeline,
                &["alerts", "alert_delivery"],
                &WorkerSettings::default(),
                shutdown,
            )
            .await;
        }
    });

    poison_failed(&store, "poison-cycle-1").await;
    wait_for_letters(&store, "alerts", 1).await;
    // The running sweep (every 15 s) raises it.
    let calls = receiver.wait_for(1, Duration::from_secs(40)).await;
    let raised = &calls[0];
    assert_clean(raised);
    assert_eq!(raised.event, "OperationsAlertRaised");
    assert_eq!(raised.body["alert"], "Dead Letters");
    assert_eq!(raised.body["state"], "raised");
    assert_eq!(raised.body["condition"], "dead_letters:alerts");
    assert_eq!(raised.body["alert_id"], "dead_letters:alerts-1");
    let detail = raised.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("alerts consumer") && detail.contains("Failed"),
        "{detail}"
    );
    assert_eq!(raised.delivery, "operations/dead_letters:alerts:2");

    // A second letter of the same consumer, and sweeps from two processes at once: nothing more.
    poison_failed(&store, "poison-cycle-2").await;
    wait_for_letters(&store, "alerts", 2).await;
    let (one, other) = (
        AlertDelivery::new(&pipeline).with_retry(quick_retries()),
        AlertDelivery::new(&pipeline).with_retry(quick_retries()),
    );
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            sweep_dead_letters(&one, Utc::now()),
            sweep_dead_letters(&other, Utc::now())
        );
        let (a, b) = (a.expect("sweep"), b.expect("sweep"));
        assert_eq!((a.raised, b.raised, a.resolved, b.resolved), (0, 0, 0, 0));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.calls().len(), 1, "{:?}", receiver.calls());

    // Replayed (as `restorable dead-letters replay` marks them): resolved, once.
    for letter in store.dead_letters(true).await.expect("letters") {
        assert!(store
            .mark_dead_letter_replayed(&letter.consumer, letter.position)
            .await
            .expect("mark"));
    }
    let (a, b) = tokio::join!(
        sweep_dead_letters(&one, Utc::now()),
        sweep_dead_letters(&other, Utc::now())
    );
    assert_eq!(
        a.expect("sweep").resolved + b.expect("sweep").resolved,
        1,
        "one process resolves it"
    );
    let calls = receiver.wait_for(2, Duration::from_secs(30)).await;
    let resolved = &calls[1];
    assert_clean(resolved);
    assert_eq!(resolved.event, "OperationsAlertResolved");
    assert_eq!(resolved.body["state"], "resolved");
    assert_eq!(resolved.body["alert_id"], "dead_letters:alerts-1");
    assert!(resolved.body["resolved_at"].is_string());
    assert_eq!(resolved.delivery, "operations/dead_letters:alerts:3");
    // The running sweep finds nothing more to say.
    tokio::time::sleep(Duration::from_secs(16)).await;
    shutdown.cancel();
    stages.await.expect("stages");
    one.settle().await;
    other.settle().await;
    assert_eq!(receiver.calls().len(), 2, "{:?}", receiver.calls());
    let alerts = store.operations_alerts(false).await.expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].resolved_at.is_some());
    assert!(
        store
            .take_over_deliveries(i64::MAX, 0)
            .await
            .expect("rows")
            .is_empty(),
        "every delivery ended"
    );
}

/// Many processes raising the same condition at once: one alert, one raise; on both backends.
async fn racing_raises_of_one_condition_raise_it_once(backend: Backend) {
    let harness = Harness::with_backend(backend, Settings::default()).await;
    let delivery = AlertDelivery::new(&harness.pipeline);
    let raises = futures_util::future::join_all((0..8).map(|n| {
        let delivery = delivery.clone();
        async move {
            delivery
                .raise_operations("dead_letters:close", &format!("seen by {n}"), Utc::now())
                .await
                .expect("raise")
        }
    }))
    .await;
    assert_eq!(raises.iter().filter(|r| r.is_some()).count(), 1);
    let resolves = futures_util::future::join_all((0..8).map(|_| {
        let delivery = delivery.clone();
        async move {
            delivery
                .resolve_operations("dead_letters:close", Utc::now())
                .await
                .expect("resolve")
        }
    }))
    .await;
    assert_eq!(resolves.iter().filter(|r| r.is_some()).count(), 1);
    let again = delivery
        .raise_operations("dead_letters:close", "again", Utc::now())
        .await
        .expect("raise");
    assert_eq!(
        again.map(|a| a.alert_id()).as_deref(),
        Some("dead_letters:close-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_racing_raises_of_one_condition_raise_it_once() {
    racing_raises_of_one_condition_raise_it_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_racing_raises_of_one_condition_raise_it_once() {
    racing_raises_of_one_condition_raise_it_once(Backend::Sqlite).await;
}

async fn relay_checkpoint(store: &Store) -> i64 {
    store.checkpoint(CHECKPOINT).await.unwrap_or(-1)
}

async fn wait_until_relayed(store: &Store, position: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relay_checkpoint(store).await < position {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A relay held by a store error (its log table renamed away) raises `relay_held` once, on
/// the webhook and on NATS, however many times it retries; the batch that goes through
/// resolves it. Held again by an event of an unknown version, it raises a new alert, resolved
/// when the event is upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_relay_raises_one_alert_per_hold_and_resolves_it_when_it_passes() {
    let (url, receiver) = webhook_receiver().await;
    let harness = Harness::with_backend(Backend::PostgresNats, operations_routes(&url)).await;
    let pipeline = harness.pipeline.clone();
    let store = pipeline.store.clone();
    let nats = pipeline.nats.clone().expect("nats");
    let mut on_nats = nats
        .client
        .subscribe(OPERATIONS_SUBJECT)
        .await
        .expect("subscribe");
    let pbx = harness.pbx("pbx-relay", None).await;
    harness.enrol(&pbx, 60).await;
    let head = head_position(&pipeline).await.expect("head");
    store
        .execute_sql("ALTER TABLE event_log RENAME TO event_log_away")
        .await
        .expect("hide the log");
    let shutdown = CancellationToken::new();
    let alarm = RelayAlarm::new(
        AlertDelivery::new(&pipeline).with_retry(quick_retries()),
        Duration::from_secs(1),
    );
    let relay = tokio::spawn(
        Relay::new(store.clone(), nats.clone())
            .with_alarm(alarm)
            .run(shutdown.clone()),
    );

    let calls = receiver.wait_for(1, Duration::from_secs(30)).await;
    let raised = &calls[0];
    assert_clean(raised);
    assert_eq!(raised.event, "OperationsAlertRaised");
    assert_eq!(raised.body["alert"], "Relay Held");
    assert_eq!(raised.body["alert_id"], "relay_held-1");
    let detail = raised.body["detail"].as_str().expect("detail");
    assert!(detail.contains("event_log"), "the store's error: {detail}");
    // It keeps retrying (back-off up to 5 s) and stays held: no second alert.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(relay_checkpoint(&store).await < head, "still held");
    assert_eq!(receiver.calls().len(), 1, "{:?}", receiver.calls());

    store
        .execute_sql("ALTER TABLE event_log_away RENAME TO event_log")
        .await
        .expect("the log is back");
    wait_until_relayed(&store, head).await;
    let calls = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_clean(&calls[1]);
    assert_eq!(calls[1].event, "OperationsAlertResolved");
    assert_eq!(calls[1].body["alert_id"], "relay_held-1");

    // Held again, by an event of a version this Restorable does not know.
    let instance = store.aggregate_ids("Instance").await.expect("ids")[0].clone();
    let next = store
        .history("Instance", &instance)
        .await
        .expect("history")
        .len()
        + 1;
    store
        .execute_sql(&format!(
            "INSERT INTO events VALUES ('Instance', '{instance}', {next}, 'InstanceStopped', '9.9', \
             '{{\"InstanceStopped\": {{\"stopped_at\": \"2026-11-27T00:00:00Z\"}}}}', '{{}}')"
        ))
        .await
        .expect("a newer event");
    let calls = receiver.wait_for(3, Duration::from_secs(30)).await;
    assert_clean(&calls[2]);
    assert_eq!(calls[2].event, "OperationsAlertRaised");
    assert_eq!(calls[2].body["alert_id"], "relay_held-2");
    let detail = calls[2].body["detail"].as_str().expect("detail");
    assert!(detail.contains("9.9"), "names the version: {detail}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.calls().len(), 3, "{:?}", receiver.calls());
    store
        .execute_sql(&format!(
            "UPDATE events SET event_version = '1.0' WHERE aggregate_id = '{instance}' AND sequence = {next}"
        ))
        .await
        .expect("upgrade");
    wait_until_relayed(&store, head + 1).await;
    let calls = receiver.wait_for(4, Duration::from_secs(30)).await;
    assert_eq!(calls[3].event, "OperationsAlertResolved");
    assert_eq!(calls[3].body["alert_id"], "relay_held-2");

    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    relay.await.expect("relay");
    assert_eq!(receiver.calls().len(), 4, "{:?}", receiver.calls());
    // NATS had the same four documents.
    let mut published = Vec::new();
    while published.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(10), on_nats.next())
            .await
            .expect("published on NATS")
            .expect("subscription open");
        let body: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        published.push((body["alert_id"].clone(), body["state"].clone()));
    }
    assert_eq!(
        published,
        [
            ("relay_held-1", "raised"),
            ("relay_held-1", "resolved"),
            ("relay_held-2", "raised"),
            ("relay_held-2", "resolved"),
        ]
        .map(|(id, state)| (serde_json::json!(id), serde_json::json!(state)))
    );
    let alerts = store.operations_alerts(false).await.expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.resolved_at.is_some()));
}
