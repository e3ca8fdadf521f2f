//! The sandbox of a machine that cannot run restore tests: every restore test fails
//! `sandbox_provision` with the reason, so the ladder says so instead of skipping the rung.

use super::{RestoreFailure, RestoreSandbox, Sandbox};

pub struct Unavailable(pub String);

#[async_trait::async_trait]
impl RestoreSandbox for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }

    async fn sweep_leftovers(&self) -> usize {
        0
    }

    async fn provision(&self) -> Result<Box<dyn Sandbox>, RestoreFailure> {
        Err(RestoreFailure::Provision(self.0.clone()))
    }
}
