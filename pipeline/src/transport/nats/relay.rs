//! The outbox relay: publishes every committed event to JetStream, at least once, in commit
//! order. The outbox is the store's `event_log` (filled in the same transaction as each event);
//! the relay's durable checkpoint moves only after JetStream has acknowledged every message of a
//! batch, so a relay that dies between a commit and the publish (or loses NATS for an hour)
//! publishes the rest when it comes back. A message published twice carries the same
//! `Nats-Msg-Id`, and JetStream drops the copy.
//!
//! One relay works at a time: it holds the `nats-relay` lease ([`crate::store::Lease`]), renewed
//! before every batch and checked in the transaction that moves its checkpoint, so a relay that
//! lost the lease in an outage stops until it holds it again, and the checkpoint never moves back.
//!
//! The relay never skips an event. A store error, NATS being away, or an event of a type or
//! version it does not know (written by a newer Restorable) *holds* the relay: logged at error,
//! counted in `/metrics` (`restorable_relay_held`), retried with back-off until it passes, and
//! — with a [`RelayAlarm`] — alerted to the operator once it has lasted
//! [`crate::operations_alerts::RELAY_ALERT_AFTER`] (`relay_held`, resolved by the next batch
//! that goes through). Only
//! an event that can never travel (its stored payload is not the event's JSON) goes to the dead
//! letters — NATS `restorable.deadletter.relay` and the store's `dead_letters`, alerted and
//! replayable — so that one bad row cannot stop the log.

use std::collections::HashMap;
use std::time::Duration;

use restorable_domain::alert::AlertEvent;
use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::instance::InstanceEvent;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::message::{encode, Routing, WireError, DEAD_LETTER_REASON};
use super::Nats;
use crate::operations_alerts::RelayAlarm;
use crate::retry::Backoff;
use crate::store::{Lease, LoggedEvent, Store, StoreError};

/// The relay's checkpoint in `consumer_checkpoints`.
pub const CHECKPOINT: &str = "nats-relay";
/// Events published per round trip.
const BATCH: i64 = 256;
/// Longest pause between attempts while NATS or the store is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the relay's lease holds without renewal (database clock).
const LEASE_TTL_MS: i64 = 15_000;
/// Whether a relay is held right now (for `/metrics`): set while a batch keeps failing.
pub static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
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
    /// An event this relay cannot place (unknown aggregate type, event type or version):
    /// held until a Restorable that knows it relays it.
    #[error("event at position {position} held: {detail}")]
    Unknown {
        /// Its log position.
        position: i64,
        /// What is unknown.
        detail: String,
    },
}

/// Why an event could not be routed.
enum RouteError {
    /// The store failed: hold.
    Store(StoreError),
    /// Of a kind this version does not know: hold.
    Unknown(String),
    /// Its payload can never be read: dead letter.
    Undecodable(String),
}

/// Publishes the event log to JetStream.
pub struct Relay {
    store: Store,
    nats: Nats,
    routes: Mutex<HashMap<String, Routing>>,
    /// Tells the operator of a lasting hold (none: logs and `/metrics` only).
    alarm: Option<RelayAlarm>,
}

impl Relay {
    /// A relay from `store` to `nats`.
    pub fn new(store: Store, nats: Nats) -> Self {
        Self {
            store,
            nats,
            routes: Mutex::new(HashMap::new()),
            alarm: None,
        }
    }

    /// The same, raising (and resolving) the `relay_held` operations alert through `alarm`.
    #[must_use]
    pub fn with_alarm(mut self, alarm: RelayAlarm) -> Self {
        self.alarm = Some(alarm);
        self
    }

    /// Relays until `shutdown`; errors are logged and retried with back-off (never skipped).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut alarm = self.alarm.take();
        let committed = self.store.committed();
        let holder = uuid::Uuid::new_v4().to_string();
        let mut lease: Option<Lease> = None;
        let mut backoff = Backoff::new(MAX_BACKOFF);
        loop {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let relaying = lease.is_some();
            let outcome = match &lease {
                None => match self
                    .store
                    .acquire_lease(CHECKPOINT, &holder, LEASE_TTL_MS)
                    .await
                {
                    Ok(Some(taken)) => {
                        tracing::info!(
                            epoch = taken.epoch,
                            "relaying the event log to NATS JetStream"
                        );
                        lease = Some(taken);
                        if let Some(alarm) = &mut alarm {
                            alarm.lease_taken();
                        }
                        continue;
                    }
                    Ok(None) => Ok(0),
                    Err(error) => Err(RelayError::Store(error)),
                },
                Some(held) => self.relay_batch(held).await,
            };
            if let (Some(alarm), true) = (&mut alarm, relaying) {
                match &outcome {
                    Ok(_) => alarm.passed().await,
                    Err(RelayError::Store(StoreError::LeaseLost(_))) => alarm.lease_lost(),
                    Err(error) => alarm.held(&error.to_string()).await,
                }
            }
            match outcome {
                Ok(0) => {
                    HELD.store(false, std::sync::atomic::Ordering::Relaxed);
                    backoff.reset();
                }
                Ok(_) => {
                    HELD.store(false, std::sync::atomic::Ordering::Relaxed);
                    backoff.reset();
                    continue;
                }
                Err(error) => {
                    if matches!(error, RelayError::Store(StoreError::LeaseLost(_))) {
                        tracing::warn!("the relay lost its lease; waiting to hold it again");
                        lease = None;
                    } else {
                        HELD.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    let delay = backoff.next_delay();
                    tracing::error!(%error, retry_in = ?delay, "relay held: batch not published");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
            let idle = if lease.is_some() {
                IDLE_POLL
            } else {
                IDLE_POLL * 4
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = &mut notified => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        if let Some(lease) = lease {
            let _ = self.store.release_lease(&lease).await;
        }
    }

    /// Publishes the next batch and moves the checkpoint under `lease`; returns how many events
    /// it covered.
    ///
    /// # Errors
    /// [`RelayError`]; the checkpoint then stays where it was.
    pub async fn relay_batch(&self, lease: &Lease) -> Result<usize, RelayError> {
        self.store.renew_lease(lease).await?;
        let from = self.store.checkpoint(CHECKPOINT).await?;
        let batch = self.store.read_after(from, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(batch.len());
        for event in &batch {
            let outgoing = match self.routing(event).await {
                Ok(routing) => encode(event, &routing).map_err(|e| match e {
                    WireError::UnknownVersion(_) => RouteError::Unknown(e.to_string()),
                    other => RouteError::Undecodable(other.to_string()),
                }),
                Err(error) => Err(error),
            };
            let ack = match outgoing {
                Ok(out) => self
                    .nats
                    .jetstream
                    .publish_with_headers(out.subject, out.headers, out.body)
                    .await
                    .map_err(|e| RelayError::Publish(e.to_string()))?,
                Err(RouteError::Store(error)) => return Err(error.into()),
                Err(RouteError::Unknown(detail)) => {
                    return Err(RelayError::Unknown {
                        position: event.position,
                        detail,
                    })
                }
                Err(RouteError::Undecodable(reason)) => {
                    // It can never travel; one bad row must not stop the log: aside, loudly.
                    tracing::error!(position = event.position, %reason, "event sent to the dead letters");
                    self.store
                        .add_dead_letter("relay", event, &reason, 1)
                        .await?;
                    self.dead_letter(event, &reason).await?
                }
            };
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
        }
        self.store
            .save_checkpoint_under(lease, CHECKPOINT, last)
            .await?;
        Ok(batch.len())
    }

    /// Publishes one event again, routed and encoded exactly as [`Relay::relay_batch`] does,
    /// and waits for JetStream's ack; moves no checkpoint and takes no lease. For an operator's
    /// replay of a relay dead letter (`restorable dead-letters replay --consumer relay`).
    ///
    /// # Errors
    /// [`RelayError`]: a store error, NATS not taking it, or an event that still cannot be
    /// routed or encoded ([`RelayError::Unknown`] with the reason).
    pub async fn publish_one(&self, event: &LoggedEvent) -> Result<(), RelayError> {
        let unknown = |detail: String| RelayError::Unknown {
            position: event.position,
            detail,
        };
        let routing = self.routing(event).await.map_err(|e| match e {
            RouteError::Store(error) => RelayError::Store(error),
            RouteError::Unknown(detail) | RouteError::Undecodable(detail) => unknown(detail),
        })?;
        let out = encode(event, &routing).map_err(|e| unknown(e.to_string()))?;
        self.nats
            .jetstream
            .publish_with_headers(out.subject, out.headers, out.body)
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?;
        Ok(())
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
    async fn routing(&self, event: &LoggedEvent) -> Result<Routing, RouteError> {
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
                .map_err(RouteError::Store)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    RouteError::Store(StoreError::Unavailable(format!(
                        "{} {} has no first event yet",
                        event.aggregate_type, event.aggregate_id
                    )))
                })?
        };
        let routing = match first.aggregate_type.as_str() {
            "BackupCycle" => match first.decode::<BackupCycleEvent>() {
                Ok(BackupCycleEvent::CycleStarted(started)) => Routing {
                    tenant: started.tenant_id.to_string(),
                    instance: started.instance_id.to_string(),
                },
                Ok(_) => {
                    return Err(RouteError::Undecodable(
                        "the cycle does not start with CycleStarted".to_owned(),
                    ))
                }
                Err(e) => return Err(RouteError::Undecodable(e.to_string())),
            },
            "Instance" => match first.decode::<InstanceEvent>() {
                Ok(InstanceEvent::InstanceEnrolled(enrolled)) => Routing {
                    tenant: enrolled.tenant_id.to_string(),
                    instance: event.aggregate_id.clone(),
                },
                Ok(_) => {
                    return Err(RouteError::Undecodable(
                        "the instance does not start with its enrolment".to_owned(),
                    ))
                }
                Err(e) => return Err(RouteError::Undecodable(e.to_string())),
            },
            "InstanceAlerts" => match first.decode::<AlertEvent>() {
                Ok(AlertEvent::AlertRaised(raised)) => Routing {
                    tenant: raised.tenant_id.to_string(),
                    instance: event.aggregate_id.clone(),
                },
                Ok(_) => {
                    return Err(RouteError::Undecodable(
                        "the alerts do not start with a raise".to_owned(),
                    ))
                }
                Err(e) => return Err(RouteError::Undecodable(e.to_string())),
            },
            other => {
                return Err(RouteError::Unknown(format!(
                    "unknown aggregate type {other}"
                )))
            }
        };
        let mut routes = self.routes.lock().await;
        if routes.len() >= ROUTES_KEPT {
            routes.clear();
        }
        routes.insert(event.aggregate_id.clone(), routing.clone());
        Ok(routing)
    }
}
