//! What every handler shares: the [`AppState`] (pipeline, views, render cache, throttling,
//! the bound on password hashing) and the [`ServerOptions`] it was built with. A leaf: it knows
//! the cache and the throttle, nothing that handles a request.

use std::sync::Arc;
use std::time::Duration;

use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use tokio::sync::Semaphore;

use crate::{cache, throttle};

/// How the server treats its clients.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A request's head (and the next head on a kept-alive connection) must arrive within this.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Send HSTS when a proxy says (`X-Forwarded-Proto: https`) the request came over TLS.
    pub trust_forwarded_proto: bool,
    /// Sign-in throttling.
    pub throttle: throttle::ThrottleLimits,
    /// Passwords hashed at once (sign-ins beyond this wait their turn).
    pub concurrent_hashes: usize,
    /// How long a sign-in waits for its turn to hash before it is answered 429.
    pub hash_queue_wait: Duration,
    /// How often a live update stream checks that its session or token still holds.
    pub stream_recheck: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            trust_forwarded_proto: false,
            throttle: throttle::ThrottleLimits::default(),
            concurrent_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            hash_queue_wait: Duration::from_secs(10),
            stream_recheck: Duration::from_secs(5),
        }
    }
}

impl ServerOptions {
    /// The defaults, with `trust_forwarded_proto` from `RESTORABLE_TRUST_FORWARDED_PROTO`
    /// (`1` or `true`).
    pub fn from_env() -> Self {
        let trust = std::env::var("RESTORABLE_TRUST_FORWARDED_PROTO")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Self {
            trust_forwarded_proto: trust,
            ..Self::default()
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The store, vault and key sealing.
    pub pipeline: Pipeline,
    /// The views, kept up to date by the projector.
    pub read: ReadSide,
    /// Rendered fleet answers.
    pub cache: cache::RenderCache,
    /// Timeouts, limits and proxy trust.
    pub options: ServerOptions,
    /// Sign-in throttling.
    pub throttle: throttle::Throttle,
    /// Bounds the passwords hashed at once.
    pub hashing: Arc<Semaphore>,
    /// Woken when a session or token ends in this process (live streams re-check at once).
    pub credentials_changed: tokio::sync::Notify,
    /// Signs restore certificates (`None`: the certificate download answers 503).
    pub signer: Option<Arc<dyn restorable_pipeline::evidence::Signer>>,
}

impl AppState {
    /// The state over `pipeline` and its views, with the default options.
    pub fn new(pipeline: Pipeline, read: ReadSide) -> Self {
        Self::with_options(pipeline, read, ServerOptions::default())
    }

    /// The state over `pipeline` and its views, with `options`.
    pub fn with_options(pipeline: Pipeline, read: ReadSide, options: ServerOptions) -> Self {
        Self {
            pipeline,
            read,
            cache: cache::RenderCache::default(),
            throttle: throttle::Throttle::new(options.throttle.clone()),
            hashing: Arc::new(Semaphore::new(options.concurrent_hashes.max(1))),
            options,
            credentials_changed: tokio::sync::Notify::new(),
            signer: None,
        }
    }

    /// The same state, signing restore certificates with `signer`.
    pub fn with_signer(mut self, signer: Arc<dyn restorable_pipeline::evidence::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }
}

/// The shared state handlers receive.
pub type Shared = Arc<AppState>;
