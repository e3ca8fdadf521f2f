//! `restorable demo`: starts a simulated fleet (some PBXes with faults), enrols it, runs one
//! backup cycle of each up the ladder while showing progress, and prints the fleet table.
//! Run again on the same data directory, it continues the history: same instances, new cycles.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::ids::{CycleId, TenantId};
use restorable_domain::instance::{Instance, RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_projections::AnyEvent;
use secrecy::SecretString;

use crate::cli::DemoArgs;
use crate::runtime::{cancel_on_signal, open, start_web};

use super::fleet;
use restorable_pipeline::runtime::driver;

/// The demo fleet's faults, by position (cycled for larger fleets): each lands on its own rung
/// (a stale native schedule climbs to the top and is named on its `captured` line).
const DEMO_FAULTS: [Option<Fault>; 12] = [
    None,
    Some(Fault::BadCredentials),
    None,
    Some(Fault::NeverFinishes),
    Some(Fault::ServerError),
    Some(Fault::NativeBackupStale),
    Some(Fault::TruncatedDownload),
    Some(Fault::FlippedByte),
    Some(Fault::WrongPassword),
    Some(Fault::MissingTable),
    Some(Fault::DanglingForeignKey),
    Some(Fault::ManifestMismatch),
];

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// Runs the demo.
///
/// # Errors
/// Set-up failures (data directory, simulator ports) or a cycle that never closes.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let settings = Settings {
        capture_deadline: Duration::from_secs(args.capture_deadline_secs),
        poll_interval: Duration::from_millis(100),
        ..Settings::default()
    };
    let pipeline = open(&args.data, settings).await?;
    let sim_dir = tempfile::tempdir().context("creating the simulator's directory")?;
    let mut fleet = Vec::new();
    for index in 0..args.fleet {
        let name = format!("pbx-{:02}", index + 1);
        let mut config = SimPbxConfig::new(&name, index as u64 + 1);
        config.fault = if args.no_faults {
            None
        } else {
            DEMO_FAULTS[index % DEMO_FAULTS.len()]
        };
        config.padding_bytes = args.padding_bytes;
        config.extensions = args.extensions;
        let pbx = RunningPbx::start(config, sim_dir.path())
            .await
            .with_context(|| format!("starting simulated PBX {name}"))?;
        fleet.push((TenantId::new(TENANTS[index % TENANTS.len()])?, pbx));
    }

    let start_position = driver::head_position(&pipeline).await?;
    let mut cycles = HashSet::new();
    for (tenant, pbx) in &fleet {
        let config = pbx.config();
        let instance = enrol(
            &pipeline,
            EnrolRequest {
                tenant: tenant.clone(),
                name: config.name.clone(),
                fqdn: format!("{}.{tenant}.example", config.name),
                api_url: pbx.base_url(),
                credentials: PbxCredentials {
                    client_id: SecretString::from(config.client_id.clone()),
                    client_secret: SecretString::from(config.client_secret.clone()),
                },
                schedule: Schedule::DAILY,
                restore_policy: RestorePolicy::default(),
            },
        )
        .await
        .with_context(|| format!("enrolling {}", config.name))?;
        let state: Instance = pipeline.store.load(&instance.to_string()).await?;
        let cycle = match state.open_cycle {
            Some(unfinished) => unfinished, // an interrupted earlier run: it continues now
            None => open_cycle(&pipeline, instance, Trigger::Manual).await?,
        };
        cycles.insert(cycle);
    }

    let names = fleet_names(&pipeline).await?;
    let progress = ProgressBar::new(cycles.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cycles done {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    let mut owners = std::collections::HashMap::<String, String>::new();
    let native_grace = pipeline.settings.pbx.native_backup_grace;
    let result = driver::run_until_closed(
        &pipeline,
        cycles.clone(),
        start_position,
        Duration::from_secs(args.capture_deadline_secs.max(60) * 10),
        |logged| match fleet::decode(logged) {
            Ok(event) => report(
                &event,
                &names,
                &mut owners,
                &cycles,
                &progress,
                native_grace,
            ),
            Err(error) => tracing::warn!(%error, "event not shown"),
        },
    )
    .await;
    progress.finish_and_clear();
    if let Err(error) = result {
        for (_, pbx) in fleet {
            pbx.shutdown().await;
        }
        return Err(error.into());
    }

    let view = fleet::view(&pipeline.store).await?;
    print!("{}", fleet::render(&view, Utc::now()));
    println!(
        "\nData directory: {} (run again to continue the history)",
        args.data.data_dir.display()
    );
    let checkpoint = restorable_pipeline::evidence::write_checkpoint(
        &pipeline.store,
        pipeline.vault.as_ref(),
        crate::runtime::signer(&args.data).await?.as_ref(),
        restorable_pipeline::evidence::CHECKPOINT_RETENTION,
    )
    .await?;
    let tenant = view
        .rows()
        .first()
        .map_or_else(|| "TENANT".to_owned(), |row| row.tenant_id.to_string());
    println!(
        "History signed: checkpoint {} (key {}). For an auditor: restorable audit export \
         --data-dir {} --tenant {tenant} --out audit-{tenant}, then restorable audit verify audit-{tenant}",
        checkpoint.header.sequence,
        checkpoint.header.key_id,
        args.data.data_dir.display()
    );
    for cycle in &cycles {
        let cycle = cycle.to_string();
        if let Some(facts) =
            restorable_pipeline::evidence::certificate_facts(&pipeline.store, &cycle).await?
        {
            println!(
                "Restore certificate of cycle {cycle}: restorable certificate get --data-dir {} \
                 --cycle {cycle} --out certificate.json (public page: /certificates/{})",
                args.data.data_dir.display(),
                facts.id()
            );
            break;
        }
    }
    let served = if args.serve {
        serve(&pipeline, &args.data, args.listen).await
    } else {
        Ok(())
    };
    for (_, pbx) in fleet {
        pbx.shutdown().await;
    }
    pipeline.store.close().await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// `--serve`: the web UI and API over the demo's history, with the stages and scheduler
/// running (the simulated PBXes stay up, so "Back up now" works), until Ctrl-C or SIGTERM. A
/// demo administrator who sees every tenant is created with a fresh password, printed once.
async fn serve(
    pipeline: &Pipeline,
    data: &crate::settings::Config,
    listen: std::net::SocketAddr,
) -> Result<()> {
    use rand::distributions::{Alphanumeric, DistString};
    use secrecy::ExposeSecret;

    let email = "admin@demo.restorable.example";
    let password = SecretString::from(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20));
    restorable_api::auth::add_user(
        &pipeline.store,
        email,
        &password,
        restorable_api::auth::Role::Administrator,
        &restorable_api::auth::Scope::All,
    )
    .await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let address = start_web(pipeline, data, listen, &mut tasks, shutdown.clone()).await?;
    tasks.spawn({
        let (pipeline, shutdown) = (pipeline.clone(), shutdown.clone());
        async move { restorable_pipeline::runtime::run_all(&pipeline, shutdown).await }
    });
    tasks.spawn(restorable_pipeline::runtime::scheduler::run(
        pipeline.clone(),
        Duration::from_secs(60),
        shutdown.clone(),
    ));
    println!("\nServing the web UI and API on http://{address}/ (Ctrl-C to stop)");
    println!(
        "Sign in as {email} with password {} (demo account, new each run)",
        password.expose_secret()
    );
    cancel_on_signal(shutdown.clone());
    shutdown.cancelled().await;
    tasks.join_all().await;
    Ok(())
}

async fn fleet_names(pipeline: &Pipeline) -> Result<std::collections::HashMap<String, String>> {
    let view = fleet::view(&pipeline.store).await?;
    Ok(view
        .rows()
        .into_iter()
        .map(|row| {
            (
                row.instance_id.to_string(),
                format!("{}/{}", row.tenant_id, row.name),
            )
        })
        .collect())
}

fn report(
    event: &AnyEvent,
    names: &std::collections::HashMap<String, String>,
    owners: &mut std::collections::HashMap<String, String>,
    cycles: &HashSet<CycleId>,
    progress: &ProgressBar,
    native_grace: chrono::Duration,
) {
    match event {
        AnyEvent::Cycle(id, BackupCycleEvent::CycleStarted(started)) => {
            let name = names
                .get(&started.instance_id.to_string())
                .cloned()
                .unwrap_or_default();
            owners.insert(id.clone(), name);
        }
        AnyEvent::Cycle(id, event) => {
            let name = owners.get(id).cloned().unwrap_or_else(|| id.clone());
            let line = match event {
                BackupCycleEvent::Captured(e) => {
                    let mut line =
                        format!("captured   {} bytes, sha256 {}…", e.size, &e.sha256[..12]);
                    let findings = e
                        .native_backups
                        .as_ref()
                        .map(|native| native.findings(native_grace))
                        .unwrap_or_default();
                    for found in findings {
                        let kind = serde_json::to_value(found.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        line.push_str(&format!("; {kind}: {}", found.detail));
                    }
                    line
                }
                BackupCycleEvent::Secured(_) => {
                    "secured    read back intact, under compliance lock".into()
                }
                BackupCycleEvent::Verified(e) => format!(
                    "verified   {} entries, {} tables",
                    e.entries,
                    e.tables.len()
                ),
                BackupCycleEvent::RestoreTested(e) => {
                    format!("restore-tested in {} ms", e.duration_ms)
                }
                BackupCycleEvent::Failed(e) => {
                    format!("FAILED     {} at {}: {}", e.reason, e.stage, e.detail)
                }
                BackupCycleEvent::Rechecked(_) => {
                    "re-checked read back intact, still locked".into()
                }
                BackupCycleEvent::RecheckFailed(e) => {
                    format!("RE-CHECK FAILED {}: {}", e.reason, e.detail)
                }
                BackupCycleEvent::LockExtended(e) => {
                    format!("kept       locked until {}", e.retain_until.to_rfc3339())
                }
                BackupCycleEvent::CopyRemoved(_) => "removed    retain-until passed".into(),
                BackupCycleEvent::CycleStarted(_) => return,
            };
            let line = format!("{name:<16} {line}");
            if progress.is_hidden() {
                println!("{line}");
            } else {
                progress.println(line);
            }
        }
        AnyEvent::Instance(_, restorable_domain::instance::InstanceEvent::CycleClosed(closed))
            if cycles.contains(&closed.cycle_id) =>
        {
            progress.inc(1);
        }
        _ => {}
    }
}
