//! Alert delivery: the consumer that sends every `AlertRaised` and `AlertResolved` event of the
//! `InstanceAlerts` aggregate to its tenant's routes, without ever holding up the pipeline.
//!
//! ```text
//! InstanceAlerts AlertRaised | AlertResolved ─► alert_delivery ─┬─► webhook  (signed JSON POST, retried)
//!                                                               ├─► e-mail   (SMTP relay, retried)
//!                                                               └─► NATS     restorable.alerts.<tenant>
//! ```
//!
//! - **The message** ([`AlertMessage`]) is the same JSON document on every route: `alert`
//!   (the title, `Backup Failed` / `Backup Stale`), `state` (`raised` / `resolved`), `alert_id`,
//!   `tenant_id`, `instance_id`, `cycle_id`, `stage`, `reason`, `detail`, `raised_at`,
//!   `resolved_at`, `resolved_by` (every key is always present; those that do not apply are
//!   `null`). A resolution repeats what was raised, found in the aggregate's history.
//! - **Webhook** ([`WebhookRoute`]): `POST` of the JSON body with
//!   `X-Restorable-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes under the route's
//!   secret>` ([`sign`], [`verify`]), `X-Restorable-Event: AlertRaised|AlertResolved` and
//!   `X-Restorable-Delivery: <instance id>:<sequence>` — the same id every time the same event
//!   is delivered, so a receiver drops repeats. Redirects are not followed. Connection errors,
//!   timeouts and non-2xx answers are retried with exponential back-off ([`RetryPolicy`]);
//!   a 4xx other than 408 and 429 is final.
//! - **E-mail** ([`SmtpRelay`]): one plain-text message to the tenant's recipients through the
//!   configured relay, over STARTTLS (required, certificates checked against the webpki roots);
//!   an unencrypted connection is only allowed to a loopback relay (a local MTA, tests).
//!   Transient SMTP failures (4xx, connection errors) are retried like webhooks; 5xx is final.
//! - **NATS**: when the pipeline has NATS, a core publish of the JSON body on
//!   `restorable.alerts.<tenant>` ([`alert_subject`]) with `Nats-Msg-Id` = the delivery id.
//!
//! **Never blocking.** [`AlertDelivery::react`](crate::transport::Consumer::react) only decodes
//! the event (and, for a resolution, reads the aggregate's history), records one pending row per
//! route in the store (`alert_deliveries`), spawns one task per route and returns, so the
//! consumer's checkpoint moves on at once. The retries run in those tasks; a row is deleted when
//! its route has the alert or is given up on.
//!
//! **Nothing lost when a process stops.** Each pending row is leased to the process delivering
//! it for as long as a delivery can take ([`RetryPolicy::longest_delivery`]). Every process that
//! runs `alert_delivery` also runs [`AlertDelivery::resume_until`]: at start and every
//! [`RESUME_EVERY`] it takes over rows whose lease ran out — a delivery cut off by a stopped or
//! killed process — and delivers them again, under the same delivery id (receivers drop
//! repeats). A redelivered event whose row exists is left to its lease holder.
//!
//! **Operations alerts** ([`crate::operations_alerts`]: a consumer's dead letters, a held
//! relay) take the same routes and the same leased, resumable rows, but the operator's:
//! `[operations_alerts]` ([`AlertRoutes::operations`]) and [`OPERATIONS_SUBJECT`], never a
//! tenant's. Their document is an [`OperationsMessage`] (`scope: "operations"`), the webhook's
//! event header `OperationsAlertRaised` / `OperationsAlertResolved`, the delivery id
//! `operations/<condition>:<2 × number, + 1 for the resolution>`.
//!
//! **No secrets.** The webhook secret and the SMTP password are [`SecretString`]s (redacted in
//! `Debug`), never in a message, a log line or an error; logs show a webhook URL without its
//! credentials, query or fragment ([`redact_url`]). Alert events themselves carry none.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use restorable_domain::alert::{AlertEvent, AlertRaised, AlertResolved};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::Pipeline;
use crate::stages::alerts::alert_subject;
use crate::store::{
    delivery_row, LoggedEvent, OperationsAlert, PendingDelivery, Store, StoreError, OPERATIONS_ROWS,
};
use crate::transport::Consumer;

/// How often [`AlertDelivery::resume_until`] looks for deliveries to take over.
pub const RESUME_EVERY: Duration = Duration::from_secs(30);
/// The NATS subject operations alerts are published on (outside `restorable.alerts.<tenant>`,
/// so no tenant's subscription sees them).
pub const OPERATIONS_SUBJECT: &str = "restorable.operations.alerts";
/// The aggregate whose events are delivered.
pub const AGGREGATE_TYPE: &str = "InstanceAlerts";
/// The header carrying the body's signature: `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "X-Restorable-Signature";
/// The header naming the event: `AlertRaised` or `AlertResolved`.
pub const EVENT_HEADER: &str = "X-Restorable-Event";
/// The header carrying the delivery id (the same on every delivery of one event).
pub const DELIVERY_HEADER: &str = "X-Restorable-Delivery";

/// Why an alert route is misconfigured or a delivery failed. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum AlertRouteError {
    /// A route's setting is not usable (named by `what`, e.g. `alert_routes.acme.email_to`).
    #[error("{what}: {detail}")]
    Invalid {
        /// The setting.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The webhook answered with a status that is not 2xx.
    #[error("webhook {url}: HTTP {status}")]
    Status {
        /// The URL without credentials, query or fragment.
        url: String,
        /// The answer's status code.
        status: u16,
    },
    /// The webhook could not be reached (connection, TLS, timeout).
    #[error("webhook {url}: {detail}")]
    Http {
        /// The URL without credentials, query or fragment.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The SMTP relay refused the message or could not be reached.
    #[error("e-mail via {relay}: {detail}")]
    Smtp {
        /// `host:port` of the relay.
        relay: String,
        /// What failed.
        detail: String,
    },
    /// A tenant has e-mail recipients but no SMTP relay is configured.
    #[error("e-mail: no SMTP relay is configured")]
    NoSmtpRelay,
    /// The NATS publish failed.
    #[error("NATS {subject}: {detail}")]
    Nats {
        /// The subject.
        subject: String,
        /// What failed.
        detail: String,
    },
    /// The alert a resolution refers to is not in its aggregate's history.
    #[error("alert {alert_id}: no AlertRaised for it in InstanceAlerts {instance}")]
    UnknownAlert {
        /// The alert.
        alert_id: String,
        /// The aggregate (instance) id.
        instance: String,
    },
    /// Every attempt failed.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<AlertRouteError>,
    },
}

/// A tenant's webhook.
#[derive(Clone)]
pub struct WebhookRoute {
    /// Where alerts are posted (`http://` or `https://`).
    pub url: String,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: SecretString,
}

impl fmt::Debug for WebhookRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRoute")
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret)
            .finish()
    }
}

/// Where one tenant's alerts go (besides NATS, which every tenant gets when it is configured).
#[derive(Clone, Debug, Default)]
pub struct TenantRoutes {
    /// A signed webhook.
    pub webhook: Option<WebhookRoute>,
    /// E-mail recipients (sent through [`AlertRoutes::smtp`]).
    pub email_to: Vec<String>,
}

/// The SMTP relay alert e-mail goes through.
#[derive(Clone, Debug)]
pub struct SmtpRelay {
    /// Host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Port (587 for submission with STARTTLS, 25 for a local MTA).
    pub port: u16,
    /// The sender, e.g. `Restorable <alerts@example.com>`.
    pub from: String,
    /// The login, if the relay wants one.
    pub username: Option<String>,
    /// The password of `username`.
    pub password: Option<SecretString>,
    /// STARTTLS is required (`true`), or the connection stays unencrypted (`false`: only
    /// allowed for a loopback relay).
    pub starttls: bool,
}

impl SmtpRelay {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Every tenant's alert routes. The default has none: alerts are only recorded (and published
/// on NATS when the pipeline has it).
#[derive(Clone, Debug, Default)]
pub struct AlertRoutes {
    /// The relay for e-mail routes.
    pub smtp: Option<SmtpRelay>,
    /// Routes by tenant.
    pub tenants: HashMap<TenantId, TenantRoutes>,
    /// The service operator's routes (`[operations_alerts]`): operations alerts — dead letters,
    /// a held relay ([`crate::operations_alerts`]) — go here and to [`OPERATIONS_SUBJECT`],
    /// never to a tenant.
    pub operations: Option<TenantRoutes>,
}

fn invalid(what: impl Into<String>, detail: impl Into<String>) -> AlertRouteError {
    AlertRouteError::Invalid {
        what: what.into(),
        detail: detail.into(),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl AlertRoutes {
    /// Checks every route before anything is sent: webhook URLs are `http(s)://` with a
    /// non-empty secret, addresses parse, e-mail routes have a relay, and an unencrypted relay
    /// is a loopback one.
    ///
    /// # Errors
    /// [`AlertRouteError::Invalid`] naming the setting (`smtp.from`, `alert_routes.<tenant>...`).
    pub fn check(&self) -> Result<(), AlertRouteError> {
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                return Err(invalid("smtp.host", "is empty"));
            }
            if smtp.port == 0 {
                return Err(invalid("smtp.port", "must not be 0"));
            }
            smtp.from
                .parse::<Mailbox>()
                .map_err(|e| invalid("smtp.from", format!("{:?}: {e}", smtp.from)))?;
            if smtp.password.is_some() && smtp.username.is_none() {
                return Err(invalid("smtp.password", "is set but smtp.username is not"));
            }
            if !smtp.starttls && !is_loopback(&smtp.host) {
                return Err(invalid(
                    "smtp.starttls",
                    format!(
                        "an unencrypted connection is only allowed to a loopback relay, not {:?}",
                        smtp.host
                    ),
                ));
            }
        }
        let mut tenants: Vec<_> = self.tenants.iter().collect();
        tenants.sort_by(|a, b| a.0.cmp(b.0));
        for (tenant, routes) in tenants {
            self.check_routes(&format!("alert_routes.{tenant}"), routes)?;
        }
        if let Some(routes) = &self.operations {
            self.check_routes("operations_alerts", routes)?;
        }
        Ok(())
    }

    /// Checks one set of routes, its settings named under `section`.
    fn check_routes(&self, section: &str, routes: &TenantRoutes) -> Result<(), AlertRouteError> {
        if let Some(webhook) = &routes.webhook {
            let what = format!("{section}.webhook_url");
            let url = reqwest::Url::parse(&webhook.url)
                .map_err(|e| invalid(&what, format!("{}: {e}", redact_url(&webhook.url))))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    &what,
                    format!(
                        "{} is not an http:// or https:// URL",
                        redact_url(&webhook.url)
                    ),
                ));
            }
            if webhook.secret.expose_secret().is_empty() {
                return Err(invalid(format!("{section}.webhook_secret"), "is empty"));
            }
        }
        for address in &routes.email_to {
            address
                .parse::<Mailbox>()
                .map_err(|e| invalid(format!("{section}.email_to"), format!("{address:?}: {e}")))?;
        }
        if !routes.email_to.is_empty() && self.smtp.is_none() {
            return Err(invalid(
                format!("{section}.email_to"),
                "e-mail recipients need an [smtp] relay",
            ));
        }
        Ok(())
    }
}

/// How deliveries are retried: `attempts` in all, the first pause `first_delay`, doubling after
/// each failure; each attempt limited to `attempt_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// The pause after the first failure.
    pub first_delay: Duration,
    /// The time limit of one attempt (HTTP request, SMTP command).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts, pauses of 0.5, 1, 2, 4 and 8 seconds, 10 seconds per attempt.
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `n` (1-based).
    pub fn delay_after(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first_delay.saturating_mul(factor)
    }

    /// How long one route's delivery can take at most: every attempt to its time limit, every
    /// pause, and one attempt's time more as a margin. A delivery's lease lasts this long.
    pub fn longest_delivery(&self) -> Duration {
        let attempts = self.attempts.max(1);
        let pauses: Duration = (1..attempts).map(|n| self.delay_after(n)).sum();
        pauses + self.attempt_timeout.saturating_mul(attempts + 1)
    }
}

/// The JSON document every route receives (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertMessage {
    /// `Backup Failed` or `Backup Stale`.
    pub alert: &'static str,
    /// `raised` or `resolved`.
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
    /// The cycle whose copy reached Secured (`resolved` only).
    pub resolved_by: Option<CycleId>,
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
        }
    }

    /// The message of a resolved alert (`raised` is the event that raised it).
    pub fn resolved(raised: &AlertRaised, resolved: &AlertResolved) -> Self {
        Self {
            state: "resolved",
            resolved_at: Some(resolved.resolved_at),
            resolved_by: Some(resolved.resolved_by),
            ..Self::raised(raised)
        }
    }

    /// The event type it comes from: `AlertRaised` or `AlertResolved`.
    pub fn event_type(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "AlertResolved"
        } else {
            "AlertRaised"
        }
    }

    /// The JSON body (the bytes that are signed).
    pub fn to_json(&self) -> Bytes {
        // A struct of strings, ids, enums and timestamps always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The e-mail subject.
    pub fn subject(&self) -> String {
        let prefix = if self.resolved_at.is_some() {
            "Resolved: "
        } else {
            ""
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
        if let (Some(at), Some(by)) = (self.resolved_at, self.resolved_by) {
            lines.push(format!("Resolved at: {}", at.to_rfc3339()));
            lines.push(format!("Resolved by: cycle {by}"));
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

    /// The JSON body (the bytes that are signed).
    pub fn to_json(&self) -> Bytes {
        // A struct of strings always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The e-mail subject.
    pub fn subject(&self) -> String {
        let prefix = if self.resolved_at.is_some() {
            "Resolved: "
        } else {
            ""
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
enum Audience {
    /// A tenant's (`[alert_routes.<tenant>]`, `restorable.alerts.<tenant>`).
    Tenant(TenantId),
    /// The service operator's (`[operations_alerts]`, [`OPERATIONS_SUBJECT`]).
    Operations,
}

impl Audience {
    /// The NATS subject it is published on.
    fn subject(&self) -> String {
        match self {
            Audience::Tenant(tenant) => alert_subject(tenant.as_str()),
            Audience::Operations => OPERATIONS_SUBJECT.to_owned(),
        }
    }

    /// The section of the settings its routes come from.
    fn section(&self) -> String {
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

/// A URL fit for logs: scheme, host, port and path only (no credentials, query or fragment).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One alert ready to go out.
#[derive(Clone, Debug)]
struct Delivery {
    /// `<aggregate id>:<sequence>`.
    id: String,
    /// The aggregate (instance) and sequence of the event (of an operations alert:
    /// [`delivery_row`]).
    instance_id: String,
    sequence: i64,
    /// Whose routes it takes.
    audience: Audience,
    /// The alert's id (for logs).
    alert_id: String,
    /// The webhook's event header and NATS's `Restorable-Event-Type`.
    event_type: &'static str,
    /// The e-mail subject and body.
    subject: String,
    text: String,
    /// The JSON document (the same on every route).
    body: Bytes,
    /// Whether a row of `alert_deliveries` stands for it (deleted when the route is done).
    recorded: bool,
}

impl Delivery {
    /// A tenant's alert: event `sequence` of the `InstanceAlerts` aggregate `instance_id`.
    fn of_tenant(message: &AlertMessage, instance_id: &str, sequence: i64) -> Self {
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
            recorded: true,
        }
    }

    /// An operations alert's raise or resolution (its row: [`delivery_row`]).
    fn of_operations(alert: &OperationsAlert, recorded: bool) -> Self {
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
            recorded,
        }
    }
}

/// The outcome of one attempt that failed.
enum Attempt {
    /// Worth another try.
    Retry(AlertRouteError),
    /// Final.
    GiveUp(AlertRouteError),
}

async fn retrying<F, Fut>(
    policy: &RetryPolicy,
    route: &'static str,
    delivery: &str,
    mut attempt: F,
) -> Result<(), AlertRouteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Attempt>>,
{
    let attempts = policy.attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(Attempt::GiveUp(error)) => return Err(error),
            Err(Attempt::Retry(error)) if n >= attempts => {
                return Err(AlertRouteError::GaveUp {
                    attempts,
                    last: Box::new(error),
                })
            }
            Err(Attempt::Retry(error)) => {
                let pause = policy.delay_after(n);
                tracing::info!(route, delivery, attempt = n, %error, retry_in = ?pause, "alert delivery failed; will retry");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn post_webhook(
    webhook: &WebhookRoute,
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let shown = redact_url(&webhook.url);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(policy.attempt_timeout)
        .timeout(policy.attempt_timeout)
        .build()
        .map_err(|e| AlertRouteError::Http {
            url: shown.clone(),
            detail: chain(&e.without_url()),
        })?;
    let signature = format!(
        "sha256={}",
        sign(webhook.secret.expose_secret().as_bytes(), &delivery.body)
    );
    let (http, shown, signature) = (&http, &shown, &signature);
    retrying(policy, "webhook", &delivery.id, || async move {
        let sent = http
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, delivery.event_type)
            .header(DELIVERY_HEADER, &delivery.id)
            .body(delivery.body.clone())
            .send()
            .await;
        let response = sent.map_err(|e| {
            Attempt::Retry(AlertRouteError::Http {
                url: shown.clone(),
                detail: chain(&e.without_url()),
            })
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = AlertRouteError::Status {
            url: shown.clone(),
            status: status.as_u16(),
        };
        let final_answer = status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if final_answer {
            Attempt::GiveUp(error)
        } else {
            Attempt::Retry(error)
        })
    })
    .await
}

fn mail(relay: &SmtpRelay, to: &[String], delivery: &Delivery) -> Result<Message, AlertRouteError> {
    let from = relay
        .from
        .parse::<Mailbox>()
        .map_err(|e| invalid("smtp.from", e.to_string()))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(delivery.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        let mailbox = address.parse::<Mailbox>().map_err(|e| {
            invalid(
                format!("{}.email_to", delivery.audience.section()),
                format!("{address:?}: {e}"),
            )
        })?;
        builder = builder.to(mailbox);
    }
    builder
        .body(delivery.text.clone())
        .map_err(|e| AlertRouteError::Smtp {
            relay: relay.address(),
            detail: e.to_string(),
        })
}

async fn send_mail(
    relay: &SmtpRelay,
    to: &[String],
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let message = mail(relay, to, delivery)?;
    let smtp_error = |detail: String| AlertRouteError::Smtp {
        relay: relay.address(),
        detail,
    };
    let builder = if relay.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&relay.host)
            .map_err(|e| smtp_error(chain(&e)))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.as_str())
    };
    let mut builder = builder
        .port(relay.port)
        .timeout(Some(policy.attempt_timeout));
    if let (Some(user), Some(password)) = (&relay.username, &relay.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    let mailer = builder.build();
    let (mailer, message, smtp_error) = (&mailer, &message, &smtp_error);
    retrying(policy, "email", &delivery.id, || async move {
        match mailer.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Attempt::GiveUp(smtp_error(chain(&e)))),
            Err(e) => Err(Attempt::Retry(smtp_error(chain(&e)))),
        }
    })
    .await
}

async fn publish(client: &async_nats::Client, delivery: &Delivery) -> Result<(), AlertRouteError> {
    let subject = delivery.audience.subject();
    let nats_error = |detail: String| AlertRouteError::Nats {
        subject: subject.clone(),
        detail,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", delivery.id.as_str());
    headers.insert("Restorable-Event-Type", delivery.event_type);
    client
        .publish_with_headers(subject.clone(), headers, delivery.body.clone())
        .await
        .map_err(|e| nats_error(chain(&e)))?;
    client.flush().await.map_err(|e| nats_error(chain(&e)))
}

/// Counts a delivery task as in flight until dropped (also when the task panics).
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn enter(counter: &Arc<watch::Sender<usize>>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One route's delivery of one alert, with its retries.
type RouteWork = Pin<Box<dyn Future<Output = Result<(), AlertRouteError>> + Send>>;

/// The consumer that delivers alerts to their routes (see the module documentation).
#[derive(Clone)]
pub struct AlertDelivery {
    store: Store,
    nats: Option<async_nats::Client>,
    routes: Arc<AlertRoutes>,
    retry: RetryPolicy,
    in_flight: Arc<watch::Sender<usize>>,
}

impl AlertDelivery {
    /// Delivers to `pipeline.settings.alert_routes` (and NATS when the pipeline has it) with the
    /// default [`RetryPolicy`].
    pub fn new(pipeline: &Pipeline) -> Self {
        Self {
            store: pipeline.store.clone(),
            nats: pipeline.nats.as_ref().map(|n| n.client.clone()),
            routes: Arc::new(pipeline.settings.alert_routes.clone()),
            retry: RetryPolicy::default(),
            in_flight: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The same, retrying as `policy` says.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How many route deliveries (with their retries) are still running.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Waits until no delivery is running (every route delivered or given up on).
    pub async fn settle(&self) {
        let mut watcher = self.in_flight.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = watcher.wait_for(|n| *n == 0).await;
    }

    /// The message an event stands for; `None` (logged) for a resolution whose alert is not in
    /// the history.
    async fn message(&self, event: &LoggedEvent) -> Result<Option<AlertMessage>, StoreError> {
        match event.decode::<AlertEvent>()? {
            AlertEvent::AlertRaised(raised) => Ok(Some(AlertMessage::raised(&raised))),
            AlertEvent::AlertResolved(resolved) => {
                let history = self
                    .store
                    .history(AGGREGATE_TYPE, &event.aggregate_id)
                    .await?;
                let raised = history
                    .iter()
                    .filter(|e| e.event_type == "AlertRaised")
                    .filter_map(|e| match e.decode::<AlertEvent>() {
                        Ok(AlertEvent::AlertRaised(raised)) => Some(raised),
                        _ => None,
                    })
                    .find(|raised| raised.alert_id == resolved.alert_id);
                match raised {
                    Some(raised) => Ok(Some(AlertMessage::resolved(&raised, &resolved))),
                    None => {
                        let error = AlertRouteError::UnknownAlert {
                            alert_id: resolved.alert_id,
                            instance: event.aggregate_id.clone(),
                        };
                        tracing::error!(%error, "alert resolution not delivered");
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The configured webhook and e-mail routes of `audience`.
    fn routes_of(&self, audience: &Audience) -> Option<&TenantRoutes> {
        match audience {
            Audience::Tenant(tenant) => self.routes.tenants.get(tenant),
            Audience::Operations => self.routes.operations.as_ref(),
        }
    }

    /// The routes `audience`'s alerts take from this process.
    fn routes_for(&self, audience: &Audience) -> Vec<&'static str> {
        let mut routes = Vec::new();
        if self.nats.is_some() {
            routes.push("nats");
        }
        if let Some(tenant_routes) = self.routes_of(audience) {
            if tenant_routes.webhook.is_some() {
                routes.push("webhook");
            }
            if !tenant_routes.email_to.is_empty() {
                routes.push("email");
            }
        }
        routes
    }

    /// The end of a lease taken now (Unix milliseconds).
    fn lease_from(&self, now: DateTime<Utc>) -> i64 {
        let lease = chrono::Duration::from_std(self.retry.longest_delivery())
            .unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp_millis()
    }

    /// Runs `route`'s delivery in its own task; its pending row is deleted when it ends
    /// (delivered or given up on). A route no longer configured here ends at once.
    fn start(&self, route: &'static str, delivery: &Delivery) {
        let work: Option<RouteWork> = match route {
            "nats" => self.nats.clone().map(|client| {
                let owned = delivery.clone();
                Box::pin(async move { publish(&client, &owned).await }) as _
            }),
            "webhook" => self
                .routes_of(&delivery.audience)
                .and_then(|r| r.webhook.clone())
                .map(|webhook| {
                    let (owned, policy) = (delivery.clone(), self.retry.clone());
                    Box::pin(async move { post_webhook(&webhook, &owned, &policy).await }) as _
                }),
            "email" => self
                .routes_of(&delivery.audience)
                .filter(|r| !r.email_to.is_empty())
                .map(|r| {
                    let (relay, to) = (self.routes.smtp.clone(), r.email_to.clone());
                    let (owned, policy) = (delivery.clone(), self.retry.clone());
                    Box::pin(async move {
                        let relay = relay.ok_or(AlertRouteError::NoSmtpRelay)?;
                        send_mail(&relay, &to, &owned, &policy).await
                    }) as _
                }),
            _ => None,
        };
        let guard = InFlight::enter(&self.in_flight);
        let pending = PendingDelivery {
            instance_id: delivery.instance_id.clone(),
            sequence: delivery.sequence,
            route: route.to_owned(),
        };
        let store = self.store.clone();
        let id = delivery.id.clone();
        let tenant = delivery.audience.to_string();
        let alert_id = delivery.alert_id.clone();
        let event_type = delivery.event_type;
        let recorded = delivery.recorded;
        tokio::spawn(async move {
            let _guard = guard;
            match work {
                None => {
                    tracing::warn!(route, delivery = %id, %tenant, %alert_id, event_type, "alert route no longer configured; delivery dropped");
                }
                Some(work) => match work.await {
                    Ok(()) => {
                        tracing::info!(route, delivery = %id, %tenant, %alert_id, event_type, "alert delivered");
                    }
                    Err(error) => {
                        tracing::warn!(route, delivery = %id, %tenant, %alert_id, event_type, %error, "alert not delivered");
                    }
                },
            }
            if !recorded {
                return;
            }
            if let Err(error) = store.end_delivery(&pending).await {
                tracing::warn!(route, delivery = %id, %error, "delivery ended but its row stays; it will be made again");
            }
        });
    }

    /// Takes over the deliveries whose lease ran out before `now` — those of a process that
    /// stopped while delivering — and starts them again; how many were taken.
    ///
    /// # Errors
    /// A store failure (nothing was lost: the rows stay for the next try).
    pub async fn resume_pending(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let taken = self
            .store
            .take_over_deliveries(now.timestamp_millis(), self.lease_from(now))
            .await?;
        let mut history: Option<(String, Vec<LoggedEvent>)> = None;
        for pending in &taken {
            if let Some(key) = pending.instance_id.strip_prefix(OPERATIONS_ROWS) {
                self.resume_operations(key, pending).await?;
                continue;
            }
            if history
                .as_ref()
                .is_none_or(|(id, _)| *id != pending.instance_id)
            {
                let events = self
                    .store
                    .history(AGGREGATE_TYPE, &pending.instance_id)
                    .await?;
                history = Some((pending.instance_id.clone(), events));
            }
            let event = history
                .as_ref()
                .and_then(|(_, events)| events.iter().find(|e| e.sequence == pending.sequence));
            let message = match event {
                Some(event) => self.message(event).await?,
                None => None,
            };
            let route = ["nats", "webhook", "email"]
                .into_iter()
                .find(|r| *r == pending.route);
            match (message, route) {
                (Some(message), Some(route)) => {
                    tracing::info!(route, instance = %pending.instance_id, sequence = pending.sequence, "resuming an alert delivery");
                    let delivery =
                        Delivery::of_tenant(&message, &pending.instance_id, pending.sequence);
                    self.start(route, &delivery);
                }
                _ => {
                    tracing::warn!(route = %pending.route, instance = %pending.instance_id, sequence = pending.sequence, "pending alert delivery without its event; dropped");
                    self.store.end_delivery(pending).await?;
                }
            }
        }
        Ok(taken.len())
    }

    /// Resumes the delivery of an operations alert taken over from a stopped process.
    async fn resume_operations(
        &self,
        key: &str,
        pending: &PendingDelivery,
    ) -> Result<(), StoreError> {
        let (number, resolution) = (pending.sequence / 2, pending.sequence % 2 == 1);
        let alert = self
            .store
            .operations_alert(key, number)
            .await?
            .filter(|alert| alert.resolved_at.is_some() || !resolution);
        let route = ["nats", "webhook", "email"]
            .into_iter()
            .find(|r| *r == pending.route);
        match (alert, route) {
            (Some(mut alert), Some(route)) => {
                if !resolution {
                    // The raise as it was sent, even if it was resolved since.
                    alert.resolved_at = None;
                }
                tracing::info!(
                    route,
                    condition = key,
                    sequence = pending.sequence,
                    "resuming an operations alert delivery"
                );
                self.start(route, &Delivery::of_operations(&alert, true));
            }
            _ => {
                tracing::warn!(route = %pending.route, condition = key, sequence = pending.sequence, "pending operations alert delivery without its alert; dropped");
                self.store.end_delivery(pending).await?;
            }
        }
        Ok(())
    }

    /// Raises the operations alert `key` unless it is open, and sends the raise to the
    /// operator's routes and [`OPERATIONS_SUBJECT`] — recorded and leased in
    /// `alert_deliveries` in the same transaction, like a tenant's alert, so a delivery cut off
    /// by a stopped process is resumed. The alert if this call raised it (only the process
    /// whose raise won sends it).
    ///
    /// # Errors
    /// A store failure (nothing was raised or sent).
    pub async fn raise_operations(
        &self,
        key: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<OperationsAlert>, StoreError> {
        let routes = self.routes_for(&Audience::Operations);
        let raised = self
            .store
            .raise_operations_alert(key, detail, at, &routes, self.lease_from(Utc::now()))
            .await?;
        if let Some(alert) = &raised {
            tracing::error!(condition = key, alert = %alert.alert_id(), %detail, "operations alert raised");
            let delivery = Delivery::of_operations(alert, true);
            for route in routes {
                self.start(route, &delivery);
            }
        }
        Ok(raised)
    }

    /// Resolves the open operations alert `key` and sends the resolution, as
    /// [`AlertDelivery::raise_operations`] sends a raise; the alert if this call resolved it.
    ///
    /// # Errors
    /// A store failure (nothing was resolved or sent).
    pub async fn resolve_operations(
        &self,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<OperationsAlert>, StoreError> {
        let routes = self.routes_for(&Audience::Operations);
        let resolved = self
            .store
            .resolve_operations_alert(key, at, &routes, self.lease_from(Utc::now()))
            .await?;
        if let Some(alert) = &resolved {
            tracing::info!(condition = key, alert = %alert.alert_id(), "operations alert resolved");
            let delivery = Delivery::of_operations(alert, true);
            for route in routes {
                self.start(route, &delivery);
            }
        }
        Ok(resolved)
    }

    /// Sends an operations alert that could not be recorded (the store does not answer) to
    /// the operator's routes, without rows: a process stopped meanwhile loses it.
    pub fn send_operations_unrecorded(&self, alert: &OperationsAlert) {
        let delivery = Delivery::of_operations(alert, false);
        for route in self.routes_for(&delivery.audience) {
            self.start(route, &delivery);
        }
    }

    /// The store deliveries are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resumes deliveries cut off by stopped processes: at once, then every [`RESUME_EVERY`],
    /// until `shutdown`.
    pub async fn resume_until(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.resume_pending(Utc::now()).await {
                tracing::warn!(%error, "could not look for alert deliveries to resume");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESUME_EVERY) => {}
            }
        }
    }
}

#[async_trait]
impl Consumer for AlertDelivery {
    fn name(&self) -> &'static str {
        "alert_delivery"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["AlertRaised", "AlertResolved"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        event.aggregate_type == AGGREGATE_TYPE
            && matches!(event.event_type.as_str(), "AlertRaised" | "AlertResolved")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let Some(message) = self.message(&event).await? else {
            return Ok(());
        };
        let delivery = Delivery::of_tenant(&message, &event.aggregate_id, event.sequence);
        let lease_until = self.lease_from(Utc::now());
        for route in self.routes_for(&delivery.audience) {
            let pending = PendingDelivery {
                instance_id: delivery.instance_id.clone(),
                sequence: delivery.sequence,
                route: route.to_owned(),
            };
            // Recorded first: a redelivered event whose delivery is under way (or was cut
            // off) is left to its lease holder (or to `resume_pending`).
            if self.store.begin_delivery(&pending, lease_until).await? {
                self.start(route, &delivery);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::alert::AlertKind;

    #[test]
    fn the_signer_matches_rfc_4231_test_case_2() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), expected);
        assert!(verify(
            b"Jefe",
            b"what do ya want for nothing?",
            &format!("sha256={expected}")
        ));
        assert!(!verify(
            b"Jeff",
            b"what do ya want for nothing?",
            &format!("sha256={expected}")
        ));
        assert!(!verify(
            b"Jefe",
            b"what do ya want for nothing!",
            &format!("sha256={expected}")
        ));
        assert!(!verify(b"Jefe", b"what do ya want for nothing?", expected));
    }

    #[test]
    fn back_off_doubles() {
        let policy = RetryPolicy::default();
        let pauses: Vec<_> = (1..policy.attempts)
            .map(|n| policy.delay_after(n))
            .collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000].map(Duration::from_millis)
        );
    }

    #[test]
    fn a_lease_outlasts_every_attempt_and_pause() {
        // Pauses 0.5 + 1 + 2 + 4 + 8 s, six attempts of 10 s, and one more as a margin.
        assert_eq!(
            RetryPolicy::default().longest_delivery(),
            Duration::from_millis(85_500)
        );
    }

    #[test]
    fn logged_urls_lose_credentials_and_query() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example/a/b?token=s3cret#x"),
            "https://hooks.example/a/b"
        );
        assert_eq!(redact_url("not a url?token=s3cret"), "<not a URL>");
    }

    #[test]
    fn the_webhook_secret_is_not_in_debug_output() {
        let routes = AlertRoutes {
            smtp: Some(SmtpRelay {
                host: "smtp.example.com".into(),
                port: 587,
                from: "alerts@example.com".into(),
                username: Some("alerts".into()),
                password: Some(SecretString::from("smtp-pass-123")),
                starttls: true,
            }),
            tenants: HashMap::from([(
                TenantId::new("acme").expect("slug"),
                TenantRoutes {
                    webhook: Some(WebhookRoute {
                        url: "https://hooks.example/x?token=query-secret".into(),
                        secret: SecretString::from("hook-secret-456"),
                    }),
                    email_to: vec![],
                },
            )]),
            operations: None,
        };
        let shown = format!("{routes:?}");
        for secret in ["smtp-pass-123", "hook-secret-456", "query-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn misconfigured_routes_are_named() {
        let acme = TenantId::new("acme").expect("slug");
        let relay = SmtpRelay {
            host: "smtp.example.com".into(),
            port: 587,
            from: "alerts@example.com".into(),
            username: None,
            password: None,
            starttls: true,
        };
        let with = |smtp: Option<SmtpRelay>, routes: TenantRoutes| AlertRoutes {
            smtp,
            tenants: HashMap::from([(acme.clone(), routes)]),
            operations: None,
        };
        let webhook = |url: &str, secret: &str| TenantRoutes {
            webhook: Some(WebhookRoute {
                url: url.into(),
                secret: SecretString::from(secret),
            }),
            email_to: vec![],
        };
        let mail = |to: &str| TenantRoutes {
            webhook: None,
            email_to: vec![to.into()],
        };
        let cases = [
            (
                with(None, webhook("ftp://h/x", "s")),
                "alert_routes.acme.webhook_url",
            ),
            (
                with(None, webhook("https://h/x", "")),
                "alert_routes.acme.webhook_secret",
            ),
            (with(None, mail("ops@acme.example")), "need an [smtp] relay"),
            (
                with(Some(relay.clone()), mail("not an address")),
                "alert_routes.acme.email_to",
            ),
            (
                with(
                    Some(SmtpRelay {
                        starttls: false,
                        ..relay.clone()
                    }),
                    mail("ops@acme.example"),
                ),
                "smtp.starttls",
            ),
        ];
        for (routes, named) in cases {
            let error = routes.check().expect_err("refused");
            assert!(error.to_string().contains(named), "{named}: {error}");
        }
        let fine = with(
            Some(SmtpRelay {
                host: "127.0.0.1".into(),
                starttls: false,
                ..relay
            }),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url: "http://127.0.0.1:9/hook".into(),
                    secret: SecretString::from("s"),
                }),
                email_to: vec!["ops@acme.example".into()],
            },
        );
        fine.check().expect("a loopback relay may be unencrypted");
    }

    #[test]
    fn the_message_has_every_key_and_a_resolution_repeats_the_alert() {
        let raised = AlertRaised {
            alert_id: "x-1".into(),
            kind: AlertKind::BackupStale,
            tenant_id: TenantId::new("acme").expect("slug"),
            instance_id: InstanceId(uuid::Uuid::nil()),
            cycle_id: None,
            stage: None,
            reason: None,
            detail: "no copy has reached Secured yet".into(),
            raised_at: DateTime::<Utc>::UNIX_EPOCH,
            position: 0,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&AlertMessage::raised(&raised).to_json()).expect("json");
        let keys: Vec<_> = body.as_object().expect("object").keys().cloned().collect();
        for key in [
            "alert",
            "state",
            "alert_id",
            "tenant_id",
            "instance_id",
            "cycle_id",
            "stage",
            "reason",
            "detail",
            "raised_at",
            "resolved_at",
            "resolved_by",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {body}");
        }
        assert_eq!(body["alert"], "Backup Stale");
        assert_eq!(body["state"], "raised");
        let by = CycleId(uuid::Uuid::nil());
        let resolved = AlertMessage::resolved(
            &raised,
            &AlertResolved {
                alert_id: "x-1".into(),
                kind: AlertKind::BackupStale,
                resolved_by: by,
                resolved_at: DateTime::<Utc>::UNIX_EPOCH,
            },
        );
        assert_eq!(resolved.event_type(), "AlertResolved");
        assert_eq!(resolved.state, "resolved");
        assert_eq!(resolved.detail, raised.detail);
        assert_eq!(resolved.resolved_by, Some(by));
    }
}
