//! `restorable completions SHELL`: the shell's completion script, generated from the clap
//! definitions (so it never falls behind a new flag).

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

/// Prints the completion script of `args.shell` on standard output.
///
/// # Errors
/// None today; the signature matches the other commands.
pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "restorable",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
