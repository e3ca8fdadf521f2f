//! `restorable alert ...`: an operator's lifecycle actions on one open alert.
//!
//! `restorable alert ack --alert ID [--note TEXT]` acknowledges it; `restorable alert snooze
//! --alert ID (--hours N | --until TIME) [--note TEXT]` snoozes it. Both leave the alert open
//! (only recovery resolves it), stop its reminders (for good, or until the time), and record
//! the action (`alert_acknowledge`, `alert_snooze`) in the tenant's audit trail under
//! `<login> (cli)`. An alert that is not open, or a refused note or time, exits 2 and records
//! nothing.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use restorable_domain::alert::AlertCommand as Lifecycle;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::InstanceId;
use restorable_domain::instance::Instance;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::store::StoreError;

use crate::cli::{AlertAckArgs, AlertCommand, AlertSnoozeArgs};
use crate::runtime::{open, operator};
use crate::settings::Config;

/// Runs a `restorable alert` command.
///
/// # Errors
/// The store failed (exit code 2, as any error).
pub async fn run(command: AlertCommand) -> Result<ExitCode> {
    let at = Utc::now();
    let by = operator();
    match command {
        AlertCommand::Ack(AlertAckArgs { data, alert, note }) => {
            let command = Lifecycle::Acknowledge {
                alert_id: alert.clone(),
                by,
                note,
                at,
            };
            act(&data, &alert, command, AuditAction::AlertAcknowledge).await
        }
        AlertCommand::Snooze(AlertSnoozeArgs {
            data,
            alert,
            hours,
            until,
            note,
        }) => {
            let until = match (hours, until) {
                (Some(hours), _) => at + Duration::hours(i64::from(hours)),
                (None, Some(until)) => DateTime::parse_from_rfc3339(&until)
                    .with_context(|| format!("--until {until:?} is not an RFC 3339 time"))?
                    .with_timezone(&Utc),
                (None, None) => anyhow::bail!("give --hours or --until"),
            };
            let command = Lifecycle::Snooze {
                alert_id: alert.clone(),
                by,
                until,
                note,
                at,
            };
            act(&data, &alert, command, AuditAction::AlertSnooze).await
        }
    }
}

/// The instance an alert id names (`<instance id>-<number>`).
fn instance_of(alert: &str) -> Option<InstanceId> {
    let (instance, number) = alert.rsplit_once('-')?;
    number.parse::<u64>().ok()?;
    instance.parse().ok()
}

async fn act(
    data: &Config,
    alert: &str,
    command: Lifecycle,
    action: AuditAction,
) -> Result<ExitCode> {
    let Some(instance) = instance_of(alert) else {
        eprintln!("refused: {alert:?} is not an alert id (<instance id>-<number>)");
        return Ok(ExitCode::from(2));
    };
    let pipeline = open(data, Settings::default()).await?;
    let store = &pipeline.store;
    let done = async {
        let enrolled = store
            .load::<Instance>(&instance.to_string())
            .await
            .context("reading the alert's instance")?
            .enrolled;
        let Some(enrolled) = enrolled else {
            eprintln!("refused: no open alert {alert}");
            return Ok(ExitCode::from(2));
        };
        match store.alerts(&instance.to_string(), command).await {
            Ok(()) => {}
            Err(StoreError::Rejected(reason)) => {
                eprintln!("refused: {reason}");
                return Ok(ExitCode::from(2));
            }
            Err(error) => {
                return Err(error).context("recording the alert's lifecycle (trying again is safe)")
            }
        }
        let record = ActionRecorded {
            tenant_id: enrolled.tenant_id.clone(),
            actor: operator(),
            action,
            instance_id: Some(instance),
            cycle_id: None,
            key_version: None,
            at: Utc::now(),
        };
        store
            .audit(enrolled.tenant_id.as_str(), record)
            .await
            .context("the alert is updated, but recording it in the audit trail failed")?;
        println!(
            "{} alert {alert}",
            action.as_str().trim_start_matches("alert_")
        );
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    done
}
