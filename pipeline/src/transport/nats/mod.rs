//! The production transport: events flow from the event store to NATS JetStream through an
//! outbox relay, and each stage is a durable JetStream pull consumer.
//!
//! ```text
//! event store ──event_log──► relay ──publish (Nats-Msg-Id)──► stream RESTORABLE_EVENTS
//!                                                              │  restorable.events.<tenant>.<instance>.<Type>
//!                            worker (capture, secure, ...) ◄───┘  one durable consumer per stage
//! ```
//!
//! # Layout
//! - [`message`]: the wire form of an event (subject, headers, body) and its schema check.
//! - [`relay`]: the at-least-once outbox relay from `event_log` to JetStream.
//! - [`worker`]: a stage run as a durable pull consumer (ack, nak with back-off, dead letters).

pub mod message;
pub mod relay;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// The stream every event is published to.
pub const EVENTS_STREAM: &str = "RESTORABLE_EVENTS";
/// The stream messages go to when a stage gave up on them.
pub const DEAD_LETTER_STREAM: &str = "RESTORABLE_DEAD_LETTERS";
/// Subjects of events: `restorable.events.<tenant>.<instance>.<EventType>`.
pub const EVENTS_SUBJECTS: &str = "restorable.events.>";
/// Subjects of dead letters: `restorable.deadletter.<stage>.<tenant>.<instance>.<EventType>`.
pub const DEAD_LETTER_SUBJECTS: &str = "restorable.deadletter.>";
/// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publication. Longer than
/// any outage the relay rides out in one piece; after it, consumers still de-duplicate (the
/// aggregates make a repeated reaction a no-op).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long messages stay in the streams (the event store keeps every event for ever).
const STREAM_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the NATS transport failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No connection to the server.
    #[error("NATS at {url}: {detail}")]
    Connect {
        /// The server's URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// JetStream refused or did not answer.
    #[error("NATS JetStream: {0}")]
    JetStream(String),
}

/// Where the NATS server is.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
}

/// A connection with JetStream, the streams in place.
#[derive(Clone)]
pub struct Nats {
    /// The JetStream context.
    pub jetstream: jetstream::Context,
    /// The plain client (for core publishes such as alerts).
    pub client: async_nats::Client,
}

impl Nats {
    /// Connects and creates (or checks) the streams. Fails fast if the server does not answer
    /// at start-up; once connected, the client reconnects on its own.
    ///
    /// # Errors
    /// [`NatsError::Connect`] or [`NatsError::JetStream`].
    pub async fn connect(config: &NatsConfig) -> Result<Self, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .name("restorable")
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .connect(config.url.as_str());
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| NatsError::Connect {
                url: config.url.clone(),
                detail: "no answer within 10 s".to_owned(),
            })?
            .map_err(|e| NatsError::Connect {
                url: config.url.clone(),
                detail: e.to_string(),
            })?;
        let jetstream = jetstream::new(client.clone());
        let nats = Self { jetstream, client };
        nats.ensure_streams().await?;
        Ok(nats)
    }

    async fn ensure_streams(&self) -> Result<(), NatsError> {
        for (name, subjects) in [
            (EVENTS_STREAM, EVENTS_SUBJECTS),
            (DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS),
        ] {
            self.jetstream
                .get_or_create_stream(stream::Config {
                    name: name.to_owned(),
                    subjects: vec![subjects.to_owned()],
                    storage: stream::StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    max_age: STREAM_MAX_AGE,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    NatsError::JetStream(format!(
                        "stream {name}: {e} (is JetStream enabled? nats-server -js)"
                    ))
                })?;
        }
        Ok(())
    }

    /// One line on the server for `restorable doctor`.
    ///
    /// # Errors
    /// [`NatsError::JetStream`] if the account information cannot be read.
    pub async fn describe(&self) -> Result<String, NatsError> {
        let info = self.client.server_info();
        let mut stream = self
            .jetstream
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| NatsError::JetStream(e.to_string()))?;
        let messages = stream
            .info()
            .await
            .map_err(|e| NatsError::JetStream(e.to_string()))?
            .state
            .messages;
        Ok(format!(
            "nats-server {} (JetStream), stream {EVENTS_STREAM}: {messages} messages",
            info.version
        ))
    }
}
