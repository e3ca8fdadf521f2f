//! One local AWS endpoint (moto) per test process, for the S3 and KMS tests.
//!
//! If `RESTORABLE_TEST_AWS_ENDPOINT` is set, that endpoint is used as is. Otherwise a moto
//! server (`${RESTORABLE_MOTO_SERVER:-moto_server}`) is started once, on a free port of
//! 127.0.0.1, from a dedicated thread that lives as long as the test process: it is started
//! through `setpriv --pdeathsig KILL`, so the kernel kills it when that thread — that is, the
//! test process — ends (no moto process outlives `cargo test`). Readiness is polled over HTTP,
//! without fixed sleeps. Test credentials are put into the environment before any client exists.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::free_port;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Region every test client uses.
pub const AWS_REGION: &str = "us-east-1";
/// How long moto may take to answer its first request.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// The endpoint URL of this test binary's local AWS (started on first use).
pub fn aws_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        // Set once, before the first client reads them (the adapters read them at construction).
        std::env::set_var("AWS_ACCESS_KEY_ID", "restorable-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "restorable-test-secret");
        std::env::remove_var("AWS_SESSION_TOKEN");
        match std::env::var("RESTORABLE_TEST_AWS_ENDPOINT") {
            Ok(url) if !url.is_empty() => url,
            _ => start_moto(),
        }
    })
}

/// A unique, valid bucket name for one test.
pub fn unique_bucket(label: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("rt-{label}-{}", &id[..16])
}

/// Whether an HTTP server answers on `addr` (any status line counts).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Starts moto on a free port from a thread that outlives every test, and waits until it
/// answers.
fn start_moto() -> String {
    let program =
        std::env::var("RESTORABLE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
    let port = free_port();
    let (sender, receiver) = std::sync::mpsc::channel();
    let spawn_program = program.clone();
    // Set to moto's last output if it exits (it never should while tests run).
    let exited: Arc<Mutex<Option<String>>> = Arc::default();
    let exited_in_thread = Arc::clone(&exited);
    std::thread::Builder::new()
        .name("moto-server".to_owned())
        .spawn(move || {
            // PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: this thread
            // never ends before the process does.
            let child = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--"])
                .arg(&spawn_program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            match child {
                Ok(mut child) => {
                    let stderr = child.stderr.take();
                    let _ = sender.send(Ok(()));
                    // Keep draining moto's log so it never blocks on a full pipe; remember the
                    // tail for a failed start.
                    let mut tail = Vec::new();
                    if let Some(mut stderr) = stderr {
                        let mut chunk = [0u8; 4096];
                        while let Ok(n) = stderr.read(&mut chunk) {
                            if n == 0 {
                                break;
                            }
                            tail.extend_from_slice(&chunk[..n]);
                            if tail.len() > 8192 {
                                tail.drain(..tail.len() - 8192);
                            }
                        }
                    }
                    let status = child.wait();
                    let report = format!(
                        "moto server exited ({status:?}); its last output:\n{}",
                        String::from_utf8_lossy(&tail)
                    );
                    eprintln!("{report}");
                    if let Ok(mut slot) = exited_in_thread.lock() {
                        *slot = Some(report);
                    }
                    // Stay alive anyway: ending this thread changes nothing now.
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                }
            }
        })
        .expect("spawn the moto thread");
    match receiver.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "cannot start the local AWS endpoint `setpriv --pdeathsig KILL -- {program}`: {e}. \
             Install moto (`pip install 'moto[server]'`), set RESTORABLE_MOTO_SERVER to its \
             moto_server, or point RESTORABLE_TEST_AWS_ENDPOINT at a running endpoint"
        ),
        Err(_) => panic!("the moto thread died while starting {program}"),
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    while !answers_http(addr) {
        if let Some(report) = exited.lock().ok().and_then(|slot| slot.clone()) {
            panic!(
                "{program} did not start on {addr}: {report}\nIs moto installed \
                 (`pip install 'moto[server]'`)? Set RESTORABLE_MOTO_SERVER to its moto_server \
                 or RESTORABLE_TEST_AWS_ENDPOINT to a running endpoint"
            );
        }
        assert!(
            started.elapsed() < STARTUP_LIMIT,
            "{program} did not answer on {addr} within {STARTUP_LIMIT:?}: is moto installed \
             (`pip install 'moto[server]'`)? Set RESTORABLE_MOTO_SERVER to its moto_server or \
             RESTORABLE_TEST_AWS_ENDPOINT to a running endpoint"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    format!("http://{addr}")
}
