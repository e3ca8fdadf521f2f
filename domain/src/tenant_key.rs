//! The `TenantKey` aggregate: the versions of a tenant's backup password, each sealed by the
//! key-sealing port. Version 1 is issued once; a rotation adds the next version and makes it
//! current. Older versions stay, so a backup taken under version N opens with version N forever.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::{Snapshotted, EVENT_VERSION};

/// A tenant password sealed by the key-sealing port (KMS ciphertext or local AES-256-GCM).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SealedPassword(pub String);

impl std::fmt::Debug for SealedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedPassword(..)")
    }
}

/// The first key of a tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyIssued {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Always 1.
    pub version: u32,
    /// The sealed password.
    pub sealed: SealedPassword,
    /// When.
    pub issued_at: DateTime<Utc>,
}

/// A new key version became current.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRotated {
    /// The new version (previous + 1).
    pub version: u32,
    /// The sealed password.
    pub sealed: SealedPassword,
    /// When.
    pub rotated_at: DateTime<Utc>,
}

/// Everything that can happen to a tenant key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum TenantKeyEvent {
    /// See [`KeyIssued`].
    KeyIssued(KeyIssued),
    /// See [`KeyRotated`].
    KeyRotated(KeyRotated),
}

impl DomainEvent for TenantKeyEvent {
    fn event_type(&self) -> String {
        match self {
            TenantKeyEvent::KeyIssued(_) => "KeyIssued",
            TenantKeyEvent::KeyRotated(_) => "KeyRotated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What the pipeline asks of a tenant key.
#[derive(Clone, Debug, PartialEq)]
pub enum TenantKeyCommand {
    /// Issue version 1 (a no-op if a key exists: the first sealed password wins).
    Issue {
        /// The tenant.
        tenant_id: TenantId,
        /// A freshly generated, sealed password.
        sealed: SealedPassword,
        /// When.
        at: DateTime<Utc>,
    },
    /// Add the next version and make it current.
    Rotate {
        /// A freshly generated, sealed password.
        sealed: SealedPassword,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Why a tenant key refused a command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantKeyError {
    /// No key was issued yet.
    #[error("no key was issued for this tenant")]
    NotIssued,
}

/// State of a tenant key, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantKey {
    /// Every version's sealed password.
    pub versions: BTreeMap<u32, SealedPassword>,
}

impl TenantKey {
    /// The current version and its sealed password.
    pub fn current(&self) -> Option<(u32, &SealedPassword)> {
        self.versions.iter().next_back().map(|(v, s)| (*v, s))
    }

    /// The sealed password of `version`.
    pub fn version(&self, version: u32) -> Option<&SealedPassword> {
        self.versions.get(&version)
    }
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for TenantKey {
    const SNAPSHOT_VERSION: u32 = 1;
}

impl Aggregate for TenantKey {
    const TYPE: &'static str = "TenantKey";
    type Command = TenantKeyCommand;
    type Event = TenantKeyEvent;
    type Error = TenantKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            TenantKeyCommand::Issue {
                tenant_id,
                sealed,
                at,
            } => self
                .versions
                .is_empty()
                .then_some(TenantKeyEvent::KeyIssued(KeyIssued {
                    tenant_id,
                    version: 1,
                    sealed,
                    issued_at: at,
                })),
            TenantKeyCommand::Rotate { sealed, at } => {
                let (current, _) = self.current().ok_or(TenantKeyError::NotIssued)?;
                Some(TenantKeyEvent::KeyRotated(KeyRotated {
                    version: current + 1,
                    sealed,
                    rotated_at: at,
                }))
            }
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            TenantKeyEvent::KeyIssued(e) => {
                self.versions.insert(e.version, e.sealed);
            }
            TenantKeyEvent::KeyRotated(e) => {
                self.versions.insert(e.version, e.sealed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TenantKeyCommand as C;
    use super::TenantKeyEvent as E;
    use super::*;
    use crate::cycle::examples::at;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<TenantKey>;

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap_or_else(|_| unreachable!())
    }

    fn issued() -> KeyIssued {
        KeyIssued {
            tenant_id: tenant(),
            version: 1,
            sealed: SealedPassword("one".into()),
            issued_at: at(),
        }
    }

    #[test]
    fn issue_creates_version_one() {
        Given::with(())
            .given_no_previous_events()
            .when(C::Issue {
                tenant_id: tenant(),
                sealed: SealedPassword("one".into()),
                at: at(),
            })
            .then_expect_events(vec![E::KeyIssued(issued())]);
    }

    #[test]
    fn a_second_issue_emits_nothing() {
        Given::with(())
            .given(vec![E::KeyIssued(issued())])
            .when(C::Issue {
                tenant_id: tenant(),
                sealed: SealedPassword("other".into()),
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn rotate_adds_the_next_version() {
        Given::with(())
            .given(vec![E::KeyIssued(issued())])
            .when(C::Rotate {
                sealed: SealedPassword("two".into()),
                at: at(),
            })
            .then_expect_events(vec![E::KeyRotated(KeyRotated {
                version: 2,
                sealed: SealedPassword("two".into()),
                rotated_at: at(),
            })]);
    }

    #[test]
    fn rotate_before_issue_is_refused() {
        let result = Given::with(())
            .given_no_previous_events()
            .when(C::Rotate {
                sealed: SealedPassword("two".into()),
                at: at(),
            })
            .inspect_result();
        assert_eq!(result, Err(TenantKeyError::NotIssued));
    }

    #[test]
    fn older_versions_stay_usable_after_rotation() {
        let mut key = TenantKey::default();
        key.apply(E::KeyIssued(issued()));
        key.apply(E::KeyRotated(KeyRotated {
            version: 2,
            sealed: SealedPassword("two".into()),
            rotated_at: at(),
        }));
        assert_eq!(key.current().map(|(v, _)| v), Some(2));
        assert_eq!(key.version(1), Some(&SealedPassword("one".into())));
    }
}
