//! An instance's Backups tab (`/instances/{id}`): its status, its PBX origin and every change
//! of it, charts of restore duration and backup size over time ([`super::chart`]), the ladder of each copy with its failure, download and reveal; the administrators'
//! stop, resume and back-up-now form (`/instances/{id}/action`), and the owners' password
//! reveal (`/cycles/{id}/reveal`, audited).

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::Response;
use chrono::Utc;
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{EndpointChanged, Instance, InstanceEvent};
use restorable_pipeline::pbx::{check_endpoint, origin_of};
use restorable_projections::backups::BackupRow;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::chart::{backup_sizes, restore_durations, Chart, CHART_POINTS};
use super::layout::{
    html, ladder, page_error, redirect, time, Badge, Nav, PageForm, RungMark, Visitor,
};
use super::native::NativeSummary;
use crate::access;
use crate::actions::{self, InstanceAction};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::queries::backup_rows;
use crate::state::Shared;

/// The Backups tab.
#[derive(Template)]
#[template(path = "instance.html")]
struct InstancePage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    csrf: &'a str,
    instance_id: String,
    name: &'a str,
    fqdn: &'a str,
    tenant: &'a str,
    status: Badge,
    endpoint: Option<Endpoint>,
    /// Maintenance windows, quiet hours and reminders that apply to its alerts.
    timing: Vec<String>,
    native: NativeSummary,
    /// How its copies are restore-tested: cadence, which copy, the restore-time target.
    restore_tests: Option<String>,
    admin: Option<Toggle>,
    /// Set once the instance was removed: when, and from when its copies and credentials go.
    removal: Option<String>,
    /// Restore duration and backup size over time (those with points).
    charts: Vec<Chart>,
    chart_points: usize,
    backups: Vec<CopyLine>,
}

/// An offboarded instance's removal.
struct Removal {
    removed_at: chrono::DateTime<Utc>,
    purge_after: chrono::DateTime<Utc>,
    purged_at: Option<chrono::DateTime<Utc>>,
}

impl Removal {
    fn of(instance: &Instance) -> Option<Self> {
        instance.removed.as_ref().map(|removed| Removal {
            removed_at: removed.removed_at,
            purge_after: removed.purge_after,
            purged_at: instance.purged_at,
        })
    }

    fn sentence(&self) -> String {
        match self.purged_at {
            Some(purged) => format!(
                "Removed on {}; every copy and its credentials were removed by {}.",
                time(Some(self.removed_at)),
                time(Some(purged))
            ),
            None => format!(
                "Removed on {}: managed backups are stopped for good; its copies and credentials \
                 are removed from {} on (each copy once its Object Lock has run out).",
                time(Some(self.removed_at)),
                time(Some(self.purge_after))
            ),
        }
    }
}

/// The administrators' stop or resume button.
struct Toggle {
    value: &'static str,
    label: &'static str,
}

/// The instance's PBX origin, whether plain http to a host that is not loopback is allowed,
/// and every change of its URL.
struct Endpoint {
    origin: String,
    insecure: bool,
    changes: Vec<EndpointChange>,
}

/// One `endpoint_changed`: when, the old and the new origin.
struct EndpointChange {
    at: String,
    from: Option<String>,
    to: String,
    insecure: bool,
}

impl EndpointChange {
    fn of(change: &EndpointChanged) -> Self {
        EndpointChange {
            at: time(Some(change.changed_at)),
            from: change.previous_api_url.as_deref().map(origin_of),
            to: origin_of(&change.api_url),
            insecure: change.allow_insecure_http,
        }
    }
}

/// One copy as the Backups tab shows it.
struct CopyLine {
    id: String,
    started: String,
    trigger: String,
    ladder: [RungMark; 4],
    failure: Option<CopyFailure>,
    size: String,
    sha: String,
    key: String,
    retain: String,
    secured: String,
    verified: String,
    tested: String,
    download: bool,
    certificate: bool,
    reveal: bool,
}

struct CopyFailure {
    stage: String,
    reason: String,
    detail: String,
}

impl CopyLine {
    fn of(row: &BackupRow, who: &Principal) -> Self {
        CopyLine {
            id: row.cycle_id.to_string(),
            started: time(Some(row.started_at)),
            trigger: format!("{:?}", row.trigger),
            ladder: ladder(Some(row.rung), row.failure.is_some()),
            failure: row.failure.as_ref().map(|f| CopyFailure {
                stage: f.stage.to_string(),
                reason: f.reason.to_string(),
                detail: f.detail.clone(),
            }),
            size: row.size.map_or("—".to_owned(), |s| format!("{s} bytes")),
            sha: row.sha256.clone().unwrap_or_else(|| "—".to_owned()),
            key: row.key_version.map_or("—".to_owned(), |v| format!("v{v}")),
            retain: match row.removed_at {
                Some(at) => format!("removed {}", time(Some(at))),
                None => time(row.retain_until),
            },
            secured: time(row.secured_at),
            verified: time(row.verified_at),
            tested: time(row.restore_tested_at),
            download: row.downloadable() && matches!(who.role, Role::Administrator | Role::Owner),
            certificate: row.restore_tested_at.is_some(),
            reveal: row.key_version.is_some() && who.role == Role::Owner,
        }
    }
}

pub(super) async fn instance_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
) -> Response {
    let row = match access::instance(&state, &who, &id) {
        Ok(row) => row,
        Err(error) => return page_error(Some(&who), error),
    };
    let backups = match backup_rows(&state, &who, &id).await {
        Ok(backups) => backups,
        Err(error) => return page_error(Some(&who), error),
    };
    let (removal, restore_tests) = match state.pipeline.store.load::<Instance>(&id).await {
        Ok(instance) => (Removal::of(&instance), restore_tests(&instance)),
        Err(error) => return page_error(Some(&who), ApiError::from(error)),
    };
    let admin = (who.role == Role::Administrator && removal.is_none()).then_some(if row.stopped {
        Toggle {
            value: "resume",
            label: "Resume managed backups",
        }
    } else {
        Toggle {
            value: "stop",
            label: "Stop managed backups",
        }
    });
    html(&InstancePage {
        title: &row.name,
        nav: Nav::of(Some(&who)),
        csrf: who.csrf(),
        instance_id: row.instance_id.to_string(),
        name: &row.name,
        fqdn: &row.fqdn,
        tenant: row.tenant_id.as_str(),
        status: Badge::of(row.status(Utc::now())),
        endpoint: endpoint(&state, &id).await,
        timing: timing(&state, &row.tenant_id, row.instance_id),
        native: NativeSummary::of(
            row.native_backups.as_ref(),
            state.pipeline.settings.pbx.native_backup_grace,
        ),
        restore_tests,
        admin,
        removal: removal.map(|r| r.sentence()),
        charts: [restore_durations(&backups), backup_sizes(&backups)]
            .into_iter()
            .flatten()
            .collect(),
        chart_points: CHART_POINTS,
        backups: backups.iter().map(|b| CopyLine::of(b, &who)).collect(),
    })
}

/// The instance's restore-test policy in words: `Every 7th Verified copy, or when the last
/// restore test is 168 h old · copy tested: newest · target 15 min`.
fn restore_tests(instance: &Instance) -> Option<String> {
    let policy = instance.enrolled.as_ref()?.restore_policy;
    Some(format!(
        "Every {} Verified copy, or when the last restore test is {} h old · copy tested: {} · target {} min",
        ordinal(policy.every_nth_verified),
        policy.max_age_hours,
        policy.selection.describe(),
        policy.target_minutes
    ))
}

/// `1` → `1st`, `2` → `2nd`, `7` → `7th`, `11` → `11th`, `22` → `22nd`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// How the instance's alerts are routed in time: its maintenance windows (its own and its
/// tenant's; which is in effect now), its tenant's quiet hours and reminders per route, and
/// when its tenant's daily digest goes.
fn timing(state: &Shared, tenant: &TenantId, instance: InstanceId) -> Vec<String> {
    let Some(routes) = state.pipeline.settings.alert_routes.tenants.get(tenant) else {
        return Vec::new();
    };
    let times = routes.timing();
    let now = Utc::now();
    let mut lines: Vec<String> = times
        .windows
        .iter()
        .filter(|w| w.instance.is_none_or(|only| only == instance))
        .map(|w| {
            let scope = if w.instance.is_some() {
                "this instance"
            } else {
                "every instance of the tenant"
            };
            let now = if w.covers(instance, now) {
                " — in effect now"
            } else {
                ""
            };
            format!(
                "Maintenance window ({scope}): {}: {}{now}",
                w.when, w.reason
            )
        })
        .collect();
    let urgent: Vec<&str> = times.urgent_kinds.iter().map(|k| k.title()).collect();
    for (route, quiet) in &times.quiet_hours {
        let except = if urgent.is_empty() {
            String::new()
        } else {
            format!(" (except {})", urgent.join(", "))
        };
        lines.push(format!("Quiet hours on {route}: {quiet}{except}"));
    }
    for (route, hours) in &times.remind_every_hours {
        lines.push(format!(
            "Reminders on {route}: every {hours} h while open and not taken on"
        ));
    }
    if let Some(hour) = routes.digest_hour {
        lines.push(format!(
            "Daily digest: e-mailed at {hour:02}:00 UTC (open alerts, failures of the last 24 h)"
        ));
    }
    lines
}

/// The instance's PBX endpoint and its changes; `None` when the instance cannot be read (the
/// page shows the rest).
async fn endpoint(state: &Shared, id: &str) -> Option<Endpoint> {
    let instance = state.pipeline.store.load::<Instance>(id).await.ok()?;
    let enrolled = instance.enrolled?;
    // Only the endpoint's changes are read (an index holds them), not the instance's history.
    let history = state
        .pipeline
        .store
        .endpoint_changes(id)
        .await
        .unwrap_or_default();
    let changes = history
        .iter()
        .filter_map(|e| serde_json::from_str::<InstanceEvent>(&e.payload).ok())
        .filter_map(|e| match e {
            InstanceEvent::EndpointChanged(change) => Some(EndpointChange::of(&change)),
            _ => None,
        })
        .collect();
    Some(Endpoint {
        origin: origin_of(&enrolled.api_url),
        insecure: enrolled.allow_insecure_http && check_endpoint(&enrolled.api_url, false).is_err(),
        changes,
    })
}

/// The administrators' form: the action is parsed before the handler runs (an unknown one is a
/// 400 page).
#[derive(Deserialize)]
pub(super) struct ActionForm {
    csrf: Option<String>,
    action: InstanceAction,
    /// The removal's confirmation box (`remove` when ticked): removing cannot be undone.
    confirm: Option<String>,
}

pub(super) async fn instance_action(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<ActionForm>,
) -> Response {
    let checked = access::instance(&state, &who, &id)
        .and_then(|_| who.require(&[Role::Administrator]))
        .and_then(|()| who.check_csrf(form.csrf.as_deref()));
    if let Err(error) = checked {
        return page_error(Some(&who), error);
    }
    if form.action == InstanceAction::Remove && form.confirm.as_deref() != Some("remove") {
        let unconfirmed = ApiError::BadRequest(
            "removing an instance cannot be undone: tick the confirmation box".into(),
        );
        return page_error(Some(&who), unconfirmed);
    }
    match actions::act_on_instance(&state, &who, &id, form.action).await {
        Ok(_) => redirect(&format!("/instances/{id}")),
        Err(error) => page_error(Some(&who), error),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

/// The revealed password.
#[derive(Template)]
#[template(path = "reveal.html")]
struct RevealPage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    instance_id: String,
    key_version: u32,
    password: &'a str,
}

pub(super) async fn reveal_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let checked = access::cycle(&state, &who, &id)
        .await
        .and_then(|row| who.require(&[Role::Owner]).map(|()| row))
        .and_then(|row| who.check_csrf(form.csrf.as_deref()).map(|()| row));
    let row = match checked {
        Ok(row) => row,
        Err(error) => return page_error(Some(&who), error),
    };
    match actions::reveal_password(&state, &who, &id).await {
        Ok((version, password)) => html(&RevealPage {
            title: "Backup password",
            nav: Nav::of(Some(&who)),
            instance_id: row.instance_id.to_string(),
            key_version: version,
            password: password.expose_secret(),
        }),
        Err(error) => page_error(Some(&who), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::instance::{
        InstanceEnrolled, RestorePolicy, RestoreSelection, Schedule, SealedCredentials,
    };

    #[test]
    fn the_restore_policy_reads_as_a_sentence() {
        let tenant = TenantId::new("acme").expect("tenant");
        assert_eq!(restore_tests(&Instance::default()), None, "not enrolled");
        let instance = Instance {
            enrolled: Some(InstanceEnrolled {
                instance_id: InstanceId::for_name(&tenant, "hq"),
                tenant_id: tenant,
                name: "hq".into(),
                fqdn: "hq.example".into(),
                api_url: "https://hq.example".into(),
                credentials: SealedCredentials("sealed".into()),
                schedule: Schedule::DAILY,
                restore_policy: RestorePolicy {
                    every_nth_verified: 2,
                    max_age_hours: 72,
                    target_minutes: 20,
                    selection: RestoreSelection::RandomWithinDays { days: 14 },
                },
                allow_insecure_http: false,
                enrolled_at: Utc::now(),
            }),
            ..Instance::default()
        };
        assert_eq!(
            restore_tests(&instance).as_deref(),
            Some(
                "Every 2nd Verified copy, or when the last restore test is 72 h old \
                 · copy tested: random within 14 days · target 20 min"
            )
        );
        let words: Vec<String> = [1, 3, 7, 11, 12, 13, 21, 22, 23, 101]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            words,
            ["1st", "3rd", "7th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st"]
        );
    }
}
