//! The scheduler: on every tick, opens a cycle for each enrolled, not-stopped instance whose
//! interval has passed and that has no cycle in flight. The instance aggregate enforces "one in
//! flight", so two schedulers (or a scheduler and a manual run) cannot open two cycles.
//!
//! # The index, not the history
//! A tick costs what is due, not what happened: it reads the instances due now from the
//! `instance_schedule` index ([`crate::store::ScheduleRow`]), then loads each and checks
//! `Instance::is_due` before opening its cycle (the aggregate is the truth; the index only
//! narrows). The index is kept from the log by [`refresh`] ([`crate::schedule`]), which every
//! tick runs first, so the index is never behind the log when a tick reads it and needs no
//! other process running; a database migrated to it fills it on the first tick.
//!
//! Lag is safe: a row that is late (another process opened or closed a cycle since) only makes
//! the tick load an instance that turns out not due, or open a cycle one tick later. Rows lost
//! some other way (a table emptied by hand) are found by [`reconcile`], which [`run`] does at
//! start and every [`RECONCILE_EVERY`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use restorable_domain::ids::CycleId;
use restorable_domain::ids::InstanceId;
use restorable_domain::instance::{CycleOpened, Instance, InstanceCommand};
use restorable_domain::ladder::Trigger;
use tokio_util::sync::CancellationToken;

use crate::periodic::{Round, Rounds};
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};

/// Due instances read per page by a tick.
const PAGE: i64 = 500;
/// How often [`run`] checks the index covers every instance.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(3600);

pub use crate::schedule::{rebuild, reconcile, refresh};

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// The instances it opened a cycle for.
    pub opened: Vec<InstanceId>,
    /// How many instance aggregates it loaded to check them (those the index said were due).
    pub loaded: usize,
}

/// Opens a cycle for every instance due now; returns the instances it opened one for.
///
/// # Errors
/// A store failure reading the index or loading instances.
pub async fn tick(pipeline: &Pipeline) -> Result<Vec<InstanceId>, StoreError> {
    Ok(tick_at(&pipeline.store, Utc::now()).await?.opened)
}

/// One tick at `now`: brings the index up to the log, then opens a cycle for every instance it
/// says is due that its aggregate confirms is due.
///
/// # Errors
/// A store failure reading the index or loading instances.
pub async fn tick_at(store: &Store, now: DateTime<Utc>) -> Result<Tick, StoreError> {
    refresh(store).await?;
    let mut tick = Tick::default();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store
            .due_instances(
                now.timestamp_millis(),
                after.as_ref().map(|(t, id)| (*t, id.as_str())),
                PAGE,
            )
            .await?;
        let full = page.len() as i64 == PAGE;
        for (_, id) in &page {
            let instance: Instance = store.load(id).await?;
            tick.loaded += 1;
            let Some(enrolled) = &instance.enrolled else {
                continue;
            };
            if !instance.is_due(now) {
                continue;
            }
            let command = InstanceCommand::OpenCycle(CycleOpened {
                cycle_id: CycleId::random(),
                trigger: Trigger::Scheduled,
                opened_at: Utc::now(),
            });
            match store.instance(id, command).await {
                Ok(()) => tick.opened.push(enrolled.instance_id),
                Err(StoreError::Rejected(why)) => {
                    tracing::debug!(instance = %id, %why, "not opened");
                }
                Err(e) => return Err(e),
            }
        }
        match page.into_iter().last() {
            Some(last) if full => after = Some(last),
            _ => break,
        }
    }
    Ok(tick)
}

/// The instances a full replay of every instance says are due at `now` (what the scheduler
/// did before the index; kept to check the index against, and for operators' tools).
///
/// # Errors
/// A store failure listing or loading instances.
pub async fn due_by_full_scan(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<InstanceId>, StoreError> {
    let mut due = Vec::new();
    for id in store.aggregate_ids("Instance").await? {
        let instance: Instance = store.load(&id).await?;
        if let Some(enrolled) = instance.enrolled.as_ref().filter(|_| instance.is_due(now)) {
            due.push(enrolled.instance_id);
        }
    }
    Ok(due)
}

/// Ticks every `every` until `shutdown` is cancelled, reconciling the index at start and every
/// [`RECONCILE_EVERY`].
pub async fn run(pipeline: Pipeline, every: Duration, shutdown: CancellationToken) {
    let mut ticks = Ticks {
        pipeline,
        reconciled: None,
    };
    crate::periodic::repeat(every, Rounds::Whole, shutdown, &mut ticks).await;
}

/// The scheduler's ticks, one a round, and when the index was last reconciled.
struct Ticks {
    pipeline: Pipeline,
    reconciled: Option<tokio::time::Instant>,
}

impl Round for Ticks {
    async fn once(&mut self) {
        if self
            .reconciled
            .is_none_or(|at| at.elapsed() >= RECONCILE_EVERY)
        {
            match reconcile(&self.pipeline.store).await {
                Ok(_) => self.reconciled = Some(tokio::time::Instant::now()),
                Err(error) => tracing::error!(%error, "the schedule index check failed"),
            }
        }
        match tick(&self.pipeline).await {
            Ok(opened) if !opened.is_empty() => {
                tracing::info!(cycles = opened.len(), "scheduler opened cycles")
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "scheduler tick failed"),
        }
    }
}
