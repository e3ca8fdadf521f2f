//! The projector: keeps the read side ([`ReadModel`]: fleet, backups, alerts, audit) up to date
//! from the event log and stores its rows in the event store's database (`read_model`), written
//! with its checkpoint in one transaction. A process loads the stored rows, then follows the log;
//! only the process holding the `projector` lease writes (others keep theirs in memory), and
//! every write checks the lease in its own transaction ([`crate::store::Lease`]: fencing), so a
//! projector that lost its lease in an outage writes nothing more, and the stored checkpoint
//! never moves back. A process that becomes the writer first reloads the stored rows (what it
//! folded while not writing was never stored), so the stored views always equal a rebuild. The
//! writer also sweeps for stale instances and raises "Backup Stale" and "Verify Stale" alerts.
//!
//! [`rebuild`] empties the views and replays the whole history; the result must equal the live
//! views (a test checks it).

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::Utc;
use restorable_domain::cycle::BackupCycleEvent;
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::FleetView;
use restorable_projections::model::{ModelError, ReadModel, RowKey, StoredRow, VIEWS};
use restorable_projections::AnyEvent;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::retry::Backoff;
use crate::stages::alerts::raise_stale;
use crate::store::{Lease, LoggedEvent, Store, StoreError, ViewRow};

/// The checkpoint of the stored views.
pub const CHECKPOINT: &str = "projections";
/// The lease of the process that stores the views.
pub const LEASE: &str = "projector";
/// How long the projector's lease holds without renewal (database clock).
const LEASE_TTL_MS: i64 = 20_000;
/// How often the writer renews its lease while idle.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Events folded per batch.
const BATCH: i64 = 1000;
/// How long the projector waits for a commit before looking at the log anyway.
const IDLE_POLL: Duration = Duration::from_millis(250);

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

/// The read side of one process: the views in memory, following the log.
#[derive(Clone)]
pub struct ReadSide {
    model: Arc<RwLock<ReadModel>>,
    position: Arc<std::sync::atomic::AtomicI64>,
    changes: broadcast::Sender<Changed>,
    /// Rows folded in but not yet stored (their write failed; they go with the next batch).
    unsaved: Arc<std::sync::Mutex<HashSet<RowKey>>>,
}

impl ReadSide {
    /// Loads the stored views and their checkpoint.
    ///
    /// # Errors
    /// A store failure, or a stored row that does not parse.
    pub async fn load(store: &Store) -> Result<Self, ProjectionError> {
        let (model, position) = stored(store).await?;
        Ok(Self {
            model: Arc::new(RwLock::new(model)),
            position: Arc::new(std::sync::atomic::AtomicI64::new(position)),
            changes: broadcast::channel(1024).0,
            unsaved: Arc::default(),
        })
    }

    /// Replaces the views in memory with the stored ones (on becoming the writer).
    async fn reload(&self, store: &Store) -> Result<(), ProjectionError> {
        let (model, position) = stored(store).await?;
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.position
            .store(position, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The views as of now (hold the guard briefly: the projector waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, ReadModel> {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The log position the views include.
    pub fn position(&self) -> i64 {
        self.position.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Changes as they are folded in.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// Folds the log up to its end; under a `writer` lease, writes the changed rows and the
    /// checkpoint. Returns the position reached.
    ///
    /// # Errors
    /// A store failure ([`StoreError::LeaseLost`] when the lease went to another process).
    /// What was folded stays folded; rows not yet written are written with the next batch.
    pub async fn catch_up(&self, store: &Store, writer: Option<&Lease>) -> Result<i64, StoreError> {
        self.catch_up_reporting(store, writer, &mut |_| {}).await
    }

    /// [`ReadSide::catch_up`], calling `progress` with the position reached after every batch
    /// (at most [`BATCH`] events are held at a time).
    async fn catch_up_reporting(
        &self,
        store: &Store,
        writer: Option<&Lease>,
        progress: &mut (dyn FnMut(i64) + Send),
    ) -> Result<i64, StoreError> {
        let persist = writer.is_some();
        loop {
            let from = self.position();
            let batch = store.read_after(from, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                // Rows folded earlier whose write failed are written now, not with the next event.
                if let Some(lease) = writer {
                    self.save_unsaved(store, from, lease).await?;
                }
                return Ok(from);
            };
            let rows: Vec<StoredRow> = {
                let mut model = self.model.write().unwrap_or_else(|p| p.into_inner());
                let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
                let mut changed = Vec::new();
                for logged in &batch {
                    match decode(logged) {
                        Ok(event) => changed.extend(model.apply(logged.position, &event)),
                        Err(error) => {
                            tracing::warn!(%error, "the read side skips an event it cannot decode")
                        }
                    }
                }
                self.position
                    .store(last, std::sync::atomic::Ordering::Release);
                let mut seen = HashSet::new();
                changed.retain(|k| seen.insert(k.clone()));
                let _ = self.changes.send(Changed {
                    position: last,
                    rows: changed.iter().filter_map(|k| model.stored(k)).collect(),
                });
                if persist {
                    unsaved.extend(changed);
                }
                unsaved.iter().filter_map(|k| model.stored(k)).collect()
            };
            if let Some(lease) = writer {
                // Rows of a batch whose write failed stay in `unsaved` and go with the next one.
                store
                    .save_view_rows(&view_rows(&rows), CHECKPOINT, last, lease)
                    .await?;
                self.unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            progress(last);
        }
    }

    /// Folds the log to its end and stores the views now, seizing the `projector` lease for
    /// the time it takes (tools, tests and benchmarks; a running projector reloads after).
    ///
    /// # Errors
    /// A store failure.
    pub async fn catch_up_and_store(&self, store: &Store) -> Result<i64, StoreError> {
        let holder = format!("catch-up-{}", uuid::Uuid::new_v4());
        let lease = store.seize_lease(LEASE, &holder, LEASE_TTL_MS).await?;
        let reached = self.catch_up(store, Some(&lease)).await;
        store.release_lease(&lease).await?;
        reached
    }

    /// Writes the rows folded but not yet stored (their write failed), with the checkpoint at
    /// `position`.
    async fn save_unsaved(
        &self,
        store: &Store,
        position: i64,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let rows: Vec<StoredRow> = {
            let model = self.model.read().unwrap_or_else(|p| p.into_inner());
            let unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            unsaved.iter().filter_map(|k| model.stored(k)).collect()
        };
        if rows.is_empty() {
            return Ok(());
        }
        store
            .save_view_rows(&view_rows(&rows), CHECKPOINT, position, lease)
            .await?;
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// Follows the log until `shutdown`. The holder of the `projector` lease stores the rows
    /// and, every `sweep_every`, raises "Backup Stale" and "Verify Stale" for stale instances. Store errors are
    /// retried with back-off; a lost lease stops the writing until it is held again.
    pub async fn run(self, store: Store, sweep_every: Duration, shutdown: CancellationToken) {
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
                    self.reload(store).await?;
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

fn view_rows(rows: &[StoredRow]) -> Vec<ViewRow> {
    rows.iter()
        .map(|r| ViewRow {
            view: r.view.to_owned(),
            key: r.key.clone(),
            tenant_id: r.tenant_id.clone(),
            doc: r.doc.clone(),
        })
        .collect()
}

/// The stored views and their checkpoint.
async fn stored(store: &Store) -> Result<(ReadModel, i64), ProjectionError> {
    let (position, rows) = store.view_snapshot(&VIEWS, CHECKPOINT).await?;
    let model = ReadModel::from_stored(
        rows.iter()
            .map(|r| (r.view.as_str(), r.key.as_str(), r.doc.as_str())),
    )?;
    Ok((model, position))
}

/// The fleet view as of the end of the log, for a one-off reader (`restorable fleet`): the
/// stored fleet rows and their checkpoint (one snapshot), then the log after it in batches; the
/// owner of a cycle the rows do not know is looked up in the stored `backups` row. Reads what
/// the projector has not stored yet, never the whole history.
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
            if let AnyEvent::Cycle(id, e) = &event {
                let started = matches!(e, BackupCycleEvent::CycleStarted(_));
                if !started && !fleet.knows_cycle(id) {
                    if let Some(row) = store.view_row("backups", id).await? {
                        let backup: BackupRow =
                            serde_json::from_str(&row.doc).map_err(|source| ModelError::Row {
                                view: row.view.clone(),
                                key: row.key.clone(),
                                source,
                            })?;
                        fleet.add_owner(id, backup.instance_id);
                    }
                }
            }
            fleet.apply(&event);
        }
        position = last;
    }
}

/// Empties the stored views and folds the whole history again; returns the rebuilt model. It
/// seizes the `projector` lease for the time being, so a running projector stops writing (and
/// reloads the rebuilt rows when it takes the lease back).
///
/// # Errors
/// A store failure.
pub async fn rebuild(store: &Store) -> Result<ReadModel, ProjectionError> {
    rebuild_reporting(store, &mut |_| {}).await
}

/// [`rebuild`], streaming the log in batches of [`BATCH`] events (each batch's rows stored with
/// the checkpoint before the next is read; events are never all held at once) and calling
/// `progress` with the position reached after each (for a progress bar: the end is
/// [`Store::log_end`]). The views themselves are held in memory, as the running projector
/// holds them.
///
/// # Errors
/// A store failure.
pub async fn rebuild_reporting(
    store: &Store,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<ReadModel, ProjectionError> {
    let holder = format!("rebuild-{}", uuid::Uuid::new_v4());
    let lease = store.seize_lease(LEASE, &holder, 600_000).await?;
    let rebuilt = async {
        store.clear_views(CHECKPOINT).await?;
        let side = ReadSide::load(store).await?;
        side.catch_up_reporting(store, Some(&lease), progress)
            .await?;
        let model = side.read().clone();
        Ok::<_, ProjectionError>(model)
    }
    .await;
    store.release_lease(&lease).await?;
    rebuilt
}
