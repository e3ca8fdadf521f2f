//! Event transport: how the event log reaches its consumers (the stages, alerts, delivery).
//!
//! The port is [`Consumer`]: a reaction to events with a durable name. Two transports deliver the
//! log to it, both at-least-once:
//!
//! # Layout
//! - this file: the [`Consumer`] port.
//! - [`in_process`]: the embedded default — each consumer reads the log from its checkpoint.
//! - [`nats`]: production — an outbox relay to JetStream and one durable pull consumer per stage.

pub mod in_process;
pub mod nats;

pub use in_process::run_consumer;

use async_trait::async_trait;

use crate::store::{LoggedEvent, StoreError};
/// A stage processor (or any other reaction to events).
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The durable name of its checkpoint, e.g. `capture`.
    fn name(&self) -> &'static str;
    /// The event types it reacts to (its JetStream filter: one type, or every event).
    fn event_types(&self) -> &'static [&'static str];
    /// Whether it reacts to this event at all.
    fn wants(&self, event: &LoggedEvent) -> bool;
    /// Reacts. Stage failures are recorded as `Failed` events by the consumer itself and return
    /// `Ok`; an `Err` means the infrastructure failed and the event must be delivered again.
    ///
    /// # Errors
    /// A store failure that left the reaction undone.
    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError>;
}
