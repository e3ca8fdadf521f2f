//! Work done again and again until shutdown: the sweeps (re-checks, retention, the native backup
//! watch), the scheduler, the watchdog, the dead-letter watch, the resumption of alert
//! deliveries and the evidence watch each run a [`Round`], wait their period and run again.
//! Shutdown ends the wait at once, and ends a round only where the caller lets it ([`Rounds`]:
//! a sweep records each step as it goes, so cutting it short loses nothing).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// One round of periodic work. A round logs its own errors: the next round tries again.
pub trait Round: Send {
    /// Does the work once.
    fn once(&mut self) -> impl Future<Output = ()> + Send;
}

/// Whether shutdown may cut a round short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounds {
    /// Shutdown ends a round between two of its awaits (each step is recorded as it goes).
    Cancellable,
    /// A round always runs to its end; shutdown is seen between rounds.
    Whole,
}

/// Runs `work` once at once, then again `every` after each round ends, until `shutdown` is
/// cancelled.
pub async fn repeat(
    every: Duration,
    rounds: Rounds,
    shutdown: CancellationToken,
    work: &mut impl Round,
) {
    loop {
        match rounds {
            Rounds::Cancellable => tokio::select! {
                () = shutdown.cancelled() => return,
                () = work.once() => {}
            },
            Rounds::Whole => work.once().await,
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts the rounds that ran to their end, each taking `takes`.
    struct Counting {
        ended: Arc<AtomicUsize>,
        takes: Duration,
    }

    impl Round for Counting {
        async fn once(&mut self) {
            tokio::time::sleep(self.takes).await;
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn spawn(
        rounds: Rounds,
        takes: Duration,
    ) -> (
        Arc<AtomicUsize>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let ended = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let mut work = Counting {
            ended: ended.clone(),
            takes,
        };
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { repeat(Duration::from_secs(60), rounds, shutdown, &mut work).await }
        });
        (ended, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_runs_at_once_then_once_a_period_until_shutdown() {
        let (ended, shutdown, task) = spawn(Rounds::Whole, Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            ended.load(Ordering::SeqCst),
            1,
            "the first round runs at once"
        );
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 3, "then one round a period");
        shutdown.cancel();
        task.await.expect("the loop ends on shutdown");
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 3, "no round after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_cancellable_round_short_but_not_a_whole_one() {
        for (rounds, ends) in [(Rounds::Cancellable, 0), (Rounds::Whole, 1)] {
            let (ended, shutdown, task) = spawn(rounds, Duration::from_secs(30));
            tokio::time::sleep(Duration::from_secs(10)).await;
            shutdown.cancel();
            task.await.expect("the loop ends on shutdown");
            assert_eq!(ended.load(Ordering::SeqCst), ends, "{rounds:?}");
        }
    }
}
