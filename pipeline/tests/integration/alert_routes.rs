//! Alert delivery against real servers on port 0: an axum webhook receiver that fails twice
//! before accepting, an SMTP sink speaking just enough SMTP, a nats-server, and a webhook that
//! nobody answers. Alerts are raised and resolved through the `InstanceAlerts` aggregate of a
//! real (SQLite) store and the logged events are handed to `AlertDelivery::react`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage};
use restorable_pipeline::alerting::{
    verify, AlertDelivery, AlertRoutes, RetryPolicy, SmtpRelay, TenantRoutes, WebhookRoute,
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER,
};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::store::LoggedEvent;
use restorable_pipeline::transport::nats::{Nats, NatsConfig};
use restorable_pipeline::transport::Consumer;
use restorable_testkit::{free_port, NatsServer};
use secrecy::SecretString;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SECRET: &str = "whsec-test-0123456789";
const DETAIL: &str = "the PBX refused the API credentials";

/// A tenant slug of this test run's own (NATS subjects may be shared with other tests).
pub(super) fn tenant() -> TenantId {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    TenantId::new(&format!("acme-{}", &unique[..12])).expect("a valid slug")
}

pub(super) fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 6,
        first_delay: Duration::from_millis(50),
        attempt_timeout: Duration::from_secs(5),
    }
}

pub(super) async fn pipeline_with(routes: AlertRoutes) -> (tempfile::TempDir, Pipeline) {
    routes.check().expect("the test's routes are valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        alert_routes: routes,
        ..Settings::default()
    };
    let pipeline = Pipeline::embedded(dir.path(), settings)
        .await
        .expect("embedded pipeline");
    (dir, pipeline)
}

/// Raises a "Backup Failed" alert on a new instance of `tenant`.
async fn raise_failed(pipeline: &Pipeline, tenant: &TenantId) -> InstanceId {
    raise_failed_with(pipeline, tenant, DETAIL).await
}

/// The same, explained by `detail`.
pub(super) async fn raise_failed_with(
    pipeline: &Pipeline,
    tenant: &TenantId,
    detail: &str,
) -> InstanceId {
    let instance = InstanceId::random();
    pipeline
        .store
        .alerts(
            &instance.to_string(),
            AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                kind: AlertKind::BackupFailed,
                tenant_id: tenant.clone(),
                instance_id: instance,
                cycle_id: Some(CycleId::random()),
                stage: Some(Stage::Capture),
                reason: Some(FailureReason::PbxAuth),
                detail: detail.to_owned(),
                raised_at: Utc::now(),
                position: 1,
            }),
        )
        .await
        .expect("raise");
    instance
}

/// Resolves `instance`'s alert by a new cycle that reached Verified; the cycle.
pub(super) async fn resolve_verified(pipeline: &Pipeline, instance: InstanceId) -> CycleId {
    let by = CycleId::random();
    pipeline
        .store
        .alerts(
            &instance.to_string(),
            AlertCommand::Resolve {
                cycle_id: by,
                reached: restorable_domain::ladder::Rung::Verified,
                ended: true,
                position: i64::MAX,
                at: Utc::now(),
            },
        )
        .await
        .expect("resolve");
    by
}

/// Every logged event after `after` that the delivery consumer wants.
pub(super) async fn alert_events(
    pipeline: &Pipeline,
    delivery: &AlertDelivery,
    after: i64,
) -> Vec<LoggedEvent> {
    let events = pipeline
        .store
        .read_after(after, 100)
        .await
        .expect("read the log");
    let wanted: Vec<_> = events.into_iter().filter(|e| delivery.wants(e)).collect();
    assert!(!wanted.is_empty(), "the store logged alert events");
    wanted
}

pub(super) async fn settle(delivery: &AlertDelivery) {
    tokio::time::timeout(Duration::from_secs(60), delivery.settle())
        .await
        .expect("deliveries finish within a minute");
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------------
// (a) webhook

#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    query: Option<String>,
    body: Bytes,
    answered: StatusCode,
}

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let call = receiver.calls.fetch_add(1, Ordering::SeqCst);
    let answered = if call < 2 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    receiver.received.lock().expect("lock").push(Received {
        headers,
        query: uri.query().map(str::to_owned),
        body,
        answered,
    });
    answered
}

async fn webhook_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hooks/restorable", post(receive))
        .with_state(receiver.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (
        format!("http://{address}/hooks/restorable?token=query-token"),
        receiver,
    )
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(&name.to_ascii_lowercase())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("header {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_one_accepted_signed_delivery_after_retries() {
    let (url, receiver) = webhook_receiver().await;
    let tenant = tenant();
    let routes = AlertRoutes {
        smtp: None,
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url,
                    secret: SecretString::from(SECRET),
                }),
                email_to: vec![],
                ..TenantRoutes::default()
            },
        )]),
        operations: None,
        console_url: None,
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    let instance = raise_failed(&pipeline, &tenant).await;
    let events = alert_events(&pipeline, &delivery, 0).await;
    assert_eq!(events.len(), 1);
    let raised_at = events[0].position;
    for event in events {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;

    let received = receiver.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 3, "two 500s, then accepted: {received:?}");
    let accepted: Vec<_> = received
        .iter()
        .filter(|r| r.answered == StatusCode::OK)
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one accepted delivery");
    let accepted = accepted[0];
    let delivery_id = format!("{instance}:1");
    for attempt in &received {
        assert_eq!(header(attempt, DELIVERY_HEADER), delivery_id, "a stable id");
        assert_eq!(attempt.body, accepted.body, "the same bytes every attempt");
    }
    assert_eq!(header(accepted, EVENT_HEADER), "AlertRaised");
    assert_eq!(header(accepted, "content-type"), "application/json");
    assert_eq!(accepted.query.as_deref(), Some("token=query-token"));

    // The signature, computed independently of the crate's signer.
    let signature = header(accepted, SIGNATURE_HEADER);
    assert_eq!(
        signature,
        format!("sha256={}", hmac_hex(SECRET, &accepted.body))
    );
    assert_ne!(
        signature,
        format!("sha256={}", hmac_hex("another-secret", &accepted.body))
    );
    assert!(verify(SECRET.as_bytes(), &accepted.body, signature));
    assert!(!verify(b"another-secret", &accepted.body, signature));
    let mut tampered = accepted.body.to_vec();
    tampered.push(b' ');
    assert!(!verify(SECRET.as_bytes(), &tampered, signature));

    let body: serde_json::Value = serde_json::from_slice(&accepted.body).expect("JSON body");
    assert_eq!(body["alert"], "Backup Failed");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["tenant_id"], tenant.as_str());
    assert_eq!(body["instance_id"], instance.to_string());
    assert_eq!(body["alert_id"], format!("{instance}-1"));
    assert_eq!(body["stage"], "capture");
    assert_eq!(body["reason"], "pbx_auth");
    assert_eq!(body["detail"], DETAIL);
    assert!(body["resolved_at"].is_null());
    let text = String::from_utf8_lossy(&accepted.body);
    assert!(!text.contains(SECRET), "no secret in the body");

    // The resolution names the same alert, tenant and instance (found in the history).
    let by = resolve_verified(&pipeline, instance).await;
    for event in alert_events(&pipeline, &delivery, raised_at).await {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;
    let received = receiver.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 4, "the resolution went through at once");
    let resolved = &received[3];
    assert_eq!(header(resolved, EVENT_HEADER), "AlertResolved");
    assert_eq!(header(resolved, DELIVERY_HEADER), format!("{instance}:2"));
    assert!(verify(
        SECRET.as_bytes(),
        &resolved.body,
        header(resolved, SIGNATURE_HEADER)
    ));
    let body: serde_json::Value = serde_json::from_slice(&resolved.body).expect("JSON body");
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["alert"], "Backup Failed");
    assert_eq!(body["alert_id"], format!("{instance}-1"));
    assert_eq!(body["tenant_id"], tenant.as_str());
    assert_eq!(body["reason"], "pbx_auth");
    assert_eq!(body["resolved_by"], by.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_refuses_with_a_4xx_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                StatusCode::UNAUTHORIZED
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    let tenant = tenant();
    let routes = AlertRoutes {
        smtp: None,
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url: format!("http://{address}/hook"),
                    secret: SecretString::from(SECRET),
                }),
                email_to: vec![],
                ..TenantRoutes::default()
            },
        )]),
        operations: None,
        console_url: None,
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    raise_failed(&pipeline, &tenant).await;
    for event in alert_events(&pipeline, &delivery, 0).await {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "401 is final");
}

// ---------------------------------------------------------------------------------------------
// (b) e-mail

#[derive(Clone, Debug, Default)]
pub(super) struct Mail {
    pub(super) mail_from: String,
    pub(super) recipients: Vec<String>,
    /// Headers and body, lines joined by `\n`.
    pub(super) data: String,
}

/// Speaks enough SMTP to take messages: 220, EHLO/HELO 250, MAIL/RCPT 250, DATA 354 ... "." 250,
/// QUIT 221.
pub(super) async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut mail = Mail::default();
                let reply = |text: &'static str| format!("{text}\r\n");
                if write
                    .write_all(reply("220 sink ESMTP").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer = match verb.as_str() {
                        "EHLO" | "HELO" => "250 sink",
                        "MAIL" => {
                            mail.mail_from = line.clone();
                            "250 OK"
                        }
                        "RCPT" => {
                            mail.recipients.push(line.clone());
                            "250 OK"
                        }
                        "DATA" => {
                            if write
                                .write_all(reply("354 go ahead").as_bytes())
                                .await
                                .is_err()
                            {
                                return;
                            }
                            while let Ok(Some(data)) = lines.next_line().await {
                                if data == "." {
                                    break;
                                }
                                mail.data.push_str(&data);
                                mail.data.push('\n');
                            }
                            kept.lock().expect("lock").push(std::mem::take(&mut mail));
                            "250 queued"
                        }
                        "RSET" | "NOOP" => "250 OK",
                        "QUIT" => {
                            let _ = write.write_all(reply("221 bye").as_bytes()).await;
                            return;
                        }
                        _ => "502 not implemented",
                    };
                    if write.write_all(reply(answer).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mails)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_route_gets_a_plain_text_message_through_the_relay() {
    let (port, mails) = smtp_sink().await;
    let tenant = tenant();
    let routes = AlertRoutes {
        smtp: Some(SmtpRelay {
            host: "127.0.0.1".to_owned(),
            port,
            from: "Restorable <alerts@restorable.test>".to_owned(),
            username: None,
            password: None,
            starttls: false,
        }),
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: None,
                email_to: vec!["ops@acme.example".to_owned()],
                ..TenantRoutes::default()
            },
        )]),
        operations: None,
        console_url: None,
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    let instance = raise_failed(&pipeline, &tenant).await;
    for event in alert_events(&pipeline, &delivery, 0).await {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;

    let mails = mails.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "one message: {mails:?}");
    let mail = &mails[0];
    assert!(
        mail.mail_from.contains("<alerts@restorable.test>"),
        "{}",
        mail.mail_from
    );
    assert_eq!(mail.recipients.len(), 1, "{:?}", mail.recipients);
    assert!(
        mail.recipients[0].contains("<ops@acme.example>"),
        "{:?}",
        mail.recipients
    );
    assert!(mail.data.contains("To: ops@acme.example"), "{}", mail.data);
    assert!(
        mail.data.contains("Subject: [Restorable] Backup Failed"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/plain"), "{}", mail.data);
    assert!(
        mail.data.contains("Backup Failed (raised)"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("pbx_auth"), "the reason: {}", mail.data);
    assert!(mail.data.contains(DETAIL), "{}", mail.data);
    assert!(mail.data.contains(&instance.to_string()), "{}", mail.data);
}

// ---------------------------------------------------------------------------------------------
// (c) NATS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_published_on_the_tenants_nats_subject() {
    let (_own_server, url) = match std::env::var("RESTORABLE_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let server = NatsServer::start();
            let url = server.url();
            (Some(server), url)
        }
    };
    let tenant = tenant();
    let (_dir, mut pipeline) = pipeline_with(AlertRoutes::default()).await;
    pipeline.nats = Some(
        Nats::connect(&NatsConfig { url: url.clone() })
            .await
            .expect("NATS"),
    );
    let listener = async_nats::connect(url.as_str()).await.expect("connect");
    let subject = restorable_pipeline::alerting::alert_subject(tenant.as_str());
    assert_eq!(subject, format!("restorable.alerts.{tenant}"));
    let mut subscriber = listener.subscribe(subject).await.expect("subscribe");
    listener.flush().await.expect("flush");

    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    let instance = raise_failed(&pipeline, &tenant).await;
    for event in alert_events(&pipeline, &delivery, 0).await {
        delivery.react(event).await.expect("react");
    }
    let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
        .await
        .expect("published within 10 s")
        .expect("a message");
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(id, Some(format!("{instance}:1")));
    let body: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
    assert_eq!(body["alert"], "Backup Failed");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["tenant_id"], tenant.as_str());
    assert_eq!(body["instance_id"], instance.to_string());
    settle(&delivery).await;
}

// ---------------------------------------------------------------------------------------------
// (d) never blocking

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_never_answers_does_not_hold_up_react() {
    let closed = free_port();
    let tenant = tenant();
    let routes = AlertRoutes {
        smtp: Some(SmtpRelay {
            host: "127.0.0.1".to_owned(),
            port: free_port(),
            from: "alerts@restorable.test".to_owned(),
            username: None,
            password: None,
            starttls: false,
        }),
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url: format!("http://127.0.0.1:{closed}/hook"),
                    secret: SecretString::from(SECRET),
                }),
                email_to: vec!["ops@acme.example".to_owned()],
                ..TenantRoutes::default()
            },
        )]),
        operations: None,
        console_url: None,
    };
    let (_dir, pipeline) = pipeline_with(routes).await;
    // Pauses of 2 + 4 + 8 + 16 + 32 s: a react that waited for the routes would take > 60 s.
    let slow = RetryPolicy {
        attempts: 6,
        first_delay: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(5),
    };
    let delivery = AlertDelivery::new(&pipeline).with_retry(slow);
    raise_failed(&pipeline, &tenant).await;
    let events = alert_events(&pipeline, &delivery, 0).await;

    let started = Instant::now();
    for event in events {
        tokio::time::timeout(Duration::from_secs(2), delivery.react(event))
            .await
            .expect("react returns without waiting for the routes")
            .expect("react");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "react took {took:?}");
    assert_eq!(
        delivery.in_flight(),
        2,
        "the webhook and the e-mail are still being retried in the background"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        delivery.in_flight(),
        2,
        "still retrying after the first failure"
    );
}

fn webhook_routes(tenant: &TenantId, url: &str) -> AlertRoutes {
    AlertRoutes {
        smtp: None,
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url: url.to_owned(),
                    secret: SecretString::from(SECRET),
                }),
                email_to: vec![],
                ..TenantRoutes::default()
            },
        )]),
        operations: None,
        console_url: None,
    }
}

async fn open_pipeline(dir: &std::path::Path, routes: AlertRoutes) -> Pipeline {
    let settings = Settings {
        alert_routes: routes,
        ..Settings::default()
    };
    Pipeline::embedded(dir, settings)
        .await
        .expect("embedded pipeline")
}

/// A process takes an alert, its webhook answers 500, and the process stops while it waits to
/// try again. The next process (same store) leaves the delivery alone while the stopped one's
/// lease holds, then takes it over and delivers it under the same delivery id; nothing is left.
#[test]
fn a_delivery_cut_off_by_a_stopped_process_is_finished_by_the_next() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (url, receiver) = runtime.block_on(webhook_receiver());
    let tenant = tenant();
    let dir = tempfile::tempdir().expect("tempdir");

    let first_process = tokio::runtime::Runtime::new().expect("the first process's runtime");
    let instance = first_process.block_on(async {
        let pipeline = open_pipeline(dir.path(), webhook_routes(&tenant, &url)).await;
        let delivery = AlertDelivery::new(&pipeline).with_retry(RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(5),
        });
        let instance = raise_failed(&pipeline, &tenant).await;
        for event in alert_events(&pipeline, &delivery, 0).await {
            delivery.react(event).await.expect("react");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the first attempt was made");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(delivery.in_flight(), 1, "waiting to try again");
        instance
    });
    // The process stops: its task, waiting ten minutes to try again, is gone.
    first_process.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 1);

    runtime.block_on(async {
        let pipeline = open_pipeline(dir.path(), webhook_routes(&tenant, &url)).await;
        let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
        assert_eq!(
            delivery.resume_pending(Utc::now()).await.expect("resume"),
            0,
            "the stopped process's lease still holds"
        );
        let lease_ran_out = Utc::now() + chrono::Duration::days(2);
        assert_eq!(
            delivery
                .resume_pending(lease_ran_out)
                .await
                .expect("resume"),
            1,
            "taken over once the lease ran out"
        );
        settle(&delivery).await;
        let received = receiver.received.lock().expect("lock").clone();
        assert_eq!(
            received.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::OK
            ],
            "the stopped process's attempt, then the next process's retries"
        );
        for attempt in &received {
            assert_eq!(header(attempt, DELIVERY_HEADER), format!("{instance}:1"));
            assert!(verify(
                SECRET.as_bytes(),
                &attempt.body,
                header(attempt, SIGNATURE_HEADER)
            ));
        }
        assert_eq!(received[0].body, received[2].body, "the same alert");
        assert_eq!(
            delivery
                .resume_pending(lease_ran_out + chrono::Duration::hours(1))
                .await
                .expect("resume"),
            0,
            "nothing left once delivered"
        );
    });
}
