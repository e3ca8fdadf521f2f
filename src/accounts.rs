//! `restorable user add|remove`, `restorable token add|list|revoke` and `restorable
//! projections rebuild`.
//!
//! Resetting a user (adding them again), removing a user and revoking a token are audited
//! (`password_reset`, `user_remove`, `token_revoke`) in the trail of the user's tenant, or, for
//! a user of every tenant (`*`), in the trail of every tenant with enrolled instances. The
//! actor reads `<login> (cli), on <whom>`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{TimeZone, Utc};
use rand::distributions::{Alphanumeric, DistString};
use restorable_api::auth::{
    add_user, issue_token_for, list_tokens, parse_lifetime, remove_user, revoke_token, Added, Role,
    Scope,
};
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::TenantId;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::read_model::rebuild;
use restorable_pipeline::store::Store;
use secrecy::SecretString;

use crate::cli::{
    ProjectionsCommand, TokenAddArgs, TokenListArgs, TokenRevokeArgs, UserAddArgs, UserRemoveArgs,
    UserResetArgs,
};
use crate::commands::open;

/// Who did it, as the audit trail shows it.
fn actor(on: &str) -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    format!("{user} (cli), on {on}")
}

/// Records `action` on `on` in the trail of `scope`'s tenant, or of every tenant with enrolled
/// instances for `*`.
async fn audit(store: &Store, scope: &str, action: AuditAction, on: &str) -> Result<()> {
    let tenants: Vec<TenantId> = match Scope::parse(scope) {
        Ok(Scope::Tenant(tenant)) => vec![tenant],
        Ok(Scope::All) | Err(_) => {
            let mut tenants: Vec<TenantId> = store
                .view_rows("fleet", None)
                .await?
                .iter()
                .filter_map(|row| TenantId::new(&row.tenant_id).ok())
                .collect();
            tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            tenants.dedup();
            tenants
        }
    };
    for tenant in tenants {
        let record = ActionRecorded {
            tenant_id: tenant.clone(),
            actor: actor(on),
            action,
            instance_id: None,
            cycle_id: None,
            key_version: None,
            at: Utc::now(),
        };
        store
            .audit(tenant.as_str(), record)
            .await
            .with_context(|| format!("recording {} in the audit trail", action.as_str()))?;
    }
    Ok(())
}

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
    let added = add_user(&pipeline.store, &args.email, &password, role, &scope).await;
    let audited = match &added {
        Ok(Added::Reset { .. }) => {
            audit(
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

/// Resets a user's password, keeping their role and tenant (see [`user_add`]).
///
/// # Errors
/// No such user, bad input or a store failure.
pub async fn user_reset(args: UserResetArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let email = args.email.trim().to_lowercase();
    let user = pipeline.store.user(&email).await;
    pipeline.store.close().await;
    let user = user?.with_context(|| format!("no user {email:?}"))?;
    user_add(UserAddArgs {
        data: args.data,
        email,
        role: user.role,
        tenant: user.tenant_scope,
        password_file: args.password_file,
        password_stdin: args.password_stdin,
    })
    .await
}

/// Issues an API token and prints it once.
///
/// # Errors
/// An unknown user, a bad lifetime or a store failure.
pub async fn token_add(args: TokenAddArgs) -> Result<ExitCode> {
    let lifetime = parse_lifetime(&args.expires_in)?;
    let pipeline = open(&args.data, Settings::default()).await?;
    let token = issue_token_for(&pipeline.store, &args.email, &args.name, lifetime).await;
    pipeline.store.close().await;
    println!("{}", token?);
    Ok(ExitCode::SUCCESS)
}

fn when(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0).single().map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// Lists API tokens (never their secrets): id, user, name, issued, expires.
///
/// # Errors
/// A store failure.
pub async fn token_list(args: TokenListArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let tokens = list_tokens(&pipeline.store, args.email.as_deref()).await;
    pipeline.store.close().await;
    let now = Utc::now().timestamp();
    println!(
        "{:<12}  {:<32}  {:<16}  {:<25}  EXPIRES",
        "ID", "USER", "NAME", "ISSUED"
    );
    for t in tokens? {
        let expired = if t.expires_at <= now {
            " (expired)"
        } else {
            ""
        };
        println!(
            "{:<12}  {:<32}  {:<16}  {:<25}  {}{expired}",
            t.id(),
            t.email,
            t.name,
            t.created_at.get(..19).unwrap_or(&t.created_at),
            when(t.expires_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Revokes a token by the id `token list` shows (audited).
///
/// # Errors
/// No such token, or a store failure.
pub async fn token_revoke(args: TokenRevokeArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let result = async {
        let revoked = revoke_token(&pipeline.store, &args.id).await?;
        for t in &revoked {
            let scope = pipeline
                .store
                .user(&t.email)
                .await?
                .map(|u| u.tenant_scope)
                .unwrap_or_default();
            let on = format!("token {} ({}) of {}", t.id(), t.name, t.email);
            audit(&pipeline.store, &scope, AuditAction::TokenRevoke, &on).await?;
            println!("revoked {on}");
        }
        anyhow::Ok(())
    }
    .await;
    pipeline.store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Removes a user with their sessions and tokens (audited).
///
/// # Errors
/// No such user, or a store failure.
pub async fn user_remove(args: UserRemoveArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let result = async {
        let user = remove_user(&pipeline.store, &args.email).await?;
        audit(
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
