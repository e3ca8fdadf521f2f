//! The composition root: which backend sits behind each port. Nothing configured is the embedded default (SQLite,
//! in-process transport, local vault, local key sealing, all under the data directory); each
//! production backend is switched on by its own setting, checked when the pipeline is opened, so
//! a missing or wrong one stops start-up with a message naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, Settings};
use crate::retry::Backoff;
use crate::sandbox::process::ProcessSandboxes;
use crate::sandbox::RestoreSandbox;
use crate::sealing::{KeySealer, KmsConfig, KmsKeySealer, LocalKeySealer, SealError};
use crate::store::{Store, StoreError};
use crate::transport::nats::{Nats, NatsConfig, NatsError};
use crate::vault::{LocalVault, S3Config, S3Vault, Vault, VaultError};

/// The backends of one process.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// Local state of the embedded adapters (`events.db`, `vault/`, `master.key`).
    pub data_dir: PathBuf,
    /// `postgres://...` or a SQLite file; `None`: `events.db` in the data directory.
    pub database_url: Option<String>,
    /// NATS JetStream; `None`: the in-process transport.
    pub nats: Option<NatsConfig>,
    /// S3 with Object Lock; `None`: the local vault under the data directory.
    pub s3: Option<S3Config>,
    /// AWS KMS; `None`: local sealing with the data directory's master key.
    pub kms: Option<KmsConfig>,
}

/// What each port runs on, for `restorable doctor` and start-up logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendReport {
    /// `event store`, `transport`, `vault`, `key sealing`, `restore sandbox`.
    pub port: &'static str,
    /// What it is and whether it is usable.
    pub detail: String,
    /// Usable.
    pub ok: bool,
}

/// Why the pipeline could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The event store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault directory.
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    /// The master key file.
    #[error("key sealing: {0}")]
    Sealing(#[from] crate::sealing::SealError),
    /// NATS JetStream.
    #[error("transport: {0}")]
    Nats(#[from] crate::transport::nats::NatsError),
}

impl Pipeline {
    /// The embedded default: everything under `data_dir` (`events.db`, `vault/`, `master.key`);
    /// restore sandboxes under [`sandbox_root`] of it.
    ///
    /// # Errors
    /// When a part cannot be opened; the error names it.
    pub async fn embedded(data_dir: &Path, settings: Settings) -> Result<Self, SetupError> {
        let backends = Backends {
            data_dir: data_dir.to_owned(),
            ..Default::default()
        };
        Self::open(&backends, settings).await
    }

    /// Opens every backend `backends` names (the embedded default for the rest), failing at once
    /// if one cannot be used (one-shot commands, tests).
    ///
    /// # Errors
    /// [`SetupError`] naming the backend that cannot be used and why.
    pub async fn open(backends: &Backends, settings: Settings) -> Result<Self, SetupError> {
        match Self::assemble(backends, settings, None).await? {
            Some(pipeline) => Ok(pipeline),
            None => unreachable!("only a waiting open stops for a shutdown"),
        }
    }

    /// Opens every backend like [`Pipeline::open`], but waits for the ones that are not
    /// reachable yet (PostgreSQL, NATS, S3 or KMS down or starting: see [`waits_for`]), trying
    /// again with back-off and logging at warn what it waits for, for as long as it takes
    /// (`serve` and `worker`). A wrong setting still fails at once.
    ///
    /// # Errors
    /// [`SetupError`] of a backend that can never be used as configured.
    /// `Ok(None)`: `shutdown` was cancelled while waiting.
    pub async fn open_waiting(
        backends: &Backends,
        settings: Settings,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, SetupError> {
        Self::assemble(backends, settings, Some(shutdown)).await
    }

    /// Opens the backends in turn; with `waiting`, retries the unreachable ones until they
    /// answer or it is cancelled.
    async fn assemble(
        backends: &Backends,
        settings: Settings,
        waiting: Option<&CancellationToken>,
    ) -> Result<Option<Self>, SetupError> {
        let store = match &backends.database_url {
            Some(location) => {
                let at = crate::store::redact_url(location);
                let mut wait = Wait::new(waiting, "event store", &at, backends);
                let Some(store) = patiently!(wait, Store::connect(location)) else {
                    return Ok(None);
                };
                store
            }
            None => Store::open(&backends.data_dir).await?,
        };
        let rest = Self::assemble_rest(backends, settings, store.clone(), waiting).await;
        if !matches!(rest, Ok(Some(_))) {
            store.close().await;
        }
        rest
    }

    async fn assemble_rest(
        backends: &Backends,
        settings: Settings,
        store: Store,
        waiting: Option<&CancellationToken>,
    ) -> Result<Option<Self>, SetupError> {
        let vault: Arc<dyn Vault> = match &backends.s3 {
            Some(config) => {
                let vault = S3Vault::new(config.clone())?;
                let at = format!("bucket {}", config.bucket);
                let mut wait = Wait::new(waiting, "vault", &at, backends);
                if patiently!(wait, vault.check()).is_none() {
                    return Ok(None);
                }
                Arc::new(vault)
            }
            None => Arc::new(LocalVault::open(backends.data_dir.join("vault"))?),
        };
        let sealer: Arc<dyn KeySealer> = match &backends.kms {
            Some(config) => {
                let sealer = KmsKeySealer::new(config.clone())?;
                let at = format!("key {}", config.key_id);
                let mut wait = Wait::new(waiting, "key sealing", &at, backends);
                if patiently!(wait, sealer.check()).is_none() {
                    return Ok(None);
                }
                Arc::new(sealer)
            }
            None => Arc::new(LocalKeySealer::open_or_create(
                &backends.data_dir.join("master.key"),
            )?),
        };
        let nats = match &backends.nats {
            Some(config) => {
                let at = crate::store::redact_url(&config.url);
                let mut wait = Wait::new(waiting, "transport", &at, backends);
                let Some(nats) = patiently!(wait, Nats::connect(config)) else {
                    return Ok(None);
                };
                Some(nats)
            }
            None => None,
        };
        let sandbox: Arc<dyn RestoreSandbox> = match ProcessSandboxes::for_placement(
            &settings.sandbox_placement,
            &backends.data_dir,
        ) {
            Ok(sandboxes) => Arc::new(sandboxes.with_limits(settings.sandbox_limits)),
            Err(failure) => Arc::new(crate::sandbox::Unavailable(failure.to_string())),
        };
        Ok(Some(Self {
            store,
            vault,
            sealer,
            sandbox,
            settings,
            nats,
        }))
    }
}

/// The longest pause between two tries of a backend at start-up.
const START_UP_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Evaluates `$attempt` (a future of a `Result` whose error converts into [`SetupError`]) until
/// it succeeds (`Some(value)`), fails for good (`return Err` from the enclosing function) or
/// `$wait`'s shutdown comes (`None`); once only when `$wait` does not wait. A macro, not a
/// generic function: sqlx's futures are not provably `Send` behind a generic closure.
macro_rules! patiently {
    ($wait:expr, $attempt:expr) => {
        loop {
            let outcome = match $wait.shutdown {
                None => $attempt.await.map_err(SetupError::from),
                Some(shutdown) => tokio::select! {
                    () = shutdown.cancelled() => break None,
                    outcome = $attempt => outcome.map_err(SetupError::from),
                },
            };
            match outcome {
                Ok(value) => {
                    $wait.reached();
                    break Some(value);
                }
                Err(error) => {
                    if !$wait.failed(error).await? {
                        break None;
                    }
                }
            }
        }
    };
}
use patiently;

/// The waiting for one backend at start-up: its back-off, and what the log says.
struct Wait<'a> {
    /// `None`: do not wait, fail at once.
    shutdown: Option<&'a CancellationToken>,
    port: &'static str,
    at: &'a str,
    backends: &'a Backends,
    backoff: Backoff,
    tries: u32,
}

impl<'a> Wait<'a> {
    fn new(
        shutdown: Option<&'a CancellationToken>,
        port: &'static str,
        at: &'a str,
        backends: &'a Backends,
    ) -> Self {
        Self {
            shutdown,
            port,
            at,
            backends,
            backoff: Backoff::new(START_UP_BACKOFF_CAP),
            tries: 0,
        }
    }

    /// The backend answered.
    fn reached(&self) {
        if self.tries > 0 {
            let (port, at, tries) = (self.port, self.at, self.tries);
            tracing::info!(waited_for = port, at, tries, "the {port} is reachable now");
        }
    }

    /// After a failed try: `Err` if it is not worth waiting for (or this open does not wait),
    /// else logs it and sleeps the next back-off delay; `Ok(true)`: try again, `Ok(false)`:
    /// shut down meanwhile.
    async fn failed(&mut self, error: SetupError) -> Result<bool, SetupError> {
        let Some(shutdown) = self.shutdown else {
            return Err(error);
        };
        if !waits_for(&error) {
            return Err(error);
        }
        self.tries += 1;
        let retry_in = self.backoff.next_delay();
        let (port, at, tries) = (self.port, self.at, self.tries);
        tracing::warn!(
            waiting_for = port,
            at,
            error = %without_secrets(&error.to_string(), self.backends),
            ?retry_in,
            tries,
            "waiting for the {port}: not reachable yet"
        );
        Ok(tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(retry_in) => true,
        })
    }
}

/// `text` with every configured URL's password replaced (errors quote the URL they failed on).
fn without_secrets(text: &str, backends: &Backends) -> String {
    let urls = [
        backends.database_url.as_deref(),
        backends.nats.as_ref().map(|n| n.url.as_str()),
        backends.s3.as_ref().and_then(|s| s.endpoint.as_deref()),
        backends.kms.as_ref().and_then(|k| k.endpoint.as_deref()),
    ];
    urls.into_iter()
        .flatten()
        .filter(|url| !url.is_empty())
        .fold(text.to_owned(), |text, url| {
            text.replace(url, &crate::store::redact_url(url))
        })
}

/// Whether a start-up failure means "not reachable yet" (wait and try again) rather than "can
/// never work as configured" (stop now, naming the setting). A backend that is down, starting,
/// overloaded or behind a broken network is waited for; a malformed URL, wrong credentials, a
/// missing database or bucket, a bucket without Object Lock or an unusable key is not.
pub fn waits_for(error: &SetupError) -> bool {
    match error {
        SetupError::Store(store) => store_unreachable(store),
        // The client's connect failed (refused, timed out, DNS) or JetStream did not answer
        // (the server is starting or has no leader yet). A malformed URL is refused before.
        SetupError::Nats(NatsError::Connect { .. } | NatsError::JetStream(_)) => true,
        // S3 and KMS classify their failures (throttling, 5xx, timeouts, no connection).
        SetupError::Vault(VaultError::Unavailable(_))
        | SetupError::Sealing(SealError::Unavailable(_)) => true,
        // S3 and KMS describe a failed call as text: the network kind is an unreachable
        // endpoint, a timeout, throttling or a 5xx answer of the service.
        SetupError::Vault(VaultError::Remote(detail)) => remote_unreachable(detail),
        SetupError::Sealing(SealError::Kms(detail)) => remote_unreachable(detail),
        SetupError::Vault(_) | SetupError::Sealing(_) => false,
    }
}

/// Whether a store error means the database is not reachable now (down, starting, overloaded, a
/// broken network) rather than a refusal or a database that can never work as configured.
pub fn store_unreachable(error: &StoreError) -> bool {
    match error {
        StoreError::Connect { source, .. } | StoreError::Database(source) => {
            database_unreachable(source)
        }
        StoreError::Unavailable(_) => true,
        _ => false,
    }
}

fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::Unsupported
                | std::io::ErrorKind::ReadOnlyFilesystem
        ),
        sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's SQLSTATE classes 08 (connection), 53 (resources: too many connections),
        // 57P (shutting down, starting up) and 58 (system i/o) are transient; 28 (password),
        // 3D (no such database) and the rest are not.
        sqlx::Error::Database(database) => database
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|postgres| {
                ["08", "53", "57P", "58"]
                    .iter()
                    .any(|class| postgres.code().starts_with(class))
            }),
        _ => false,
    }
}

/// The markers [`crate::aws::describe`] gives a transport failure or an overloaded service.
fn remote_unreachable(detail: &str) -> bool {
    ["endpoint unreachable", "(HTTP 5", "Throttling", "SlowDown"]
        .iter()
        .any(|marker| detail.contains(marker))
}

fn line(port: &'static str, outcome: Result<String, String>) -> BackendReport {
    match outcome {
        Ok(detail) => BackendReport {
            port,
            detail,
            ok: true,
        },
        Err(detail) => BackendReport {
            port,
            detail,
            ok: false,
        },
    }
}

/// Checks each backend on its own (one failing does not hide the others), for
/// `restorable doctor`.
pub async fn diagnose(backends: &Backends, settings: &Settings) -> Vec<BackendReport> {
    let store = match &backends.database_url {
        Some(location) => Store::connect(location).await,
        None => Store::open(&backends.data_dir).await,
    };
    let mut report = vec![line(
        "event store",
        match store {
            Ok(store) => {
                let outcome = store
                    .read_after(0, 1)
                    .await
                    .map(|_| format!("{} (migrated, readable)", store.backend_name()))
                    .map_err(|e| e.to_string());
                store.close().await;
                outcome
            }
            Err(error) => Err(error.to_string()),
        },
    )];
    report.push(line(
        "transport",
        match &backends.nats {
            None => Ok("in-process (embedded default)".to_owned()),
            Some(config) => match Nats::connect(config).await {
                Ok(nats) => nats.describe().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            },
        },
    ));
    let vault = match &backends.s3 {
        Some(config) => match S3Vault::new(config.clone()) {
            Ok(vault) => vault.check().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        },
        None => LocalVault::open(backends.data_dir.join("vault"))
            .map(|_| {
                format!(
                    "local directory {}",
                    backends.data_dir.join("vault").display()
                )
            })
            .map_err(|e| e.to_string()),
    };
    report.push(line("vault", vault));
    let sealing = match &backends.kms {
        Some(config) => match KmsKeySealer::new(config.clone()) {
            Ok(sealer) => sealer.check().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        },
        None => LocalKeySealer::open_or_create(&backends.data_dir.join("master.key"))
            .map(|_| {
                format!(
                    "local master key {}",
                    backends.data_dir.join("master.key").display()
                )
            })
            .map_err(|e| e.to_string()),
    };
    report.push(line("key sealing", sealing));
    report.push(line(
        "restore sandbox",
        ProcessSandboxes::for_placement(&settings.sandbox_placement, &backends.data_dir)
            .map(|s| s.with_limits(settings.sandbox_limits).describe())
            .map_err(|e| e.to_string()),
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_testkit::free_port;
    use restorable_testkit::test_server_url;
    use std::time::Instant;

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    fn connect_error(source: sqlx::Error) -> SetupError {
        SetupError::Store(StoreError::Connect {
            location: "postgres://u:***@h/db".to_owned(),
            source,
        })
    }

    #[test]
    fn an_unreachable_backend_is_waited_for_and_a_wrong_setting_is_not() {
        let wait = [
            connect_error(io(std::io::ErrorKind::ConnectionRefused)),
            connect_error(io(std::io::ErrorKind::TimedOut)),
            connect_error(sqlx::Error::PoolTimedOut),
            SetupError::Store(StoreError::Database(io(
                std::io::ErrorKind::ConnectionReset,
            ))),
            SetupError::Nats(NatsError::Connect {
                url: "nats://127.0.0.1:1".to_owned(),
                detail: "Connection refused (os error 111)".to_owned(),
            }),
            SetupError::Nats(NatsError::JetStream("stream EVENTS: timed out".to_owned())),
            SetupError::Vault(VaultError::Remote(
                "S3 HeadBucket bucket b: endpoint unreachable: dispatch failure".to_owned(),
            )),
            SetupError::Vault(VaultError::Remote(
                "S3 HeadBucket bucket b: ServiceUnavailable (HTTP 503): slow down".to_owned(),
            )),
            SetupError::Sealing(SealError::Kms(
                "KMS DescribeKey with key k: endpoint unreachable: io error".to_owned(),
            )),
            SetupError::Sealing(SealError::Kms(
                "KMS Encrypt with key k: ThrottlingException (HTTP 400): rate exceeded".to_owned(),
            )),
        ];
        for error in &wait {
            assert!(waits_for(error), "should wait: {error}");
        }
        let fail = [
            connect_error(sqlx::Error::Configuration("invalid port number".into())),
            connect_error(io(std::io::ErrorKind::PermissionDenied)),
            SetupError::Store(StoreError::Rejected("no".to_owned())),
            SetupError::Vault(VaultError::Config(
                "AWS_ACCESS_KEY_ID is not set".to_owned(),
            )),
            SetupError::Vault(VaultError::Remote(
                "bucket b has no Object Lock: create it with --object-lock-enabled-for-bucket"
                    .to_owned(),
            )),
            SetupError::Vault(VaultError::Remote("bucket b does not exist".to_owned())),
            SetupError::Sealing(SealError::Kms(
                "KMS DescribeKey with key k: NotFoundException (HTTP 400): no key".to_owned(),
            )),
        ];
        for error in &fail {
            assert!(!waits_for(error), "should fail at once: {error}");
        }
    }

    #[tokio::test]
    async fn real_database_errors_are_classified() {
        let refused = Store::connect(&format!("postgres://u:s3cret@127.0.0.1:{}/db", free_port()))
            .await
            .err()
            .expect("nothing listens there");
        assert!(waits_for(&refused.into()));
        let server = test_server_url();
        let (base, _) = server.rsplit_once('/').expect("a database in the URL");
        let missing = Store::connect(&format!("{base}/restorable_no_such_database"))
            .await
            .err()
            .expect("no such database");
        let missing = SetupError::from(missing);
        assert!(!waits_for(&missing), "{missing}");
    }

    fn unreachable_nats(data_dir: &std::path::Path) -> Backends {
        Backends {
            data_dir: data_dir.to_owned(),
            nats: Some(NatsConfig {
                url: format!("nats://u:s3cret@127.0.0.1:{}", free_port()),
            }),
            ..Backends::default()
        }
    }

    #[tokio::test]
    async fn a_waiting_open_ends_when_shut_down_and_a_plain_open_fails_fast() {
        let data = tempfile::tempdir().expect("tempdir");
        let backends = unreachable_nats(data.path());
        let started = Instant::now();
        let error = Pipeline::open(&backends, Settings::default())
            .await
            .err()
            .expect("nothing listens there");
        assert!(matches!(error, SetupError::Nats(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(15));

        let shutdown = CancellationToken::new();
        let waiting = Pipeline::open_waiting(&backends, Settings::default(), &shutdown);
        tokio::pin!(waiting);
        let early = tokio::time::timeout(Duration::from_millis(1500), &mut waiting).await;
        assert!(early.is_err(), "it waits for NATS");
        shutdown.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("stops at once when shut down");
        assert!(matches!(outcome, Ok(None)));
    }
}
