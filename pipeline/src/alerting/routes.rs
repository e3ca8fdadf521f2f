//! Alert route configuration: every tenant's webhook, e-mail recipients, Slack and Microsoft
//! Teams incoming webhooks and PagerDuty integration, the SMTP relay, the operator's routes, the
//! console's public URL (for links to the instance page), and the checks a configuration must
//! pass before anything is sent. A leaf: the pipeline's settings hold an [`AlertRoutes`].

use std::collections::HashMap;

use super::quiet::RouteTimes;
use std::fmt;

use lettre::message::Mailbox;
use restorable_domain::ids::TenantId;
use secrecy::{ExposeSecret, SecretString};

pub use crate::redact::redact_url;

pub use crate::retry::RetryPolicy;

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
    /// An HTTP route (`webhook`, `slack`, `teams`, `pagerduty`) answered with a status that is
    /// not 2xx.
    #[error("{route} {url}: HTTP {status}")]
    Status {
        /// The route.
        route: &'static str,
        /// The URL as it may be shown (see [`redact_url`], [`host_of`]).
        url: String,
        /// The answer's status code.
        status: u16,
    },
    /// An HTTP route could not be reached (connection, TLS, timeout).
    #[error("{route} {url}: {detail}")]
    Http {
        /// The route.
        route: &'static str,
        /// The URL as it may be shown (see [`redact_url`], [`host_of`]).
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

/// A Slack or Microsoft Teams incoming webhook. Its URL is the secret (whoever has it can post
/// to the channel): it comes from the environment and is shown only as its host ([`host_of`]).
#[derive(Clone, Debug)]
pub struct ChatRoute {
    /// The incoming webhook's URL (`https://`; `http://` only to a loopback host).
    pub url: SecretString,
}

/// PagerDuty's Events API v2.
#[derive(Clone, Debug)]
pub struct PagerDutyRoute {
    /// The service integration's routing key.
    pub routing_key: SecretString,
    /// Where events are sent ([`PAGERDUTY_EVENTS_URL`] unless set, e.g. PagerDuty's EU URL).
    pub events_url: String,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The routes a delivery may take, by name (the `route` column of pending deliveries).
pub const ROUTE_NAMES: [&str; 6] = ["nats", "webhook", "email", "slack", "teams", "pagerduty"];

/// Where one tenant's alerts go (besides NATS, which every tenant gets when it is configured).
#[derive(Clone, Debug, Default)]
pub struct TenantRoutes {
    /// A signed webhook.
    pub webhook: Option<WebhookRoute>,
    /// E-mail recipients (sent through [`AlertRoutes::smtp`]).
    pub email_to: Vec<String>,
    /// A Slack incoming webhook (Block Kit message).
    pub slack: Option<ChatRoute>,
    /// A Microsoft Teams incoming webhook (an Adaptive Card).
    pub teams: Option<ChatRoute>,
    /// PagerDuty (trigger and resolve, one dedup key per alert).
    pub pagerduty: Option<PagerDutyRoute>,
    /// Reminder intervals (1 to [`REMIND_LIMIT_HOURS`]), quiet hours and urgent kinds, per
    /// route ([`RouteTimes`]).
    pub times: RouteTimes,
    /// The hour (UTC, 0 to 23) the tenant's daily digest is e-mailed to [`Self::email_to`]
    /// ([`crate::digest`]); none without it.
    pub digest_hour: Option<u32>,
}

/// The longest reminder interval, in hours (30 days).
pub const REMIND_LIMIT_HOURS: u32 = 720;

impl TenantRoutes {
    /// The section's timing with its configured routes named (what a maintenance window holds).
    pub fn timing(&self) -> RouteTimes {
        RouteTimes {
            routes: ["webhook", "email", "slack", "teams", "pagerduty"]
                .into_iter()
                .filter(|name| self.has(name))
                .map(str::to_owned)
                .collect(),
            ..self.times.clone()
        }
    }

    /// Whether the route `name` is configured here (NATS: by the pipeline, not per tenant).
    fn has(&self, name: &str) -> bool {
        match name {
            "webhook" => self.webhook.is_some(),
            "email" => !self.email_to.is_empty(),
            "slack" => self.slack.is_some(),
            "teams" => self.teams.is_some(),
            "pagerduty" => self.pagerduty.is_some(),
            _ => false,
        }
    }
}

/// `url`'s scheme and host alone (`https://hooks.slack.com`): how a URL whose path or query
/// is a secret appears in errors and logs.
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
            (Some(host), None) => format!("{}://{host}", parsed.scheme()),
            _ => "(a URL without a host)".to_owned(),
        },
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Checks that `url` (the setting `what`) is `https://`, or `http://` to a loopback host.
fn check_https(what: &str, url: &str) -> Result<(), AlertRouteError> {
    let shown = host_of(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(what, format!("{shown}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        _ => Err(invalid(
            what,
            format!("{shown}: expected an https:// URL (http:// only to a loopback host)"),
        )),
    }
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
    pub(crate) fn address(&self) -> String {
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
    /// The console's public URL (`https://restorable.example`): chat and incident messages
    /// link to the instance page under it. Without it they carry no link.
    pub console_url: Option<String>,
}

impl AlertRoutes {
    /// Every tenant's reminder intervals, by route.
    pub fn reminders(&self) -> Reminders {
        Reminders(
            self.tenants
                .iter()
                .filter(|(_, routes)| !routes.times.is_empty())
                .map(|(tenant, routes)| (tenant.clone(), routes.timing()))
                .collect(),
        )
    }
}

/// Each tenant's timing of its routes (reminder intervals, quiet hours, urgent kinds): what the
/// projector's sweep needs of the routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reminders(pub HashMap<TenantId, RouteTimes>);

pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> AlertRouteError {
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
        if let Some(console) = &self.console_url {
            let url = reqwest::Url::parse(console)
                .map_err(|e| invalid("console_url", format!("{}: {e}", redact_url(console))))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    "console_url",
                    format!("{} is not an http:// or https:// URL", redact_url(console)),
                ));
            }
        }
        Ok(())
    }

    /// Checks one set of routes, its settings named under `section`.
    fn check_routes(&self, section: &str, routes: &TenantRoutes) -> Result<(), AlertRouteError> {
        if let Some(hour) = routes.digest_hour {
            let what = format!("{section}.digest_hour");
            if section == "operations_alerts" {
                return Err(invalid(
                    what,
                    "a digest is a tenant's: set it in [alert_routes.<tenant>]",
                ));
            }
            if hour > 23 {
                return Err(invalid(
                    what,
                    format!("{hour}: expected an hour of the day, 0 to 23 (UTC)"),
                ));
            }
            if routes.email_to.is_empty() {
                return Err(invalid(what, "the digest is e-mailed: set email_to too"));
            }
        }
        for route in routes.times.quiet_hours.keys() {
            if !routes.has(route) {
                return Err(invalid(
                    format!("{section}.quiet_hours.{route}"),
                    "names no route configured in this section (webhook, email, slack, teams, pagerduty)",
                ));
            }
        }
        for (route, hours) in &routes.times.remind_every_hours {
            let what = format!("{section}.remind_every_hours.{route}");
            if !routes.has(route) {
                return Err(invalid(
                    what,
                    "names no route configured in this section (webhook, email, slack, teams, pagerduty)",
                ));
            }
            if !(1..=REMIND_LIMIT_HOURS).contains(hours) {
                return Err(invalid(
                    what,
                    format!("{hours}: expected 1 to {REMIND_LIMIT_HOURS} hours"),
                ));
            }
        }
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
        for (name, chat) in [("slack", &routes.slack), ("teams", &routes.teams)] {
            if let Some(chat) = chat {
                check_https(
                    &format!("{section}.{name}_webhook_env"),
                    chat.url.expose_secret(),
                )?;
            }
        }
        if let Some(pagerduty) = &routes.pagerduty {
            check_https(
                &format!("{section}.pagerduty_events_url"),
                &pagerduty.events_url,
            )?;
            let key = pagerduty.routing_key.expose_secret();
            if key.trim().is_empty() || key.len() > 255 {
                return Err(invalid(
                    format!("{section}.pagerduty_routing_key_env"),
                    "the routing key must have 1 to 255 characters",
                ));
            }
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
