//! `restorable`: managed, encrypted, immutable and restore-tested backups for fleets of 3CX PBXes.
//!
//! Thin wiring only: parse the command line, set up logging, hand over to a command module.
//!
//! # Layout
//! - `cli`: the clap definitions (every subcommand and flag, with its environment fallback).
//! - `settings`: the backend settings (flags, environment, TOML file) every pipeline command
//!   shares, checked before anything starts (`settings/`: `limits`, `alerts`, `urls`).
//! - `runtime`: what the commands share: opening the pipeline, signals, the web UI in this
//!   process, secret files, the operator's name (a leaf: no command is imported there).
//! - `output`: the documents `--json` prints (their schemas are `schemas/cli/`).
//! - `progress`: progress bars on a terminal for the stages' long work.
//! - `exit`: the exit codes every command shares (0, 1, 2, 3) and which errors are which.
//! - `commands`: one file per subcommand (`commands/backup_now.rs`, `commands/verify.rs`, ...);
//!   `commands/mod.rs` dispatches.
//!
//! Imports only go down that list: `commands` -> `runtime` -> `settings` -> `cli`.

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod runtime;
mod settings;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.command {
        cli::Command::Serve(_) | cli::Command::PbxSim(_) | cli::Command::Worker(_) => "info",
        // The demo reports every rung itself; stage warnings would repeat them.
        cli::Command::Demo(_) => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::for_error(&error)
        }
    }
}
