//! `restorable user add`, `restorable token add` and `restorable projections rebuild`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rand::distributions::{Alphanumeric, DistString};
use restorable_api::auth::{add_user, issue_token, Role, Scope};
use restorable_pipeline::context::Settings;
use restorable_pipeline::read_model::rebuild;
use secrecy::SecretString;

use crate::cli::{ProjectionsCommand, TokenAddArgs, UserAddArgs};
use crate::commands::open;

/// Adds (or resets) a user. The password comes from `--password-file`, from stdin with
/// `--password-stdin`, or is generated and printed once.
///
/// # Errors
/// Bad input or a store failure.
pub async fn user_add(args: UserAddArgs) -> Result<ExitCode> {
    let role = Role::parse(&args.role)?;
    let scope = Scope::parse(&args.tenant)?;
    let (password, generated) = if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?;
        (
            SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()),
            false,
        )
    } else if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        (
            SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()),
            false,
        )
    } else {
        let text = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20);
        (SecretString::from(text), true)
    };
    let pipeline = open(&args.data, Settings::default()).await?;
    add_user(&pipeline.store, &args.email, &password, role, &scope).await?;
    pipeline.store.close().await;
    println!("user {} ({}, tenant {scope})", args.email, role.as_str());
    if generated {
        use secrecy::ExposeSecret;
        println!("password (shown once): {}", password.expose_secret());
    }
    Ok(ExitCode::SUCCESS)
}

/// Issues an API token and prints it once.
///
/// # Errors
/// An unknown user or a store failure.
pub async fn token_add(args: TokenAddArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let token = issue_token(&pipeline.store, &args.email, &args.name).await?;
    pipeline.store.close().await;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `projections rebuild`: empties the stored views and replays the whole history.
///
/// # Errors
/// A store failure.
pub async fn projections(command: ProjectionsCommand) -> Result<ExitCode> {
    match command {
        ProjectionsCommand::Rebuild(data) => {
            let pipeline = open(&data, Settings::default()).await?;
            let model = rebuild(&pipeline.store).await?;
            pipeline.store.close().await;
            println!(
                "rebuilt: {} instances, {} backups, {} alerts, {} audit records",
                model.fleet.rows().len(),
                model.backups.rows().count(),
                model.alerts.rows().len(),
                model.audit.rows().count()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
