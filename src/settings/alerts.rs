//! The file's alert routes: `[smtp]` (the relay alert e-mail goes through),
//! `[alert_routes.<tenant>]` and `[operations_alerts]`. Secrets are never in the file, only the
//! names of the environment variables that hold them; a variable that is not set stops the
//! start, naming it.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use restorable_domain::alert::AlertKind;
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_pipeline::alerting::{
    AlertRoutes, ChatRoute, MaintenanceWindow, PagerDutyRoute, QuietHours, RouteTimes, SmtpRelay,
    TenantRoutes, WebhookRoute, WindowTime, PAGERDUTY_EVENTS_URL,
};
use secrecy::SecretString;
use serde::Deserialize;

/// `[smtp]`: the relay alert e-mail goes through.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSmtp {
    host: String,
    port: Option<u16>,
    from: String,
    username: Option<String>,
    /// The name of the environment variable holding the password.
    password_env: Option<String>,
    starttls: Option<bool>,
}

/// `[alert_routes.<tenant>]`: where a tenant's alerts go; `[operations_alerts]`: where the
/// operator's go.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAlertRoute {
    webhook_url: Option<String>,
    /// The name of the environment variable holding the webhook's signing secret.
    webhook_secret_env: Option<String>,
    #[serde(default)]
    email_to: Vec<String>,
    /// The name of the environment variable holding the Slack incoming webhook's URL.
    slack_webhook_env: Option<String>,
    /// The name of the environment variable holding the Teams incoming webhook's URL.
    teams_webhook_env: Option<String>,
    /// The name of the environment variable holding the PagerDuty routing key.
    pagerduty_routing_key_env: Option<String>,
    /// PagerDuty's Events API v2 URL (default: PagerDuty's; e.g. its EU URL).
    pagerduty_events_url: Option<String>,
    /// Reminders per route (`{ slack = 24, email = 48 }`): an alert left open and not taken on
    /// is sent again on that route every so many hours.
    #[serde(default)]
    remind_every_hours: std::collections::BTreeMap<String, u32>,
    /// Quiet hours per route, UTC (`{ slack = "22:00-07:00" }`): a raise then is held, and the
    /// route gets it when they end if the alert is still open and not taken on.
    #[serde(default)]
    quiet_hours: std::collections::BTreeMap<String, String>,
    /// Alert kinds quiet hours never hold (`["backup_failed"]`).
    #[serde(default)]
    urgent_kinds: Vec<AlertKind>,
    /// Maintenance windows: failures are recorded, not sent.
    #[serde(default)]
    maintenance: Vec<FileWindow>,
    /// The hour (UTC) the daily digest is e-mailed to `email_to`.
    digest_hour: Option<u32>,
}

/// One maintenance window: `start` and `end` (RFC 3339) once, or `weekly = "sun 02:00"` (UTC)
/// for `hours`; for one `instance` or the whole tenant; with a `reason`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWindow {
    instance: Option<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    weekly: Option<String>,
    hours: Option<u32>,
    #[serde(default)]
    reason: String,
}

/// The longest reason a window keeps, in characters.
const WINDOW_REASON_CHARS: usize = 200;

impl FileWindow {
    /// The window, or what is wrong with it.
    fn window(&self) -> std::result::Result<MaintenanceWindow, String> {
        let instance = self
            .instance
            .as_deref()
            .map(|id| {
                id.parse::<InstanceId>()
                    .map_err(|_| format!("instance {id:?} is not an instance id"))
            })
            .transpose()?;
        let when = match (self.start, self.end, &self.weekly, self.hours) {
            (Some(start), Some(end), None, None) if start < end => WindowTime::Once { start, end },
            (Some(_), Some(_), None, None) => return Err("end must come after start".into()),
            (None, None, Some(weekly), Some(hours)) => WindowTime::weekly(weekly, hours)?,
            _ => {
                return Err(
                    "give either start and end (RFC 3339), or weekly (\"sun 02:00\") and hours"
                        .into(),
                )
            }
        };
        if self.reason.chars().count() > WINDOW_REASON_CHARS
            || self.reason.chars().any(char::is_control)
        {
            return Err(format!(
                "reason: at most {WINDOW_REASON_CHARS} characters, without control characters"
            ));
        }
        Ok(MaintenanceWindow {
            instance,
            when,
            reason: self.reason.clone(),
        })
    }
}

/// The secret in the environment variable `name`, which `what` refers to.
fn secret_from_env(
    what: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretString> {
    match env(name) {
        Some(value) if !value.is_empty() => Ok(SecretString::from(value)),
        _ => bail!("{what}: the environment variable {name} is not set (or is empty or not UTF-8)"),
    }
}

/// One `[alert_routes.<tenant>]` or `[operations_alerts]` section (named `section`), its
/// webhook secret read through `env`.
fn section_routes(
    section: &str,
    route: &FileAlertRoute,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TenantRoutes> {
    let webhook = match (&route.webhook_url, &route.webhook_secret_env) {
        (Some(url), Some(name)) => Some(WebhookRoute {
            url: url.clone(),
            secret: secret_from_env(&format!("{section}.webhook_secret_env"), name, env)?,
        }),
        (None, None) => None,
        (Some(_), None) => bail!(
            "{section}.webhook_secret_env is required with webhook_url: webhooks are always signed"
        ),
        (None, Some(_)) => {
            bail!("{section}.webhook_secret_env is set but webhook_url is not")
        }
    };
    let chat = |key: &str, name: &Option<String>| -> Result<Option<ChatRoute>> {
        name.as_ref()
            .map(|name| {
                let url = secret_from_env(&format!("{section}.{key}"), name, env)?;
                Ok(ChatRoute { url })
            })
            .transpose()
    };
    let pagerduty = match (
        &route.pagerduty_routing_key_env,
        &route.pagerduty_events_url,
    ) {
        (Some(name), events_url) => Some(PagerDutyRoute {
            routing_key: secret_from_env(
                &format!("{section}.pagerduty_routing_key_env"),
                name,
                env,
            )?,
            events_url: events_url
                .clone()
                .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_owned()),
        }),
        (None, None) => None,
        (None, Some(_)) => {
            bail!("{section}.pagerduty_events_url is set but pagerduty_routing_key_env is not")
        }
    };
    Ok(TenantRoutes {
        webhook,
        email_to: route.email_to.clone(),
        slack: chat("slack_webhook_env", &route.slack_webhook_env)?,
        teams: chat("teams_webhook_env", &route.teams_webhook_env)?,
        pagerduty,
        times: RouteTimes {
            remind_every_hours: route.remind_every_hours.clone(),
            quiet_hours: route
                .quiet_hours
                .iter()
                .map(|(name, text)| {
                    QuietHours::parse(text)
                        .map(|quiet| (name.clone(), quiet))
                        .map_err(|e| anyhow!("{section}.quiet_hours.{name}: {e}"))
                })
                .collect::<Result<_>>()?,
            urgent_kinds: route.urgent_kinds.clone(),
            windows: route
                .maintenance
                .iter()
                .enumerate()
                .map(|(n, window)| {
                    window
                        .window()
                        .map_err(|e| anyhow!("{section}.maintenance[{n}]: {e}"))
                })
                .collect::<Result<_>>()?,
            routes: Vec::new(),
        },
        digest_hour: route.digest_hour,
    })
}

/// `[smtp]`, `[alert_routes.*]` and `[operations_alerts]`, secrets read through `env`.
pub(super) fn alert_routes(
    smtp: Option<&FileSmtp>,
    routes: &HashMap<String, FileAlertRoute>,
    operations: Option<&FileAlertRoute>,
    console_url: Option<&String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AlertRoutes> {
    let smtp = match smtp {
        None => None,
        Some(smtp) => {
            let starttls = smtp.starttls.unwrap_or(true);
            let password = match (&smtp.username, &smtp.password_env) {
                (Some(_), Some(name)) => Some(secret_from_env("smtp.password_env", name, env)?),
                (None, None) => None,
                (Some(_), None) => bail!("smtp.username is set but smtp.password_env is not"),
                (None, Some(_)) => bail!("smtp.password_env is set but smtp.username is not"),
            };
            Some(SmtpRelay {
                host: smtp.host.clone(),
                port: smtp.port.unwrap_or(if starttls { 587 } else { 25 }),
                from: smtp.from.clone(),
                username: smtp.username.clone(),
                password,
                starttls,
            })
        }
    };
    let mut tenants = HashMap::new();
    let mut slugs: Vec<_> = routes.keys().collect();
    slugs.sort();
    for slug in slugs {
        let route = &routes[slug];
        let tenant = TenantId::new(slug)
            .with_context(|| format!("alert_routes: {slug:?} is not a tenant id"))?;
        tenants.insert(
            tenant,
            section_routes(&format!("alert_routes.{slug}"), route, env)?,
        );
    }
    let operations = match operations {
        Some(route) => Some(section_routes("operations_alerts", route, env)?),
        None => None,
    };
    let routes = AlertRoutes {
        smtp,
        tenants,
        operations,
        console_url: console_url.cloned(),
    };
    routes.check().map_err(|e| anyhow!("{e}"))?;
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sections these tests read, as the file holds them.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sections {
        smtp: Option<FileSmtp>,
        #[serde(default)]
        alert_routes: HashMap<String, FileAlertRoute>,
        operations_alerts: Option<FileAlertRoute>,
        console_url: Option<String>,
    }

    const ROUTES: &str = r#"
[smtp]
host = "smtp.example.com"
from = "Restorable <alerts@example.com>"
username = "alerts"
password_env = "TEST_SMTP_PASSWORD"

[alert_routes.acme]
webhook_url = "https://hooks.acme.example/restorable?team=ops"
webhook_secret_env = "TEST_ACME_SECRET"
email_to = ["ops@acme.example", "cto@acme.example"]

[alert_routes.globex]
email_to = ["noc@globex.example"]
"#;

    fn fake_env(name: &str) -> Option<String> {
        match name {
            "TEST_SMTP_PASSWORD" => Some("smtp-password-value".to_owned()),
            "TEST_ACME_SECRET" => Some("acme-secret-value".to_owned()),
            "TEST_SLACK_URL" => {
                Some("https://hooks.slack.com/services/T0/B0/slack-path-secret".to_owned())
            }
            "TEST_TEAMS_URL" => {
                Some("https://acme.webhook.office.com/teams-path-secret".to_owned())
            }
            "TEST_PD_KEY" => Some("pd-key-secret".to_owned()),
            _ => None,
        }
    }

    fn routes_from(text: &str) -> Result<AlertRoutes> {
        let file: Sections = toml::from_str(text)?;
        alert_routes(
            file.smtp.as_ref(),
            &file.alert_routes,
            file.operations_alerts.as_ref(),
            file.console_url.as_ref(),
            &fake_env,
        )
    }

    #[test]
    fn a_digest_hour_is_read_for_its_tenant() {
        let routes = routes_from(
            "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@b.example\"\nstarttls = false\n\
             [alert_routes.acme]\nemail_to = [\"ops@acme.example\"]\ndigest_hour = 0\n\
             [alert_routes.globex]\nemail_to = [\"noc@globex.example\"]\n",
        )
        .expect("valid");
        let hour = |slug: &str| routes.tenants[&TenantId::new(slug).expect("slug")].digest_hour;
        assert_eq!((hour("acme"), hour("globex")), (Some(0), None));
    }

    #[test]
    fn alert_routes_are_read_with_their_secrets_from_the_environment() {
        use secrecy::ExposeSecret;
        let routes = routes_from(ROUTES).expect("routes");
        let smtp = routes.smtp.as_ref().expect("smtp");
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 587));
        assert!(smtp.starttls, "STARTTLS unless turned off");
        assert_eq!(
            smtp.password.as_ref().map(|p| p.expose_secret().to_owned()),
            Some("smtp-password-value".to_owned())
        );
        let acme = &routes.tenants[&TenantId::new("acme").expect("slug")];
        let webhook = acme.webhook.as_ref().expect("webhook");
        assert_eq!(webhook.secret.expose_secret(), "acme-secret-value");
        assert_eq!(acme.email_to.len(), 2);
        let globex = &routes.tenants[&TenantId::new("globex").expect("slug")];
        assert!(globex.webhook.is_none());
        let shown = format!("{routes:?}");
        for secret in ["smtp-password-value", "acme-secret-value", "team=ops"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(routes_from("").expect("none").tenants.is_empty());
        assert!(routes_from("").expect("none").operations.is_none());
    }

    #[test]
    fn the_operators_routes_are_their_own_section() {
        use secrecy::ExposeSecret;
        let routes = routes_from(&format!(
            "{ROUTES}\n[operations_alerts]\nwebhook_url = \"https://hooks.ops.example/r\"\n\
             webhook_secret_env = \"TEST_ACME_SECRET\"\nemail_to = [\"oncall@ops.example\"]\n"
        ))
        .expect("routes");
        let operations = routes.operations.as_ref().expect("operations routes");
        let webhook = operations.webhook.as_ref().expect("webhook");
        assert_eq!(webhook.url, "https://hooks.ops.example/r");
        assert_eq!(webhook.secret.expose_secret(), "acme-secret-value");
        assert_eq!(operations.email_to, ["oncall@ops.example"]);
        assert_eq!(routes.tenants.len(), 2, "no tenant of that name");
        for (text, named) in [
            (
                "[operations_alerts]\nwebhook_url = \"https://h/x\"\n",
                "operations_alerts.webhook_secret_env",
            ),
            (
                "[operations_alerts]\nemail_to = [\"oncall@ops.example\"]\n",
                "operations_alerts.email_to",
            ),
        ] {
            let error = routes_from(text).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
    }

    #[test]
    fn chat_and_incident_routes_are_read_with_their_secrets_from_the_environment() {
        use secrecy::ExposeSecret;
        let routes = routes_from(
            "console_url = \"https://restorable.example\"\n\
             [alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\n\
             teams_webhook_env = \"TEST_TEAMS_URL\"\npagerduty_routing_key_env = \"TEST_PD_KEY\"\n\
             [alert_routes.globex]\npagerduty_routing_key_env = \"TEST_PD_KEY\"\n\
             pagerduty_events_url = \"https://events.eu.pagerduty.com/v2/enqueue\"\n",
        )
        .expect("routes");
        assert_eq!(
            routes.console_url.as_deref(),
            Some("https://restorable.example")
        );
        let acme = &routes.tenants[&TenantId::new("acme").expect("slug")];
        let slack = acme.slack.as_ref().expect("slack");
        assert!(slack.url.expose_secret().ends_with("slack-path-secret"));
        assert!(acme.teams.is_some());
        let pagerduty = acme.pagerduty.as_ref().expect("pagerduty");
        assert_eq!(pagerduty.routing_key.expose_secret(), "pd-key-secret");
        assert_eq!(pagerduty.events_url, PAGERDUTY_EVENTS_URL);
        let globex = &routes.tenants[&TenantId::new("globex").expect("slug")];
        assert_eq!(
            globex.pagerduty.as_ref().expect("pagerduty").events_url,
            "https://events.eu.pagerduty.com/v2/enqueue"
        );
        let shown = format!("{routes:?}");
        for secret in ["slack-path-secret", "teams-path-secret", "pd-key-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for (text, named) in [
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_UNSET_SLACK\"\n",
                "alert_routes.acme.slack_webhook_env",
            ),
            (
                "[alert_routes.acme]\npagerduty_events_url = \"https://e.example/v2/enqueue\"\n",
                "pagerduty_routing_key_env is not",
            ),
            ("console_url = \"file:///etc/passwd\"\n", "console_url"),
        ] {
            let error = routes_from(text).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
    }

    #[test]
    fn reminders_are_read_per_route() {
        let routes = routes_from(
            "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nteams_webhook_env = \"TEST_TEAMS_URL\"\nremind_every_hours = { slack = 24, teams = 72 }\n\n[alert_routes.globex]\nslack_webhook_env = \"TEST_SLACK_URL\"\n",
        )
        .expect("routes");
        let reminders = routes.reminders().0;
        let acme = TenantId::new("acme").expect("slug");
        assert_eq!(reminders.len(), 1, "globex reminds nowhere");
        assert_eq!(
            reminders[&acme]
                .remind_every_hours
                .iter()
                .map(|(r, h)| (r.as_str(), *h))
                .collect::<Vec<_>>(),
            vec![("slack", 24), ("teams", 72)]
        );
        let quiet = routes_from(
            "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nquiet_hours = { slack = \"22:00-07:00\" }\nurgent_kinds = [\"backup_failed\"]\n",
        )
        .expect("routes");
        let times = &quiet.reminders().0[&acme];
        assert_eq!(
            times.quiet_hours["slack"],
            QuietHours::parse("22:00-07:00").expect("parses")
        );
        assert_eq!(times.urgent_kinds, vec![AlertKind::BackupFailed]);
        let instance = InstanceId::random();
        let windowed = routes_from(&format!(
            "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nmaintenance = [\n  {{ start = \"2026-12-01T22:00:00Z\", end = \"2026-12-02T02:00:00Z\", reason = \"PBX migration\", instance = \"{instance}\" }},\n  {{ weekly = \"sun 02:00\", hours = 3, reason = \"patching\" }},\n]\n"
        ))
        .expect("routes");
        let times = &windowed.reminders().0[&acme];
        assert_eq!(times.windows.len(), 2);
        assert_eq!(times.windows[0].instance, Some(instance));
        assert_eq!(times.windows[1].instance, None);
        assert_eq!(times.routes, vec!["slack".to_owned()]);
    }

    #[test]
    fn alert_route_mistakes_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "[alert_routes.acme]\nwebhook_url = \"https://h/x\"\nwebhook_secret_env = \"TEST_UNSET\"\n",
                "TEST_UNSET",
            ),
            (
                "[alert_routes.acme]\nwebhook_url = \"https://h/x\"\n",
                "alert_routes.acme.webhook_secret_env",
            ),
            (
                "[alert_routes.Acme_Corp]\nemail_to = [\"a@b.example\"]\n",
                "Acme_Corp",
            ),
            (
                "[alert_routes.acme]\nemail_to = [\"ops@acme.example\"]\n",
                "[smtp]",
            ),
            (
                "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@b.example\"\nusername = \"u\"\npassword_env = \"TEST_NO_PASSWORD\"\n",
                "TEST_NO_PASSWORD",
            ),
            (
                "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@b.example\"\nstarttls = false\n",
                "smtp.starttls",
            ),
            (
                "[alert_routes.acme]\nwebhook = \"https://h/x\"\n",
                "webhook",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nremind_every_hours = { teams = 24 }\n",
                "alert_routes.acme.remind_every_hours.teams",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nremind_every_hours = { slack = 0 }\n",
                "alert_routes.acme.remind_every_hours.slack",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nremind_every_hours = { slack = 721 }\n",
                "720",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nquiet_hours = { slack = \"22:00\" }\n",
                "alert_routes.acme.quiet_hours.slack",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nquiet_hours = { email = \"22:00-07:00\" }\n",
                "alert_routes.acme.quiet_hours.email",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nurgent_kinds = [\"everything\"]\n",
                "everything",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nmaintenance = [{ start = \"2026-12-02T00:00:00Z\", end = \"2026-12-01T00:00:00Z\" }]\n",
                "alert_routes.acme.maintenance[0]: end must come after start",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nmaintenance = [{ weekly = \"sun 02:00\" }]\n",
                "alert_routes.acme.maintenance[0]",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\nmaintenance = [{ weekly = \"sun 02:00\", hours = 2, instance = \"hq\" }]\n",
                "not an instance id",
            ),
            (
                "[alert_routes.acme]\nslack_webhook_env = \"TEST_SLACK_URL\"\ndigest_hour = 7\n",
                "alert_routes.acme.digest_hour: the digest is e-mailed: set email_to too",
            ),
            (
                "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@b.example\"\nstarttls = false\n[alert_routes.acme]\nemail_to = [\"ops@acme.example\"]\ndigest_hour = 24\n",
                "alert_routes.acme.digest_hour: 24: expected an hour of the day",
            ),
            (
                "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@b.example\"\nstarttls = false\n[operations_alerts]\nemail_to = [\"ops@example.com\"]\ndigest_hour = 7\n",
                "operations_alerts.digest_hour",
            ),
        ];
        for (text, named) in cases {
            let error = routes_from(text).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
    }
}
