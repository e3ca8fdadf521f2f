//! The projector: keeps the read side ([`ReadModel`]: fleet, backups, alerts, audit) up to date
//! from the event log and stores its rows in the event store's database (`read_model`), written
//! with its checkpoint in one transaction. A process loads the stored rows, then follows the log;
//! only the process holding the store-wide `projector` lock writes (others keep theirs in
//! memory), so two API processes never overwrite each other's rows. The writer also sweeps for
//! stale instances and raises "Backup Stale" alerts.
//!
//! [`rebuild`] empties the views and replays the whole history; the result must equal the live
//! views (a test checks it).

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::Utc;
use restorable_projections::model::{ModelError, ReadModel, RowKey, StoredRow, VIEWS};
use restorable_projections::AnyEvent;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::stages::alerts::raise_stale;
use crate::store::{ExclusiveLock, LoggedEvent, Store, StoreError, ViewRow};

/// The checkpoint of the stored views.
pub const CHECKPOINT: &str = "projections";
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
        let position = store.checkpoint(CHECKPOINT).await?;
        let mut rows = Vec::new();
        for view in VIEWS {
            rows.extend(store.view_rows(view, None).await?);
        }
        let model = ReadModel::from_stored(
            rows.iter()
                .map(|r| (r.view.as_str(), r.key.as_str(), r.doc.as_str())),
        )?;
        Ok(Self {
            model: Arc::new(RwLock::new(model)),
            position: Arc::new(std::sync::atomic::AtomicI64::new(position)),
            changes: broadcast::channel(1024).0,
            unsaved: Arc::default(),
        })
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

    /// Folds the log up to its end; `persist` writes the changed rows and the checkpoint.
    /// Returns the position reached.
    ///
    /// # Errors
    /// A store failure. What was folded stays folded; rows not yet written are written with
    /// the next batch.
    pub async fn catch_up(&self, store: &Store, persist: bool) -> Result<i64, StoreError> {
        loop {
            let from = self.position();
            let batch = store.read_after(from, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
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
            if persist {
                // Rows of a batch whose write failed stay in `unsaved` and go with the next one.
                store
                    .save_view_rows(&view_rows(&rows), CHECKPOINT, last)
                    .await?;
                self.unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
        }
    }

    /// Follows the log until `shutdown`. The holder of the `projector` lock stores the rows
    /// and, every `sweep_every`, raises "Backup Stale" for stale instances.
    pub async fn run(self, store: Store, sweep_every: Duration, shutdown: CancellationToken) {
        let mut writer: Option<ExclusiveLock> = None;
        let notify = store.committed();
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if writer.is_none() {
                writer = store.try_exclusive("projector").await.ok().flatten();
            }
            if let Err(error) = self.catch_up(&store, writer.is_some()).await {
                tracing::error!(%error, "the projector could not fold the log; retrying");
            }
            if writer.is_some() && last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                if let Err(error) = self.sweep_stale(&store).await {
                    tracing::error!(%error, "the stale sweep failed; retrying later");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut notified => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Raises "Backup Stale" for every instance that is stale and has no such alert open.
    ///
    /// # Errors
    /// A store failure.
    pub async fn sweep_stale(&self, store: &Store) -> Result<(), StoreError> {
        let now = Utc::now();
        let stale: Vec<_> = {
            let model = self.read();
            let open: HashSet<_> = model
                .alerts
                .rows()
                .into_iter()
                .filter(|a| {
                    a.resolved_at.is_none()
                        && a.kind == restorable_domain::alert::AlertKind::BackupStale
                })
                .map(|a| a.instance_id)
                .collect();
            model
                .fleet
                .rows()
                .into_iter()
                .filter(|r| r.is_stale(now) && !open.contains(&r.instance_id))
                .map(|r| (r.tenant_id.clone(), r.instance_id, r.last_secured))
                .collect()
        };
        for (tenant, instance, last_secured) in stale {
            raise_stale(store, &tenant, instance, last_secured, now).await?;
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

/// Empties the stored views and folds the whole history again; returns the rebuilt model.
///
/// # Errors
/// A store failure.
pub async fn rebuild(store: &Store) -> Result<ReadModel, ProjectionError> {
    store.clear_views(CHECKPOINT).await?;
    let side = ReadSide::load(store).await?;
    side.catch_up(store, true).await?;
    let model = side.read().clone();
    Ok(model)
}
