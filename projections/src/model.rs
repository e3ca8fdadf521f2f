//! All views together, as the projector keeps them: each row has a key within its view and a
//! tenant (the API filters on it), and is stored as a JSON document. Folding an event returns
//! the rows it changed, so only those are written.

use restorable_domain::ids::{CycleId, InstanceId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::alerts::{AlertRow, AlertView};
use crate::audit::{AuditRow, AuditView};
use crate::backups::{BackupRow, BackupsView};
use crate::fleet::{FleetRow, FleetView};
use crate::AnyEvent;

/// The name of each view in storage.
pub const VIEWS: [&str; 4] = ["fleet", "backups", "alerts", "audit"];

/// A row of one of the views.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RowKey {
    /// A fleet row.
    Fleet(InstanceId),
    /// A backups row.
    Backup(CycleId),
    /// An alert row.
    Alert(String),
    /// An audit row (by position).
    Audit(i64),
}

/// A row ready to store: view, key, tenant, JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRow {
    /// One of [`VIEWS`].
    pub view: &'static str,
    /// The key within the view.
    pub key: String,
    /// The row's tenant.
    pub tenant_id: String,
    /// The row as JSON.
    pub doc: String,
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
    /// A stored row names a view this release does not have.
    #[error("unknown view {0:?}")]
    UnknownView(String),
}

/// Every view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadModel {
    /// Per instance.
    pub fleet: FleetView,
    /// Per cycle.
    pub backups: BackupsView,
    /// Per alert.
    pub alerts: AlertView,
    /// Per recorded action.
    pub audit: AuditView,
}

impl ReadModel {
    /// Folds one event at `position`; returns the rows it changed.
    pub fn apply(&mut self, position: i64, event: &AnyEvent) -> Vec<RowKey> {
        let mut changed = Vec::new();
        changed.extend(self.fleet.apply(event).map(RowKey::Fleet));
        match event {
            AnyEvent::Cycle(id, e) => changed.extend(self.backups.apply(id, e).map(RowKey::Backup)),
            AnyEvent::Alerts(_, e) => changed.extend(self.alerts.apply(e).map(RowKey::Alert)),
            AnyEvent::Audit(_, e) => changed.push(RowKey::Audit(self.audit.apply(position, e))),
            AnyEvent::Instance(..) | AnyEvent::TenantKey(..) => {}
        }
        changed
    }

    /// The stored form of a row (`None` if it does not exist).
    pub fn stored(&self, key: &RowKey) -> Option<StoredRow> {
        fn row<T: Serialize>(view: &'static str, key: String, tenant: &str, r: &T) -> StoredRow {
            StoredRow {
                view,
                key,
                tenant_id: tenant.to_owned(),
                doc: serde_json::to_string(r).unwrap_or_else(|e| {
                    // Every row type serializes (plain data, string keys); this is unreachable.
                    unreachable!("a view row failed to serialize: {e}")
                }),
            }
        }
        match key {
            RowKey::Fleet(id) => {
                let r = self.fleet.row(id)?;
                Some(row("fleet", id.to_string(), r.tenant_id.as_str(), r))
            }
            RowKey::Backup(id) => {
                let r = self.backups.row(id)?;
                Some(row("backups", id.to_string(), r.tenant_id.as_str(), r))
            }
            RowKey::Alert(id) => {
                let r = self.alerts.row(id)?;
                Some(row("alerts", id.clone(), r.tenant_id.as_str(), r))
            }
            RowKey::Audit(position) => {
                let r = self.audit.row(*position)?;
                // Zero-padded, so keys sort in log order.
                let key = format!("{position:020}");
                Some(row("audit", key, r.action.tenant_id.as_str(), r))
            }
        }
    }

    /// Every row in stored form.
    pub fn all_stored(&self) -> Vec<StoredRow> {
        let keys = self
            .fleet
            .rows()
            .into_iter()
            .map(|r| RowKey::Fleet(r.instance_id))
            .chain(self.backups.rows().map(|r| RowKey::Backup(r.cycle_id)))
            .chain(
                self.alerts
                    .rows()
                    .into_iter()
                    .map(|r| RowKey::Alert(r.alert_id.clone())),
            )
            .chain(self.audit.rows().map(|r| RowKey::Audit(r.position)));
        keys.filter_map(|k| self.stored(&k)).collect()
    }

    /// The model held by saved rows `(view, key, doc)`.
    ///
    /// # Errors
    /// [`ModelError`] for a row that does not parse or an unknown view.
    pub fn from_stored<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, ModelError> {
        fn parse<T: DeserializeOwned>(view: &str, key: &str, doc: &str) -> Result<T, ModelError> {
            serde_json::from_str(doc).map_err(|source| ModelError::Row {
                view: view.to_owned(),
                key: key.to_owned(),
                source,
            })
        }
        let (mut fleet, mut backups, mut alerts, mut audit) = (vec![], vec![], vec![], vec![]);
        for (view, key, doc) in rows {
            match view {
                "fleet" => fleet.push(parse::<FleetRow>(view, key, doc)?),
                "backups" => backups.push(parse::<BackupRow>(view, key, doc)?),
                "alerts" => alerts.push(parse::<AlertRow>(view, key, doc)?),
                "audit" => audit.push(parse::<AuditRow>(view, key, doc)?),
                other => return Err(ModelError::UnknownView(other.to_owned())),
            }
        }
        let owners: Vec<_> = backups
            .iter()
            .map(|b| (b.cycle_id, b.instance_id))
            .collect();
        Ok(Self {
            fleet: FleetView::from_parts(fleet, owners),
            backups: BackupsView::from_rows(backups),
            alerts: AlertView::from_rows(alerts),
            audit: AuditView::from_rows(audit),
        })
    }
}
