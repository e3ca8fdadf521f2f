//! The start stage: turns an instance's `CycleOpened` into the cycle's `CycleStarted`. Opening
//! (on the instance, which enforces one cycle in flight) and starting (on the cycle) are two
//! aggregates; this reaction joins them durably, so a crash between the two loses nothing.

use async_trait::async_trait;
use restorable_domain::cycle::{BackupCycleCommand, CycleStarted};
use restorable_domain::instance::{Instance, InstanceEvent};

use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;

/// See the module documentation.
pub struct StartStage {
    pipeline: Pipeline,
}

impl StartStage {
    /// A start stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Consumer for StartStage {
    fn name(&self) -> &'static str {
        "start"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["CycleOpened"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        event.aggregate_type == "Instance" && event.event_type == "CycleOpened"
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let InstanceEvent::CycleOpened(opened) = event.decode::<InstanceEvent>()? else {
            return Ok(());
        };
        let instance: Instance = self.pipeline.store.load(&event.aggregate_id).await?;
        let Some(enrolled) = instance.enrolled else {
            return Err(StoreError::Malformed(format!(
                "CycleOpened at position {} for an instance that is not enrolled",
                event.position
            )));
        };
        let start = BackupCycleCommand::Start(CycleStarted {
            cycle_id: opened.cycle_id,
            tenant_id: enrolled.tenant_id,
            instance_id: enrolled.instance_id,
            trigger: opened.trigger,
            started_at: opened.opened_at,
        });
        self.pipeline
            .store
            .cycle(&opened.cycle_id.to_string(), start)
            .await
    }
}
