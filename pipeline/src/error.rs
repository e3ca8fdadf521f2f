//! The error taxonomy of the pipeline, and its rules. Every error a stage, the transport or a
//! background loop meets is exactly one of three kinds:
//!
//! 1. **Refusal** — the aggregate says no: the command is out of order, already done, the
//!    instance is stopped. Nothing is wrong and nothing is left to do: acknowledge it. Only a
//!    domain error (cqrs-es `UserError`) is a refusal; [`StoreError::Rejected`] is the only
//!    refusal variant.
//! 2. **Infrastructure** — the store, NATS, S3, KMS or the network failed. The work was *not*
//!    done: never acknowledge it, never record it as a stage failure of the PBX. Retry with
//!    capped exponential back-off and jitter ([`crate::retry`]) for as long as it takes.
//!    Connection, pool, I/O, conflict-after-retries and unknown database errors are
//!    infrastructure, never a refusal. Inside a stage, a KMS or S3 call is retried a few times;
//!    if the service stays away the cycle fails with a *retryable* reason
//!    (`key_service_unavailable`, `vault_unavailable`) and the instance is tried again soon.
//! 3. **Stage failure** — the PBX or the backup is at fault (bad credentials, a corrupt copy):
//!    a `Failed` event with its stable reason code, recorded on the cycle.
//!
//! One more outcome exists for the transport: a **poison** event, one whose reaction can never
//! succeed (its payload does not decode, or it keeps failing while the store answers). It is put
//! aside in the dead letters (visible, alerted, replayable) so the stage goes on with the next
//! event; the cycle it belongs to is failed. An infrastructure outage never makes an event
//! poison: attempts are only counted while the store answers.

use crate::store::StoreError;

/// The kind of an error, which decides what the caller does with the work in hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The aggregate refused: acknowledge, nothing to do.
    Refusal,
    /// A dependency failed: do not acknowledge; retry with back-off.
    Infrastructure,
    /// The work can never succeed (undecodable): dead-letter it, fail its cycle.
    Poison,
}

impl StoreError {
    /// Which of the taxonomy's kinds this store error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Rejected(_) => ErrorKind::Refusal,
            StoreError::Malformed(_) => ErrorKind::Poison,
            StoreError::Connect { .. }
            | StoreError::Database(_)
            | StoreError::Unavailable(_)
            | StoreError::Conflict
            | StoreError::LeaseLost(_) => ErrorKind::Infrastructure,
        }
    }

    /// Whether this is a refusal of the domain (and only then may work be acknowledged
    /// without being done).
    pub fn is_refusal(&self) -> bool {
        self.kind() == ErrorKind::Refusal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::AggregateError;

    #[derive(Debug, thiserror::Error)]
    #[error("needs the cycle at Captured")]
    struct DomainNo;

    #[test]
    fn only_a_domain_error_is_a_refusal() {
        let refusal: StoreError = AggregateError::UserError(DomainNo).into();
        assert_eq!(refusal.kind(), ErrorKind::Refusal);
        for infrastructure in [
            AggregateError::<DomainNo>::DatabaseConnectionError(Box::new(std::io::Error::other(
                "connection refused",
            ))),
            AggregateError::UnexpectedError(Box::new(std::io::Error::other("pool timed out"))),
            AggregateError::AggregateConflict,
        ] {
            let error: StoreError = infrastructure.into();
            assert_eq!(error.kind(), ErrorKind::Infrastructure, "{error}");
            assert!(!error.is_refusal());
        }
        let io: StoreError = sqlx::Error::Io(std::io::Error::other("reset")).into();
        assert_eq!(io.kind(), ErrorKind::Infrastructure);
        assert_eq!(sqlx_pool_timeout().kind(), ErrorKind::Infrastructure);
        let malformed: StoreError = AggregateError::<DomainNo>::DeserializationError(Box::new(
            std::io::Error::other("not json"),
        ))
        .into();
        assert_eq!(malformed.kind(), ErrorKind::Poison);
    }

    fn sqlx_pool_timeout() -> StoreError {
        StoreError::Database(sqlx::Error::PoolTimedOut)
    }
}
