//! A stage as a JetStream worker: a durable pull consumer (`restorable-<stage>`, one
//! `filter_subject`: nats-server 2.9 ignores the plural form) shared by every copy of the stage
//! on any machine, so copies split the work.
//!
//! Each message is handled once it is decoded and checked against its schema, following
//! [`crate::error`]:
//! - done, or refused by the aggregate → explicit ack;
//! - the infrastructure failed (the stage returned `Err`) → nak with a growing, jittered delay
//!   ([`crate::retry::redelivery_delay`], up to two minutes), with no delivery limit: an outage
//!   of any length loses nothing;
//! - a reaction that panics, or keeps failing while the store answers, is poison
//!   ([`crate::poison`]): after `poison_after` such attempts it goes to the dead letters (NATS
//!   `restorable.deadletter.<stage>...` and the store's `dead_letters`) and its cycle fails;
//! - not an event (bad headers, not JSON, against the schema) → dead letters, terminated;
//! - long work (a capture, a restore test) keeps its claim with progress acks.
//!
//! On shutdown the worker stops fetching, lets the messages in hand finish for a grace period,
//! and hands back (naks) whatever is still running, so another copy takes it at once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::message::{decode, DEAD_LETTER_REASON};
use super::{Nats, NatsError, EVENTS_STREAM};
use crate::pipeline::Pipeline;
use crate::poison::{give_up, Attempts, Verdict, POISON_AFTER};
use crate::retry::{redelivery_delay, Backoff};
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;

/// How a worker treats its messages.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Messages handled at once by this copy.
    pub concurrency: usize,
    /// Failures of one message's reaction while the store answers (or panics) before it is
    /// given up on as poison; failures during an outage are never counted.
    pub poison_after: u32,
    /// How long JetStream waits for an ack (progress acks extend it) before redelivering.
    pub ack_wait: Duration,
    /// How long a stopping worker lets its messages finish before handing them back.
    pub grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poison_after: POISON_AFTER,
            ack_wait: Duration::from_secs(30),
            grace: Duration::from_secs(20),
        }
    }
}

/// The subject a consumer of `event_types` listens to: one type, or every event.
pub fn filter_subject(event_types: &[&str]) -> String {
    match event_types {
        [one] => format!("restorable.events.*.*.{one}"),
        _ => super::EVENTS_SUBJECTS.to_owned(),
    }
}

/// Runs `consumer` as a JetStream worker until `shutdown`. While its durable consumer cannot be
/// created (NATS away) it waits and tries again.
///
/// # Errors
/// None today: kept for callers that stop on a worker that cannot run.
pub async fn run_worker(
    pipeline: Pipeline,
    nats: Nats,
    consumer: Arc<dyn Consumer>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Result<(), NatsError> {
    let name = consumer.name();
    let mut backoff = Backoff::new(Duration::from_secs(30));
    let pull_consumer = loop {
        match durable_consumer(&nats, consumer.as_ref(), &settings).await {
            Ok(created) => break created,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(stage = name, %error, retry_in = ?delay, "waiting for JetStream");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    let durable = format!("restorable-{}", name.replace('_', "-"));
    tracing::info!(stage = name, consumer = %durable, "worker started");
    run_pulling(pipeline, nats, consumer, settings, pull_consumer, shutdown).await;
    Ok(())
}

/// The stage's durable pull consumer (created or updated to the settings).
async fn durable_consumer(
    nats: &Nats,
    consumer: &dyn Consumer,
    settings: &WorkerSettings,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let durable = format!("restorable-{}", consumer.name().replace('_', "-"));
    let stream = nats
        .jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| NatsError::JetStream(format!("stream {EVENTS_STREAM}: {e}")))?;
    let pull_consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: filter_subject(consumer.event_types()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: settings.ack_wait,
                // No delivery limit: work is never dropped by the server (see the module docs).
                max_deliver: -1,
                max_ack_pending: i64::try_from(settings.concurrency * 4).unwrap_or(64),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::JetStream(format!("consumer {durable}: {e}")))?;
    // An existing consumer keeps its old settings unless they are updated.
    Ok(pull_consumer)
}

/// Fetches and handles messages until `shutdown`, then hands back what is unfinished.
async fn run_pulling(
    pipeline: Pipeline,
    nats: Nats,
    consumer: Arc<dyn Consumer>,
    settings: WorkerSettings,
    pull_consumer: async_nats::jetstream::consumer::Consumer<pull::Config>,
    shutdown: CancellationToken,
) {
    let name = consumer.name();
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let hand_back = CancellationToken::new();
    let mut in_hand = JoinSet::new();
    let handler = Arc::new(Handler {
        pipeline,
        nats,
        consumer,
        attempts: Mutex::new(Attempts::new(settings.poison_after)),
        settings: settings.clone(),
    });
    while !shutdown.is_cancelled() {
        while in_hand.try_join_next().is_some() {}
        let free = permits.available_permits().max(1);
        let fetched = pull_consumer
            .fetch()
            .max_messages(free)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match fetched {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(stage = name, %error, "fetch failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        while let Some(next) = batch.next().await {
            let message = match next {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(stage = name, %error, "message not received");
                    break;
                }
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (handler, hand_back) = (handler.clone(), hand_back.clone());
            in_hand.spawn(async move {
                handler.handle(message, hand_back).await;
                drop(permit);
            });
        }
    }
    // Stopping: no more fetches; finish what is in hand, or hand it back after the grace period.
    if tokio::time::timeout(settings.grace, async {
        while in_hand.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::info!(stage = name, "handing back unfinished messages");
        hand_back.cancel();
        while in_hand.join_next().await.is_some() {}
    }
    tracing::info!(stage = name, "worker stopped");
}

struct Handler {
    pipeline: Pipeline,
    nats: Nats,
    consumer: Arc<dyn Consumer>,
    /// Counted failures of the messages this copy is retrying.
    attempts: Mutex<Attempts>,
    settings: WorkerSettings,
}

impl Handler {
    async fn handle(&self, message: Message, hand_back: CancellationToken) {
        let name = self.consumer.name();
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let event = match decode(message.headers.as_ref(), &message.payload) {
            Ok(event) => event,
            Err(error) => {
                // It can never succeed: recorded (under the negated stream sequence, as it
                // has no log position we can trust) and set aside.
                let sequence = message.info().map_or(0, |i| i.stream_sequence);
                let unreadable = LoggedEvent {
                    position: -i64::try_from(sequence).unwrap_or(i64::MAX),
                    aggregate_type: "?".to_owned(),
                    aggregate_id: message.subject.to_string(),
                    sequence: 0,
                    event_type: "?".to_owned(),
                    event_version: "?".to_owned(),
                    payload: String::new(),
                };
                self.give_up(&message, &unreadable, &error.to_string(), 1)
                    .await;
                return;
            }
        };
        if !self.consumer.wants(&event) {
            self.acknowledge(&message, AckKind::Ack).await;
            return;
        }
        let reaction =
            std::panic::AssertUnwindSafe(self.consumer.react(event.clone())).catch_unwind();
        tokio::pin!(reaction);
        let mut progress = tokio::time::interval(self.settings.ack_wait / 3);
        progress.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut reaction => break outcome,
                _ = progress.tick() => self.acknowledge(&message, AckKind::Progress).await,
                () = hand_back.cancelled() => {
                    self.acknowledge(&message, AckKind::Nak(None)).await;
                    return;
                }
            }
        };
        let key = super::message::message_id(&event);
        let (kind, error) = match outcome {
            Ok(Ok(())) => {
                self.attempts.lock().await.succeeded(&key);
                self.acknowledge(&message, AckKind::Ack).await;
                return;
            }
            Ok(Err(error)) if error.is_refusal() => {
                tracing::info!(stage = name, position = event.position, %error, "refused; acknowledged");
                self.acknowledge(&message, AckKind::Ack).await;
                return;
            }
            Ok(Err(error)) => (Some(error.kind()), error),
            Err(_panic) => (
                None,
                StoreError::Unavailable(format!("the {name} reaction panicked")),
            ),
        };
        let store_answers = self.pipeline.store.is_reachable().await;
        let verdict = self.attempts.lock().await.failed(&key, kind, store_answers);
        match verdict {
            Verdict::Acknowledge => self.acknowledge(&message, AckKind::Ack).await,
            Verdict::GiveUp(count) => {
                self.give_up(&message, &event, &error.to_string(), count)
                    .await;
            }
            Verdict::Retry => {
                let delay = redelivery_delay(delivered);
                tracing::warn!(stage = name, position = event.position, %error, delivered, retry_in = ?delay, "will retry");
                self.acknowledge(&message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    /// Gives up on a poison message: the store's dead letters and the failed cycle first (if
    /// that fails, the message is delivered again later), then the NATS dead letters.
    async fn give_up(&self, message: &Message, event: &LoggedEvent, reason: &str, count: u32) {
        let name = self.consumer.name();
        match give_up(&self.pipeline.store, name, event, reason, count).await {
            Ok(()) => {
                self.dead_letter(message, reason).await;
                self.acknowledge(message, AckKind::Term).await;
            }
            Err(error) => {
                tracing::error!(stage = name, %error, "could not record the dead letter; retrying");
                let delay = redelivery_delay(1);
                self.acknowledge(message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    async fn acknowledge(&self, message: &Message, kind: AckKind) {
        if let Err(error) = message.ack_with(kind).await {
            // The server redelivers after ack_wait; the aggregates absorb the repeat.
            tracing::warn!(stage = self.consumer.name(), %error, "ack not sent");
        }
    }

    async fn dead_letter(&self, message: &Message, reason: &str) {
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(DEAD_LETTER_REASON, reason);
        let subject = message
            .subject
            .as_str()
            .strip_prefix("restorable.events.")
            .map_or_else(
                || format!("restorable.deadletter.{}", self.consumer.name()),
                |rest| format!("restorable.deadletter.{}.{rest}", self.consumer.name()),
            );
        let published = self
            .nats
            .jetstream
            .publish_with_headers(subject, headers, message.payload.clone())
            .await;
        let acked = match published {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = acked {
            tracing::error!(stage = self.consumer.name(), %error, "dead letter not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_type_is_one_filter_subject_several_are_all_events() {
        assert_eq!(
            filter_subject(&["Captured"]),
            "restorable.events.*.*.Captured"
        );
        assert_eq!(
            filter_subject(&["Verified", "Failed"]),
            "restorable.events.>"
        );
    }
}
