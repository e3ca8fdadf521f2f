//! Restorable's pipeline: the stage processors that climb the ladder and the adapters behind
//! each port (PBX client, vault, key sealing, event store, transport, restore sandbox).
//!
//! # Layout
//! One folder per port, the port at its root and one file per adapter:
//! - [`pipeline`]: the [`Pipeline`] a process shares — store, adapters, [`Settings`].
//! - [`setup`]: the composition root — [`Backends`], `Pipeline::open`, [`setup::diagnose`].
//! - [`store`]: the event store on SQLite or PostgreSQL, its migrations and the global log.
//! - [`transport`]: the [`Consumer`] port; `in_process` (embedded) and `nats` (JetStream relay
//!   and stage workers).
//! - [`runtime`]: how stages run in a process (`run_stages`), the in-process `driver`, the
//!   `scheduler`.
//! - [`stages`]: start, capture, secure, verify, restore-test, close and alerts — one consumer
//!   each.
//! - [`alerting`]: delivery of alerts to each tenant's routes — `routes` (configuration),
//!   `message`, `webhook`, `email`, `nats`.
//! - [`digest`]: each tenant's daily digest e-mail (open alerts, the day's failures).
//! - [`operations_alerts`]: alerts about the service itself (dead letters, a held relay).
//! - [`vault`]: the object store port — `local` (write-once directory), `s3` (Object Lock).
//! - [`sealing`]: the key-sealing port — `local` (AES-256-GCM), `kms` (AWS KMS).
//! - [`aws`] (private): what S3 and KMS share — client, credentials, error classification, and
//!   the local endpoint's work-arounds (`emulator`).
//! - [`sandbox`]: the restore sandbox port (the Restore-Tested rung) — `process`,
//!   `unavailable`, `schema`.
//! - [`pbx`]: the 3CX XAPI client and how far a PBX is trusted.
//! - [`archive`]: the verifier of encrypted 3CX backup archives (the Verified rung).
//! - [`enrolment`]: enrolling PBXes, issuing tenant keys, opening cycles.
//! - [`evidence`]: signed checkpoints of the tenants' hash chains, audit exports, their offline
//!   verification and the live check.
//! - [`schedule`]: the scheduler's index of due instances (and cycles in flight), kept from the
//!   log.
//! - [`recheck`]: rotating re-checks — every stored copy read back and its lock checked again
//!   within a window, spread over the window and over the workers.
//! - [`read_model`]: the projector — the read side's views, stored and followed from the log.
//! - [`watchdog`]: fails (`stage_timeout`) or closes a cycle that stood still past its rung's
//!   deadline ([`deadlines`]).
//! - [`periodic`]: a round of work repeated on a period until shutdown (the sweeps, the
//!   scheduler, the watchdog, the background watches).
//! - [`poison`]: when a consumer gives up on an event (dead letters), for both transports.
//! - [`error`]: the error taxonomy (refusal, infrastructure, stage failure) and its rules.
//! - [`retry`]: every back-off and retry policy.
//! - [`redact`]: the one way a URL is shown (no password, query or fragment).

pub mod alerting;
pub mod archive;
mod aws;
pub mod deadlines;
pub mod digest;
pub mod enrolment;
pub mod error;
pub mod evidence;
pub mod native_watch;
pub mod operations_alerts;
pub mod pbx;
pub mod periodic;
pub mod pipeline;
pub mod poison;
pub mod progress;
pub mod read_model;
pub mod recheck;
pub mod redact;
pub mod retention;
pub mod retry;
pub mod runtime;
pub mod sandbox;
pub mod schedule;
pub mod sealing;
pub mod setup;
pub mod stages;
pub mod store;
pub mod transport;
pub mod vault;
pub mod watchdog;

pub use pipeline::{Pipeline, Settings};
pub use setup::{Backends, SetupError};
pub use store::{Store, StoreError};
pub use transport::Consumer;
