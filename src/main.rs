//! `restorable`: managed, encrypted, immutable and restore-tested backups for fleets of 3CX PBXes.
//!
//! Thin wiring only: parse the command line, set up logging, hand over to a command module.
//!
//! # Layout
//! - `cli`: the clap definitions (every flag, with its environment fallback).
//! - `demo`: `restorable demo` — a simulated fleet up the ladder, ending in a fleet table.
//! - `commands`: enrol, backup-now, serve, worker, doctor, verify, events, fleet, rotate-key.
//! - `config`: the backend settings (flags, environment, TOML file) every pipeline command shares.
//! - `sim`: `restorable pbx-sim` — simulated PBXes for demos and tests.
//! - `history`: decoding the event log into typed events.
//! - `table`: the fleet table as text.
//! - `web`: the web UI and API in this process (projector + HTTP server).
//! - `accounts`: `user add`, `token add`, `projections rebuild`.
//! - `cycle_command`: `cycle abort` (audited).
//! - `dead_letters`: `dead-letters list` and `dead-letters replay`.

mod accounts;
mod cli;
mod commands;
mod config;
mod cycle_command;
mod dead_letters;
mod demo;
mod history;
mod sim;
mod table;
mod web;

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
            ExitCode::from(2)
        }
    }
}
