//! The daily digest: once a day, from the hour a tenant chose (`digest_hour` in
//! `[alert_routes.<tenant>]`, UTC), one plain-text e-mail to the tenant's `email_to` listing its
//! open alerts (acknowledged and snoozed ones too, marked so) and the cycles that failed in the
//! 24 hours before it. Sent also when there is nothing to list ("No open alerts"): a digest
//! that stops arriving is itself a sign.
//!
//! ```text
//! run (every SWEEP_EVERY) ─► send_due ─► claim (tenant, day) ─► compose ─► SMTP ─► mark sent
//!                                          └ claimed elsewhere / sent: skip   └ failed: give the claim back
//! ```
//!
//! - **Once a day, however many processes.** Every process serving the web UI runs the sweep;
//!   a process sends a tenant's digest only after claiming that tenant's day in the store
//!   ([`Store::claim_digest`]), leased for as long as a delivery can take. A send that fails
//!   gives the claim back at once (the next sweep, a minute later, tries again); a process
//!   stopped while sending leaves the claim to run out. So a day's digest is sent at least
//!   once, and twice only if a process stops between the relay's answer and marking it sent.
//! - **What it reads.** The open alerts come from the read side in memory (every open alert is
//!   held); the failures from the stored `failures` view, newest first, a page at a time, ending
//!   at the first page older than the day (less [`crate::read_model::CLOCK_SKEW`]): never the whole
//!   history.
//! - **Bounded.** Each list shows at most [`LISTED`] lines and says how many more there are.
//! - **No secrets.** It holds what the alerts and failures hold (reasons and details, which
//!   never carry one); text a PBX or a user wrote is put on one line with control characters
//!   replaced.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_projections::alerts::{AlertRow, AlertState};
use tokio_util::sync::CancellationToken;

use crate::alerting::{send_letter, AlertRouteError, AlertRoutes, Letter, RetryPolicy, SmtpRelay};
use crate::read_model::{failures_between, ProjectionError, ReadSide};
use crate::store::{Store, StoreError};

/// How often [`run`] looks for digests due.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The most lines each list of a digest shows.
pub const LISTED: usize = 200;

/// What a digest sweep needs of the routes: each tenant's hour and recipients, the relay, the
/// console's URL.
#[derive(Clone, Debug, Default)]
pub struct DigestPlan {
    tenants: Vec<(TenantId, u32, Vec<String>)>,
    smtp: Option<SmtpRelay>,
    console_url: Option<String>,
}

impl DigestPlan {
    /// The digests `routes` ask for (tenants with a `digest_hour`, by tenant id).
    pub fn of(routes: &AlertRoutes) -> Self {
        let mut tenants: Vec<_> = routes
            .tenants
            .iter()
            .filter_map(|(tenant, r)| {
                r.digest_hour
                    .map(|h| (tenant.clone(), h, r.email_to.clone()))
            })
            .collect();
        tenants.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            tenants,
            smtp: routes.smtp.clone(),
            console_url: routes.console_url.clone(),
        }
    }

    /// Whether no tenant has a digest.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// Why a digest sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The store failed (nothing was sent without being claimed; a claim taken is given back
    /// or runs out).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The views could not be read.
    #[error(transparent)]
    Views(#[from] ProjectionError),
}

/// One tenant's digest of one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Whose.
    pub tenant: TenantId,
    /// The day (UTC) it is the digest of.
    pub day: NaiveDate,
    /// Its open alerts (all of them, whether listed or not).
    pub open_alerts: usize,
    /// Its failures in the 24 hours before it was composed (all of them).
    pub failures: usize,
    /// The subject line.
    pub subject: String,
    /// The body.
    pub text: String,
}

/// What a sweep did for one tenant.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The digest was sent.
    Sent(Digest),
    /// Sending failed (the claim was given back: the next sweep tries again); why.
    NotSent(String),
}

/// Sends every digest due at `now` that no process has sent or is sending: for each tenant
/// whose hour has come today (UTC), claim the day, compose, send, mark sent. What each
/// tenant's digest came to, in tenant order (tenants skipped are not listed).
///
/// # Errors
/// [`DigestError`] when the store or the views fail (the tenants after it wait for the next
/// sweep).
pub async fn send_due(
    read: &ReadSide,
    store: &Store,
    plan: &DigestPlan,
    retry: &RetryPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<(TenantId, Outcome)>, DigestError> {
    use chrono::Timelike;
    let mut outcomes = Vec::new();
    let day = now.date_naive();
    let day_text = day.to_string();
    let lease =
        chrono::Duration::from_std(retry.longest_delivery()).unwrap_or(chrono::Duration::MAX);
    let lease_until = now
        .checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .timestamp_millis();
    for (tenant, hour, to) in &plan.tenants {
        if now.hour() < *hour {
            continue;
        }
        let claimed = store
            .claim_digest(
                tenant.as_str(),
                &day_text,
                now.timestamp_millis(),
                lease_until,
            )
            .await?;
        if !claimed {
            continue;
        }
        let sent = async {
            let digest = compose(read, store, tenant, plan.console_url.as_deref(), now).await?;
            let letter = Letter {
                to: to.clone(),
                section: format!("alert_routes.{tenant}"),
                subject: digest.subject.clone(),
                text: digest.text.clone(),
                id: format!("digest/{tenant}/{day_text}"),
            };
            let relay = plan.smtp.as_ref().ok_or(AlertRouteError::NoSmtpRelay);
            let delivered = match relay {
                Ok(relay) => send_letter(relay, &letter, retry).await,
                Err(error) => Err(error),
            };
            Ok::<_, DigestError>((digest, delivered))
        }
        .await;
        match sent {
            Ok((digest, Ok(()))) => {
                store
                    .digest_sent(tenant.as_str(), &day_text, Utc::now().timestamp_millis())
                    .await?;
                tracing::info!(%tenant, day = %day_text, open_alerts = digest.open_alerts, failures = digest.failures, "daily digest sent");
                outcomes.push((tenant.clone(), Outcome::Sent(digest)));
            }
            Ok((_, Err(error))) => {
                tracing::warn!(%tenant, day = %day_text, %error, "daily digest not sent; trying again at the next sweep");
                store.release_digest(tenant.as_str(), &day_text).await?;
                outcomes.push((tenant.clone(), Outcome::NotSent(error.to_string())));
            }
            Err(error) => {
                // Give the claim back before reporting: the day is not lost to a passing fault.
                if let Err(release) = store.release_digest(tenant.as_str(), &day_text).await {
                    tracing::warn!(%tenant, %release, "the digest's claim stays until its lease runs out");
                }
                return Err(error);
            }
        }
    }
    Ok(outcomes)
}

/// Sweeps for digests due every [`SWEEP_EVERY`] until `shutdown` (nothing when no tenant has
/// one). A failed sweep is logged and tried again at the next.
pub async fn run(
    read: ReadSide,
    store: Store,
    plan: DigestPlan,
    retry: RetryPolicy,
    shutdown: CancellationToken,
) {
    if plan.is_empty() {
        return;
    }
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(error) = send_due(&read, &store, &plan, &retry, Utc::now()).await {
            tracing::error!(%error, "the digest sweep failed; retrying later");
        }
    }
}

/// `tenant`'s digest at `now`: its open alerts and its failures in the 24 hours before `now`.
///
/// # Errors
/// A store failure, or a stored failures row that does not parse.
pub async fn compose(
    read: &ReadSide,
    store: &Store,
    tenant: &TenantId,
    console_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Digest, ProjectionError> {
    let since = now - chrono::Duration::hours(24);
    let (open_alerts, names) = {
        let model = read.read();
        let mut open: Vec<AlertRow> = model
            .alerts
            .open()
            .filter(|alert| &alert.tenant_id == tenant)
            .cloned()
            .collect();
        open.sort_by(|a, b| (a.raised_at, &a.alert_id).cmp(&(b.raised_at, &b.alert_id)));
        let names: std::collections::HashMap<InstanceId, String> = model
            .fleet
            .rows()
            .into_iter()
            .filter(|row| &row.tenant_id == tenant)
            .map(|row| (row.instance_id, row.name.clone()))
            .collect();
        (open, names)
    };
    let name = |instance: &InstanceId| {
        names
            .get(instance)
            .map(|n| format!("{:?}", one_line(n)))
            .unwrap_or_else(|| instance.to_string())
    };
    let at = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M UTC").to_string();

    let mut lines = vec![
        format!("Restorable daily digest for {tenant}, {}", now.date_naive()),
        String::new(),
    ];
    lines.push(format!("Open alerts: {}", open_alerts.len()));
    for alert in open_alerts.iter().take(LISTED) {
        let taken = match alert.state(now) {
            AlertState::Acknowledged => alert
                .acknowledged
                .as_ref()
                .map(|a| format!(" [acknowledged by {}]", one_line(&a.by)))
                .unwrap_or_default(),
            AlertState::Snoozed => alert
                .snoozed
                .as_ref()
                .map(|s| format!(" [snoozed until {}]", at(s.until)))
                .unwrap_or_default(),
            AlertState::Open | AlertState::Resolved => String::new(),
        };
        let why = match (alert.stage, alert.reason) {
            (Some(stage), Some(reason)) => format!(" {stage} ({reason}):"),
            _ => String::new(),
        };
        lines.push(format!(
            "- {} on {} since {}:{why} {}{taken}",
            alert.kind.title(),
            name(&alert.instance_id),
            at(alert.raised_at),
            one_line(&alert.detail),
        ));
        if let Some(console) = console_url {
            lines.push(format!(
                "  {}/instances/{}",
                console.trim_end_matches('/'),
                alert.instance_id
            ));
        }
    }
    if open_alerts.len() > LISTED {
        lines.push(format!("... and {} more", open_alerts.len() - LISTED));
    }

    let found = failures_between(store, Some(tenant.as_str()), since, now, LISTED).await?;
    let failures = found.count;
    let mut listed: Vec<_> = found
        .newest
        .into_iter()
        .map(|failure| {
            (
                failure.failed_at,
                format!(
                    "- {} {} failed at {} ({}): {}; cycle {}",
                    at(failure.failed_at),
                    name(&failure.instance_id),
                    failure.stage,
                    failure.reason,
                    one_line(&failure.detail),
                    failure.cycle_id,
                ),
            )
        })
        .collect();
    lines.push(String::new());
    lines.push(format!("Failures in the last 24 hours: {failures}"));
    // The newest (by log position) are listed, newest first by their own time.
    listed.sort_by_key(|line| std::cmp::Reverse(line.0));
    lines.extend(listed.into_iter().map(|(_, line)| line));
    if failures > LISTED {
        lines.push(format!("... and {} more", failures - LISTED));
    }
    if open_alerts.is_empty() && failures == 0 {
        lines.push(String::new());
        lines.push("No open alerts and no failed cycles in the last 24 hours.".to_owned());
    }
    lines.push(String::new());
    Ok(Digest {
        tenant: tenant.clone(),
        day: now.date_naive(),
        open_alerts: open_alerts.len(),
        failures,
        subject: format!(
            "Restorable digest {tenant} {}: {} open alerts, {failures} failures",
            now.date_naive(),
            open_alerts.len()
        ),
        text: lines.join("\r\n"),
    })
}

/// `text` on one line: control characters (line breaks too) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn text_from_outside_stays_on_one_line() {
        assert_eq!(one_line("a\r\nb\tc\u{1b}[31m"), "a  b c [31m");
        assert_eq!(one_line("plain"), "plain");
    }
}
