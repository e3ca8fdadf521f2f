//! The Microsoft Teams route: an incoming webhook (a Workflows webhook or a legacy connector)
//! receives a `message` with one Adaptive Card (version 1.4): the headline, the facts as a
//! `FactSet` (values Restorable produces), the detail as a `RichTextBlock` of one `TextRun` —
//! plain text, never Markdown, so a PBX's answer cannot make a link — and an `Action.OpenUrl`
//! to the instance page.
//! Schema the tests check against: `schemas/alert-routes/teams-adaptive-card.json`.

use serde_json::{json, Value};

use super::card::Card;

/// The message for `card`, linking under `console` when it is known.
pub(super) fn message(card: &Card, console: Option<&str>) -> Value {
    let facts: Vec<Value> = card
        .facts
        .iter()
        .map(|(label, value)| json!({"title": label, "value": value}))
        .collect();
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": card.headline(), "weight": "Bolder", "size": "Medium",
             "wrap": true, "color": if card.resolved { "Good" } else { "Attention" }},
            {"type": "FactSet", "facts": facts},
            {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": card.detail}]},
        ],
    });
    if let Some(link) = card.link(console) {
        content["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": "Open the instance page",
            "url": link,
        }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}
