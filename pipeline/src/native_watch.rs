//! The native backup watch between captures: every capture reads the PBX's own backup schedule
//! (`Captured::native_backups`), and this sweep reads it on a lighter schedule of its own —
//! every `[pbx] native_watch_hours` (default [`DEFAULT_EVERY_HOURS`]; 0 turns it off) — so a
//! PBX whose own backups stop is noticed even when Restorable's cycles are far apart. It only
//! reads (`BackupSettings` and the list of backups), never changes the PBX's schedule.
//!
//! # What it records
//! Each reading is an `Instance.NativeBackupsRead` event; the alerts stage judges it like a
//! capture's reading ("Native Backup Disabled / Unencrypted / Stale" raised, or resolved with no
//! cycle named), and the fleet view keeps the newest reading of either kind.
//!
//! # Who is read, and when
//! The scheduler's index (`instance_schedule.native_watch_from`, [`crate::schedule`]) holds when
//! each live instance was last read by the watch; [`sweep_at`] takes those last read at least
//! one period ago, a few at a time ([`CONCURRENT_READS`]). Stopped and removed instances are
//! left alone. Two workers sweeping at once may both read a PBX; the instance records only the
//! first reading of a period (`InstanceCommand::RecordNativeBackups`).
//!
//! # When the PBX does not answer
//! Nothing is recorded and nothing is raised: an unreachable or refusing PBX is what a cycle's
//! capture reports (Backup Failed), and an unreadable schedule must not turn a healthy PBX red.
//! The instance stays due, so the next sweep tries again. Likewise the key service failing to
//! unseal the credentials: logged, tried again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use restorable_domain::instance::{Instance, InstanceCommand};
use tokio_util::sync::CancellationToken;

use crate::pbx::PbxClient;
use crate::periodic::{Round, Rounds};
use crate::pipeline::Pipeline;
use crate::stages::capture::OWN_BACKUP_PREFIX;
use crate::store::StoreError;

/// The watch's period when the config says nothing, in hours.
pub const DEFAULT_EVERY_HOURS: u32 = 6;
/// How often a process running the `native_watch` stage looks for due instances.
pub const NATIVE_WATCH_EVERY: Duration = Duration::from_secs(10 * 60);
/// PBXes read at once by one sweep.
pub const CONCURRENT_READS: usize = 8;
/// Instances taken from the index per page.
const PAGE: i64 = 500;

/// What one sweep did (instance ids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NativeSweep {
    /// Instances whose reading was recorded.
    pub read: Vec<String>,
    /// Instances whose PBX (or key service) did not answer, with why: tried again next sweep.
    pub unreadable: Vec<(String, String)>,
}

/// What became of one due instance.
enum Outcome {
    Read,
    Unreadable(String),
    /// Not due after all (read by another sweep, stopped or removed since the index said so).
    Skipped,
}

/// One sweep at `now`: reads every live instance whose watch is due and records the readings.
///
/// # Errors
/// A store failure (readings recorded stay recorded; the rest are read by the next sweep).
pub async fn sweep_at(pipeline: &Pipeline, now: DateTime<Utc>) -> Result<NativeSweep, StoreError> {
    let every = pipeline.settings.pbx.native_watch_every;
    let mut sweep = NativeSweep::default();
    if every <= chrono::Duration::zero() {
        return Ok(sweep);
    }
    crate::schedule::refresh(&pipeline.store).await?;
    let due_before = now - every;
    let started = tokio::time::Instant::now();
    let clock = move || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let mut after = String::new();
    loop {
        let page = pipeline
            .store
            .native_watch_due(due_before.timestamp_millis(), &after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.clone();
        let outcomes: Vec<(String, Result<Outcome, StoreError>)> = stream::iter(page)
            .map(|id| async move {
                let outcome = watch(pipeline, &id, due_before, clock).await;
                (id, outcome)
            })
            .buffer_unordered(CONCURRENT_READS)
            .collect()
            .await;
        for (id, outcome) in outcomes {
            match outcome? {
                Outcome::Read => sweep.read.push(id),
                Outcome::Unreadable(why) => sweep.unreadable.push((id, why)),
                Outcome::Skipped => {}
            }
        }
    }
    sweep.read.sort();
    sweep.unreadable.sort();
    Ok(sweep)
}

/// Reads one instance's native backups if its watch is still due, and records the reading.
async fn watch(
    pipeline: &Pipeline,
    instance_id: &str,
    due_before: DateTime<Utc>,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let instance: Instance = pipeline.store.load(instance_id).await?;
    let (Some(enrolled), Some(from)) = (&instance.enrolled, instance.native_watch_from()) else {
        return Ok(Outcome::Skipped);
    };
    if from > due_before {
        return Ok(Outcome::Skipped);
    }
    let credentials = match pipeline.pbx_credentials(&instance).await {
        Ok(credentials) => credentials,
        Err(why) => return Ok(unreadable(instance_id, why)),
    };
    let connected = PbxClient::connect(
        &enrolled.api_url,
        enrolled.allow_insecure_http,
        &pipeline.settings.pbx,
        &credentials.client_id,
        &credentials.client_secret,
    )
    .await;
    drop(credentials);
    let reading = match connected {
        Ok(pbx) => pbx.native_backups(OWN_BACKUP_PREFIX, clock()).await,
        Err(error) => Err(error),
    };
    let reading = match reading {
        Ok(reading) => reading,
        Err(error) => return Ok(unreadable(instance_id, error.to_string())),
    };
    let record = InstanceCommand::RecordNativeBackups {
        reading,
        due_before,
    };
    match pipeline.store.instance(instance_id, record).await {
        Ok(()) => Ok(Outcome::Read),
        Err(error) if error.is_refusal() => {
            tracing::info!(instance = instance_id, why = %error, "native backup reading not recorded");
            Ok(Outcome::Skipped)
        }
        Err(error) => Err(error),
    }
}

fn unreadable(instance_id: &str, why: String) -> Outcome {
    tracing::warn!(instance = instance_id, %why, "the native backup watch could not read the PBX's own schedule; trying again next sweep");
    Outcome::Unreadable(why)
}

/// Sweeps every `every` until `shutdown` is cancelled.
pub async fn run(pipeline: Pipeline, every: Duration, shutdown: CancellationToken) {
    crate::periodic::repeat(every, Rounds::Cancellable, shutdown, &mut Sweeps(pipeline)).await;
}

/// The watch's sweeps, one a round.
struct Sweeps(Pipeline);

impl Round for Sweeps {
    async fn once(&mut self) {
        match sweep_at(&self.0, Utc::now()).await {
            Ok(sweep) => tracing::info!(
                read = sweep.read.len(),
                unreadable = sweep.unreadable.len(),
                "native backup watch sweep"
            ),
            Err(error) => tracing::error!(%error, "native backup watch sweep failed"),
        }
    }
}
