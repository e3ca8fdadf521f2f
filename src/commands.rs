//! The operational commands: enrol, backup-now, serve, verify, events, fleet and rotate-key.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pipeline::archive::{verify_archive, CORE_TABLES};
use restorable_pipeline::context::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::enrolment::{enrol, open_cycle, rotate_tenant_key, EnrolRequest};
use restorable_pipeline::stages::verify::failure_reason;
use restorable_pipeline::{scheduler, stages};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, Command};
use crate::{demo, history, sim, table};
use restorable_pipeline::driver;

/// Runs the chosen subcommand.
///
/// # Errors
/// Whatever stopped it, with context.
pub async fn dispatch(cli: cli::Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::PbxSim(args) => sim::run(args).await,
        Command::Enrol(args) => enrol_command(args).await,
        Command::BackupNow(args) => backup_now(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Verify(args) => verify(args).await,
        Command::Events(args) => events(args).await,
        Command::Fleet(data) => fleet(data).await,
        Command::RotateKey(args) => rotate_key(args).await,
        Command::RestoreTest(args) => restore_test(args).await,
    }
}

async fn open(data: &cli::DataDir, settings: Settings) -> Result<Pipeline> {
    Pipeline::embedded(&data.data_dir, settings)
        .await
        .with_context(|| format!("opening {}", data.data_dir.display()))
}

/// An instance given as a UUID or as `TENANT/NAME`.
fn instance_id(given: &str) -> Result<InstanceId> {
    if let Some((tenant, name)) = given.split_once('/') {
        return Ok(InstanceId::for_name(&TenantId::new(tenant)?, name));
    }
    given
        .parse()
        .with_context(|| format!("{given:?} is neither an instance id nor TENANT/NAME"))
}

fn read_secret_file(path: &std::path::Path, what: &str) -> Result<SecretString> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} file {}", path.display()))?,
    );
    let trimmed = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !trimmed.is_empty(),
        "the {what} file {} is empty",
        path.display()
    );
    Ok(SecretString::from(trimmed.to_owned()))
}

async fn enrol_command(args: cli::EnrolArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let fqdn = match args.fqdn {
        Some(fqdn) => fqdn,
        None => reqwest_host(&args.url)?,
    };
    let id = enrol(
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
    )
    .await?;
    println!("enrolled {}/{} as {id}", args.tenant, args.name);
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn reqwest_host(url: &str) -> Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .with_context(|| format!("{url:?} is not a URL (expected https://host)"))?;
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "{url:?} has no host");
    Ok(host.to_owned())
}

async fn backup_now(args: cli::BackupNowArgs) -> Result<ExitCode> {
    let settings = Settings {
        capture_deadline: Duration::from_secs(args.capture_deadline_secs),
        poll_interval: Duration::from_millis(500),
        ..Settings::default()
    };
    let pipeline = open(&args.data, settings).await?;
    let instance = instance_id(&args.instance)?;
    let from = driver::head_position(&pipeline).await?;
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual).await?;
    println!("cycle {cycle}");
    driver::run_until_closed(
        &pipeline,
        HashSet::from([cycle]),
        from,
        Duration::from_secs(args.capture_deadline_secs + 3600),
        |_| {},
    )
    .await?;
    let state: restorable_domain::cycle::BackupCycle =
        pipeline.store.load(&cycle.to_string()).await?;
    pipeline.store.close().await;
    let rung = state.rung.map_or("-", |r| r.label());
    match state.failed {
        Some(failed) => {
            println!(
                "reached {rung}; FAILED at {}: {} ({})",
                failed.stage, failed.reason, failed.detail
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("reached {rung}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: cli::ServeArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let shutdown = CancellationToken::new();
    let stages = tokio::spawn({
        let (pipeline, shutdown) = (pipeline.clone(), shutdown.clone());
        async move { stages::run_all(&pipeline, shutdown).await }
    });
    let scheduler = tokio::spawn(scheduler::run(
        pipeline.clone(),
        Duration::from_secs(args.tick_secs),
        shutdown.clone(),
    ));
    tracing::info!(data_dir = %args.data.data_dir.display(), "serving; Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("stopping: finishing the current batch of each stage");
    shutdown.cancel();
    stages.await?;
    scheduler.await?;
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: cli::VerifyArgs) -> Result<ExitCode> {
    let password = read_secret_file(&args.password_file, "password")?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let outcome =
        tokio::task::spawn_blocking(move || verify_archive(file, &password, CORE_TABLES)).await?;
    match outcome {
        Ok(report) => {
            println!(
                "OK: {} entries decrypted, authenticated and inflated ({} bytes); DbTables: {}",
                report.entries,
                report.inflated_bytes,
                report.tables.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            println!("REJECTED {}: {fault}", failure_reason(&fault));
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn events(args: cli::EventsArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let (aggregate, id) = match (&args.cycle, &args.instance) {
        (Some(cycle), _) => (
            "BackupCycle",
            cycle
                .parse::<restorable_domain::ids::CycleId>()?
                .to_string(),
        ),
        (None, Some(instance)) => ("Instance", instance_id(instance)?.to_string()),
        (None, None) => anyhow::bail!("give --cycle or --instance"),
    };
    let events = pipeline.store.history(aggregate, &id).await?;
    anyhow::ensure!(!events.is_empty(), "no {aggregate} with id {id}");
    for event in events {
        println!(
            "#{:<3} {:<14} v{}  {}",
            event.sequence, event.event_type, event.event_version, event.payload
        );
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn fleet(data: cli::DataDir) -> Result<ExitCode> {
    let pipeline = open(&data, Settings::default()).await?;
    let view = history::fleet(&pipeline.store).await?;
    print!("{}", table::render(&view, Utc::now()));
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn rotate_key(args: cli::RotateKeyArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let version = rotate_tenant_key(&pipeline, &TenantId::new(&args.tenant)?).await?;
    println!(
        "tenant {} now encrypts new backups with key version {version}",
        args.tenant
    );
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn restore_test(args: cli::RestoreTestArgs) -> Result<ExitCode> {
    let settings = Settings {
        restore_time_limit: Duration::from_secs(args.time_limit_secs),
        ..Settings::default()
    };
    let pipeline = open(&args.data, settings).await?;
    let cycle: restorable_domain::ids::CycleId = args.cycle.parse()?;
    restorable_pipeline::stages::restore_test::restore_test_now(&pipeline, &cycle.to_string())
        .await?;
    let state: restorable_domain::cycle::BackupCycle =
        pipeline.store.load(&cycle.to_string()).await?;
    pipeline.store.close().await;
    match state.failed {
        Some(failed) => {
            println!(
                "FAILED at {}: {} ({})",
                failed.stage, failed.reason, failed.detail
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("reached {}", state.rung.map_or("-", |r| r.label()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
