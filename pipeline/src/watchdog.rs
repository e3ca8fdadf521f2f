//! The watchdog: **no instance stays with a cycle in flight past its deadline, whatever was
//! lost** (an outcome the store dropped, a dead-lettered event, a worker killed mid-stage).
//!
//! The rule. Every rung has a time limit ([`Deadlines`], scaled by the size of the backup); a
//! cycle that has not moved within the limit of the rung it stands on — time of its last event
//! against now — is failed `stage_timeout` (retryable) on the stage that should have moved it.
//! From there the close stage frees the instance and the alerts stage raises "Backup Failed",
//! as for any failure. A cycle that has *ended* (failed, or at its last rung) but whose
//! instance still holds it open past [`Deadlines::close`] (the close outcome was lost) is closed
//! by the watchdog itself, with the close stage's own command. A cycle opened but never
//! started is started and failed at once (its start outcome was lost).
//!
//! - The stage deadlines of capture and restore-test are never shorter than the stage's own
//!   time limit (`capture_deadline`, `restore_time_limit`) plus [`Deadlines::close`], so a stage
//!   that times out itself does so first, with its own, more precise reason.
//! - Any process that runs stages runs a watchdog; only the holder of the `watchdog` lease
//!   ([`crate::store::Lease`], renewed before every round, so a watchdog that lost it in an
//!   outage stops acting) acts. Time counts only from when this process took the lock (or from the cycle's
//!   last event, whichever is later): after a restart or an outage of the store the stages get
//!   a full deadline to catch up before anything is failed, so downtime never raises a false
//!   `stage_timeout`.
//! - Errors of the store are infrastructure ([`crate::error`]): logged, the lock let go, and
//!   tried again on the next round. The watchdog never panics and never stops.
//!
//! One operation, the deadline sweep (which cycles stood still, and failing or closing each):
//! hence the file's length.

use std::time::Duration;

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{
    BackupCycle, BackupCycleCommand, BackupCycleEvent, CycleStarted, Failed,
};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{Instance, InstanceEvent};
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use tokio_util::sync::CancellationToken;

use crate::deadlines::Deadlines;
use crate::periodic::{Round as Periodic, Rounds};
use crate::pipeline::Pipeline;
use crate::stages::{close::close_cycle, record, StageFailure};
use crate::store::{Lease, StoreError};

/// The name of the lease only one watchdog holds.
pub const LOCK: &str = "watchdog";

/// Where a cycle in flight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Opened on its instance, but never started (the start outcome was lost).
    NotStarted,
    /// On `rung`, waiting for `next` to move it.
    Climbing {
        /// The rung reached.
        rung: Rung,
        /// The stage that should move it.
        next: Stage,
    },
    /// Failed, or at its last rung: only its closing is left.
    Ended,
}

impl Standing {
    /// The stage whose outcome is awaited (`None` once the cycle ended).
    pub fn awaited(self) -> Option<Stage> {
        match self {
            Standing::NotStarted => Some(Stage::Capture),
            Standing::Climbing { next, .. } => Some(next),
            Standing::Ended => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Standing::NotStarted => "Opened",
            Standing::Climbing { rung, .. } => rung.label(),
            Standing::Ended => "the end (not closed)",
        }
    }
}

/// What the watchdog did to one cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Failed it `stage_timeout` on `stage`.
    Failed {
        /// The cycle.
        cycle: CycleId,
        /// The stage that should have moved it.
        stage: Stage,
        /// The `Failed` event's detail.
        detail: String,
    },
    /// Closed it on its instance (it had ended, but its close was lost).
    Closed {
        /// The cycle.
        cycle: CycleId,
    },
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Instances with a cycle in flight that were looked at.
    pub in_flight: usize,
    /// What was done, in the order of the instances.
    pub actions: Vec<Action>,
    /// Instances whose check failed on a store error (tried again next round).
    pub errors: usize,
}

/// See the module documentation. One per process; [`Watchdog::run`] it in the background.
pub struct Watchdog {
    pipeline: Pipeline,
    /// This watchdog's holder id for the lease.
    holder: String,
    /// The lease, while held, and when it was taken.
    held: Option<(Lease, DateTime<Utc>)>,
}

impl Watchdog {
    /// A watchdog over `pipeline` (holding nothing yet).
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            holder: uuid::Uuid::new_v4().to_string(),
            held: None,
        }
    }

    /// How long the lease holds without renewal: three rounds, at least 30 s.
    fn lease_ttl_ms(&self) -> i64 {
        let every = self.pipeline.settings.deadlines.check_every * 3;
        i64::try_from(every.max(Duration::from_secs(30)).as_millis()).unwrap_or(i64::MAX)
    }

    /// Takes (or renews) the lease; returns since when it is held, or `None` when another
    /// process holds it. The only place the lease is taken.
    async fn hold_lock(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        if let Some((lease, _)) = &self.held {
            if let Err(error) = self.pipeline.store.renew_lease(lease).await {
                self.held = None;
                if !matches!(error, StoreError::LeaseLost(_)) {
                    return Err(error);
                }
            }
        }
        if self.held.is_none() {
            let ttl = self.lease_ttl_ms();
            if let Some(lease) = self
                .pipeline
                .store
                .acquire_lease(LOCK, &self.holder, ttl)
                .await?
            {
                self.held = Some((lease, Utc::now()));
            }
        }
        Ok(self.held.as_ref().map(|(_, since)| *since))
    }

    /// Forgets the lease (after a store error: the time it was held may not have counted).
    fn let_go(&mut self) {
        self.held = None;
    }

    /// Gives the lease back at once (a clean stop), so another process takes over.
    pub async fn release(mut self) {
        if let Some((lease, _)) = self.held.take() {
            let _ = self.pipeline.store.release_lease(&lease).await;
        }
    }

    /// One round, if this process holds (or can take) the lock; `None` when another process
    /// holds it.
    ///
    /// # Errors
    /// A store error taking the lock or listing the instances (the lock is then let go).
    pub async fn round(&mut self) -> Result<Option<Round>, StoreError> {
        let since = match self.hold_lock().await {
            Ok(Some(since)) => since,
            Ok(None) => return Ok(None),
            Err(error) => {
                self.let_go();
                return Err(error);
            }
        };
        match sweep(&self.pipeline, Utc::now(), Some(since)).await {
            Ok(round) => {
                if round.errors > 0 {
                    self.let_go();
                }
                Ok(Some(round))
            }
            Err(error) => {
                self.let_go();
                Err(error)
            }
        }
    }

    /// A round every [`Deadlines::check_every`] until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let every = self.pipeline.settings.deadlines.check_every;
        crate::periodic::repeat(every, Rounds::Whole, shutdown, &mut self).await;
        self.release().await;
    }
}

impl Periodic for Watchdog {
    async fn once(&mut self) {
        match self.round().await {
            Ok(Some(round)) if !round.actions.is_empty() => {
                tracing::warn!(
                    in_flight = round.in_flight,
                    acted = round.actions.len(),
                    "the watchdog freed instances whose cycles stood still past their deadline"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "the watchdog could not look at the cycles in flight; retrying");
            }
        }
    }
}

/// Looks at every instance with a cycle in flight at `now` (by the schedule index,
/// [`crate::schedule`]) and fails (or closes) those past
/// their deadline. Time before `watching_since` does not count (see the module documentation).
/// Does not take the lock: [`Watchdog::round`] does.
///
/// # Errors
/// A store error listing the instances. A store error on one instance is logged and counted in
/// [`Round::errors`]; the others are still looked at.
pub async fn sweep(
    pipeline: &Pipeline,
    now: DateTime<Utc>,
    watching_since: Option<DateTime<Utc>>,
) -> Result<Round, StoreError> {
    let mut round = Round::default();
    // Only the instances the schedule index holds in flight (brought up to the log first): a
    // round costs what is in flight, not every instance's history.
    crate::schedule::refresh(&pipeline.store).await?;
    for (id, _) in pipeline.store.in_flight_instances().await? {
        match check(pipeline, &id, now, watching_since).await {
            Ok(Checked::Idle) => {}
            Ok(Checked::InFlight(action)) => {
                round.in_flight += 1;
                round.actions.extend(action);
            }
            Err(error) => {
                round.errors += 1;
                tracing::error!(instance = %id, %error, "the watchdog could not check the instance's cycle");
            }
        }
    }
    Ok(round)
}

/// A cycle in flight as the watchdog sees it.
struct InFlight {
    instance: Instance,
    instance_id: String,
    cycle_id: CycleId,
    cycle: BackupCycle,
    standing: Standing,
    /// The time of the cycle's last event (its opening, if it has none).
    last_moved: DateTime<Utc>,
}

/// What checking one instance found.
enum Checked {
    /// No cycle in flight.
    Idle,
    /// A cycle in flight, and what was done to it (if anything).
    InFlight(Option<Action>),
}

/// Checks one instance's cycle in flight against its deadline, and acts.
async fn check(
    pipeline: &Pipeline,
    instance_id: &str,
    now: DateTime<Utc>,
    watching_since: Option<DateTime<Utc>>,
) -> Result<Checked, StoreError> {
    let Some(in_flight) = in_flight(pipeline, instance_id).await? else {
        return Ok(Checked::Idle);
    };
    let since = watching_since.map_or(in_flight.last_moved, |w| w.max(in_flight.last_moved));
    let stood = (now - since).to_std().unwrap_or(Duration::ZERO);
    let settings = &pipeline.settings;
    let limits = &settings.deadlines;
    // The last known size only matters once the deadline of an empty backup has passed.
    let mut deadline = deadline(settings, in_flight.standing, 0);
    if stood > deadline {
        let size = known_size(pipeline, &in_flight).await?;
        deadline = self::deadline(settings, in_flight.standing, size);
    }
    if stood <= deadline {
        return Ok(Checked::InFlight(None));
    }
    let cycle_id = in_flight.cycle_id;
    let Some(stage) = in_flight.standing.awaited() else {
        tracing::warn!(cycle = %cycle_id, instance = instance_id, stood = %human(stood), deadline = %human(limits.close), "closing a cycle whose close was lost");
        close_cycle(pipeline, &in_flight.cycle).await?;
        return Ok(Checked::InFlight(Some(Action::Closed { cycle: cycle_id })));
    };
    let detail = format!(
        "no progress at {} for {} (deadline {})",
        in_flight.standing.label(),
        human(stood),
        human(deadline)
    );
    if in_flight.standing == Standing::NotStarted {
        start(pipeline, &in_flight).await?;
    }
    record(
        pipeline,
        &cycle_id.to_string(),
        stage,
        Err(StageFailure::transient(
            FailureReason::StageTimeout,
            detail.clone(),
        )),
    )
    .await?;
    Ok(Checked::InFlight(Some(Action::Failed {
        cycle: cycle_id,
        stage,
        detail,
    })))
}

/// The instance's cycle in flight with where it stands, or `None`.
async fn in_flight(pipeline: &Pipeline, instance_id: &str) -> Result<Option<InFlight>, StoreError> {
    let instance: Instance = pipeline.store.load(instance_id).await?;
    let Some(cycle_id) = instance.open_cycle else {
        return Ok(None);
    };
    let id = cycle_id.to_string();
    let cycle: BackupCycle = pipeline.store.load(&id).await?;
    let mut last_moved = instance.last_opened_at.unwrap_or_else(Utc::now);
    let mut verified_at = None;
    for event in pipeline.store.history("BackupCycle", &id).await? {
        last_moved = match event.decode::<BackupCycleEvent>()? {
            BackupCycleEvent::CycleStarted(e) => e.started_at,
            BackupCycleEvent::Captured(e) => e.captured_at,
            BackupCycleEvent::Secured(e) => e.secured_at,
            BackupCycleEvent::Verified(e) => {
                verified_at = Some(e.verified_at);
                e.verified_at
            }
            BackupCycleEvent::RestoreTested(e) => e.restore_tested_at,
            BackupCycleEvent::Failed(e) => e.failed_at,
            BackupCycleEvent::Rechecked(e) => e.rechecked_at,
            BackupCycleEvent::RecheckFailed(e) => e.failed_at,
            BackupCycleEvent::LockExtended(e) => e.extended_at,
            BackupCycleEvent::CopyRemoved(e) => e.removed_at,
        };
    }
    let standing = standing(&instance, &cycle, verified_at);
    Ok(Some(InFlight {
        instance,
        instance_id: instance_id.to_owned(),
        cycle_id,
        cycle,
        standing,
        last_moved,
    }))
}

/// Where `cycle` stands; a Verified cycle climbs on only when its instance's restore test is
/// due (the same question the restore-test and close stages ask).
pub fn standing(
    instance: &Instance,
    cycle: &BackupCycle,
    verified_at: Option<DateTime<Utc>>,
) -> Standing {
    if cycle.is_failed() {
        return Standing::Ended;
    }
    let climbing = |rung, next| Standing::Climbing { rung, next };
    match cycle.rung {
        None => Standing::NotStarted,
        Some(Rung::Started) => climbing(Rung::Started, Stage::Capture),
        Some(Rung::Captured) => climbing(Rung::Captured, Stage::Secure),
        Some(Rung::Secured) => climbing(Rung::Secured, Stage::Verify),
        Some(Rung::Verified) => match verified_at {
            Some(at) if instance.restore_test_due(at) => {
                climbing(Rung::Verified, Stage::RestoreTest)
            }
            _ => Standing::Ended,
        },
        Some(Rung::RestoreTested) => Standing::Ended,
    }
}

/// The time limit of `standing` for a backup of `size` bytes.
pub fn deadline(settings: &crate::pipeline::Settings, standing: Standing, size: u64) -> Duration {
    let limits: &Deadlines = &settings.deadlines;
    match standing.awaited() {
        None => limits.close,
        Some(Stage::Capture) => limits
            .capture
            .for_size(size)
            .max(settings.capture_deadline.saturating_add(limits.close)),
        Some(Stage::Secure) => limits.secure.for_size(size),
        Some(Stage::Verify) => limits.verify.for_size(size),
        Some(Stage::RestoreTest) => limits
            .restore_test
            .for_size(size)
            .max(settings.restore_time_limit.saturating_add(limits.close)),
    }
}

/// The size of the cycle's copy once captured; before, the instance's last captured size (0 if
/// none is known).
async fn known_size(pipeline: &Pipeline, in_flight: &InFlight) -> Result<u64, StoreError> {
    if let Some(captured) = &in_flight.cycle.captured {
        return Ok(captured.size);
    }
    let history = pipeline
        .store
        .history("Instance", &in_flight.instance_id)
        .await?;
    for event in history.iter().rev() {
        if event.event_type != "CycleClosed" {
            continue;
        }
        let InstanceEvent::CycleClosed(closed) = event.decode::<InstanceEvent>()? else {
            continue;
        };
        if closed.reached < Rung::Captured {
            continue;
        }
        let earlier: BackupCycle = pipeline.store.load(&closed.cycle_id.to_string()).await?;
        if let Some(captured) = earlier.captured {
            return Ok(captured.size);
        }
    }
    Ok(0)
}

/// Starts a cycle whose start outcome was lost, with the facts the start stage would use.
async fn start(pipeline: &Pipeline, in_flight: &InFlight) -> Result<(), StoreError> {
    let Some(enrolled) = &in_flight.instance.enrolled else {
        return Err(StoreError::Malformed(format!(
            "instance {} holds cycle {} open but is not enrolled",
            in_flight.instance_id, in_flight.cycle_id
        )));
    };
    let history = pipeline
        .store
        .history("Instance", &in_flight.instance_id)
        .await?;
    let opened = history
        .iter()
        .rev()
        .find_map(|event| match event.decode::<InstanceEvent>() {
            Ok(InstanceEvent::CycleOpened(opened)) if opened.cycle_id == in_flight.cycle_id => {
                Some(opened)
            }
            _ => None,
        });
    let Some(opened) = opened else {
        return Err(StoreError::Malformed(format!(
            "instance {} holds cycle {} open but never opened it",
            in_flight.instance_id, in_flight.cycle_id
        )));
    };
    let start = BackupCycleCommand::Start(CycleStarted {
        cycle_id: opened.cycle_id,
        tenant_id: enrolled.tenant_id.clone(),
        instance_id: enrolled.instance_id,
        trigger: opened.trigger,
        started_at: opened.opened_at,
    });
    match pipeline
        .store
        .cycle(&opened.cycle_id.to_string(), start)
        .await
    {
        Err(error) if error.is_refusal() => Ok(()),
        other => other,
    }
}

/// Why an operator's abort was refused.
#[derive(Debug, thiserror::Error)]
pub enum AbortError {
    /// No instance holds the cycle and it has no events.
    #[error("cycle {0} is not known")]
    Unknown(CycleId),
    /// The cycle is closed, or ended and only waits to be closed.
    #[error("cycle {cycle} is not in flight: {why}")]
    NotInFlight {
        /// The cycle.
        cycle: CycleId,
        /// Why not.
        why: String,
    },
    /// The store failed (nothing or part was done; trying again is safe).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cycle an operator aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aborted {
    /// Whose.
    pub tenant: TenantId,
    /// Which instance (now free for its next cycle).
    pub instance: InstanceId,
    /// The stage recorded as failed (the one that should have moved it next).
    pub stage: Stage,
    /// The rung it had reached.
    pub rung: Option<Rung>,
}

/// Aborts a cycle in flight: records `Failed { aborted, retryable: false }` on the stage that
/// should move it next (starting it first if its start was lost), then closes it on its
/// instance at once. The caller audits the action. A cycle that is not in flight (closed, or
/// already ended) is refused.
///
/// # Errors
/// See [`AbortError`].
pub async fn abort(
    pipeline: &Pipeline,
    cycle_id: CycleId,
    detail: &str,
) -> Result<Aborted, AbortError> {
    let id = cycle_id.to_string();
    // A cycle moving on while it is aborted is looked at again (its new rung is failed).
    for _ in 0..5 {
        let cycle: BackupCycle = pipeline.store.load(&id).await?;
        let instance_id = match &cycle.started {
            Some(started) => started.instance_id.to_string(),
            None => holder(pipeline, cycle_id)
                .await?
                .ok_or(AbortError::Unknown(cycle_id))?,
        };
        let not_in_flight = |why: String| AbortError::NotInFlight {
            cycle: cycle_id,
            why,
        };
        let in_flight = match in_flight(pipeline, &instance_id).await? {
            Some(in_flight) if in_flight.cycle_id == cycle_id => in_flight,
            _ => {
                return Err(not_in_flight(match &cycle.failed {
                    Some(failed) => format!("it failed ({}) and is closed", failed.reason),
                    None => format!(
                        "it is closed (reached {})",
                        cycle.rung.map_or("nothing", Rung::label)
                    ),
                }))
            }
        };
        let Some(stage) = in_flight.standing.awaited() else {
            return Err(not_in_flight(match &in_flight.cycle.failed {
                Some(failed) => format!(
                    "it already failed ({}); its instance is freed when it is closed",
                    failed.reason
                ),
                None => format!(
                    "it already reached its last rung ({}); its instance is freed when it is closed",
                    in_flight.cycle.rung.map_or("nothing", Rung::label)
                ),
            }));
        };
        if in_flight.standing == Standing::NotStarted {
            start(pipeline, &in_flight).await?;
        }
        let failure = BackupCycleCommand::RecordFailure(Failed {
            stage,
            reason: FailureReason::Aborted,
            detail: detail.to_owned(),
            retryable: false,
            failed_at: Utc::now(),
        });
        match pipeline.store.cycle(&id, failure).await {
            Err(error) if error.is_refusal() => continue,
            other => other?,
        }
        let cycle: BackupCycle = pipeline.store.load(&id).await?;
        match &cycle.failed {
            Some(failed) if failed.reason == FailureReason::Aborted => {
                close_cycle(pipeline, &cycle).await?;
                let started = cycle.started.as_ref().ok_or_else(|| {
                    StoreError::Malformed(format!("cycle {id} failed but never started"))
                })?;
                return Ok(Aborted {
                    tenant: started.tenant_id.clone(),
                    instance: started.instance_id,
                    stage: failed.stage,
                    rung: cycle.rung,
                });
            }
            _ => continue,
        }
    }
    Err(AbortError::NotInFlight {
        cycle: cycle_id,
        why: "it kept moving while it was aborted; try again".to_owned(),
    })
}

/// The instance holding `cycle` open (a cycle with no events: its start was lost).
async fn holder(pipeline: &Pipeline, cycle: CycleId) -> Result<Option<String>, StoreError> {
    crate::schedule::refresh(&pipeline.store).await?;
    let cycle_text = cycle.to_string();
    let candidates = pipeline.store.in_flight_instances().await?;
    let ids = candidates
        .into_iter()
        .filter(|(_, open)| *open == cycle_text)
        .map(|(id, _)| id);
    for id in ids {
        let instance: Instance = pipeline.store.load(&id).await?;
        if instance.open_cycle == Some(cycle) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// A duration as people read it: `850ms`, `42s`, `12m 5s`, `2h 3m`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadlines::Deadline;
    use crate::pipeline::Settings;

    #[test]
    fn deadlines_grow_with_size_and_never_undercut_a_stage_limit() {
        let settings = Settings::default();
        let gib = 1u64 << 30;
        let secure = Standing::Climbing {
            rung: Rung::Captured,
            next: Stage::Secure,
        };
        assert_eq!(deadline(&settings, secure, 0), Duration::from_secs(600));
        assert_eq!(
            deadline(&settings, secure, 2 * gib),
            Duration::from_secs(1200)
        );
        assert_eq!(
            deadline(&settings, Standing::NotStarted, gib),
            Duration::from_secs(40 * 60)
        );
        assert_eq!(
            deadline(&settings, Standing::Ended, 10 * gib),
            Duration::from_secs(300)
        );
        let short = Settings {
            capture_deadline: Duration::from_secs(3600),
            deadlines: Deadlines {
                capture: Deadline::new(Duration::from_secs(1), Duration::ZERO),
                ..Deadlines::default()
            },
            ..Settings::default()
        };
        assert_eq!(
            deadline(&short, Standing::NotStarted, 0),
            Duration::from_secs(3600 + 300)
        );
    }

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(725)), "12m 5s");
        assert_eq!(human(Duration::from_secs(7380)), "2h 3m");
    }
}
