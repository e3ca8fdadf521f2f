//! A stage as a JetStream worker: a durable pull consumer (`restorable-<stage>`, one
//! `filter_subject`: nats-server 2.9 ignores the plural form) shared by every copy of the stage
//! on any machine, so copies split the work.
//!
//! Each message is handled once it is decoded and checked against its schema:
//! - done → explicit ack;
//! - the infrastructure failed (the stage returned `Err`) → nak with a growing delay, until
//!   `max_deliver`; the last delivery goes to the dead letters (`restorable.deadletter.<stage>...`)
//!   and the cycle gets a `Failed` event saying so, then the message is terminated;
//! - not an event (bad headers, not JSON, against the schema) → dead letters, terminated;
//! - long work (a capture, a restore test) keeps its claim with progress acks.
//!
//! On shutdown the worker stops fetching, lets the messages in hand finish for a grace period,
//! and hands back (naks) whatever is still running, so another copy takes it at once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use restorable_domain::ladder::{FailureReason, Stage};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::message::{decode, DEAD_LETTER_REASON};
use super::{Nats, NatsError, EVENTS_STREAM};
use crate::context::Pipeline;
use crate::stages::{record, StageFailure};
use crate::transport::Consumer;

/// How a worker treats its messages.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Messages handled at once by this copy.
    pub concurrency: usize,
    /// Deliveries of one message before it is given up on.
    pub max_deliver: i64,
    /// How long JetStream waits for an ack (progress acks extend it) before redelivering.
    pub ack_wait: Duration,
    /// How long a stopping worker lets its messages finish before handing them back.
    pub grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_deliver: 5,
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

/// The ladder stage a consumer name stands for (its `Failed` events name it).
fn stage_of(consumer: &str) -> Option<Stage> {
    match consumer {
        "capture" => Some(Stage::Capture),
        "secure" => Some(Stage::Secure),
        "verify" => Some(Stage::Verify),
        "restore_test" => Some(Stage::RestoreTest),
        _ => None,
    }
}

/// The nak delay after the `delivered`-th failed delivery: 1 s, 2 s, 4 s ... at most 60 s.
fn backoff(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_secs(2u64.pow(exponent)).min(Duration::from_secs(60))
}

/// Runs `consumer` as a JetStream worker until `shutdown`.
///
/// # Errors
/// [`NatsError`] if its durable consumer cannot be created.
pub async fn run_worker(
    pipeline: Pipeline,
    nats: Nats,
    consumer: Arc<dyn Consumer>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Result<(), NatsError> {
    let name = consumer.name();
    let durable = format!("restorable-{}", name.replace('_', "-"));
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
                max_deliver: settings.max_deliver,
                max_ack_pending: i64::try_from(settings.concurrency * 4).unwrap_or(64),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::JetStream(format!("consumer {durable}: {e}")))?;
    tracing::info!(stage = name, consumer = %durable, "worker started");
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let hand_back = CancellationToken::new();
    let mut in_hand = JoinSet::new();
    let handler = Arc::new(Handler {
        pipeline,
        nats,
        consumer,
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
    Ok(())
}

struct Handler {
    pipeline: Pipeline,
    nats: Nats,
    consumer: Arc<dyn Consumer>,
    settings: WorkerSettings,
}

impl Handler {
    async fn handle(&self, message: Message, hand_back: CancellationToken) {
        let name = self.consumer.name();
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let event = match decode(message.headers.as_ref(), &message.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(stage = name, %error, "not an event; sent to the dead letters");
                self.dead_letter(&message, &error.to_string()).await;
                self.acknowledge(&message, AckKind::Term).await;
                return;
            }
        };
        if !self.consumer.wants(&event) {
            self.acknowledge(&message, AckKind::Ack).await;
            return;
        }
        let reaction = self.consumer.react(event.clone());
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
        match outcome {
            Ok(()) => self.acknowledge(&message, AckKind::Ack).await,
            Err(error) if delivered >= self.settings.max_deliver => {
                let reason = format!("gave up after {delivered} deliveries: {error}");
                tracing::error!(stage = name, position = event.position, %reason, "dead letter");
                self.dead_letter(&message, &reason).await;
                if let (Some(stage), "BackupCycle") =
                    (stage_of(name), event.aggregate_type.as_str())
                {
                    let failure = StageFailure::transient(FailureReason::Internal, reason);
                    if let Err(error) =
                        record(&self.pipeline, &event.aggregate_id, stage, Err(failure)).await
                    {
                        tracing::error!(stage = name, %error, "could not record the failure");
                    }
                }
                self.acknowledge(&message, AckKind::Term).await;
            }
            Err(error) => {
                let delay = backoff(delivered);
                tracing::warn!(stage = name, position = event.position, %error, retry_in = ?delay, "will retry");
                self.acknowledge(&message, AckKind::Nak(Some(delay))).await;
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

    #[test]
    fn the_nak_delay_doubles_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
