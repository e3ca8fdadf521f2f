//! The outbox relay: publishes every committed event to JetStream, at least once, in commit
//! order. The outbox is the store's `event_log` (filled in the same transaction as each event);
//! the relay's durable checkpoint moves only after JetStream has acknowledged every message of a
//! batch, so a relay that dies between a commit and the publish (or loses NATS for an hour)
//! publishes the rest when it comes back. A message published twice carries the same
//! `Nats-Msg-Id`, and JetStream drops the copy.
//!
//! One relay works at a time: on PostgreSQL the others wait on an advisory lock and take over
//! when its holder dies.

use std::collections::HashMap;
use std::time::Duration;

use restorable_domain::alert::AlertEvent;
use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::instance::InstanceEvent;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::message::{encode, Routing, DEAD_LETTER_REASON};
use super::Nats;
use crate::store::{LoggedEvent, Store, StoreError};

/// The relay's checkpoint in `consumer_checkpoints`.
pub const CHECKPOINT: &str = "nats-relay";
/// Events published per round trip.
const BATCH: i64 = 256;
/// Longest pause between attempts while NATS or the store is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a waiting relay looks again (for commits by processes on SQLite, or a free lock).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Routing entries kept before the cache starts over.
const ROUTES_KEPT: usize = 100_000;

/// Why a batch did not go out.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the log or saving the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// JetStream did not take a message.
    #[error("publishing to JetStream: {0}")]
    Publish(String),
}

/// Publishes the event log to JetStream.
pub struct Relay {
    store: Store,
    nats: Nats,
    routes: Mutex<HashMap<String, Routing>>,
}

impl Relay {
    /// A relay from `store` to `nats`.
    pub fn new(store: Store, nats: Nats) -> Self {
        Self {
            store,
            nats,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Relays until `shutdown`; errors are logged and retried with back-off.
    pub async fn run(self, shutdown: CancellationToken) {
        let committed = self.store.committed();
        let mut backoff = Duration::from_millis(100);
        let _lock = loop {
            match self.store.try_exclusive(CHECKPOINT).await {
                Ok(Some(lock)) => break lock,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "relay lock"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(IDLE_POLL * 4) => {}
            }
        };
        tracing::info!("relaying the event log to NATS JetStream");
        loop {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.relay_batch().await {
                Ok(0) => backoff = Duration::from_millis(100),
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "relay batch not published");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut notified => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Publishes the next batch and moves the checkpoint; returns how many events it covered.
    ///
    /// # Errors
    /// [`RelayError`]; the checkpoint then stays where it was.
    pub async fn relay_batch(&self) -> Result<usize, RelayError> {
        let from = self.store.checkpoint(CHECKPOINT).await?;
        let batch = self.store.read_after(from, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(batch.len());
        for event in &batch {
            let outgoing = match self.routing(event).await {
                Ok(routing) => encode(event, &routing).map_err(|e| e.to_string()),
                Err(error) => Err(error),
            };
            let ack = match outgoing {
                Ok(out) => self
                    .nats
                    .jetstream
                    .publish_with_headers(out.subject, out.headers, out.body)
                    .await
                    .map_err(|e| RelayError::Publish(e.to_string()))?,
                Err(reason) => {
                    // One bad event must not stop the log: it goes aside, loudly.
                    tracing::error!(position = event.position, %reason, "event sent to the dead letters");
                    self.dead_letter(event, &reason).await?
                }
            };
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
        }
        self.store.save_checkpoint(CHECKPOINT, last).await?;
        Ok(batch.len())
    }

    async fn dead_letter(
        &self,
        event: &LoggedEvent,
        reason: &str,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, RelayError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", super::message::message_id(event).as_str());
        headers.insert(DEAD_LETTER_REASON, reason);
        self.nats
            .jetstream
            .publish_with_headers(
                "restorable.deadletter.relay",
                headers,
                event.payload.clone().into(),
            )
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))
    }

    /// The tenant and instance an event belongs to (from the aggregate's first event).
    async fn routing(&self, event: &LoggedEvent) -> Result<Routing, String> {
        if event.aggregate_type == "TenantKey" || event.aggregate_type == "AuditTrail" {
            return Ok(Routing {
                tenant: event.aggregate_id.clone(),
                instance: "tenant".to_owned(),
            });
        }
        if let Some(known) = self.routes.lock().await.get(&event.aggregate_id) {
            return Ok(known.clone());
        }
        let first = if event.sequence == 1 {
            event.clone()
        } else {
            self.store
                .history(&event.aggregate_type, &event.aggregate_id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or("the aggregate has no first event")?
        };
        let routing = match first.aggregate_type.as_str() {
            "BackupCycle" => match first.decode::<BackupCycleEvent>() {
                Ok(BackupCycleEvent::CycleStarted(started)) => Routing {
                    tenant: started.tenant_id.to_string(),
                    instance: started.instance_id.to_string(),
                },
                Ok(_) => return Err("the cycle does not start with CycleStarted".to_owned()),
                Err(e) => return Err(e.to_string()),
            },
            "Instance" => match first.decode::<InstanceEvent>() {
                Ok(InstanceEvent::InstanceEnrolled(enrolled)) => Routing {
                    tenant: enrolled.tenant_id.to_string(),
                    instance: event.aggregate_id.clone(),
                },
                Ok(_) => return Err("the instance does not start with its enrolment".to_owned()),
                Err(e) => return Err(e.to_string()),
            },
            "InstanceAlerts" => match first.decode::<AlertEvent>() {
                Ok(AlertEvent::AlertRaised(raised)) => Routing {
                    tenant: raised.tenant_id.to_string(),
                    instance: event.aggregate_id.clone(),
                },
                Ok(_) => return Err("the alerts do not start with a raise".to_owned()),
                Err(e) => return Err(e.to_string()),
            },
            other => return Err(format!("unknown aggregate type {other}")),
        };
        let mut routes = self.routes.lock().await;
        if routes.len() >= ROUTES_KEPT {
            routes.clear();
        }
        routes.insert(event.aggregate_id.clone(), routing.clone());
        Ok(routing)
    }
}
