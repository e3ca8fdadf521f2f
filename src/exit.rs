//! Exit codes, the same for every command (the README's CLI reference lists them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success: done, or the thing checked is sound |
//! | 1 | the thing checked failed (an archive that does not verify, a cycle that failed, a backend `doctor` finds unusable, a dead letter whose replay failed) |
//! | 2 | unusable input or configuration (a bad flag or setting, an unknown id, a refused command); clap's own usage errors are 2 too |
//! | 3 | a backend is unavailable (the database, NATS, S3 or KMS could not be reached): trying again later may succeed |
//!
//! Commands return 0 and 1 themselves; an error that stops a command is 3 when something in
//! its chain is an infrastructure error of the taxonomy (`restorable_pipeline::error`), else 2.

use std::process::ExitCode;

use restorable_pipeline::sealing::SealError;
use restorable_pipeline::setup::{store_unreachable, waits_for, SetupError};
use restorable_pipeline::store::StoreError;
use restorable_pipeline::vault::VaultError;

/// Unusable input or configuration.
pub const UNUSABLE: u8 = 2;
/// A backend is unavailable.
pub const UNAVAILABLE: u8 = 3;

/// The exit code of an error that stopped a command.
pub fn for_error(error: &anyhow::Error) -> ExitCode {
    if error.chain().any(is_unavailable) {
        ExitCode::from(UNAVAILABLE)
    } else {
        ExitCode::from(UNUSABLE)
    }
}

fn is_unavailable(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(setup) = cause.downcast_ref::<SetupError>() {
        return waits_for(setup);
    }
    if let Some(store) = cause.downcast_ref::<StoreError>() {
        return store_unreachable(store) || matches!(store, StoreError::LeaseLost(_));
    }
    if let Some(vault) = cause.downcast_ref::<VaultError>() {
        return vault.is_transient();
    }
    if let Some(seal) = cause.downcast_ref::<SealError>() {
        return seal.is_transient();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrastructure_anywhere_in_the_chain_is_3_and_the_rest_2() {
        let unavailable = anyhow::Error::new(StoreError::Unavailable("pool timed out".into()))
            .context("listing the fleet");
        assert_eq!(for_error(&unavailable), ExitCode::from(UNAVAILABLE));
        let refused =
            anyhow::Error::new(StoreError::Rejected("not enrolled".into())).context("backup-now");
        assert_eq!(for_error(&refused), ExitCode::from(UNUSABLE));
        let setting = anyhow::anyhow!("RESTORABLE_NATS_URL: expected a nats:// URL");
        assert_eq!(for_error(&setting), ExitCode::from(UNUSABLE));
        let vault = anyhow::Error::new(VaultError::Unavailable("endpoint unreachable".into()));
        assert_eq!(for_error(&vault), ExitCode::from(UNAVAILABLE));
    }
}
