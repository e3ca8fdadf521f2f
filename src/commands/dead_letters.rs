//! `restorable dead-letters ...`: the events a consumer gave up on (see
//! `restorable_pipeline::error`), listed and replayed by an operator.
//!
//! - `list [--all] [--json]`: the pending dead letters (with `--all`, the replayed ones too), as
//!   a table or as a JSON array of `DeadLetter`.
//! - `replay --consumer NAME --position N` (or `--all` for every pending one): loads the event
//!   at that log position and runs the consumer's reaction in this process. A success, or a
//!   refusal of the aggregate (nothing is left to do), marks the letter replayed; any other
//!   error is printed and the letter stays pending. For the consumer `relay`, replaying means
//!   publishing that one event to JetStream again (NATS must be configured).
//!
//! Exit codes: 0 done, 1 a replay failed (the letter stays pending; trying again is safe),
//! 2 bad input (an unknown consumer, no such letter, the relay without NATS).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::runtime;
use restorable_pipeline::store::DeadLetter;
use restorable_pipeline::transport::nats::relay::Relay;
use restorable_pipeline::transport::Consumer;

use crate::cli::{DeadLettersCommand, DeadLettersListArgs, DeadLettersReplayArgs};
use crate::runtime::open;

/// The consumer name of the outbox relay's dead letters.
const RELAY: &str = "relay";

/// Runs a `restorable dead-letters` command.
///
/// # Errors
/// The store or a backend could not be opened or read (exit code 2, as any error).
pub async fn run(command: DeadLettersCommand) -> Result<ExitCode> {
    match command {
        DeadLettersCommand::List(args) => list(args).await,
        DeadLettersCommand::Replay(args) => replay(args).await,
    }
}

async fn list(args: DeadLettersListArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let letters = pipeline.store.dead_letters(!args.all).await;
    pipeline.store.close().await;
    let letters = letters.context("reading the dead letters")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(ExitCode::SUCCESS);
    }
    if letters.is_empty() {
        println!("no {}dead letters", if args.all { "" } else { "pending " });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<15} {:>9}  {:<50} {:<16} {:>8}  {:<25} REASON",
        "CONSUMER", "POSITION", "AGGREGATE", "EVENT", "ATTEMPTS", "WHEN"
    );
    for letter in &letters {
        let reason = match &letter.replayed_at {
            Some(at) => format!("(replayed {at}) {}", letter.reason),
            None => letter.reason.clone(),
        };
        println!(
            "{:<15} {:>9}  {:<50} {:<16} {:>8}  {:<25} {}",
            letter.consumer,
            letter.position,
            format!("{} {}", letter.aggregate_type, letter.aggregate_id),
            letter.event_type,
            letter.attempts,
            letter.created_at,
            reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How one replay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Replayed (or nothing was left to do): marked replayed.
    Done,
    /// The reaction failed: left pending.
    Failed,
    /// The request cannot be carried out as given.
    BadInput,
}

impl Outcome {
    fn code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::BadInput => ExitCode::from(2),
        }
    }
}

async fn replay(args: DeadLettersReplayArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let outcome = replay_in(&pipeline, &args).await;
    pipeline.store.close().await;
    Ok(outcome?.code())
}

async fn replay_in(pipeline: &Pipeline, args: &DeadLettersReplayArgs) -> Result<Outcome> {
    let consumers = runtime::consumers(pipeline);
    let letters = pipeline
        .store
        .dead_letters(false)
        .await
        .context("reading the dead letters")?;
    let chosen: Vec<DeadLetter> = match (&args.consumer, args.position) {
        (Some(consumer), Some(position)) => {
            if consumer != RELAY && !consumers.iter().any(|c| c.name() == consumer) {
                let known: Vec<&str> = consumers.iter().map(|c| c.name()).collect();
                eprintln!(
                    "refused: unknown consumer {consumer:?} (known: {}, {RELAY})",
                    known.join(", ")
                );
                return Ok(Outcome::BadInput);
            }
            let Some(letter) = letters
                .into_iter()
                .find(|l| &l.consumer == consumer && l.position == position)
            else {
                eprintln!("refused: no dead letter of {consumer} at position {position}");
                return Ok(Outcome::BadInput);
            };
            if let Some(at) = &letter.replayed_at {
                println!(
                    "{consumer} at position {position} was already replayed at {at}; nothing to do"
                );
                return Ok(Outcome::Done);
            }
            vec![letter]
        }
        _ if args.all => letters
            .into_iter()
            .filter(|l| l.replayed_at.is_none())
            .collect(),
        _ => {
            eprintln!("refused: give --consumer and --position, or --all");
            return Ok(Outcome::BadInput);
        }
    };
    if chosen.is_empty() {
        println!("no pending dead letters");
    }
    let mut worst = Outcome::Done;
    for letter in &chosen {
        let outcome = replay_one(pipeline, &consumers, letter).await?;
        worst = worst.max(outcome);
    }
    Ok(worst)
}

/// Replays one pending dead letter; `Err` only when the store fails around the replay.
async fn replay_one(
    pipeline: &Pipeline,
    consumers: &[Arc<dyn Consumer>],
    letter: &DeadLetter,
) -> Result<Outcome> {
    let (name, position) = (letter.consumer.as_str(), letter.position);
    let what = format!("{name} at position {position} ({})", letter.event_type);
    let Some(event) = pipeline
        .store
        .event_at(position)
        .await
        .context("reading the event log")?
    else {
        eprintln!("replay of {what} failed: no event at position {position} in the log");
        return Ok(Outcome::Failed);
    };
    let result: Result<&str, String> = if name == RELAY {
        let Some(nats) = &pipeline.nats else {
            eprintln!(
                "refused: {what} is a dead letter of the NATS relay; replaying it publishes the \
                 event to JetStream, so NATS must be configured (--nats-url or RESTORABLE_NATS_URL)"
            );
            return Ok(Outcome::BadInput);
        };
        Relay::new(pipeline.store.clone(), nats.clone())
            .publish_one(&event)
            .await
            .map(|()| "published to JetStream")
            .map_err(|e| e.to_string())
    } else {
        let Some(consumer) = consumers.iter().find(|c| c.name() == name) else {
            eprintln!("refused: {what}: unknown consumer {name:?}");
            return Ok(Outcome::BadInput);
        };
        if consumer.wants(&event) {
            // In a task of its own, so that a reaction that panics is a failed replay.
            let consumer = Arc::clone(consumer);
            match tokio::spawn(async move { consumer.react(event).await }).await {
                Ok(Ok(())) => Ok("replayed"),
                Ok(Err(error)) if error.is_refusal() => {
                    Ok("refused by the aggregate, nothing left to do")
                }
                Ok(Err(error)) => Err(error.to_string()),
                Err(panicked) => Err(format!("the reaction panicked: {panicked}")),
            }
        } else {
            Ok("the consumer does not react to this event, nothing to do")
        }
    };
    match result {
        Ok(how) => {
            pipeline
                .store
                .mark_dead_letter_replayed(name, position)
                .await
                .with_context(|| format!("{what} {how}, but marking it replayed failed"))?;
            println!("{what}: {how}");
            Ok(Outcome::Done)
        }
        Err(error) => {
            eprintln!("replay of {what} failed (left pending): {error}");
            Ok(Outcome::Failed)
        }
    }
}
