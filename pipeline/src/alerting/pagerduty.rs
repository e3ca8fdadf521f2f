//! The PagerDuty route: Events API v2. A raise is a `trigger`, its resolution a `resolve`, both
//! with the alert's stable `dedup_key` (`restorable/<alert id>`), so PagerDuty keeps one
//! incident per alert however often either is delivered. A trigger carries `payload`
//! (`summary` ≤ 1,024 characters, `source`, `severity`, `timestamp`, `class`, `group`,
//! `custom_details` with the facts and the detail) and a link to the instance page. PagerDuty
//! answers `202`; `400` is final, `429` and `5xx` are retried ([`post_json`]).
//! Schema the tests check against: `schemas/alert-routes/pagerduty-events-v2.json`.

use serde_json::{json, Map, Value};

use super::card::{at_most, Card};
use super::post::{post_json, Post};
use super::*;

/// The event for `card` under `routing_key`, linking under `console` when it is known.
pub(super) fn event(card: &Card, routing_key: &str, console: Option<&str>) -> Value {
    if card.resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": card.dedup_key(),
        });
    }
    let mut details = Map::new();
    for (label, value) in &card.facts {
        details.insert((*label).to_owned(), Value::String(value.clone()));
    }
    details.insert("Detail".to_owned(), Value::String(card.detail.clone()));
    let severity = if card.alert == "Backup Failed" {
        "error"
    } else {
        "warning"
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": card.dedup_key(),
        "client": "Restorable",
        "payload": {
            "summary": at_most(&format!("{}: {}", card.headline(), card.detail), 1_024),
            "source": card.source,
            "severity": severity,
            "timestamp": card.at,
            "class": card.alert,
            "group": card.scope,
            "custom_details": details,
        },
    });
    if let Some(link) = card.link(console) {
        event["links"] = json!([{"href": link, "text": "The instance page"}]);
        event["client_url"] = Value::String(link);
    }
    event
}

pub(super) async fn post_pagerduty(
    route: &PagerDutyRoute,
    delivery: &Delivery,
    console: Option<&str>,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let body = event(&delivery.card, route.routing_key.expose_secret(), console);
    let post = Post {
        route: "pagerduty",
        url: &route.events_url,
        shown: host_of(&route.events_url),
        headers: Vec::new(),
        body: Bytes::from(body.to_string()),
    };
    post_json(post, &delivery.id, policy).await
}
