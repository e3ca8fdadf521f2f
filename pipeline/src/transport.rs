//! The in-process transport of the embedded default: each consumer (stage processor) reads the
//! event log from its durable checkpoint, reacts to the events it cares about, then moves its
//! checkpoint past them. At-least-once: a consumer interrupted mid-batch re-reads the batch on
//! restart, and the aggregates de-duplicate what it does twice. Several cycles of one batch are
//! handled concurrently (a slow PBX does not hold the others back).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::{LoggedEvent, Store, StoreError};

/// How many events a consumer reads at once.
const BATCH: i64 = 64;
/// How long a consumer waits for a commit notification before looking at the log anyway
/// (commits made by another process do not notify this one).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Pause after an infrastructure error before the batch is tried again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// A stage processor (or any other reaction to events).
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The durable name of its checkpoint, e.g. `capture`.
    fn name(&self) -> &'static str;
    /// The event types it reacts to (its JetStream filter: one type, or every event).
    fn event_types(&self) -> &'static [&'static str];
    /// Whether it reacts to this event at all.
    fn wants(&self, event: &LoggedEvent) -> bool;
    /// Reacts. Stage failures are recorded as `Failed` events by the consumer itself and return
    /// `Ok`; an `Err` means the infrastructure failed and the event must be delivered again.
    ///
    /// # Errors
    /// A store failure that left the reaction undone.
    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError>;
}

/// Runs `consumer` until `shutdown` is cancelled. In-flight reactions of the current batch are
/// finished before it returns (their checkpoint is then saved).
pub async fn run_consumer(store: Store, consumer: Arc<dyn Consumer>, shutdown: CancellationToken) {
    let name = consumer.name();
    let notify = store.committed();
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match deliver_batch(&store, &consumer).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => {
                tracing::error!(consumer = name, %error, "delivery failed; retrying the batch");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(ERROR_BACKOFF) => continue,
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut notified => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// Delivers the next batch; `Ok(true)` if there was one.
async fn deliver_batch(store: &Store, consumer: &Arc<dyn Consumer>) -> Result<bool, StoreError> {
    let name = consumer.name();
    let from = store.checkpoint(name).await?;
    let batch = store.read_after(from, BATCH).await?;
    let Some(last) = batch.last().map(|e| e.position) else {
        return Ok(false);
    };
    let mut reactions = JoinSet::new();
    for event in batch.into_iter().filter(|e| consumer.wants(e)) {
        let consumer = consumer.clone();
        reactions.spawn(async move { consumer.react(event).await });
    }
    let mut failure = None;
    while let Some(result) = reactions.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error),
            Err(join) => failure = Some(StoreError::Rejected(format!("{name} panicked: {join}"))),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    store.save_checkpoint(name, last).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::{examples, BackupCycleCommand};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter {
        seen: AtomicUsize,
        fail_first: AtomicUsize,
    }

    #[async_trait]
    impl Consumer for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn event_types(&self) -> &'static [&'static str] {
            &["Captured"]
        }
        fn wants(&self, event: &LoggedEvent) -> bool {
            event.event_type == "Captured"
        }
        async fn react(&self, _event: LoggedEvent) -> Result<(), StoreError> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            if self.fail_first.fetch_sub(1, Ordering::SeqCst) > 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_delivery_is_repeated_and_the_checkpoint_only_moves_after_success() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let id = examples::started().cycle_id.to_string();
        store
            .cycle(&id, BackupCycleCommand::Start(examples::started()))
            .await
            .expect("start");
        store
            .cycle(
                &id,
                BackupCycleCommand::RecordCaptured(examples::captured()),
            )
            .await
            .expect("capture");
        let counter = Arc::new(Counter {
            seen: AtomicUsize::new(0),
            fail_first: AtomicUsize::new(1),
        });
        let consumer: Arc<dyn Consumer> = counter.clone();

        assert!(deliver_batch(&store, &consumer).await.is_err());
        assert_eq!(store.checkpoint("counter").await.expect("checkpoint"), 0);
        assert!(deliver_batch(&store, &consumer)
            .await
            .expect("second delivery"));
        assert_eq!(store.checkpoint("counter").await.expect("checkpoint"), 2);
        assert!(!deliver_batch(&store, &consumer).await.expect("nothing new"));
        assert_eq!(
            counter.seen.load(Ordering::SeqCst),
            2,
            "delivered at least once: twice here"
        );
    }
}
