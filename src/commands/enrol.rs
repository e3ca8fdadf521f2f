//! `restorable enrol`: enrols a PBX for managed backups (or updates its URL and credentials).

use std::process::ExitCode;

use anyhow::{Context, Result};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_pipeline::context::{PbxCredentials, Settings};
use restorable_pipeline::enrolment::{enrol_with, EnrolOptions, EnrolRequest};
use secrecy::SecretString;

use crate::cli::EnrolArgs;
use crate::runtime::{open, operator, read_secret_file};

/// Enrols the PBX and prints its instance id.
///
/// # Errors
/// Bad input (URL, tenant, secret file), a refused enrolment or a store failure.
pub async fn run(args: EnrolArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let fqdn = match args.fqdn {
        Some(fqdn) => fqdn,
        None => reqwest_host(&args.url)?,
    };
    let options = EnrolOptions {
        actor: operator(),
        allow_insecure_http: args.allow_insecure_http,
    };
    let id = enrol_with(
        &pipeline,
        EnrolRequest {
            tenant: TenantId::new(&args.tenant)?,
            name: args.name.clone(),
            fqdn,
            api_url: args.url,
            credentials: PbxCredentials {
                client_id: SecretString::from(args.client_id),
                client_secret: read_secret_file(&args.client_secret_file, "client secret")?,
            },
            schedule: Schedule {
                interval_minutes: args.interval_minutes,
            },
            restore_policy: RestorePolicy {
                every_nth_verified: args.restore_every,
                max_age_hours: args.restore_max_age_hours,
            },
        },
        &options,
    )
    .await?;
    if args.allow_insecure_http {
        eprintln!(
            "warning: plain http allowed for {}/{}: the backup password crosses the network in clear",
            args.tenant, args.name
        );
    }
    println!("enrolled {}/{} as {id}", args.tenant, args.name);
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The host of the PBX URL `url`, its FQDN unless `--fqdn` names one.
fn reqwest_host(url: &str) -> Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .with_context(|| format!("{url:?} is not a URL (expected https://host)"))?;
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "{url:?} has no host");
    Ok(host.to_owned())
}
