//! `restorable pbx-sim`: simulated 3CX PBXes on local ports, for demos and for trying the
//! pipeline by hand (`restorable enrol --url ...` against them). Runs until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};

use crate::cli::PbxSimArgs;

fn parse_fault(spec: &str, count: usize) -> Result<(usize, Fault)> {
    let (index, fault) = spec
        .split_once('=')
        .with_context(|| format!("--fault {spec:?}: expected INDEX=FAULT, e.g. 2=flipped-byte"))?;
    let index: usize = index
        .parse()
        .with_context(|| format!("--fault {spec:?}: bad index"))?;
    anyhow::ensure!(
        (1..=count).contains(&index),
        "--fault {spec:?}: index must be between 1 and {count}"
    );
    let fault: Fault = fault
        .parse()
        .map_err(|e| anyhow::anyhow!("--fault {spec:?}: {e}"))?;
    Ok((index - 1, fault))
}

/// Runs the simulators.
///
/// # Errors
/// Bad flags or a port that cannot be bound.
pub async fn run(args: PbxSimArgs) -> Result<ExitCode> {
    let mut faults = vec![None; args.count];
    for spec in &args.faults {
        let (index, fault) = parse_fault(spec, args.count)?;
        faults[index] = Some(fault);
    }
    let temp;
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let mut running = Vec::new();
    for (index, fault) in faults.into_iter().enumerate() {
        let mut config =
            SimPbxConfig::new(&format!("pbx-{:02}", index + 1), args.seed + index as u64);
        config.fault = fault;
        config.extensions = args.extensions;
        config.padding_bytes = args.padding_bytes;
        let pbx = if args.port == 0 {
            RunningPbx::start(config, &work_dir).await?
        } else {
            let port = args.port + u16::try_from(index).context("too many PBXes")?;
            RunningPbx::start_on(config, SocketAddr::from(([127, 0, 0, 1], port)), &work_dir)
                .await?
        };
        let config = pbx.config();
        // A simulator's credentials are test fixtures, printed so they can be enrolled by hand.
        println!(
            "{}\t{}\tclient_id={}\tclient_secret={}\tfault={}",
            config.name,
            pbx.base_url(),
            config.client_id,
            config.client_secret,
            config.fault.map_or("none".to_owned(), |f| f.to_string()),
        );
        running.push(pbx);
    }
    tracing::info!(
        count = running.len(),
        "simulated PBXes running; Ctrl-C to stop"
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    for pbx in running {
        pbx.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
