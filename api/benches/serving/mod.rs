//! What both API benchmarks set up: the API served in this process with one user's API token,
//! and the peer — `python3 -m http.server` serving a directory — on free ports of 127.0.0.1.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use restorable_api::auth::{add_user, issue_token, Role, Scope};
use restorable_api::AppState;
use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use restorable_testkit::free_port;
use secrecy::SecretString;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The API being served.
pub struct Served {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The user's API token.
    pub token: String,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Stops the server.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

/// Adds the user `email` with `role` over `scope`, issues an API token, and serves the API
/// over `pipeline` and `read`.
pub async fn serve_api(
    pipeline: &Pipeline,
    read: &ReadSide,
    email: &str,
    role: Role,
    scope: &Scope,
) -> Served {
    add_user(
        &pipeline.store,
        email,
        &SecretString::from("correct horse battery staple".to_owned()),
        role,
        scope,
    )
    .await
    .expect("add the user");
    let token = issue_token(&pipeline.store, email, "bench")
        .await
        .expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(restorable_api::serve(
        listener,
        Arc::new(AppState::new(pipeline.clone(), read.clone())),
        shutdown.clone(),
    ));
    Served {
        base,
        token,
        shutdown,
        server,
    }
}

/// `python3 -m http.server` serving `dir`, answering on the returned port (killed when the
/// child is dropped).
pub async fn static_peer(dir: &Path) -> (Child, u16) {
    let port = free_port();
    let python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m http.server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "python3 -m http.server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (python, port)
}
