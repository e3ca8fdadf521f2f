//! `restorable token add|list|revoke`: API tokens for machines.
//!
//! Revoking a token is audited (`token_revoke`) in the trail of its user's tenant, or, for a
//! user of every tenant (`*`), in the trail of every tenant with enrolled instances.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{TimeZone, Utc};
use restorable_api::auth::{issue_token_for, list_tokens, parse_lifetime, revoke_token};
use restorable_domain::audit::AuditAction;
use restorable_pipeline::pipeline::Settings;

use crate::cli::{TokenAddArgs, TokenCommand, TokenListArgs, TokenRevokeArgs};
use crate::output::{self, TokenLine};
use crate::runtime::{audit_account, open};

/// Runs a `restorable token` command.
///
/// # Errors
/// An unknown user or token, a bad lifetime, or a store failure.
pub async fn run(command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Add(args) => add(args).await,
        TokenCommand::List(args) => list(args).await,
        TokenCommand::Revoke(args) => revoke(args).await,
    }
}

/// Issues an API token and prints it once.
///
/// # Errors
/// An unknown user, a bad lifetime or a store failure.
async fn add(args: TokenAddArgs) -> Result<ExitCode> {
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
async fn list(args: TokenListArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let tokens = list_tokens(&pipeline.store, args.email.as_deref()).await;
    pipeline.store.close().await;
    let now = Utc::now().timestamp();
    let tokens = tokens?;
    if args.json {
        let lines: Vec<TokenLine> = tokens
            .iter()
            .map(|t| TokenLine {
                id: t.id().to_owned(),
                email: t.email.clone(),
                name: t.name.clone(),
                issued: t.created_at.clone(),
                expires_at: t.expires_at,
                expired: t.expires_at <= now,
            })
            .collect();
        output::print(&lines)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12}  {:<32}  {:<16}  {:<25}  EXPIRES",
        "ID", "USER", "NAME", "ISSUED"
    );
    for t in tokens {
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
async fn revoke(args: TokenRevokeArgs) -> Result<ExitCode> {
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
            audit_account(&pipeline.store, &scope, AuditAction::TokenRevoke, &on).await?;
            println!("revoked {on}");
        }
        anyhow::Ok(())
    }
    .await;
    pipeline.store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
