//! The mutable state shared by the HTTP handlers of one PBX: issued tokens, the list of finished
//! backups, the backup being made, and the shutdown flag that stops background writers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::database::Database;
use crate::SimPbxConfig;

/// Lifetime of an access token.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A finished backup file on the PBX's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupRecord {
    pub file_name: String,
    pub created: DateTime<Utc>,
    pub size: u64,
    pub encrypted: bool,
}

/// Why a backup cannot be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartRefusal {
    Duplicate,
    InProgress,
}

#[derive(Debug, Default)]
struct Backups {
    done: Vec<BackupRecord>,
    in_progress: Option<String>,
    last_finished: Option<DateTime<Utc>>,
}

/// State of one running PBX.
pub(crate) struct PbxState {
    pub config: SimPbxConfig,
    pub db: Database,
    /// Directory holding this PBX's backup files.
    pub dir: PathBuf,
    /// Set when the PBX shuts down; background writers stop at their next chunk.
    pub stopping: AtomicBool,
    tokens: Mutex<HashMap<String, Instant>>,
    backups: Mutex<Backups>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PbxState {
    pub(crate) fn new(
        config: SimPbxConfig,
        db: Database,
        dir: PathBuf,
        existing: Vec<BackupRecord>,
    ) -> Self {
        PbxState {
            config,
            db,
            dir,
            stopping: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
            backups: Mutex::new(Backups {
                done: existing,
                ..Backups::default()
            }),
        }
    }

    /// Issues a new random access token.
    pub(crate) fn issue_token(&self) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut tokens = lock(&self.tokens);
        let now = Instant::now();
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(token.clone(), now + TOKEN_LIFETIME);
        token
    }

    /// Whether `token` was issued by this PBX and has not expired.
    pub(crate) fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Marks `name` as being written, unless it exists or another backup is running.
    pub(crate) fn begin_backup(&self, name: &str) -> Result<(), StartRefusal> {
        let mut b = lock(&self.backups);
        if b.in_progress.as_deref() == Some(name) || b.done.iter().any(|r| r.file_name == name) {
            return Err(StartRefusal::Duplicate);
        }
        if b.in_progress.is_some() {
            return Err(StartRefusal::InProgress);
        }
        b.in_progress = Some(name.to_owned());
        Ok(())
    }

    /// Ends the running backup; a finished file is listed from now on.
    pub(crate) fn end_backup(&self, record: Option<BackupRecord>) {
        let mut b = lock(&self.backups);
        b.in_progress = None;
        if let Some(record) = record {
            b.last_finished = Some(record.created);
            b.done.push(record);
        }
    }

    pub(crate) fn can_create_backup(&self) -> bool {
        lock(&self.backups).in_progress.is_none()
    }

    pub(crate) fn list(&self) -> Vec<BackupRecord> {
        lock(&self.backups).done.clone()
    }

    pub(crate) fn find(&self, name: &str) -> Option<BackupRecord> {
        lock(&self.backups)
            .done
            .iter()
            .find(|r| r.file_name == name)
            .cloned()
    }

    /// Removes `name` from the list (the caller deletes the file).
    pub(crate) fn remove(&self, name: &str) -> Option<BackupRecord> {
        let mut b = lock(&self.backups);
        let pos = b.done.iter().position(|r| r.file_name == name)?;
        Some(b.done.remove(pos))
    }

    pub(crate) fn last_finished(&self) -> Option<DateTime<Utc>> {
        lock(&self.backups).last_finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PbxState {
        let config = SimPbxConfig::new("t", 1);
        let db = Database::generate("t", 1, 1, None);
        PbxState::new(config, db, PathBuf::from("/nonexistent"), Vec::new())
    }

    #[test]
    fn tokens_are_checked() {
        let s = state();
        let t = s.issue_token();
        assert!(s.token_valid(&t));
        assert!(!s.token_valid("made-up"));
        assert_ne!(t, s.issue_token());
    }

    #[test]
    fn one_backup_at_a_time_and_no_duplicates() {
        let s = state();
        assert_eq!(s.begin_backup("a.zip"), Ok(()));
        assert!(!s.can_create_backup());
        assert_eq!(s.begin_backup("a.zip"), Err(StartRefusal::Duplicate));
        assert_eq!(s.begin_backup("b.zip"), Err(StartRefusal::InProgress));
        let record = BackupRecord {
            file_name: "a.zip".into(),
            created: Utc::now(),
            size: 1,
            encrypted: true,
        };
        s.end_backup(Some(record.clone()));
        assert!(s.can_create_backup());
        assert_eq!(s.begin_backup("a.zip"), Err(StartRefusal::Duplicate));
        assert_eq!(s.list(), vec![record.clone()]);
        assert_eq!(s.remove("a.zip"), Some(record));
        assert_eq!(s.begin_backup("a.zip"), Ok(()));
    }
}
