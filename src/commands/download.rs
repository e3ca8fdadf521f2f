//! `restorable download`: streams a cycle's stored copy out of the vault into a file, checking
//! its size and SHA-256 against the ones recorded at capture.

use std::process::ExitCode;

use anyhow::{Context, Result};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::progress::Work;

use crate::cli::DownloadArgs;
use crate::output::{self, DownloadReport};
use crate::progress::terminal_hook;
use crate::runtime::open;

/// `download`: streams the copy into `--out` while hashing it; any failure (the vault, the
/// disk, a size or SHA-256 that differs from the recorded one) removes the partial file, so a
/// file left at `--out` is always the complete, checked copy.
///
/// # Errors
/// No stored copy, a vault or disk failure, or a copy that differs from the captured one.
pub async fn run(args: DownloadArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let result = download_into(&pipeline, &args).await;
    pipeline.store.close().await;
    let (written, sha256) = result?;
    if args.json {
        output::print(&DownloadReport {
            cycle: args.cycle.clone(),
            out: args.out.display().to_string(),
            size: written,
            sha256,
        })?;
    } else {
        println!("{written} bytes, SHA-256 {sha256} (as captured)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn download_into(pipeline: &Pipeline, args: &DownloadArgs) -> Result<(u64, String)> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cycle: restorable_domain::ids::CycleId = args.cycle.parse()?;
    let state: restorable_domain::cycle::BackupCycle =
        pipeline.store.load(&cycle.to_string()).await?;
    if let Some(removed) = &state.removed {
        anyhow::bail!(
            "cycle {cycle}'s copy was removed from the vault by retention at {} (its lock ran out on {})",
            removed.removed_at.to_rfc3339(),
            removed.retain_until.to_rfc3339()
        );
    }
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
    let progress = terminal_hook(args.json);
    progress.begin(&args.cycle, Work::Fetch, Some(captured.size));
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
            progress.position(&args.cycle, written);
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
    progress.end(&args.cycle);
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
