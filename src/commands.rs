//! The operational commands: enrol, backup-now, serve, verify, events, fleet and rotate-key.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pipeline::archive::{verify_archive, VerifyLimits, CORE_TABLES};
use restorable_pipeline::enrolment::{
    enrol_with, open_cycle, rotate_tenant_key, EnrolOptions, EnrolRequest,
};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::runtime::{self, scheduler};
use restorable_pipeline::stages::verify::failure_reason;
use restorable_pipeline::transport::nats::worker::WorkerSettings;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, Command};
use crate::config;
use crate::{accounts, demo, history, sim, table, web};
use restorable_pipeline::runtime::driver;

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
        Command::Worker(args) => worker(args).await,
        Command::Doctor(data) => doctor(data).await,
        Command::Download(args) => download(args).await,
        Command::User(cli::UserCommand::Add(args)) => accounts::user_add(args).await,
        Command::User(cli::UserCommand::Remove(args)) => accounts::user_remove(args).await,
        Command::User(cli::UserCommand::ResetPassword(args)) => accounts::user_reset(args).await,
        Command::Token(cli::TokenCommand::Add(args)) => accounts::token_add(args).await,
        Command::Token(cli::TokenCommand::List(args)) => accounts::token_list(args).await,
        Command::Token(cli::TokenCommand::Revoke(args)) => accounts::token_revoke(args).await,
        Command::Projections(command) => accounts::projections(command).await,
        Command::Cycle(command) => crate::cycle_command::run(command).await,
        Command::DeadLetters(command) => crate::dead_letters::run(command).await,
    }
}

/// Opens the pipeline on the configured backends (the embedded default when none are set).
///
/// # Errors
/// A message naming the setting or backend that is wrong or unreachable.
pub async fn open(data: &cli::DataDir, settings: Settings) -> Result<Pipeline> {
    let (backends, settings) = config::resolve(data, settings)?;
    Pipeline::open(&backends, settings)
        .await
        .context("opening the pipeline (run `restorable doctor` to check each backend)")
}

/// Opens the pipeline like [`open`], but waits (retrying with back-off, logging what it waits
/// for) while PostgreSQL, NATS, S3 or KMS is not reachable yet; for the long-running `serve`
/// and `worker`. `None`: `shutdown` was cancelled (SIGTERM, Ctrl-C) while waiting.
///
/// # Errors
/// A message naming the setting or backend that can never be used as configured.
pub async fn open_waiting(
    data: &cli::DataDir,
    settings: Settings,
    shutdown: &CancellationToken,
) -> Result<Option<Pipeline>> {
    let (backends, settings) = config::resolve(data, settings)?;
    let pipeline = Pipeline::open_waiting(&backends, settings, shutdown)
        .await
        .context("opening the pipeline (run `restorable doctor` to check each backend)")?;
    if pipeline.is_none() {
        tracing::info!("stopped while waiting for the backends");
    }
    Ok(pipeline)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
pub(crate) fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = terminate => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping"),
        }
        shutdown.cancel();
    });
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
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    let options = EnrolOptions {
        actor: format!("{user} (cli)"),
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
    let shutdown = CancellationToken::new();
    // Before waiting for the backends, so that a signal ends the wait too.
    cancel_on_signal(shutdown.clone());
    let Some(pipeline) = open_waiting(&args.data, Settings::default(), &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let stages = tokio::spawn({
        let (pipeline, shutdown) = (pipeline.clone(), shutdown.clone());
        async move { runtime::run_all(&pipeline, shutdown).await }
    });
    let scheduler = tokio::spawn(scheduler::run(
        pipeline.clone(),
        Duration::from_secs(args.tick_secs),
        shutdown.clone(),
    ));
    let mut web_tasks = tokio::task::JoinSet::new();
    let address = web::start(&pipeline, args.listen, &mut web_tasks, shutdown.clone()).await?;
    println!("web UI and API on http://{address}/");
    tracing::info!(
        %address,
        store = pipeline.store.backend_name(),
        transport = if pipeline.nats.is_some() {
            "nats"
        } else {
            "in-process"
        },
        "serving; Ctrl-C or SIGTERM to stop"
    );
    shutdown.cancelled().await;
    tracing::info!("stopping: finishing the work in hand");
    stages.await?;
    scheduler.await?;
    web_tasks.join_all().await;
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: cli::VerifyArgs) -> Result<ExitCode> {
    let password = read_secret_file(&args.password_file, "password")?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let limits = VerifyLimits {
        minimum_encryption: args.minimum_encryption,
        ..VerifyLimits::default()
    };
    let outcome =
        tokio::task::spawn_blocking(move || verify_archive(file, &password, CORE_TABLES, &limits))
            .await?;
    match outcome {
        Ok(report) => {
            let counts = |map: &std::collections::BTreeMap<String, u64>| {
                map.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "OK: {} entries authenticated and read to their end ({} bytes); DbTables: {}; \
                 encryption: {}; compression: {}",
                report.entries,
                report.inflated_bytes,
                report.tables.join(", "),
                counts(&report.encryption),
                counts(&report.compression)
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

/// `--stage` names as the user writes them, to the consumers' names.
fn stage_names(given: &[String]) -> Result<Vec<&'static str>> {
    let mut names = Vec::new();
    for stage in given {
        match stage.as_str() {
            "all" => names.extend(runtime::STAGE_NAMES.iter().copied()),
            "restore-test" | "restore_test" => names.push("restore_test"),
            "alert-delivery" | "alert_delivery" => names.push("alert_delivery"),
            other => match runtime::STAGE_NAMES.iter().find(|n| **n == other) {
                Some(name) => names.push(*name),
                None => anyhow::bail!(
                    "unknown stage {other:?}: start, capture, secure, verify, restore-test, close, alerts, alert-delivery or all"
                ),
            },
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

async fn worker(args: cli::WorkerArgs) -> Result<ExitCode> {
    let names = stage_names(&args.stages)?;
    let shutdown = CancellationToken::new();
    // Before waiting for the backends, so that a signal ends the wait too.
    cancel_on_signal(shutdown.clone());
    let Some(pipeline) = open_waiting(&args.data, Settings::default(), &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let settings = WorkerSettings {
        concurrency: args.concurrency.max(1),
        poison_after: args.poison_after.max(1),
        ack_wait: Duration::from_secs(args.ack_wait_secs.max(1)),
        grace: Duration::from_secs(args.grace_secs),
    };
    let scheduler = (args.schedule_every_secs > 0).then(|| {
        tokio::spawn(scheduler::run(
            pipeline.clone(),
            Duration::from_secs(args.schedule_every_secs),
            shutdown.clone(),
        ))
    });
    tracing::info!(
        stages = ?names,
        store = pipeline.store.backend_name(),
        transport = if pipeline.nats.is_some() { "nats" } else { "in-process" },
        "worker running; SIGTERM or Ctrl-C to stop"
    );
    runtime::run_stages(&pipeline, &names, &settings, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn doctor(data: cli::DataDir) -> Result<ExitCode> {
    let (backends, settings) = config::resolve(&data, Settings::default())?;
    let report = restorable_pipeline::setup::diagnose(&backends, &settings).await;
    let mut healthy = true;
    for line in &report {
        healthy &= line.ok;
        println!(
            "{:<16} {}  {}",
            line.port,
            if line.ok { "ok  " } else { "FAIL" },
            line.detail
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `download`: streams the copy into `--out` while hashing it; any failure (the vault, the
/// disk, a size or SHA-256 that differs from the recorded one) removes the partial file, so a
/// file left at `--out` is always the complete, checked copy.
async fn download(args: cli::DownloadArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let result = download_into(&pipeline, &args).await;
    pipeline.store.close().await;
    let (written, sha256) = result?;
    println!("{written} bytes, SHA-256 {sha256} (as captured)");
    Ok(ExitCode::SUCCESS)
}

async fn download_into(pipeline: &Pipeline, args: &cli::DownloadArgs) -> Result<(u64, String)> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cycle: restorable_domain::ids::CycleId = args.cycle.parse()?;
    let state: restorable_domain::cycle::BackupCycle =
        pipeline.store.load(&cycle.to_string()).await?;
    let captured = state
        .captured
        .with_context(|| format!("cycle {cycle} has no stored copy"))?;
    let mut reader = pipeline
        .vault
        .open(&captured.object_key, &captured.version_id)
        .await?;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .await
        .with_context(|| format!("creating {}", args.out.display()))?;
    // From here on the file is ours: any failure removes it.
    let copied = async {
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .context("reading from the vault")?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .await
                .with_context(|| format!("writing {}", args.out.display()))?;
            written += n as u64;
        }
        out.sync_all().await?;
        let sha256 = hex::encode(hasher.finalize());
        if sha256 != captured.sha256 || written != captured.size {
            anyhow::bail!(
                "the copy read back as {written} bytes with SHA-256 {sha256}; captured {} bytes with {}",
                captured.size,
                captured.sha256,
            );
        }
        anyhow::Ok((written, sha256))
    }
    .await;
    drop(out);
    match copied {
        Ok(done) => Ok(done),
        Err(error) => {
            let removed = match std::fs::remove_file(&args.out) {
                Ok(()) => format!("removed {}", args.out.display()),
                Err(e) => format!("could not remove {}: {e}", args.out.display()),
            };
            Err(error.context(format!("download of cycle {cycle} failed ({removed})")))
        }
    }
}
