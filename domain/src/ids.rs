//! Typed identifiers. A tenant is named by a short slug chosen at enrolment; instances and cycles
//! are UUIDs. Distinct types keep a cycle id from being passed where an instance id is expected.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Tenant slugs are 1-64 characters of `a-z`, `0-9` and `-`, so they are safe in object keys
    /// and NATS subjects.
    #[error("tenant id {0:?} must be 1-64 characters of a-z, 0-9 and '-'")]
    InvalidTenant(String),
    /// Not a UUID.
    #[error("{0:?} is not a valid id (expected a UUID)")]
    InvalidUuid(String),
}

/// A tenant (a customer of the service provider); its instances share one backup key.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant slug.
    ///
    /// # Errors
    /// [`IdError::InvalidTenant`] unless 1-64 characters of `a-z0-9-`.
    pub fn new(slug: &str) -> Result<Self, IdError> {
        let ok = !slug.is_empty()
            && slug.len() <= 64
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(slug.to_owned()))
        } else {
            Err(IdError::InvalidTenant(slug.to_owned()))
        }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdError::InvalidUuid(s.to_owned()))
            }
        }
    };
}

uuid_id!(
    /// One enrolled PBX.
    InstanceId
);
uuid_id!(
    /// One backup attempt of one instance.
    CycleId
);

impl InstanceId {
    /// A stable id derived from a tenant and an instance name, so that re-running an enrolment
    /// (for example the demo on the same data directory) finds the same instance.
    pub fn for_name(tenant: &TenantId, name: &str) -> Self {
        let key = format!("restorable/{}/{}", tenant.as_str(), name);
        Self(Uuid::new_v5(&Uuid::NAMESPACE_URL, key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slugs_are_validated() {
        assert!(TenantId::new("acme-01").is_ok());
        for bad in ["", "Acme", "a/b", "a.b", &"x".repeat(65)] {
            assert_eq!(
                TenantId::new(bad),
                Err(IdError::InvalidTenant(bad.to_owned()))
            );
        }
    }

    #[test]
    fn tenant_ids_refuse_bad_slugs_when_deserialized() {
        assert!(serde_json::from_str::<TenantId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"../etc\"").is_err());
    }

    #[test]
    fn instance_ids_for_a_name_are_stable_and_distinct() {
        let t = TenantId::new("acme").expect("valid");
        assert_eq!(
            InstanceId::for_name(&t, "hq"),
            InstanceId::for_name(&t, "hq")
        );
        assert_ne!(
            InstanceId::for_name(&t, "hq"),
            InstanceId::for_name(&t, "branch")
        );
    }

    #[test]
    fn uuid_ids_parse_and_refuse() {
        let id = CycleId::random();
        assert_eq!(id.to_string().parse::<CycleId>(), Ok(id));
        assert!("not-a-uuid".parse::<CycleId>().is_err());
    }
}
