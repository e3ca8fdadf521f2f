//! The API tests' world: a real pipeline (SQLite, or a scratch PostgreSQL database) with two
//! tenants — `acme` with a healthy PBX and `globex` with one whose backup cannot be opened
//! (fails at verify, raising an alert) — one cycle each up the ladder, a user and an API token
//! per tenant and role, and the HTTP server on a free port.
#![allow(dead_code)] // each test file uses its own part

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use restorable_api::auth::{add_user, issue_token, Role, Scope};
use restorable_api::{AppState, ServerOptions};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::alerting::AlertRoutes;
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::runtime::driver::run_until_closed;
use restorable_pipeline::setup::Backends;
use restorable_testkit::{test_server_url, ScratchDatabase};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// Every user's password in these tests.
pub const PASSWORD: &str = "correct horse battery staple";

/// One tenant's part of the world.
pub struct TenantWorld {
    pub tenant: TenantId,
    pub instance: InstanceId,
    pub cycle: CycleId,
    /// API tokens by role.
    pub tokens: HashMap<Role, String>,
    /// The PBX's API secret (must never appear in a response).
    pub pbx_secret: String,
}

pub struct World {
    pub pipeline: Pipeline,
    pub read: ReadSide,
    pub base: String,
    pub acme: TenantWorld,
    pub globex: TenantWorld,
    pub http: reqwest::Client,
    /// The embedded default's state (the local vault is under `vault/`).
    pub data_dir: std::path::PathBuf,
    /// What the server shares.
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    _pbxes: Vec<RunningPbx>,
    _sims: tempfile::TempDir,
    _database: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn email(tenant: &str, role: Role) -> String {
    format!("{}@{tenant}.example", role.as_str())
}

impl World {
    pub async fn sqlite() -> Self {
        Self::build(false, ServerOptions::default()).await
    }

    /// On SQLite, served with `options`; each backup carries 1 MiB of recordings (a download
    /// spans several chunks).
    pub async fn sqlite_with(options: ServerOptions) -> Self {
        Self::build_with(false, options, 1 << 20, AlertRoutes::default()).await
    }

    pub async fn postgres() -> Self {
        Self::build(true, ServerOptions::default()).await
    }

    /// On a scratch PostgreSQL database, served with `options`.
    pub async fn postgres_with(options: ServerOptions) -> Self {
        Self::build(true, options).await
    }

    async fn build(postgres: bool, options: ServerOptions) -> Self {
        Self::build_with(postgres, options, 0, AlertRoutes::default()).await
    }

    /// On SQLite, alerts routed by `routes` (the routes' timing shows on the instance page).
    pub async fn sqlite_routed(routes: AlertRoutes) -> Self {
        Self::build_with(false, ServerOptions::default(), 0, routes).await
    }

    async fn build_with(
        postgres: bool,
        options: ServerOptions,
        padding: u64,
        alert_routes: AlertRoutes,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = if postgres {
            Some(
                ScratchDatabase::create(&test_server_url())
                    .await
                    .expect("a PostgreSQL server for tests (RESTORABLE_TEST_DATABASE_URL)"),
            )
        } else {
            None
        };
        let backends = Backends {
            data_dir: dir.path().join("data"),
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            ..Backends::default()
        };
        let settings = Settings {
            capture_deadline: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
            alert_routes,
            ..Settings::default()
        };
        let pipeline = Pipeline::open(&backends, settings).await.expect("pipeline");
        let sims = tempfile::tempdir().expect("tempdir");
        let mut pbxes = Vec::new();
        let mut tenants = Vec::new();
        for (tenant, fault) in [("acme", None), ("globex", Some(Fault::WrongPassword))] {
            let mut config = SimPbxConfig::new(&format!("{tenant}-hq"), 11);
            config.fault = fault;
            config.backup_delay = Duration::from_millis(20);
            config.padding_bytes = padding;
            let pbx = RunningPbx::start(config, sims.path())
                .await
                .expect("simulator");
            let tenant = TenantId::new(tenant).expect("slug");
            let instance = enrol(
                &pipeline,
                EnrolRequest {
                    tenant: tenant.clone(),
                    name: "hq".into(),
                    fqdn: format!("hq.{tenant}.example"),
                    api_url: pbx.base_url(),
                    credentials: PbxCredentials {
                        client_id: SecretString::from(pbx.config().client_id.clone()),
                        client_secret: SecretString::from(pbx.config().client_secret.clone()),
                    },
                    schedule: Schedule::DAILY,
                    restore_policy: RestorePolicy::default(),
                },
            )
            .await
            .expect("enrol");
            let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
                .await
                .expect("open a cycle");
            let mut tokens = HashMap::new();
            for role in [Role::Administrator, Role::Owner, Role::Viewer] {
                let email = email(tenant.as_str(), role);
                add_user(
                    &pipeline.store,
                    &email,
                    &SecretString::from(PASSWORD.to_owned()),
                    role,
                    &Scope::Tenant(tenant.clone()),
                )
                .await
                .expect("add user");
                let token = issue_token(&pipeline.store, &email, "tests")
                    .await
                    .expect("token");
                tokens.insert(role, token);
            }
            tenants.push(TenantWorld {
                tenant,
                instance,
                cycle,
                tokens,
                pbx_secret: pbx.config().client_secret.clone(),
            });
            pbxes.push(pbx);
        }
        let cycles: HashSet<_> = tenants.iter().map(|t| t.cycle).collect();
        run_until_closed(&pipeline, cycles, 0, Duration::from_secs(120), |_| {})
            .await
            .expect("both cycles close");
        let read = ReadSide::load(&pipeline.store).await.expect("views");
        let shutdown = CancellationToken::new();
        // The alerts stage may still be raising the failure's alert: wait for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            restorable_pipeline::runtime::run_stages(
                &pipeline,
                &["alerts"],
                &Default::default(),
                cancelled_after(Duration::from_millis(300)),
            )
            .await;
            read.catch_up_and_store(&pipeline.store)
                .await
                .expect("fold");
            if !read.read().alerts.rows().is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no alert was raised"
            );
        }
        tokio::spawn(read.clone().run(
            pipeline.store.clone(),
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let signer = restorable_pipeline::evidence::LocalSigner::open_or_create(
            &dir.path().join("data").join("signing-key"),
        )
        .expect("signing key");
        let state = Arc::new(
            AppState::with_options(pipeline.clone(), read.clone(), options)
                .with_signer(Arc::new(signer)),
        );
        tokio::spawn(restorable_api::serve(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
        let mut tenants = tenants.into_iter();
        let (acme, globex) = (
            tenants.next().expect("acme"),
            tenants.next().expect("globex"),
        );
        Self {
            pipeline,
            read,
            base,
            acme,
            globex,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            data_dir: dir.path().join("data"),
            state,
            shutdown,
            _pbxes: pbxes,
            _sims: sims,
            _database: database,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn cancelled_after(after: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        child.cancel();
    });
    token
}
