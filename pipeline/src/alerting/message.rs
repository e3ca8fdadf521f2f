//! What a route receives: the JSON document of a tenant's alert ([`AlertMessage`]) or of an
//! operations alert ([`OperationsMessage`]), its e-mail text, the HMAC-SHA256 signature of the
//! webhook body ([`sign`], [`verify`]), the subjects, and one [`Delivery`] ready to go out.

use super::card::{cut, Card};
use super::*;

/// The NATS subject operations alerts are published on (outside `restorable.alerts.<tenant>`,
/// so no tenant's subscription sees them).
pub const OPERATIONS_SUBJECT: &str = "restorable.operations.alerts";
/// The header carrying the body's signature: `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "X-Restorable-Signature";
/// The header naming the event: `AlertRaised`, `AlertResolved` or `AlertReminded`.
pub const EVENT_HEADER: &str = "X-Restorable-Event";
/// The header carrying the delivery id (the same on every delivery of one event).
pub const DELIVERY_HEADER: &str = "X-Restorable-Delivery";

/// The subject a tenant's alerts are published on.
pub fn alert_subject(tenant: &str) -> String {
    format!("restorable.alerts.{tenant}")
}

/// The JSON document every route receives (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertMessage {
    /// `Backup Failed` or `Backup Stale`.
    pub alert: &'static str,
    /// `raised`, `resolved` or `reminder` (still open, nobody took it on).
    pub state: &'static str,
    /// The alert's id (`<instance id>-<number>`).
    pub alert_id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The cycle that failed (for `Backup Failed`).
    pub cycle_id: Option<CycleId>,
    /// The stage that failed (for `Backup Failed`).
    pub stage: Option<Stage>,
    /// The stable reason code (for `Backup Failed`).
    pub reason: Option<FailureReason>,
    /// A human explanation.
    pub detail: String,
    /// When the alert was raised.
    pub raised_at: DateTime<Utc>,
    /// When it was resolved (`resolved` only).
    pub resolved_at: Option<DateTime<Utc>>,
    /// The cycle that recovered the instance (`resolved` only; `null` when the native backup
    /// watch's reading between cycles did).
    pub resolved_by: Option<CycleId>,
    /// The one route a reminder is for (a raise and a resolution go to every route).
    #[serde(skip)]
    pub route: Option<String>,
    /// The alert's kind.
    #[serde(skip)]
    pub kind: Option<AlertKind>,
    /// The routes that were reminded of the alert (for a resolution: a route whose raise was
    /// held by quiet hours heard of it only through a reminder).
    #[serde(skip)]
    pub reminded_on: Vec<String>,
}

impl AlertMessage {
    /// The message of a raised alert.
    pub fn raised(raised: &AlertRaised) -> Self {
        Self {
            alert: raised.kind.title(),
            state: "raised",
            alert_id: raised.alert_id.clone(),
            tenant_id: raised.tenant_id.clone(),
            instance_id: raised.instance_id,
            cycle_id: raised.cycle_id,
            stage: raised.stage,
            reason: raised.reason,
            detail: raised.detail.clone(),
            raised_at: raised.raised_at,
            resolved_at: None,
            resolved_by: None,
            route: None,
            kind: Some(raised.kind),
            reminded_on: Vec::new(),
        }
    }

    /// Whether `route` gets this message, its section timing it as `times`: a reminder only
    /// its own route; a raise every route that was not quiet when it was raised (its urgent
    /// kinds excepted); a resolution every route that heard of the alert (see
    /// [`super::quiet`]).
    pub(super) fn goes_to(&self, route: &str, times: Option<&RouteTimes>) -> bool {
        if let Some(only) = &self.route {
            return only == route;
        }
        let held = match (times, self.kind) {
            (Some(times), Some(kind)) => times.holds(route, kind, self.instance_id, self.raised_at),
            _ => false,
        };
        !held || (self.resolved_at.is_some() && self.reminded_on.iter().any(|r| r == route))
    }

    /// The message of a resolved alert (`raised` is the event that raised it).
    pub fn resolved(raised: &AlertRaised, resolved: &AlertResolved) -> Self {
        Self {
            state: "resolved",
            resolved_at: Some(resolved.resolved_at),
            resolved_by: resolved.resolved_by,
            ..Self::raised(raised)
        }
    }

    /// The reminder of a raised alert on `reminded.route`.
    pub fn reminder(raised: &AlertRaised, reminded: &AlertReminded) -> Self {
        Self {
            state: "reminder",
            route: Some(reminded.route.clone()),
            ..Self::raised(raised)
        }
    }

    /// The event type it comes from: `AlertRaised`, `AlertResolved` or `AlertReminded`.
    pub fn event_type(&self) -> &'static str {
        match self.state {
            "resolved" => "AlertResolved",
            "reminder" => "AlertReminded",
            _ => "AlertRaised",
        }
    }

    /// The alert as the chat and incident routes show it.
    pub(super) fn card(&self) -> Card {
        let mut facts = vec![
            ("Tenant", self.tenant_id.to_string()),
            ("Instance", self.instance_id.to_string()),
        ];
        if let Some(cycle) = self.cycle_id {
            facts.push(("Cycle", cycle.to_string()));
        }
        if let Some(stage) = self.stage {
            facts.push(("Stage", stage.to_string()));
        }
        if let Some(reason) = self.reason {
            facts.push(("Reason", reason.to_string()));
        }
        facts.push(("Raised at", self.raised_at.to_rfc3339()));
        if let Some(at) = self.resolved_at {
            facts.push(("Resolved at", at.to_rfc3339()));
            facts.push(("Resolved by", self.resolver()));
        }
        Card {
            alert: self.alert,
            resolved: self.resolved_at.is_some(),
            reminder: self.state == "reminder",
            alert_id: self.alert_id.clone(),
            scope: self.tenant_id.to_string(),
            source: self.instance_id.to_string(),
            facts,
            detail: cut(&self.detail),
            at: self.resolved_at.unwrap_or(self.raised_at).to_rfc3339(),
            page: Some(format!("/instances/{}", self.instance_id)),
        }
    }

    /// The JSON body (the bytes that are signed).
    pub fn to_json(&self) -> Bytes {
        // A struct of strings, ids, enums and timestamps always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// What resolved it, for people: `cycle <id>`, or the native backup watch (which reads
    /// between cycles).
    fn resolver(&self) -> String {
        match self.resolved_by {
            Some(cycle) => format!("cycle {cycle}"),
            None => "the native backup watch".to_owned(),
        }
    }

    /// The e-mail subject.
    pub fn subject(&self) -> String {
        let prefix = match self.state {
            "resolved" => "Resolved: ",
            "reminder" => "Reminder: ",
            _ => "",
        };
        format!(
            "[Restorable] {prefix}{} - {} / {}",
            self.alert, self.tenant_id, self.instance_id
        )
    }

    /// The e-mail body: one fact per line.
    pub fn text(&self, delivery_id: &str) -> String {
        let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
        let mut lines = vec![
            format!("{} ({})", self.alert, self.state),
            String::new(),
            format!("Tenant:      {}", self.tenant_id),
            format!("Instance:    {}", self.instance_id),
            format!(
                "Cycle:       {}",
                optional(self.cycle_id.map(|c| c.to_string()))
            ),
            format!(
                "Stage:       {}",
                optional(self.stage.map(|s| s.to_string()))
            ),
            format!(
                "Reason:      {}",
                optional(self.reason.map(|r| r.to_string()))
            ),
            format!("Detail:      {}", self.detail),
            format!("Raised at:   {}", self.raised_at.to_rfc3339()),
        ];
        if let Some(at) = self.resolved_at {
            lines.push(format!("Resolved at: {}", at.to_rfc3339()));
            lines.push(format!("Resolved by: {}", self.resolver()));
        }
        lines.push(format!("Alert id:    {}", self.alert_id));
        lines.push(format!("Delivery:    {delivery_id}"));
        lines.push(String::new());
        lines.join("\r\n")
    }
}

/// The JSON document an operations alert sends on every route: `scope` (always
/// `operations`), `alert` (the title), `state` (`raised` / `resolved`), `alert_id`
/// (`<condition>-<number>`), `condition`, `detail`, `raised_at`, `resolved_at` (`null` while
/// raised). No tenant, no instance: it is about the service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperationsMessage {
    /// Always `operations`: tells these apart from a tenant's alerts.
    pub scope: &'static str,
    /// `Dead Letters`, `Relay Held`.
    pub alert: &'static str,
    /// `raised` or `resolved`.
    pub state: &'static str,
    /// `<condition>-<number>`: the same in the raise and its resolution.
    pub alert_id: String,
    /// What it is about, e.g. `dead_letters:close` or `relay_held`.
    pub condition: String,
    /// What was seen when it was raised (error texts only).
    pub detail: String,
    /// When it was raised (RFC 3339).
    pub raised_at: String,
    /// When it was resolved (`resolved` only).
    pub resolved_at: Option<String>,
}

impl OperationsMessage {
    /// The message of `alert`: `resolved` once it has a `resolved_at`.
    pub fn of(alert: &OperationsAlert) -> Self {
        Self {
            scope: "operations",
            alert: alert.title(),
            state: if alert.resolved_at.is_some() {
                "resolved"
            } else {
                "raised"
            },
            alert_id: alert.alert_id(),
            condition: alert.key.clone(),
            detail: alert.detail.clone(),
            raised_at: alert.raised_at.clone(),
            resolved_at: alert.resolved_at.clone(),
        }
    }

    /// `OperationsAlertRaised` or `OperationsAlertResolved` (the webhook's event header).
    pub fn event_type(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "OperationsAlertResolved"
        } else {
            "OperationsAlertRaised"
        }
    }

    /// The alert as the chat and incident routes show it (about the service: no page).
    pub(super) fn card(&self) -> Card {
        let mut facts = vec![
            ("Scope", "operations".to_owned()),
            ("Condition", self.condition.clone()),
            ("Raised at", self.raised_at.clone()),
        ];
        if let Some(at) = &self.resolved_at {
            facts.push(("Resolved at", at.clone()));
        }
        Card {
            alert: self.alert,
            resolved: self.resolved_at.is_some(),
            reminder: self.state == "reminder",
            alert_id: self.alert_id.clone(),
            scope: "operations".to_owned(),
            source: self.condition.clone(),
            facts,
            detail: cut(&self.detail),
            at: self
                .resolved_at
                .clone()
                .unwrap_or_else(|| self.raised_at.clone()),
            page: None,
        }
    }

    /// The JSON body (the bytes that are signed).
    pub fn to_json(&self) -> Bytes {
        // A struct of strings always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The e-mail subject.
    pub fn subject(&self) -> String {
        let prefix = match self.state {
            "resolved" => "Resolved: ",
            "reminder" => "Reminder: ",
            _ => "",
        };
        format!("[Restorable] {prefix}{} - operations", self.alert)
    }

    /// The e-mail body: one fact per line.
    pub fn text(&self, delivery_id: &str) -> String {
        let mut lines = vec![
            format!("{} ({})", self.alert, self.state),
            String::new(),
            format!("Condition:   {}", self.condition),
            format!("Detail:      {}", self.detail),
            format!("Raised at:   {}", self.raised_at),
        ];
        if let Some(at) = &self.resolved_at {
            lines.push(format!("Resolved at: {at}"));
        }
        lines.push(format!("Alert id:    {}", self.alert_id));
        lines.push(format!("Delivery:    {delivery_id}"));
        lines.push(String::new());
        lines.join("\r\n")
    }
}

/// Whose routes a delivery takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Audience {
    /// A tenant's (`[alert_routes.<tenant>]`, `restorable.alerts.<tenant>`).
    Tenant(TenantId),
    /// The service operator's (`[operations_alerts]`, [`OPERATIONS_SUBJECT`]).
    Operations,
}

impl Audience {
    /// The NATS subject it is published on.
    pub(super) fn subject(&self) -> String {
        match self {
            Audience::Tenant(tenant) => alert_subject(tenant.as_str()),
            Audience::Operations => OPERATIONS_SUBJECT.to_owned(),
        }
    }

    /// The section of the settings its routes come from.
    pub(super) fn section(&self) -> String {
        match self {
            Audience::Tenant(tenant) => format!("alert_routes.{tenant}"),
            Audience::Operations => "operations_alerts".to_owned(),
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Audience::Tenant(tenant) => write!(f, "{tenant}"),
            Audience::Operations => f.write_str("operations"),
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac
}

/// HMAC-SHA256 of `body` under `key`, in lowercase hex (the part after `sha256=` of
/// [`SIGNATURE_HEADER`]).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(key, body).finalize().into_bytes())
}

/// Whether `header` (`sha256=<hex>`, the value of [`SIGNATURE_HEADER`]) is the signature of
/// `body` under `key`. Compares in constant time.
pub fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    mac(key, body).verify_slice(&expected).is_ok()
}

/// One alert ready to go out.
#[derive(Clone, Debug)]
pub(super) struct Delivery {
    /// `<aggregate id>:<sequence>`.
    pub(super) id: String,
    /// The aggregate (instance) and sequence of the event (of an operations alert:
    /// [`delivery_row`]).
    pub(super) instance_id: String,
    pub(super) sequence: i64,
    /// Whose routes it takes.
    pub(super) audience: Audience,
    /// The alert's id (for logs).
    pub(super) alert_id: String,
    /// The webhook's event header and NATS's `Restorable-Event-Type`.
    pub(super) event_type: &'static str,
    /// The e-mail subject and body.
    pub(super) subject: String,
    pub(super) text: String,
    /// The JSON document (the signed webhook's body, NATS's payload).
    pub(super) body: Bytes,
    /// The alert as the chat and incident routes show it.
    pub(super) card: Card,
    /// Whether a row of `alert_deliveries` stands for it (deleted when the route is done).
    pub(super) recorded: bool,
}

impl Delivery {
    /// A tenant's alert: event `sequence` of the `InstanceAlerts` aggregate `instance_id`.
    pub(super) fn of_tenant(message: &AlertMessage, instance_id: &str, sequence: i64) -> Self {
        let id = format!("{instance_id}:{sequence}");
        Self {
            text: message.text(&id),
            id,
            instance_id: instance_id.to_owned(),
            sequence,
            audience: Audience::Tenant(message.tenant_id.clone()),
            alert_id: message.alert_id.clone(),
            event_type: message.event_type(),
            subject: message.subject(),
            body: message.to_json(),
            card: message.card(),
            recorded: true,
        }
    }

    /// An operations alert's raise or resolution (its row: [`delivery_row`]).
    pub(super) fn of_operations(alert: &OperationsAlert, recorded: bool) -> Self {
        let message = OperationsMessage::of(alert);
        let (instance_id, sequence) = delivery_row(alert);
        let id = format!("{instance_id}:{sequence}");
        Self {
            text: message.text(&id),
            id,
            instance_id,
            sequence,
            audience: Audience::Operations,
            alert_id: message.alert_id.clone(),
            event_type: message.event_type(),
            subject: message.subject(),
            body: message.to_json(),
            card: message.card(),
            recorded,
        }
    }
}
