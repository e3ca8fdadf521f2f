//! The in-process transport of the embedded default: each consumer (stage processor) reads the
//! event log from its durable checkpoint, reacts to the events it cares about, then moves its
//! checkpoint past them. At-least-once: a consumer interrupted mid-batch re-reads the batch on
//! restart, and the aggregates de-duplicate what it does twice. Several cycles of one batch are
//! handled concurrently (a slow PBX does not hold the others back).
//!
//! Failures follow [`crate::error`]: an infrastructure error leaves the checkpoint where it was
//! and the batch is delivered again after a capped, jittered back-off, for as long as it takes;
//! an event whose reaction can never succeed is given up on ([`crate::poison`]) so the consumer
//! goes on with the next event — for every tenant.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Consumer;
use crate::error::ErrorKind;
use crate::poison::{give_up, Attempts, Verdict};
use crate::retry::Backoff;
use crate::store::{Store, StoreError};

/// How many events a consumer reads at once.
const BATCH: i64 = 64;
/// How long a consumer waits for a commit notification before looking at the log anyway
/// (commits made by another process do not notify this one).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The longest pause before a failed batch is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first pause before a failed batch is tried again (so that the attempts a poison event
/// is allowed are spread over tens of seconds, not used up in a blip).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// Runs `consumer` until `shutdown` is cancelled. In-flight reactions of the current batch are
/// finished before it returns (their checkpoint is then saved).
pub async fn run_consumer(store: Store, consumer: Arc<dyn Consumer>, shutdown: CancellationToken) {
    let name = consumer.name();
    let notify = store.committed();
    let mut attempts = Attempts::default();
    let mut backoff = Backoff::between(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match deliver_batch(&store, &consumer, &mut attempts).await {
            Ok(true) => {
                backoff.reset();
                continue;
            }
            Ok(false) => backoff.reset(),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::error!(consumer = name, %error, retry_in = ?delay, "delivery failed; retrying the batch");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
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

/// Delivers the next batch; `Ok(true)` if there was one. Events given up on count as
/// delivered; any other failure leaves the checkpoint where it was.
async fn deliver_batch(
    store: &Store,
    consumer: &Arc<dyn Consumer>,
    attempts: &mut Attempts,
) -> Result<bool, StoreError> {
    let name = consumer.name();
    let from = store.checkpoint(name).await?;
    let batch = store.read_after(from, BATCH).await?;
    let Some(last) = batch.last().map(|e| e.position) else {
        return Ok(false);
    };
    let mut reactions = JoinSet::new();
    for event in batch.into_iter().filter(|e| consumer.wants(e)) {
        let consumer = consumer.clone();
        reactions.spawn(async move {
            let outcome = tokio::spawn({
                let (consumer, event) = (consumer.clone(), event.clone());
                async move { consumer.react(event).await }
            })
            .await;
            (event, outcome)
        });
    }
    let mut failure = None;
    while let Some(joined) = reactions.join_next().await {
        let Ok((event, outcome)) = joined else {
            failure = Some(StoreError::Unavailable(format!(
                "{name}: a delivery task was lost"
            )));
            continue;
        };
        let key = event.position.to_string();
        let (kind, why) = match outcome {
            Ok(Ok(())) => {
                attempts.succeeded(&key);
                continue;
            }
            Ok(Err(error)) => (Some(error.kind()), error),
            Err(join) => (
                None,
                StoreError::Unavailable(format!("the {name} reaction panicked: {join}")),
            ),
        };
        let store_answers = kind == Some(ErrorKind::Refusal) || store.is_reachable().await;
        match attempts.failed(&key, kind, store_answers) {
            Verdict::Acknowledge => {}
            Verdict::Retry => failure = Some(why),
            Verdict::GiveUp(count) => {
                if let Err(error) = give_up(store, name, &event, &why.to_string(), count).await {
                    failure = Some(error);
                }
            }
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
    use crate::store::LoggedEvent;
    use async_trait::async_trait;
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

        let mut attempts = Attempts::default();
        assert!(deliver_batch(&store, &consumer, &mut attempts)
            .await
            .is_err());
        assert_eq!(store.checkpoint("counter").await.expect("checkpoint"), 0);
        assert!(deliver_batch(&store, &consumer, &mut attempts)
            .await
            .expect("second delivery"));
        assert_eq!(store.checkpoint("counter").await.expect("checkpoint"), 2);
        assert!(!deliver_batch(&store, &consumer, &mut attempts)
            .await
            .expect("nothing new"));
        assert_eq!(
            counter.seen.load(Ordering::SeqCst),
            2,
            "delivered at least once: twice here"
        );
    }
}
