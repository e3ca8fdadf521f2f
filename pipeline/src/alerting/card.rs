//! One alert as the chat and incident routes show it ([`Card`]): a title, raised, reminded or
//! resolved,
//! the facts Restorable controls (tenant, instance, cycle, stage, reason: slugs, ids and
//! enums), the detail (free text that may come from a PBX: each route renders it as plain
//! text), when, the stable key that ties a resolution to its raise, and the instance page.
//! Built once per delivery ([`super::message`]), beside the JSON document the signed webhook
//! gets. A leaf: it knows no message type.

/// The most characters of detail a card carries; a longer detail is cut, `…` marking the cut.
pub(super) const DETAIL_CHARS: usize = 1_500;

/// The facts of one alert for Slack, Teams and PagerDuty.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Card {
    /// `Backup Failed`, `Backup Stale`, `Dead Letters` ...
    pub(super) alert: &'static str,
    /// Whether this is the resolution.
    pub(super) resolved: bool,
    /// Whether this is a reminder of an alert still open.
    pub(super) reminder: bool,
    /// The alert's id: the same in the raise and its resolution.
    pub(super) alert_id: String,
    /// The tenant's slug, or `operations`.
    pub(super) scope: String,
    /// What the alert is about: the instance id, or the operations condition.
    pub(super) source: String,
    /// Labelled facts, in order (values Restorable produces: ids, slugs, enums, times).
    pub(super) facts: Vec<(&'static str, String)>,
    /// The explanation (may quote a PBX's answer), cut at [`DETAIL_CHARS`].
    pub(super) detail: String,
    /// When it was raised, or resolved (RFC 3339).
    pub(super) at: String,
    /// The instance page's path (`/instances/<id>`), for a tenant's alert.
    pub(super) page: Option<String>,
}

impl Card {
    /// `Backup Failed (raised): acme / <instance>`.
    pub(super) fn headline(&self) -> String {
        let state = match (self.resolved, self.reminder) {
            (true, _) => "resolved",
            (false, true) => "reminder",
            (false, false) => "raised",
        };
        format!("{} ({state}): {} / {}", self.alert, self.scope, self.source)
    }

    /// The key a resolution shares with its raise (PagerDuty's `dedup_key`).
    pub(super) fn dedup_key(&self) -> String {
        format!("restorable/{}", self.alert_id)
    }

    /// The instance page under `console` (the console's public URL), if both are known.
    pub(super) fn link(&self, console: Option<&str>) -> Option<String> {
        let (console, page) = (console?, self.page.as_ref()?);
        Some(format!("{}{page}", console.trim_end_matches('/')))
    }
}

/// `text` cut at [`DETAIL_CHARS`] characters.
pub(super) fn cut(text: &str) -> String {
    at_most(text, DETAIL_CHARS)
}

/// `text` if it has at most `chars` characters, else its first `chars - 1` and `…`.
pub(super) fn at_most(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(chars.saturating_sub(1)).collect();
    kept + "…"
}
