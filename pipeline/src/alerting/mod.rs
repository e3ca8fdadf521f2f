//! Alert delivery: the consumer that sends every `AlertRaised` and `AlertResolved` event of the
//! `InstanceAlerts` aggregate to its tenant's routes, and every `AlertReminded` to its one
//! route, without ever holding up the pipeline.
//!
//! ```text
//! InstanceAlerts AlertRaised | AlertResolved ─► alert_delivery ─┬─► webhook   (signed JSON POST, retried)
//!                                                               ├─► e-mail    (SMTP relay, retried)
//!                                                               ├─► Slack     (Block Kit, incoming webhook)
//!                                                               ├─► Teams     (Adaptive Card, incoming webhook)
//!                                                               ├─► PagerDuty (Events API v2, one dedup key per alert)
//!                                                               └─► NATS      restorable.alerts.<tenant>
//! ```
//!
//! - **The message** ([`AlertMessage`]) is the same JSON document on every route: `alert`
//!   (the title, `Backup Failed` / `Backup Stale`), `state` (`raised` / `resolved`), `alert_id`,
//!   `tenant_id`, `instance_id`, `cycle_id`, `stage`, `reason`, `detail`, `raised_at`,
//!   `resolved_at`, `resolved_by` (every key is always present; those that do not apply are
//!   `null`). A resolution repeats what was raised, found in the aggregate's history.
//! - **Webhook** ([`WebhookRoute`]): `POST` of the JSON body with
//!   `X-Restorable-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes under the route's
//!   secret>` ([`sign`], [`verify`]), `X-Restorable-Event: AlertRaised|AlertResolved|AlertReminded` and
//!   `X-Restorable-Delivery: <instance id>:<sequence>` — the same id every time the same event
//!   is delivered, so a receiver drops repeats. Redirects are not followed. Connection errors,
//!   timeouts and non-2xx answers are retried with exponential back-off ([`RetryPolicy`]);
//!   a 4xx other than 408 and 429 is final.
//! - **E-mail** ([`SmtpRelay`]): one plain-text message to the tenant's recipients through the
//!   configured relay, over STARTTLS (required, certificates checked against the webpki roots);
//!   an unencrypted connection is only allowed to a loopback relay (a local MTA, tests).
//!   Transient SMTP failures (4xx, connection errors) are retried like webhooks; 5xx is final.
//! - **Slack, Teams, PagerDuty** ([`slack`], [`teams`], [`pagerduty`]): the same alert in each
//!   tool's own format, from one [`card::Card`], with a link to the instance page under
//!   [`AlertRoutes::console_url`]; posted and retried like the webhook ([`post`]). Their URLs
//!   and the routing key are secrets: shown as the host alone ([`host_of`]).
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
//!
//! # Layout
//! - this file: [`AlertDelivery`], the consumer — pending rows, leases, retries, resumption.
//! - [`routes`]: the route configuration (a leaf the settings hold) and its checks;
//!   [`quiet`]: reminder intervals, quiet hours and urgent kinds ([`RouteTimes`]).
//! - [`message`]: the documents, their signature and subjects, one delivery.
//! - [`card`]: the alert as the chat and incident routes show it; [`post`]: one JSON `POST`.
//! - [`webhook`], [`email`], [`slack`], [`teams`], [`pagerduty`], [`nats`]: one file per route.

mod card;
pub mod email;
pub mod message;
mod nats;
mod pagerduty;
mod post;
pub mod quiet;
pub mod routes;
mod slack;
mod teams;
mod webhook;

pub use email::{send_letter, Letter};
pub use message::{
    alert_subject, sign, verify, AlertMessage, OperationsMessage, DELIVERY_HEADER, EVENT_HEADER,
    OPERATIONS_SUBJECT, SIGNATURE_HEADER,
};
pub use quiet::{MaintenanceWindow, QuietHours, RouteTimes, WindowTime};
pub use routes::{
    host_of, redact_url, AlertRouteError, AlertRoutes, ChatRoute, PagerDutyRoute, Reminders,
    RetryPolicy, SmtpRelay, TenantRoutes, WebhookRoute, PAGERDUTY_EVENTS_URL, REMIND_LIMIT_HOURS,
    ROUTE_NAMES,
};

use email::send_mail;
use message::{Audience, Delivery};
use nats::publish;
use pagerduty::post_pagerduty;
use post::post_chat;
use routes::invalid;
use webhook::post_webhook;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use restorable_domain::alert::{AlertEvent, AlertKind, AlertRaised, AlertReminded, AlertResolved};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage};
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::periodic::{Round, Rounds};
use crate::pipeline::Pipeline;
use crate::store::{
    delivery_row, LoggedEvent, OperationsAlert, PendingDelivery, Store, StoreError, OPERATIONS_ROWS,
};
use crate::transport::Consumer;

/// How often [`AlertDelivery::resume_until`] looks for deliveries to take over.
pub const RESUME_EVERY: Duration = Duration::from_secs(30);
/// The aggregate whose events are delivered.
pub const AGGREGATE_TYPE: &str = "InstanceAlerts";

/// An error and its causes on one line.
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The outcome of one attempt that failed.
pub(super) enum Attempt {
    /// Worth another try.
    Retry(AlertRouteError),
    /// Final.
    GiveUp(AlertRouteError),
}

/// Runs `attempt` until it succeeds, fails for good ([`Attempt::GiveUp`]) or has been tried
/// `policy.attempts` times, pausing as [`RetryPolicy::backoff`] says between tries.
pub(super) async fn retrying<F, Fut>(
    policy: &RetryPolicy,
    route: &'static str,
    delivery: &str,
    attempt: F,
) -> Result<(), AlertRouteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Attempt>>,
{
    let mut failures = 0u32;
    let outcome = attempt
        .retry(policy.backoff())
        .when(|failure| matches!(failure, Attempt::Retry(_)))
        .notify(|failure, pause| {
            failures += 1;
            if let Attempt::Retry(error) = failure {
                tracing::info!(route, delivery, attempt = failures, %error, retry_in = ?pause, "alert delivery failed; will retry");
            }
        })
        .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(Attempt::GiveUp(error)) => Err(error),
        Err(Attempt::Retry(error)) => Err(AlertRouteError::GaveUp {
            attempts: policy.attempts.max(1),
            last: Box::new(error),
        }),
    }
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

    /// The message an event stands for; `None` for an acknowledgement or a snooze (they change
    /// what reminders do, and are sent nowhere) and (logged) for a resolution or a reminder
    /// whose alert is not in the history.
    async fn message(&self, event: &LoggedEvent) -> Result<Option<AlertMessage>, StoreError> {
        let follows = match event.decode::<AlertEvent>()? {
            AlertEvent::AlertRaised(raised) => return Ok(Some(AlertMessage::raised(&raised))),
            AlertEvent::AlertResolved(resolved) => Follows::Resolved(resolved),
            AlertEvent::AlertReminded(reminded) => Follows::Reminded(reminded),
            AlertEvent::AlertAcknowledged(_) | AlertEvent::AlertSnoozed(_) => return Ok(None),
        };
        let alert_id = match &follows {
            Follows::Resolved(resolved) => resolved.alert_id.clone(),
            Follows::Reminded(reminded) => reminded.alert_id.clone(),
        };
        // A resolution or a reminder repeats what was raised, found in the history.
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
            .find(|raised| raised.alert_id == alert_id);
        // The routes reminded of it (a resolution goes to a route held at the raise only if
        // a reminder told it).
        let reminded_on = history
            .iter()
            .filter(|e| e.event_type == "AlertReminded")
            .filter_map(|e| match e.decode::<AlertEvent>() {
                Ok(AlertEvent::AlertReminded(r)) if r.alert_id == alert_id => Some(r.route),
                _ => None,
            })
            .collect();
        match raised {
            Some(raised) => {
                let mut message = match &follows {
                    Follows::Resolved(resolved) => AlertMessage::resolved(&raised, resolved),
                    Follows::Reminded(reminded) => AlertMessage::reminder(&raised, reminded),
                };
                message.reminded_on = reminded_on;
                Ok(Some(message))
            }
            None => {
                let error = AlertRouteError::UnknownAlert {
                    alert_id,
                    instance: event.aggregate_id.clone(),
                };
                tracing::error!(%error, "alert message not delivered");
                Ok(None)
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
            if tenant_routes.slack.is_some() {
                routes.push("slack");
            }
            if tenant_routes.teams.is_some() {
                routes.push("teams");
            }
            if tenant_routes.pagerduty.is_some() {
                routes.push("pagerduty");
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

    /// The work of an HTTP route `pick` finds in `delivery`'s routes, if configured: `post`
    /// with what the task owns (the route, the delivery, the console's URL, the retry policy).
    fn task<R, F, Fut>(
        &self,
        delivery: &Delivery,
        pick: impl FnOnce(&TenantRoutes) -> Option<R>,
        post: F,
    ) -> Option<RouteWork>
    where
        F: FnOnce(R, Delivery, Option<String>, RetryPolicy) -> Fut,
        Fut: Future<Output = Result<(), AlertRouteError>> + Send + 'static,
    {
        let route = self.routes_of(&delivery.audience).and_then(pick)?;
        Some(Box::pin(post(
            route,
            delivery.clone(),
            self.routes.console_url.clone(),
            self.retry.clone(),
        )))
    }

    /// Runs `route`'s delivery in its own task; its pending row is deleted when it ends
    /// (delivered or given up on). A route no longer configured here ends at once.
    fn start(&self, route: &'static str, delivery: &Delivery) {
        let work: Option<RouteWork> =
            match route {
                "nats" => self.nats.clone().map(|client| {
                    let owned = delivery.clone();
                    Box::pin(async move { publish(&client, &owned).await }) as _
                }),
                "webhook" => self.task(
                    delivery,
                    |r| r.webhook.clone(),
                    |webhook, owned, _, policy| async move {
                        post_webhook(&webhook, &owned, &policy).await
                    },
                ),
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
                "slack" => self.task(
                    delivery,
                    |r| r.slack.clone(),
                    |chat, owned, console, policy| async move {
                        let message = slack::message(&owned.card, console.as_deref());
                        post_chat("slack", &chat, message, &owned.id, &policy).await
                    },
                ),
                "teams" => self.task(
                    delivery,
                    |r| r.teams.clone(),
                    |chat, owned, console, policy| async move {
                        let message = teams::message(&owned.card, console.as_deref());
                        post_chat("teams", &chat, message, &owned.id, &policy).await
                    },
                ),
                "pagerduty" => self.task(
                    delivery,
                    |r| r.pagerduty.clone(),
                    |pagerduty, owned, console, policy| async move {
                        post_pagerduty(&pagerduty, &owned, console.as_deref(), &policy).await
                    },
                ),
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
            let route = ROUTE_NAMES.into_iter().find(|r| *r == pending.route);
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
        let route = ROUTE_NAMES.into_iter().find(|r| *r == pending.route);
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
        crate::periodic::repeat(
            RESUME_EVERY,
            Rounds::Whole,
            shutdown,
            &mut Resumptions(self),
        )
        .await;
    }
}

/// Looks for deliveries to resume, once a round.
struct Resumptions(AlertDelivery);

impl Round for Resumptions {
    async fn once(&mut self) {
        if let Err(error) = self.0.resume_pending(Utc::now()).await {
            tracing::warn!(%error, "could not look for alert deliveries to resume");
        }
    }
}

/// An event about an alert raised earlier: its message repeats the raise.
enum Follows {
    Resolved(AlertResolved),
    Reminded(AlertReminded),
}

#[async_trait]
impl Consumer for AlertDelivery {
    fn name(&self) -> &'static str {
        "alert_delivery"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["AlertRaised", "AlertResolved", "AlertReminded"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        event.aggregate_type == AGGREGATE_TYPE
            && matches!(
                event.event_type.as_str(),
                "AlertRaised" | "AlertResolved" | "AlertReminded"
            )
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let Some(message) = self.message(&event).await? else {
            return Ok(());
        };
        let delivery = Delivery::of_tenant(&message, &event.aggregate_id, event.sequence);
        let lease_until = self.lease_from(Utc::now());
        let routes = self.routes_for(&delivery.audience).into_iter();
        let times = self.routes_of(&delivery.audience).map(TenantRoutes::timing);
        for route in routes.filter(|route| message.goes_to(route, times.as_ref())) {
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
mod tests;
