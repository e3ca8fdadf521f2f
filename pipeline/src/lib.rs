//! Restorable's pipeline: the stage processors that climb the ladder and the adapters behind
//! each port (PBX client, vault, key sealing, event store, transport, scheduler).
//!
//! # Layout
//! - [`context`]: the [`Pipeline`](context::Pipeline) a process shares — store, adapters, settings.
//! - [`store`]: the event store on SQLite with the project's migrations and a global event log.
//! - [`transport`]: the in-process, at-least-once delivery of the log to consumers.
//! - [`driver`]: runs the stages in-process until given cycles close.
//! - [`stages`]: start, capture, secure, verify, restore-test and close — one consumer each.
//! - [`enrolment`]: enrolling PBXes, issuing tenant keys, opening cycles.
//! - [`sandbox`]: the restore sandbox port and its process adapter (the Restore-Tested rung).
//! - [`scheduler`]: opens a cycle for every instance that is due.
//! - [`pbx_client`]: the 3CX XAPI client.
//! - [`vault`]: the object store port and its write-once local adapter.
//! - [`sealing`]: the key-sealing port and its local AES-256-GCM adapter.
//! - [`archive`]: the verifier of encrypted 3CX backup archives.

pub mod archive;
pub mod context;
pub mod driver;
pub mod enrolment;
pub mod pbx_client;
pub mod sandbox;
pub mod scheduler;
pub mod sealing;
pub mod stages;
pub mod store;
pub mod transport;
pub mod vault;
