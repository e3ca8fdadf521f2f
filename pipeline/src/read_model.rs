//! The projector: keeps the read side up to date from the event log and stores its rows in the
//! event store's database (`read_model`), written with its checkpoint in one transaction. Only
//! the process holding the `projector` lease writes, and every write checks the lease in its own
//! transaction ([`crate::store::Lease`]: fencing), so a projector that lost its lease in an
//! outage writes nothing more, and the stored checkpoint never moves back. A process that
//! becomes the writer first reloads the stored rows (what it folded while not writing was never
//! stored), so the stored views always equal a rebuild. The writer also sweeps for stale
//! instances and raises "Backup Stale" and "Verify Stale" alerts.
//!
//! # Memory does not grow with history
//! Memory holds ([`ReadModel`]) a fleet row per instance and, of the alerts, every open one and
//! the [`RESOLVED_HELD`] most recently resolved (older resolved alerts are forgotten once their
//! rows are stored, and read back by [`alert_list`]). The `backups` view (a row per cycle), the
//! `audit` view (a row per recorded action) and the `failures` view (a row per failed cycle) live
//! in the table alone: readers read them per request through indexed queries ([`backup_row`],
//! [`backup_rows_of`]) or a page at a time ([`backup_pages`], [`audit_pages`],
//! [`failure_pages`]). The projector folds a cycle's event into that cycle's
//! row, which it holds in a cache of at most [`CACHED_CYCLES`] rows (least recently folded out
//! first) or loads for the batch: the writer from the table (its rows are as of its own
//! position), another process from the cycle's own few events in the log (its position runs
//! ahead of the stored rows). An audit or failures row is written once and never held. So, folding, a
//! process holds the cache, one batch of [`BATCH`] events and the rows that batch touched; a
//! writer stores them before it reads the next batch (rows whose write failed are written
//! before anything more is folded).
//!
//! [`rebuild`] empties the views and replays the whole history with the same fold, in the same
//! bounded memory (in batches of [`REBUILD_BATCH`] events: a commit per batch is its main
//! cost); the result must equal the live views (a test checks it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use restorable_domain::alert::AlertCommand;
use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_projections::alerts::{AlertRow, AlertState, RESOLVED_HELD};
use restorable_projections::audit::AuditRow;
use restorable_projections::backups::BackupRow;
use restorable_projections::failures::FailureRow;
use restorable_projections::fleet::FleetView;
use restorable_projections::model::{
    parse, position_key, ModelError, ReadModel, RowKey, StoredRow, MEMORY_VIEWS,
};
use restorable_projections::AnyEvent;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::alerting::Reminders;
use crate::retry::Backoff;
use crate::stages::alerts::raise_stale;
use crate::store::{KeyOrder, Lease, LoggedEvent, Store, StoreError, ViewPage, ViewRow};

/// The checkpoint of the stored views.
pub const CHECKPOINT: &str = "projections";
/// The lease of the process that stores the views.
pub const LEASE: &str = "projector";
/// How long the projector's lease holds without renewal (database clock).
const LEASE_TTL_MS: i64 = 20_000;
/// How often the writer renews its lease while idle.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Events folded per batch.
pub const BATCH: i64 = 1000;
/// Events folded per batch by [`rebuild`]: a commit (and, on SQLite, a synchronous WAL write)
/// per batch is its main cost, and nothing waits on its rows meanwhile.
pub const REBUILD_BATCH: i64 = 10_000;
/// How long the projector waits for a commit before looking at the log anyway.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Backups rows a projector keeps between batches (cycles in flight are folded from here
/// without a read; a row pushed out is read again when its cycle moves).
pub const CACHED_CYCLES: usize = 4096;

/// Why the read side failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored view row does not parse (rebuild the views).
    #[error("stored views: {0} (run `restorable projections rebuild`)")]
    Model(#[from] ModelError),
}

/// Decodes one logged event for the read side.
///
/// # Errors
/// [`StoreError::Malformed`] for a payload that does not parse or an unknown aggregate type.
pub fn decode(event: &LoggedEvent) -> Result<AnyEvent, StoreError> {
    let id = event.aggregate_id.clone();
    Ok(match event.aggregate_type.as_str() {
        "BackupCycle" => AnyEvent::Cycle(id, event.decode()?),
        "Instance" => AnyEvent::Instance(id, event.decode()?),
        "TenantKey" => AnyEvent::TenantKey(id, event.decode()?),
        "InstanceAlerts" => AnyEvent::Alerts(id, event.decode()?),
        "AuditTrail" => AnyEvent::Audit(id, event.decode()?),
        other => {
            return Err(StoreError::Malformed(format!(
                "unknown aggregate type {other:?} at position {}",
                event.position
            )))
        }
    })
}

/// Rows that changed, with their tenant: what the live update stream sends.
#[derive(Clone, Debug)]
pub struct Changed {
    /// The log position after the change.
    pub position: i64,
    /// The changed rows, stored form.
    pub rows: Vec<StoredRow>,
}

/// The backups rows a projector holds: at most `capacity` between batches, the least recently
/// folded pushed out first.
#[derive(Debug)]
struct CycleCache {
    capacity: usize,
    rows: HashMap<CycleId, (u64, BackupRow)>,
    order: BTreeMap<u64, CycleId>,
    tick: u64,
    peak: usize,
}

impl CycleCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            rows: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            peak: 0,
        }
    }

    fn contains(&self, id: &CycleId) -> bool {
        self.rows.contains_key(id)
    }

    fn get(&self, id: &CycleId) -> Option<&BackupRow> {
        self.rows.get(id).map(|(_, row)| row)
    }

    fn take(&mut self, id: &CycleId) -> Option<BackupRow> {
        let (tick, row) = self.rows.remove(id)?;
        self.order.remove(&tick);
        Some(row)
    }

    /// Holds `row` as the most recently folded.
    fn put(&mut self, row: BackupRow) {
        let id = row.cycle_id;
        let _ = self.take(&id);
        self.tick += 1;
        self.order.insert(self.tick, id);
        self.rows.insert(id, (self.tick, row));
        self.peak = self.peak.max(self.rows.len());
    }

    /// Pushes out the least recently folded rows beyond the capacity (only rows already
    /// stored, or not to be stored: called when nothing is left unsaved).
    fn shrink(&mut self) {
        while self.rows.len() > self.capacity {
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            self.rows.remove(&id);
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.order.clear();
    }
}

/// Rows folded in but not yet stored (a writer) or announced (another process).
#[derive(Debug, Default)]
struct Unsaved {
    memory: HashSet<RowKey>,
    backups: HashSet<CycleId>,
    audit: Vec<AuditRow>,
    failures: Vec<FailureRow>,
}

impl Unsaved {
    fn is_empty(&self) -> bool {
        self.memory.is_empty()
            && self.backups.is_empty()
            && self.audit.is_empty()
            && self.failures.is_empty()
    }
}

/// The projector's working state, held by one fold at a time.
#[derive(Debug)]
struct Work {
    /// The last position folded (ahead of the published position while its rows are unsaved).
    folded: i64,
    /// Events folded per batch.
    batch: i64,
    cycles: CycleCache,
    /// Resolved alerts held at most between batches.
    resolved_alerts: usize,
    unsaved: Unsaved,
}

/// What a read side holds at most between batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Backups rows ([`CACHED_CYCLES`]).
    pub cycles: usize,
    /// Resolved alerts ([`RESOLVED_HELD`]).
    pub resolved_alerts: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            cycles: CACHED_CYCLES,
            resolved_alerts: RESOLVED_HELD,
        }
    }
}

/// How large the projector's cache of backups rows got: for tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUse {
    /// Rows held now.
    pub held: usize,
    /// The most rows ever held at once (while folding a batch: the cache plus the batch's rows).
    pub peak: usize,
    /// Rows held between batches at most.
    pub capacity: usize,
}

/// The read side of one process: the fleet and alert views in memory, following the log; the
/// views that grow with every cycle in the table.
#[derive(Clone)]
pub struct ReadSide {
    model: Arc<RwLock<ReadModel>>,
    position: Arc<AtomicI64>,
    changes: broadcast::Sender<Changed>,
    work: Arc<tokio::sync::Mutex<Work>>,
}

impl ReadSide {
    /// Loads the stored views held in memory and their checkpoint.
    ///
    /// # Errors
    /// A store failure, or a stored row that does not parse.
    pub async fn load(store: &Store) -> Result<Self, ProjectionError> {
        Self::load_caching(store, CACHED_CYCLES).await
    }

    /// [`ReadSide::load`], holding at most `cycles` backups rows between batches (tests use a
    /// small cache, so rows are pushed out and read back often).
    ///
    /// # Errors
    /// As [`ReadSide::load`].
    pub async fn load_caching(store: &Store, cycles: usize) -> Result<Self, ProjectionError> {
        Self::load_bounded(
            store,
            Bounds {
                cycles,
                ..Bounds::default()
            },
        )
        .await
    }

    /// [`ReadSide::load`] within `bounds` (tests use small ones, so rows are pushed out and
    /// read back often).
    ///
    /// # Errors
    /// As [`ReadSide::load`].
    pub async fn load_bounded(store: &Store, bounds: Bounds) -> Result<Self, ProjectionError> {
        let Bounds {
            cycles,
            resolved_alerts,
        } = bounds;
        let (model, position) = stored(store, resolved_alerts).await?;
        Ok(Self {
            model: Arc::new(RwLock::new(model)),
            position: Arc::new(AtomicI64::new(position)),
            changes: broadcast::channel(1024).0,
            work: Arc::new(tokio::sync::Mutex::new(Work {
                folded: position,
                batch: BATCH,
                cycles: CycleCache::new(cycles),
                resolved_alerts,
                unsaved: Unsaved::default(),
            })),
        })
    }

    /// Replaces the views in memory with the stored ones and drops what was folded but not
    /// stored (on becoming the writer).
    async fn reload(&self, store: &Store, work: &mut Work) -> Result<(), ProjectionError> {
        let (model, position) = stored(store, work.resolved_alerts).await?;
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
        work.cycles.clear();
        work.unsaved = Unsaved::default();
        work.folded = position;
        self.position.store(position, Ordering::Release);
        Ok(())
    }

    /// The views held in memory as of now (hold the guard briefly: the projector waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, ReadModel> {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The log position the views include (for a writer: the stored checkpoint, so the rows
    /// read from the table include it too).
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// Changes as they are folded in (a writer's once stored).
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// How large the cache of backups rows is and got.
    pub async fn cache_use(&self) -> CacheUse {
        let work = self.work.lock().await;
        CacheUse {
            held: work.cycles.rows.len(),
            peak: work.cycles.peak,
            capacity: work.cycles.capacity,
        }
    }

    /// Folds the log up to its end; under a `writer` lease, writes the changed rows and the
    /// checkpoint. Returns the position reached.
    ///
    /// # Errors
    /// A store failure ([`StoreError::LeaseLost`] when the lease went to another process).
    /// What was folded stays folded; rows not yet written are written before the next batch.
    pub async fn catch_up(&self, store: &Store, writer: Option<&Lease>) -> Result<i64, StoreError> {
        let mut work = self.work.lock().await;
        self.catch_up_reporting(store, &mut work, writer, &mut |_| {})
            .await
    }

    /// [`ReadSide::catch_up`], calling `progress` with the position reached after every batch
    /// (at most one batch of events — [`BATCH`], or [`REBUILD_BATCH`] rebuilding — is held at a
    /// time).
    async fn catch_up_reporting(
        &self,
        store: &Store,
        work: &mut Work,
        writer: Option<&Lease>,
        progress: &mut (dyn FnMut(i64) + Send),
    ) -> Result<i64, StoreError> {
        loop {
            // Rows folded earlier whose write failed are written before anything more is read.
            self.settle(store, work, writer).await?;
            let batch = store.read_after(work.folded, work.batch).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(work.folded);
            };
            let events: Vec<(i64, AnyEvent)> = batch
                .iter()
                .filter_map(|logged| match decode(logged) {
                    Ok(event) => Some((logged.position, event)),
                    Err(error) => {
                        tracing::warn!(%error, "the read side skips an event it cannot decode");
                        None
                    }
                })
                .collect();
            drop(batch);
            self.load_cycles(store, work, &events, writer.is_some())
                .await?;
            {
                let mut model = self.model.write().unwrap_or_else(|p| p.into_inner());
                for (position, event) in &events {
                    let id = cycle_of(event);
                    let mut row = id.and_then(|id| work.cycles.take(&id));
                    let folded = model.apply(*position, event, &mut row);
                    if let Some(row) = row {
                        work.cycles.put(row);
                    }
                    work.unsaved.memory.extend(folded.memory);
                    work.unsaved.backups.extend(folded.backup);
                    work.unsaved.audit.extend(folded.audit);
                    work.unsaved.failures.extend(folded.failure);
                }
            }
            work.folded = last;
            self.settle(store, work, writer).await?;
            progress(last);
        }
    }

    /// Holds the backups row of every cycle `events` move on from an earlier batch: from the
    /// cache, else read — by a `writer` from the table (its rows are as of `work.folded`), by
    /// another process from the cycle's events up to `work.folded` (it may be ahead of the
    /// table).
    async fn load_cycles(
        &self,
        store: &Store,
        work: &mut Work,
        events: &[(i64, AnyEvent)],
        writer: bool,
    ) -> Result<(), StoreError> {
        let mut started = HashSet::new();
        let mut missing = Vec::new();
        for (_, event) in events {
            let AnyEvent::Cycle(_, e) = event else {
                continue;
            };
            let Some(id) = cycle_of(event) else {
                continue;
            };
            if matches!(e, BackupCycleEvent::CycleStarted(_)) {
                started.insert(id);
            } else if !started.contains(&id) && !work.cycles.contains(&id) {
                started.insert(id); // asked for once
                missing.push(id);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if writer {
            let keys: Vec<String> = missing.iter().map(ToString::to_string).collect();
            for chunk in keys.chunks(500) {
                for row in store.view_rows_keyed("backups", chunk).await? {
                    let backup: BackupRow = parse(&row.view, &row.key, &row.doc)
                        .map_err(|e| StoreError::Malformed(e.to_string()))?;
                    work.cycles.put(backup);
                }
            }
        } else {
            for id in missing {
                let history = store.history("BackupCycle", &id.to_string()).await?;
                let events: Vec<BackupCycleEvent> = history
                    .iter()
                    .filter(|e| e.position <= work.folded)
                    .filter_map(|e| e.decode().ok())
                    .collect();
                if let Some(row) = BackupRow::from_events(&events) {
                    work.cycles.put(row);
                }
            }
        }
        Ok(())
    }

    /// Stores (a `writer`) or announces (another process) what was folded and not yet: the
    /// rows with the checkpoint at `work.folded`, in one transaction under the lease; then
    /// publishes the position, sends the rows to [`ReadSide::subscribe`]rs and trims the cache.
    async fn settle(
        &self,
        store: &Store,
        work: &mut Work,
        writer: Option<&Lease>,
    ) -> Result<(), StoreError> {
        if work.unsaved.is_empty() && work.folded == self.position() {
            return Ok(());
        }
        let rows = self.unsaved_rows(work);
        if let Some(lease) = writer {
            store
                .save_view_rows(&view_rows(&rows), CHECKPOINT, work.folded, lease)
                .await?;
        }
        work.unsaved = Unsaved::default();
        work.cycles.shrink();
        self.model
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .alerts
            .forget_resolved_beyond(work.resolved_alerts);
        self.position.store(work.folded, Ordering::Release);
        let _ = self.changes.send(Changed {
            position: work.folded,
            rows,
        });
        Ok(())
    }

    /// The unsaved rows, stored form.
    fn unsaved_rows(&self, work: &Work) -> Vec<StoredRow> {
        let model = self.read();
        let mut rows: Vec<StoredRow> = work
            .unsaved
            .memory
            .iter()
            .filter_map(|k| model.stored(k))
            .collect();
        rows.extend(
            work.unsaved
                .backups
                .iter()
                .filter_map(|id| work.cycles.get(id))
                .map(StoredRow::backup),
        );
        rows.extend(work.unsaved.audit.iter().map(StoredRow::audit));
        rows.extend(work.unsaved.failures.iter().map(StoredRow::failure));
        rows
    }

    /// Folds the log to its end and stores the views now, seizing the `projector` lease for
    /// the time it takes (tools, tests and benchmarks; a running projector reloads after). What
    /// this process folded without storing is dropped first: it starts from the stored rows.
    ///
    /// # Errors
    /// A store failure.
    pub async fn catch_up_and_store(&self, store: &Store) -> Result<i64, ProjectionError> {
        let holder = format!("catch-up-{}", uuid::Uuid::new_v4());
        let lease = store.seize_lease(LEASE, &holder, LEASE_TTL_MS).await?;
        let reached = async {
            let mut work = self.work.lock().await;
            if work.folded != store.checkpoint(CHECKPOINT).await? || !work.unsaved.is_empty() {
                self.reload(store, &mut work).await?;
            }
            Ok::<_, ProjectionError>(
                self.catch_up_reporting(store, &mut work, Some(&lease), &mut |_| {})
                    .await?,
            )
        }
        .await;
        store.release_lease(&lease).await?;
        reached
    }

    /// Follows the log until `shutdown`. The holder of the `projector` lease stores the rows
    /// and, every `sweep_every`, raises "Backup Stale" and "Verify Stale" for stale instances.
    /// Store errors are retried with back-off; a lost lease stops the writing until it is held
    /// again.
    pub async fn run(self, store: Store, sweep_every: Duration, shutdown: CancellationToken) {
        self.run_reminding(store, sweep_every, Reminders::default(), shutdown)
            .await;
    }

    /// [`ReadSide::run`], the sweep also asking for the `reminders` that are due
    /// ([`ReadSide::sweep_reminders`]).
    pub async fn run_reminding(
        self,
        store: Store,
        sweep_every: Duration,
        reminders: Reminders,
        shutdown: CancellationToken,
    ) {
        let holder = uuid::Uuid::new_v4().to_string();
        let mut writer: Option<Lease> = None;
        let mut renewed = tokio::time::Instant::now();
        let notify = store.committed();
        let mut last_sweep = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10));
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let outcome = self.round(&store, &holder, &mut writer, &mut renewed).await;
            let pause = match outcome {
                Ok(()) => {
                    backoff.reset();
                    None
                }
                Err(error) => {
                    tracing::error!(%error, "the projector could not fold the log; retrying");
                    Some(backoff.next_delay())
                }
            };
            if writer.is_some() && pause.is_none() && last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                if let Err(error) = self.sweep_stale(&store).await {
                    tracing::error!(%error, "the stale sweep failed; retrying later");
                }
                if let Err(error) = self.sweep_reminders(&store, &reminders).await {
                    tracing::error!(%error, "the reminder sweep failed; retrying later");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = &mut notified, if pause.is_none() => {}
                () = tokio::time::sleep(pause.unwrap_or(IDLE_POLL)) => {}
            }
        }
        if let Some(lease) = writer {
            let _ = store.release_lease(&lease).await;
        }
    }

    /// One round of [`ReadSide::run`]: take or renew the lease, then catch up.
    async fn round(
        &self,
        store: &Store,
        holder: &str,
        writer: &mut Option<Lease>,
        renewed: &mut tokio::time::Instant,
    ) -> Result<(), ProjectionError> {
        match writer {
            None => {
                if let Some(lease) = store.acquire_lease(LEASE, holder, LEASE_TTL_MS).await? {
                    // What this process folded while another wrote was never stored here.
                    let mut work = self.work.lock().await;
                    self.reload(store, &mut work).await?;
                    tracing::info!(epoch = lease.epoch, "this process now stores the views");
                    *writer = Some(lease);
                    *renewed = tokio::time::Instant::now();
                }
            }
            Some(lease) if renewed.elapsed() >= RENEW_EVERY => {
                if let Err(error) = store.renew_lease(lease).await {
                    *writer = None;
                    tracing::warn!(%error, "the projector stopped storing the views");
                    return Err(error.into());
                }
                *renewed = tokio::time::Instant::now();
            }
            Some(_) => {}
        }
        match self.catch_up(store, writer.as_ref()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                if matches!(error, StoreError::LeaseLost(_)) {
                    *writer = None;
                }
                Err(error.into())
            }
        }
    }

    /// Raises "Backup Stale" or "Verify Stale" for every instance that is so and has no such alert open.
    ///
    /// # Errors
    /// A store failure.
    pub async fn sweep_stale(&self, store: &Store) -> Result<(), StoreError> {
        use restorable_domain::alert::AlertKind;
        let now = Utc::now();
        let position = self.position();
        let stale: Vec<_> = {
            let model = self.read();
            let open: HashSet<_> = model
                .alerts
                .rows()
                .into_iter()
                .filter(|a| a.resolved_at.is_none())
                .map(|a| (a.instance_id, a.kind))
                .collect();
            let mut stale = Vec::new();
            for row in model.fleet.rows() {
                // An open Backup Failed already says it: no second alert for one problem.
                let failing = open.contains(&(row.instance_id, AlertKind::BackupFailed));
                let due = [
                    (AlertKind::BackupStale, row.is_stale(now), row.last_secured),
                    (
                        AlertKind::VerifyStale,
                        row.is_verify_stale(now) && !failing,
                        row.last_verified,
                    ),
                ];
                for (kind, is_due, last) in due {
                    if is_due && !open.contains(&(row.instance_id, kind)) {
                        stale.push((kind, row.tenant_id.clone(), row.instance_id, last));
                    }
                }
            }
            stale
        };
        for (kind, tenant, instance, last) in stale {
            raise_stale(store, kind, &tenant, instance, last, position, now).await?;
        }
        Ok(())
    }
}

impl ReadSide {
    /// Asks each open alert's aggregate for the reminders `reminders` say are due now: for
    /// every timed route of its tenant not in its quiet hours now, if the alert is open, not
    /// acknowledged, not snoozed, and either that long since its raise or that route's last
    /// reminder, or its raise fell in the route's quiet hours and the route was never told (a
    /// catch-up: see [`crate::alerting::quiet`]). The view's word is checked again by the
    /// aggregate, so two sweeps asking at once remind once. The `AlertReminded` events are
    /// delivered to their route by `alert_delivery`.
    ///
    /// # Errors
    /// A store failure (the rest are asked at the next sweep).
    pub async fn sweep_reminders(
        &self,
        store: &Store,
        reminders: &Reminders,
    ) -> Result<(), StoreError> {
        if reminders.0.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let due: Vec<(InstanceId, AlertCommand)> = {
            let model = self.read();
            let mut due = Vec::new();
            for alert in model.alerts.open() {
                let Some(times) = reminders.0.get(&alert.tenant_id) else {
                    continue;
                };
                for route in times.timed_routes() {
                    if times.holds(route, alert.kind, alert.instance_id, now) {
                        continue; // quiet now: nothing until the quiet hours end
                    }
                    let every_hours = times.remind_every_hours.get(route).copied().unwrap_or(0);
                    let catch_up =
                        times.holds(route, alert.kind, alert.instance_id, alert.raised_at)
                            && !alert.reminded.contains_key(route);
                    let wanted = alert.state(now) == AlertState::Open;
                    if (catch_up && wanted) || alert.reminder_due(route, every_hours, now) {
                        due.push((
                            alert.instance_id,
                            AlertCommand::Remind {
                                alert_id: alert.alert_id.clone(),
                                route: route.to_owned(),
                                every_hours,
                                catch_up,
                                at: now,
                            },
                        ));
                    }
                }
            }
            due
        };
        for (instance, command) in due {
            store.alerts(&instance.to_string(), command).await?;
        }
        Ok(())
    }
}

/// The cycle an event moves, if it is a cycle's.
fn cycle_of(event: &AnyEvent) -> Option<CycleId> {
    match event {
        AnyEvent::Cycle(_, BackupCycleEvent::CycleStarted(e)) => Some(e.cycle_id),
        AnyEvent::Cycle(id, _) => id.parse().ok(),
        _ => None,
    }
}

fn view_rows(rows: &[StoredRow]) -> Vec<ViewRow> {
    rows.iter()
        .map(|r| ViewRow {
            view: r.view.to_owned(),
            key: r.key.clone(),
            tenant_id: r.tenant_id.clone(),
            instance_id: r.instance_id.clone(),
            doc: r.doc.clone(),
        })
        .collect()
}

/// The stored views held in memory (of the resolved alerts, the `resolved_held` latest) and
/// their checkpoint.
async fn stored(store: &Store, resolved_held: usize) -> Result<(ReadModel, i64), ProjectionError> {
    let (position, rows) = store.view_snapshot(&MEMORY_VIEWS, CHECKPOINT).await?;
    let mut model = ReadModel::from_stored(
        rows.iter()
            .map(|r| (r.view.as_str(), r.key.as_str(), r.doc.as_str())),
    )?;
    model.alerts.forget_resolved_beyond(resolved_held);
    Ok((model, position))
}

/// Parses stored rows of one view.
fn parse_rows<T: serde::de::DeserializeOwned>(rows: &[ViewRow]) -> Result<Vec<T>, ModelError> {
    rows.iter()
        .map(|r| parse(&r.view, &r.key, &r.doc))
        .collect()
}

/// The stored `backups` row of `cycle` (primary key).
///
/// # Errors
/// A store failure, or a stored row that does not parse.
pub async fn backup_row(
    store: &Store,
    cycle: &CycleId,
) -> Result<Option<BackupRow>, ProjectionError> {
    match store.view_row("backups", &cycle.to_string()).await? {
        Some(row) => Ok(Some(parse(&row.view, &row.key, &row.doc)?)),
        None => Ok(None),
    }
}

/// Every stored cycle of `instance`, newest first (`read_model_by_instance`).
///
/// # Errors
/// A store failure, or a stored row that does not parse.
pub async fn backup_rows_of(
    store: &Store,
    instance: &InstanceId,
) -> Result<Vec<BackupRow>, ProjectionError> {
    let mut rows: Vec<BackupRow> = parse_rows(&store.backup_rows_of(&instance.to_string()).await?)?;
    restorable_projections::backups::newest_first(&mut rows);
    Ok(rows)
}

/// Rows per page of [`RowPages`]: enough that a page's round trip is small beside its rows,
/// few enough that a page of the largest rows stays far under a megabyte.
pub const PAGE_ROWS: i64 = 500;

/// The stored rows of one view, read a page at a time ([`Store::view_page`]): an answer that
/// lists a view growing with history (every cycle, every audited action) is written as it is
/// read and holds one page, never the view.
pub struct RowPages<T> {
    store: Store,
    view: &'static str,
    tenant: Option<String>,
    order: KeyOrder,
    after: Option<String>,
    done: bool,
    keep: Box<dyn Fn(&T) -> bool + Send + Sync>,
}

impl<T> RowPages<T> {
    /// The same reading, from the row after the one at log `position` on (views keyed by
    /// position: `audit`, `failures`); newest first, that is the rows older than it.
    #[must_use]
    pub fn before_position(mut self, position: i64) -> Self {
        self.after = Some(position_key(position));
        self
    }
}

impl<T: serde::de::DeserializeOwned> RowPages<T> {
    fn new(store: &Store, view: &'static str, tenant: Option<&str>, order: KeyOrder) -> Self {
        Self {
            store: store.clone(),
            view,
            tenant: tenant.map(str::to_owned),
            order,
            after: None,
            done: false,
            keep: Box::new(|_| true),
        }
    }

    /// The next page (only the rows the reading keeps: it may be empty), or `None` after the
    /// last.
    ///
    /// # Errors
    /// A store failure, or a stored row that does not parse (the reading cannot go on: the
    /// answer must fail, not end early as if complete).
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, ProjectionError> {
        if self.done {
            return Ok(None);
        }
        let rows = self
            .store
            .view_page(&ViewPage {
                view: self.view,
                tenant: self.tenant.as_deref(),
                order: self.order,
                after: self.after.as_deref(),
                limit: PAGE_ROWS,
            })
            .await?;
        self.done = rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX);
        match rows.last() {
            Some(last) => self.after = Some(last.key.clone()),
            None => return Ok(None),
        }
        let mut rows: Vec<T> = parse_rows(&rows)?;
        rows.retain(|row| (self.keep)(row));
        Ok(Some(rows))
    }
}

/// Every stored cycle of one tenant or, with `None`, of all, by cycle id, a page at a time.
pub fn backup_pages(store: &Store, tenant: Option<&str>) -> RowPages<BackupRow> {
    RowPages::new(store, "backups", tenant, KeyOrder::Ascending)
}

/// Every stored audit record of one tenant or, with `None`, of all, newest first (keys are
/// zero-padded log positions), a page at a time.
pub fn audit_pages(store: &Store, tenant: Option<&str>) -> RowPages<AuditRow> {
    RowPages::new(store, "audit", tenant, KeyOrder::Descending)
}

/// Every failed cycle of one tenant or, with `None`, of all, newest first (keys are zero-padded
/// log positions), a page at a time.
pub fn failure_pages(store: &Store, tenant: Option<&str>) -> RowPages<FailureRow> {
    RowPages::new(store, "failures", tenant, KeyOrder::Descending)
}

/// How far out of log order a failure's time may be (workers' clocks differ): reading the
/// failures view newest first, [`failures_between`] reads on until a page ends this much before
/// the window's start.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::hours(1);

/// The failed cycles of a window: how many, and the newest few.
#[derive(Debug, Default)]
pub struct FailuresBetween {
    /// Every failure of the window.
    pub count: usize,
    /// The newest (by log position) of them, at most as many as asked for, in log order
    /// newest first.
    pub newest: Vec<FailureRow>,
}

/// The failed cycles of one tenant or, with `None`, of all whose failure time is within
/// `[from, to]`: counted, and the newest `keep` kept. Read newest first a page at a time,
/// stopping after the first page that lies wholly before `from` less [`CLOCK_SKEW`]: never the
/// whole history.
///
/// # Errors
/// A store failure, or a stored row that does not parse.
pub async fn failures_between(
    store: &Store,
    tenant: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    keep: usize,
) -> Result<FailuresBetween, ProjectionError> {
    let mut found = FailuresBetween::default();
    let mut pages = failure_pages(store, tenant);
    while let Some(page) = pages.next_page().await? {
        let mut older = true;
        for failure in page {
            if failure.failed_at >= from - CLOCK_SKEW {
                older = false;
            }
            if failure.failed_at < from || failure.failed_at > to {
                continue;
            }
            found.count += 1;
            if found.newest.len() < keep {
                found.newest.push(failure);
            }
        }
        if older {
            break;
        }
    }
    Ok(found)
}

/// Every alert of one tenant or, with `None`, of all: those `read` holds, newest first (every
/// open alert and the [`RESOLVED_HELD`] most recently resolved: see
/// [`restorable_projections::alerts`]), then the older resolved ones from storage, by id, a
/// page at a time. `visible` chooses among the held alerts (the caller's scope; storage is read
/// by `tenant`).
///
/// An alert is in one part only: the stored part keeps a resolved row whose (resolution time,
/// id) is below the least of the held resolved alerts, and every held one is at or above it;
/// open alerts come from memory alone (a stored open row may be older than the alert's
/// resolution in memory).
pub fn alert_list(
    read: &ReadSide,
    store: &Store,
    tenant: Option<&str>,
    visible: impl Fn(&AlertRow) -> bool,
) -> AlertList {
    let model = read.read();
    let rows = model.alerts.rows();
    let held: Vec<AlertRow> = rows
        .iter()
        .filter(|r| visible(r))
        .map(|r| (*r).clone())
        .collect();
    let below = rows
        .iter()
        .filter_map(|r| r.resolved_at.map(|at| (at, r.alert_id.clone())))
        .min();
    drop(model);
    let mut older = RowPages::new(store, "alerts", tenant, KeyOrder::Ascending);
    older.keep = Box::new(move |row: &AlertRow| match row.resolved_at {
        None => false,
        Some(at) => below
            .as_ref()
            .is_none_or(|(least, id)| (at, &row.alert_id) < (*least, id)),
    });
    AlertList { held, older }
}

/// See [`alert_list`].
pub struct AlertList {
    /// The alerts held in memory, newest first.
    pub held: Vec<AlertRow>,
    /// The older resolved alerts, from storage.
    pub older: RowPages<AlertRow>,
}

/// The fleet view as of the end of the log, for a one-off reader (`restorable fleet`): the
/// stored fleet rows and their checkpoint (one snapshot), then the log after it in batches; the
/// owner of a cycle started before the checkpoint is looked up in its stored `backups` row.
/// Reads what the projector has not stored yet, never the whole history.
///
/// # Errors
/// A store failure, or a stored row that does not parse.
pub async fn fleet_now(store: &Store) -> Result<FleetView, ProjectionError> {
    let (mut position, rows) = store.view_snapshot(&["fleet"], CHECKPOINT).await?;
    let stored = ReadModel::from_stored(
        rows.iter()
            .map(|r| (r.view.as_str(), r.key.as_str(), r.doc.as_str())),
    )?;
    let mut fleet = stored.fleet;
    // The cycles of the log after the checkpoint (what the projector has not stored).
    let mut owners: HashMap<CycleId, Option<InstanceId>> = HashMap::new();
    loop {
        let batch = store.read_after(position, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(fleet);
        };
        for logged in &batch {
            let event = match decode(logged) {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, "skipping an event the read side cannot decode");
                    continue;
                }
            };
            let mut owner = None;
            if let (AnyEvent::Cycle(_, e), Some(id)) = (&event, cycle_of(&event)) {
                owner = match e {
                    BackupCycleEvent::CycleStarted(started) => Some(started.instance_id),
                    _ => match owners.get(&id) {
                        Some(known) => *known,
                        None => backup_row(store, &id).await?.map(|row| row.instance_id),
                    },
                };
                owners.insert(id, owner);
            }
            fleet.apply(&event, owner);
        }
        position = last;
    }
}

/// Empties the stored views and folds the whole history again; returns the rebuilt views held
/// in memory (the others are in the table). It seizes the `projector` lease for the time being,
/// so a running projector stops writing (and reloads the rebuilt rows when it takes the lease
/// back).
///
/// # Errors
/// A store failure.
pub async fn rebuild(store: &Store) -> Result<ReadModel, ProjectionError> {
    rebuild_reporting(store, &mut |_| {}).await
}

/// [`rebuild`], streaming the log in batches of [`REBUILD_BATCH`] events (each batch's rows stored with
/// the checkpoint before the next is read) and calling `progress` with the position reached
/// after each (for a progress bar: the end is [`Store::log_end`]). It folds exactly as the live
/// projector does, so its memory is bounded as the projector's is: the fleet and alert rows,
/// [`CACHED_CYCLES`] backups rows and one batch, whatever the length of the history.
///
/// # Errors
/// A store failure.
pub async fn rebuild_reporting(
    store: &Store,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<ReadModel, ProjectionError> {
    rebuild_caching(store, Bounds::default(), REBUILD_BATCH, progress)
        .await
        .map(|side| side.read().clone())
}

/// [`rebuild_reporting`] within `bounds`, folding `batch` events at a time; returns the read
/// side it rebuilt with (to look at its cache: tests and benchmarks).
///
/// # Errors
/// A store failure.
pub async fn rebuild_caching(
    store: &Store,
    bounds: Bounds,
    batch: i64,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<ReadSide, ProjectionError> {
    let holder = format!("rebuild-{}", uuid::Uuid::new_v4());
    let lease = store.seize_lease(LEASE, &holder, 600_000).await?;
    let rebuilt = async {
        store.clear_views(CHECKPOINT).await?;
        let side = ReadSide::load_bounded(store, bounds).await?;
        {
            let mut work = side.work.lock().await;
            work.batch = batch;
            side.catch_up_reporting(store, &mut work, Some(&lease), progress)
                .await?;
        }
        Ok::<_, ProjectionError>(side)
    }
    .await;
    store.release_lease(&lease).await?;
    rebuilt
}
