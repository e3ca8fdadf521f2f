//! The Slack route: an incoming webhook receives a Block Kit message (`text` as the
//! notification's fallback, then `blocks`: a header, the facts as fields, the detail, a button to
//! the instance page, the alert id). Text that is not Restorable's own (the detail) has `&`, `<`
//! and `>` escaped as Slack asks, so a PBX's answer cannot mention `@channel` or make a link.
//! Slack's limits are kept: header 150 characters, a field 2,000, a section 3,000.
//! Schema the tests check against: `schemas/alert-routes/slack-incoming-webhook.json`.

use serde_json::{json, Value};

use super::card::{at_most, Card};

/// Slack's escaping of the three control characters of its `mrkdwn` and `plain_text`.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message for `card`, linking under `console` when it is known.
pub(super) fn message(card: &Card, console: Option<&str>) -> Value {
    let icon = if card.resolved {
        ":white_check_mark:"
    } else {
        ":rotating_light:"
    };
    let fields: Vec<Value> = card
        .facts
        .iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": at_most(&format!("*{label}*\n{}", escape(value)), 2_000)})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": at_most(&escape(&card.headline()), 150), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
    ];
    // Slack refuses a section with empty text (the whole message, as `invalid_blocks`).
    if !card.detail.trim().is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": at_most(&escape(&card.detail), 3_000)}}));
    }
    if let Some(link) = card.link(console) {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the instance page"},
            "url": link,
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": escape(&format!("Restorable · alert {}", card.alert_id)),
    }]}));
    json!({
        "text": at_most(&format!("{icon} {}", escape(&card.headline())), 3_000),
        "blocks": blocks,
    })
}
