//! Restorable's pipeline: the stage processors that climb the ladder and the adapters behind
//! each port (PBX client, vault, key sealing, event store, transport, scheduler).
//!
//! # Layout
//! - [`config`]: which backend sits behind each port; `Pipeline::open`.
//! - [`context`]: the [`Pipeline`](context::Pipeline) a process shares — store, adapters, settings.
//! - [`store`]: the event store on SQLite or PostgreSQL with the project's migrations and a
//!   global event log.
//! - [`transport`]: the in-process, at-least-once delivery of the log to consumers.
//! - [`nats`]: the production transport — outbox relay to JetStream, stage workers.
//! - [`driver`]: runs the stages in-process until given cycles close.
//! - [`stages`]: start, capture, secure, verify, restore-test and close — one consumer each.
//! - [`alert_routes`]: delivers raised and resolved alerts to each tenant's webhook, e-mail and
//!   NATS routes, in the background.
//! - [`enrolment`]: enrolling PBXes, issuing tenant keys, opening cycles.
//! - [`sandbox`]: the restore sandbox port and its process adapter (the Restore-Tested rung).
//! - [`scheduler`]: opens a cycle for every instance that is due.
//! - [`pbx_client`]: the 3CX XAPI client.
//! - [`vault`]: the object store port and its write-once local adapter.
//! - [`sealing`]: the key-sealing port and its local AES-256-GCM adapter.
//! - [`testing`]: real servers for tests and benchmarks (nats-server, scratch databases).
//! - [`s3_vault`]: the vault on S3 with Object Lock (aws-sdk-s3).
//! - [`kms_sealer`]: key sealing with AWS KMS and an encryption context per secret.
//! - [`read_model`]: the projector — the read side's views, stored and followed from the log.
//! - [`archive`]: the verifier of encrypted 3CX backup archives.
//! - [`error`]: the error taxonomy (refusal, infrastructure, stage failure) and its rules.
//! - [`retry`]: every back-off policy.
//! - [`watchdog`]: fails (`stage_timeout`) or closes a cycle that stood still past its rung's
//!   deadline, so no instance stays with a cycle in flight, whatever was lost.
//! - [`poison`]: when a consumer gives up on an event (dead letters), for both transports.
//! - [`operations_alerts`]: alerts to the operator about the service itself — a consumer's
//!   dead letters, a held relay — raised once per condition and resolved when it ends.

pub mod alert_routes;
pub mod archive;
pub mod config;
pub mod context;
pub mod driver;
pub mod enrolment;
pub mod error;
pub mod kms_sealer;
pub mod nats;
pub mod operations_alerts;
pub mod pbx_client;
pub mod poison;
pub mod read_model;
pub mod retry;
pub mod s3_vault;
pub mod sandbox;
pub mod scheduler;
pub mod sealing;
pub mod stages;
pub mod store;
pub mod testing;
pub mod transport;
pub mod vault;
pub mod watchdog;
