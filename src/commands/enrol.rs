//! `restorable enrol`: enrols a PBX for managed backups (or updates its URL and credentials).

use std::process::ExitCode;

use anyhow::Result;
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{RestorePolicy, RestoreSelection, Schedule};
use restorable_pipeline::enrolment::{enrol_with, EnrolOptions, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Settings};
use secrecy::SecretString;
use url::Url;

use crate::cli::EnrolArgs;
use crate::runtime::{open, operator, read_secret_file};
use crate::settings::redact_url;

/// Enrols the PBX and prints its instance id.
///
/// # Errors
/// Bad input (URL, tenant, secret file), a refused enrolment or a store failure.
pub async fn run(args: EnrolArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let fqdn = match args.fqdn {
        Some(fqdn) => fqdn,
        None => pbx_host(&args.url)?,
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
                target_minutes: args.restore_target_minutes,
                selection: RestoreSelection::within_days(args.restore_random_within_days),
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

/// The host of the PBX URL `text`, its FQDN unless `--fqdn` names one.
fn pbx_host(text: &str) -> Result<String> {
    let shown = redact_url(text);
    let url = match Url::parse(text) {
        Ok(url) if !url.cannot_be_a_base() => url,
        Err(url::ParseError::EmptyHost) => anyhow::bail!("{shown:?} has no host"),
        _ => anyhow::bail!("{shown:?} is not a URL (expected https://host)"),
    };
    let host = url.host_str().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "{shown:?} has no host");
    Ok(host.to_owned())
}
