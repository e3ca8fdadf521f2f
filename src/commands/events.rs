//! `restorable events`: the event history of a cycle or an instance.

use std::process::ExitCode;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;

use crate::cli::EventsArgs;
use crate::output::{self, EventLine, EventsReport};
use crate::runtime::{instance_id, open};

/// Prints the history, one event a line.
///
/// # Errors
/// A bad or unknown id, or a store failure.
pub async fn run(args: EventsArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let (aggregate, id) = match (&args.cycle, &args.instance) {
        (Some(cycle), _) => (
            "BackupCycle",
            cycle
                .parse::<restorable_domain::ids::CycleId>()?
                .to_string(),
        ),
        (None, Some(instance)) => ("Instance", instance_id(instance)?.to_string()),
        (None, None) => anyhow::bail!("give --cycle or --instance"),
    };
    let events = pipeline.store.history(aggregate, &id).await?;
    anyhow::ensure!(!events.is_empty(), "no {aggregate} with id {id}");
    if args.json {
        let events = events
            .into_iter()
            .map(|event| EventLine {
                position: event.position,
                sequence: event.sequence,
                payload: serde_json::from_str(&event.payload)
                    .unwrap_or(serde_json::Value::String(event.payload)),
                event_type: event.event_type,
                event_version: event.event_version,
            })
            .collect();
        output::print(&EventsReport {
            aggregate: aggregate.to_owned(),
            id,
            events,
        })?;
        pipeline.store.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    for event in events {
        println!(
            "#{:<3} {:<14} v{}  {}",
            event.sequence, event.event_type, event.event_version, event.payload
        );
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}
