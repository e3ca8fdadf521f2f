//! All views together, as the projector keeps them: each row has a key within its view and a
//! tenant (the API filters on it), and is stored as a JSON document.
//!
//! Only two views are held whole in memory ([`ReadModel`]): a fleet row per instance, and the
//! alerts (a row per alert raised: it grows with failure episodes, not with cycles). The three that grow with history stay in storage: `backups`
//! (a row per cycle, a fold over that cycle's own few events: the projector passes in the row an
//! event touches), `audit` (a row per recorded action, written once) and `failures` (a row per
//! failed cycle, written once). Folding an event returns
//! what it changed, so only those rows are written.

use restorable_domain::ids::{CycleId, InstanceId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::alerts::{AlertRow, AlertView};
use crate::audit::AuditRow;
use crate::backups::BackupRow;
use crate::failures::FailureRow;
use crate::fleet::{FleetRow, FleetView};
use crate::AnyEvent;

/// The key of a row of a view written once per event (`audit`, `failures`): its log position
/// zero-padded, so keys sort in log order.
pub fn position_key(position: i64) -> String {
    format!("{position:020}")
}

/// The name of each view in storage.
pub const VIEWS: [&str; 5] = ["fleet", "backups", "alerts", "audit", "failures"];

/// The views held whole in memory (they grow with instances and alerts raised, not with cycles).
pub const MEMORY_VIEWS: [&str; 2] = ["fleet", "alerts"];

/// A row of one of the views held in memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RowKey {
    /// A fleet row.
    Fleet(InstanceId),
    /// An alert row.
    Alert(String),
}

/// What folding one event changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Folded {
    /// Rows of the views in memory.
    pub memory: Vec<RowKey>,
    /// The backups row passed in (the event's cycle), if it changed.
    pub backup: Option<CycleId>,
    /// The audit row the event recorded, if any.
    pub audit: Option<AuditRow>,
    /// The failures row the event recorded (a cycle's `Failed`), if any.
    pub failure: Option<FailureRow>,
}

/// A row ready to store: view, key, tenant, instance, JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRow {
    /// One of [`VIEWS`].
    pub view: &'static str,
    /// The key within the view.
    pub key: String,
    /// The row's tenant.
    pub tenant_id: String,
    /// The row's instance, for the rows read by instance (`backups`).
    pub instance_id: Option<String>,
    /// The row as JSON.
    pub doc: String,
}

fn doc<T: Serialize>(row: &T) -> String {
    serde_json::to_string(row).unwrap_or_else(|e| {
        // Every row type serializes (plain data, string keys); this is unreachable.
        unreachable!("a view row failed to serialize: {e}")
    })
}

impl StoredRow {
    /// A fleet row.
    pub fn fleet(row: &FleetRow) -> Self {
        StoredRow {
            view: "fleet",
            key: row.instance_id.to_string(),
            tenant_id: row.tenant_id.to_string(),
            instance_id: None,
            doc: doc(row),
        }
    }

    /// An alert row.
    pub fn alert(row: &AlertRow) -> Self {
        StoredRow {
            view: "alerts",
            key: row.alert_id.clone(),
            tenant_id: row.tenant_id.to_string(),
            instance_id: None,
            doc: doc(row),
        }
    }

    /// A backups row (with its instance, read by instance).
    pub fn backup(row: &BackupRow) -> Self {
        StoredRow {
            view: "backups",
            key: row.cycle_id.to_string(),
            tenant_id: row.tenant_id.to_string(),
            instance_id: Some(row.instance_id.to_string()),
            doc: doc(row),
        }
    }

    /// An audit row, keyed by its position zero-padded (keys sort in log order).
    pub fn audit(row: &AuditRow) -> Self {
        StoredRow {
            view: "audit",
            key: position_key(row.position),
            tenant_id: row.action.tenant_id.to_string(),
            instance_id: None,
            doc: doc(row),
        }
    }

    /// A failures row, keyed by its position zero-padded (keys sort in log order).
    pub fn failure(row: &FailureRow) -> Self {
        StoredRow {
            view: "failures",
            key: position_key(row.position),
            tenant_id: row.tenant_id.to_string(),
            instance_id: Some(row.instance_id.to_string()),
            doc: doc(row),
        }
    }
}

/// Why saved rows could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A stored document does not parse as its view's row.
    #[error("the {view} row {key} does not parse: {source}")]
    Row {
        /// The view.
        view: String,
        /// The key.
        key: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A stored row names a view this release does not hold in memory.
    #[error("unknown view {0:?}")]
    UnknownView(String),
}

/// Parses a stored document of `view` (row `key`).
///
/// # Errors
/// [`ModelError::Row`] when it does not parse.
pub fn parse<T: DeserializeOwned>(view: &str, key: &str, doc: &str) -> Result<T, ModelError> {
    serde_json::from_str(doc).map_err(|source| ModelError::Row {
        view: view.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// The views held in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadModel {
    /// Per instance.
    pub fleet: FleetView,
    /// Per alert.
    pub alerts: AlertView,
}

impl ReadModel {
    /// Folds one event at `position`. For an event of a cycle, `backup` is that cycle's backups
    /// row as of before the event (`None` if there is none yet; a `CycleStarted` creates it) and
    /// is updated in place; it gives the fleet the cycle's instance. Other events leave it alone.
    pub fn apply(
        &mut self,
        position: i64,
        event: &AnyEvent,
        backup: &mut Option<BackupRow>,
    ) -> Folded {
        let mut folded = Folded::default();
        let mut owner = None;
        match event {
            AnyEvent::Cycle(_, e) => {
                if let restorable_domain::cycle::BackupCycleEvent::CycleStarted(started) = e {
                    *backup = Some(BackupRow::started(started));
                } else if let Some(row) = backup.as_mut() {
                    row.apply(e);
                    if matches!(e, restorable_domain::cycle::BackupCycleEvent::Failed(_)) {
                        folded.failure = FailureRow::of(position, row);
                    }
                }
                owner = backup.as_ref().map(|r| r.instance_id);
                folded.backup = backup.as_ref().map(|r| r.cycle_id);
            }
            AnyEvent::Alerts(_, e) => folded
                .memory
                .extend(self.alerts.apply(e).map(RowKey::Alert)),
            AnyEvent::Audit(_, e) => folded.audit = Some(AuditRow::recorded(position, e)),
            AnyEvent::Instance(..) | AnyEvent::TenantKey(..) => {}
        }
        folded
            .memory
            .extend(self.fleet.apply(event, owner).map(RowKey::Fleet));
        folded
    }

    /// The stored form of a row held in memory (`None` if it does not exist).
    pub fn stored(&self, key: &RowKey) -> Option<StoredRow> {
        match key {
            RowKey::Fleet(id) => self.fleet.row(id).map(StoredRow::fleet),
            RowKey::Alert(id) => self.alerts.row(id).map(StoredRow::alert),
        }
    }

    /// The model held by saved rows `(view, key, doc)` of [`MEMORY_VIEWS`].
    ///
    /// # Errors
    /// [`ModelError`] for a row that does not parse or another view.
    pub fn from_stored<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, ModelError> {
        let (mut fleet, mut alerts) = (vec![], vec![]);
        for (view, key, doc) in rows {
            match view {
                "fleet" => fleet.push(parse::<FleetRow>(view, key, doc)?),
                "alerts" => alerts.push(parse::<AlertRow>(view, key, doc)?),
                other => return Err(ModelError::UnknownView(other.to_owned())),
            }
        }
        Ok(Self {
            fleet: FleetView::from_rows(fleet),
            alerts: AlertView::from_rows(alerts),
        })
    }
}
