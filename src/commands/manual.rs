//! `restorable manual [--out DIR]`: the manual page, generated from the clap definitions with
//! clap_mangen: `restorable.1` on standard output, or it and one page per subcommand
//! (`restorable-fleet.1`, `restorable-user-add.1`, ...) written into a directory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManualArgs};

/// Prints or writes the pages.
///
/// # Errors
/// The directory cannot be created or a page cannot be written.
pub fn run(args: &ManualArgs) -> Result<ExitCode> {
    let command = Cli::command();
    match &args.out {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("writing the manual page")?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(command, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `command`'s page and, recursively, one per subcommand (named `parent-sub.1`).
fn write_pages(command: clap::Command, dir: &Path) -> Result<()> {
    let name = command.get_name().to_owned();
    let path = dir.join(format!("{name}.1"));
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    clap_mangen::Man::new(command.clone())
        .render(&mut file)
        .with_context(|| format!("writing {}", path.display()))?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_pages(sub, dir)?;
    }
    Ok(())
}
