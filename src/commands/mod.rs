//! The subcommands, one file each; this module only dispatches.
//!
//! Every command opens what it needs through `runtime` (the pipeline on the configured
//! backends, signals, the web UI) and reads its flags from `cli`; no command imports another,
//! except `demo`, which ends with the `fleet` table.

mod alert;
mod audit;
mod backup_now;
mod certificate;
mod completions;
mod cycle;
mod dead_letters;
mod demo;
mod doctor;
mod download;
mod enrol;
mod events;
mod fleet;
mod instance;
mod manual;
mod pbx_sim;
mod projections;
mod restore_test;
mod rotate_key;
mod serve;
mod token;
mod user;
mod verify;
mod worker;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
///
/// # Errors
/// Whatever stopped it, with context.
pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::PbxSim(args) => pbx_sim::run(args).await,
        Command::Enrol(args) => enrol::run(args).await,
        Command::BackupNow(args) => backup_now::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Fleet(args) => fleet::run(args).await,
        Command::RotateKey(args) => rotate_key::run(args).await,
        Command::RestoreTest(args) => restore_test::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Download(args) => download::run(args).await,
        Command::User(command) => user::run(command).await,
        Command::Token(command) => token::run(command).await,
        Command::Projections(command) => projections::run(command).await,
        Command::Instance(command) => instance::run(command).await,
        Command::Cycle(command) => cycle::run(command).await,
        Command::Alert(command) => alert::run(command).await,
        Command::DeadLetters(command) => dead_letters::run(command).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Certificate(command) => certificate::run(command).await,
        Command::Completions(args) => completions::run(&args),
        Command::Manual(args) => manual::run(&args),
    }
}
