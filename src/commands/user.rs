//! `restorable user add|remove|reset-password`: the accounts of the web UI and API.
//!
//! Resetting a user (adding them again) and removing a user are audited (`password_reset`,
//! `user_remove`) in the trail of the user's tenant, or, for a user of every tenant (`*`), in
//! the trail of every tenant with enrolled instances. The actor reads `<login> (cli), on <whom>`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rand::distributions::{Alphanumeric, DistString};
use restorable_api::auth::{add_user, remove_user, Added, Role, Scope};
use restorable_domain::audit::AuditAction;
use restorable_pipeline::pipeline::Settings;
use secrecy::SecretString;

use crate::cli::{UserAddArgs, UserCommand, UserRemoveArgs, UserResetArgs};
use crate::runtime::{audit_account, open};

/// Runs a `restorable user` command.
///
/// # Errors
/// Bad input, no such user, or a store failure.
pub async fn run(command: UserCommand) -> Result<ExitCode> {
    match command {
        UserCommand::Add(args) => add(args).await,
        UserCommand::Remove(args) => remove(args).await,
        UserCommand::ResetPassword(args) => reset(args).await,
    }
}

/// Adds (or resets) a user. The password comes from `--password-file`, from stdin with
/// `--password-stdin`, or is generated and printed once.
///
/// # Errors
/// Bad input or a store failure.
async fn add(args: UserAddArgs) -> Result<ExitCode> {
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
    let added = add_user(&pipeline.store, &args.email, &password, role, &scope).await;
    let audited = match &added {
        Ok(Added::Reset { .. }) => {
            audit_account(
                &pipeline.store,
                &scope.to_string(),
                AuditAction::PasswordReset,
                &args.email.trim().to_lowercase(),
            )
            .await
        }
        _ => Ok(()),
    };
    pipeline.store.close().await;
    let added = added?;
    audited?;
    println!("user {} ({}, tenant {scope})", args.email, role.as_str());
    if let Added::Reset { sessions, tokens } = added {
        println!("password reset: {sessions} session(s) ended, {tokens} API token(s) revoked");
    }
    if generated {
        use secrecy::ExposeSecret;
        println!("password (shown once): {}", password.expose_secret());
    }
    Ok(ExitCode::SUCCESS)
}

/// Resets a user's password, keeping their role and tenant (see [`add`]).
///
/// # Errors
/// No such user, bad input or a store failure.
async fn reset(args: UserResetArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let email = args.email.trim().to_lowercase();
    let user = pipeline.store.user(&email).await;
    pipeline.store.close().await;
    let user = user?.with_context(|| format!("no user {email:?}"))?;
    add(UserAddArgs {
        data: args.data,
        email,
        role: user.role,
        tenant: user.tenant_scope,
        password_file: args.password_file,
        password_stdin: args.password_stdin,
    })
    .await
}

/// Removes a user with their sessions and tokens (audited).
///
/// # Errors
/// No such user, or a store failure.
async fn remove(args: UserRemoveArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let result = async {
        let user = remove_user(&pipeline.store, &args.email).await?;
        audit_account(
            &pipeline.store,
            &user.tenant_scope,
            AuditAction::UserRemove,
            &user.email,
        )
        .await?;
        println!(
            "removed user {} with their sessions and API tokens",
            user.email
        );
        anyhow::Ok(())
    }
    .await;
    pipeline.store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
