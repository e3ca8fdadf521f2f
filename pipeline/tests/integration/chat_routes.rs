//! Slack, Microsoft Teams and PagerDuty against a local receiver on port 0 that checks every
//! body against the format's schema (`schemas/alert-routes/`, written from each tool's
//! documentation: the fields, their types and limits) and answers as the tool does: Slack
//! `200 ok`, Teams `200`, PagerDuty `202` — after one `429` (retried) — or `400` (final). An
//! alert whose detail is hostile (a Slack mention, Markdown and Slack links, 20,000 characters)
//! is raised and resolved through a real store; each route gets exactly one raise and one
//! resolution in its own format, linking to the instance page; PagerDuty's trigger and resolve
//! share one dedup key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use restorable_pipeline::alerting::{
    AlertDelivery, AlertRoutes, ChatRoute, PagerDutyRoute, TenantRoutes,
};
use restorable_pipeline::transport::Consumer;
use secrecy::SecretString;
use serde_json::Value;
use tokio::net::TcpListener;

use super::alert_routes::{
    alert_events, pipeline_with, quick_retries, raise_failed_with, resolve_verified, settle, tenant,
};

const CONSOLE: &str = "https://console.example";
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";
const HOSTILE: &str =
    "<!channel> <https://evil.example|log in here> [click](https://evil.example) *now* & ";

/// The receiver's record: each tool's accepted bodies, and every body its schema refused.
#[derive(Clone)]
struct Tools {
    schemas: Arc<HashMap<String, jsonschema::Validator>>,
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
    refused: Arc<Mutex<Vec<String>>>,
    pagerduty_calls: Arc<AtomicUsize>,
    /// PagerDuty's answer after its first call (`202`, or `400` to test a final refusal).
    pagerduty_answer: StatusCode,
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/alert-routes")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("schema file");
    let value: Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::validator_for(&value).expect("a valid schema")
}

async fn receive(
    State(tools): State<Tools>,
    Path(tool): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(validator) = tools.schemas.get(&tool) else {
        return (StatusCode::NOT_FOUND, "no such tool".into());
    };
    let refuse = |why: String, answer: &str| {
        tools.refused.lock().expect("lock").push(why);
        (StatusCode::BAD_REQUEST, answer.to_owned())
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return refuse(format!("{tool}: not JSON"), "invalid_payload");
    };
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    if !errors.is_empty() {
        return refuse(format!("{tool}: {errors:?}"), "invalid_blocks");
    }
    if tool == "pagerduty" {
        if tools.pagerduty_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return (StatusCode::TOO_MANY_REQUESTS, "rate limited".into());
        }
        if tools.pagerduty_answer != StatusCode::ACCEPTED {
            return (
                tools.pagerduty_answer,
                "{\"status\":\"invalid event\"}".into(),
            );
        }
    }
    tools
        .accepted
        .lock()
        .expect("lock")
        .push((tool.clone(), value));
    match tool.as_str() {
        "pagerduty" => (
            StatusCode::ACCEPTED,
            "{\"status\":\"success\",\"message\":\"Event processed\"}".into(),
        ),
        "slack" => (StatusCode::OK, "ok".into()),
        _ => (StatusCode::OK, "1".into()),
    }
}

/// The receiver on port 0, PagerDuty answering `pagerduty_answer` after its first `429`; its
/// base URL.
async fn tools_receiver(pagerduty_answer: StatusCode) -> (String, Tools) {
    let schemas = HashMap::from([
        ("slack".to_owned(), schema("slack-incoming-webhook.json")),
        ("teams".to_owned(), schema("teams-adaptive-card.json")),
        ("pagerduty".to_owned(), schema("pagerduty-events-v2.json")),
    ]);
    let tools = Tools {
        schemas: Arc::new(schemas),
        accepted: Arc::default(),
        refused: Arc::default(),
        pagerduty_calls: Arc::default(),
        pagerduty_answer,
    };
    let app = Router::new()
        .route("/{tool}", post(receive))
        .with_state(tools.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{address}"), tools)
}

fn routes(tenant: &restorable_domain::ids::TenantId, base: &str) -> AlertRoutes {
    let chat = |tool: &str| {
        Some(ChatRoute {
            url: SecretString::from(format!("{base}/{tool}")),
        })
    };
    AlertRoutes {
        tenants: HashMap::from([(
            tenant.clone(),
            TenantRoutes {
                slack: chat("slack"),
                teams: chat("teams"),
                pagerduty: Some(PagerDutyRoute {
                    routing_key: SecretString::from(ROUTING_KEY),
                    events_url: format!("{base}/pagerduty"),
                }),
                ..TenantRoutes::default()
            },
        )]),
        console_url: Some(CONSOLE.to_owned()),
        ..AlertRoutes::default()
    }
}

fn of<'a>(accepted: &'a [(String, Value)], tool: &str) -> Vec<&'a Value> {
    accepted
        .iter()
        .filter(|(t, _)| t == tool)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_teams_and_pagerduty_each_get_one_raise_and_one_resolution_in_their_own_format() {
    let (base, tools) = tools_receiver(StatusCode::ACCEPTED).await;
    let tenant = tenant();
    let (_dir, pipeline) = pipeline_with(routes(&tenant, &base)).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    let detail = format!("{HOSTILE}{}", "x".repeat(20_000));
    let instance = raise_failed_with(&pipeline, &tenant, &detail).await;
    let raised = alert_events(&pipeline, &delivery, 0).await;
    let after = raised.last().map(|e| e.position).unwrap_or_default();
    for event in raised {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;
    resolve_verified(&pipeline, instance).await;
    for event in alert_events(&pipeline, &delivery, after).await {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;

    let refused = tools.refused.lock().expect("lock").clone();
    assert!(
        refused.is_empty(),
        "every body fits its schema: {refused:?}"
    );
    let accepted = tools.accepted.lock().expect("lock").clone();
    let page = format!("{CONSOLE}/instances/{instance}");

    let slack = of(&accepted, "slack");
    assert_eq!(slack.len(), 2, "one raise, one resolution");
    let raise = slack[0].to_string();
    assert!(raise.contains("Backup Failed (raised)"), "{raise}");
    assert!(slack[1].to_string().contains("Backup Failed (resolved)"));
    assert!(!raise.contains("<!channel>") && !raise.contains("<https://evil"));
    assert!(raise.contains("&lt;!channel&gt;"));
    assert!(raise.contains(&page), "a button to the instance page");

    let teams = of(&accepted, "teams");
    assert_eq!(teams.len(), 2);
    let card = &teams[0]["attachments"][0]["content"];
    let run = card["body"][2]["inlines"][0]["text"]
        .as_str()
        .expect("text run");
    assert!(run.starts_with(HOSTILE), "the detail as plain text: {run}");
    assert_eq!(card["actions"][0]["url"], page.as_str());
    assert_eq!(
        teams[1]["attachments"][0]["content"]["body"][0]["color"],
        "Good"
    );

    let pagerduty = of(&accepted, "pagerduty");
    assert_eq!(pagerduty.len(), 2, "trigger and resolve: {pagerduty:?}");
    assert_eq!(
        tools.pagerduty_calls.load(Ordering::SeqCst),
        3,
        "a 429 is retried"
    );
    assert_eq!(pagerduty[0]["event_action"], "trigger");
    assert_eq!(pagerduty[1]["event_action"], "resolve");
    let key = format!("restorable/{instance}-1");
    assert_eq!(pagerduty[0]["dedup_key"], key.as_str());
    assert_eq!(pagerduty[1]["dedup_key"], key.as_str());
    assert_eq!(pagerduty[0]["routing_key"], ROUTING_KEY);
    assert_eq!(pagerduty[0]["payload"]["source"], instance.to_string());
    assert_eq!(pagerduty[0]["payload"]["severity"], "error");
    assert_eq!(pagerduty[0]["links"][0]["href"], page.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_refusing_an_event_with_400_is_not_retried_and_the_chat_routes_still_get_it() {
    let (base, tools) = tools_receiver(StatusCode::BAD_REQUEST).await;
    let tenant = tenant();
    let (_dir, pipeline) = pipeline_with(routes(&tenant, &base)).await;
    let delivery = AlertDelivery::new(&pipeline).with_retry(quick_retries());
    raise_failed_with(&pipeline, &tenant, "the copy's hash does not match").await;
    for event in alert_events(&pipeline, &delivery, 0).await {
        delivery.react(event).await.expect("react");
    }
    settle(&delivery).await;
    // The first call is the 429, the second the final 400: no third.
    assert_eq!(tools.pagerduty_calls.load(Ordering::SeqCst), 2);
    let accepted = tools.accepted.lock().expect("lock").clone();
    assert!(of(&accepted, "pagerduty").is_empty());
    assert_eq!(of(&accepted, "slack").len(), 1);
    assert_eq!(of(&accepted, "teams").len(), 1);
    assert!(tools.refused.lock().expect("lock").is_empty());
}
