//! `restorable demo --serve`: the demo runs, then the web UI and API keep serving its fleet
//! (with a demo administrator whose password is printed once) until SIGTERM, and the fleet
//! page shows the demo's instances with their ladders and failures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo if the test fails before stopping it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serve_shows_the_demo_fleet_until_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_restorable"))
        .args(["demo", "--serve", "--listen", "127.0.0.1:0", "--fleet", "3"])
        .args(["--capture-deadline-secs", "2", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut running = Running(child);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let (mut address, mut login) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while address.is_none() || login.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .expect("the demo prints its address and login");
        if let Some(rest) = line.strip_prefix("Serving the web UI and API on ") {
            address = rest
                .split_whitespace()
                .next()
                .map(|a| a.trim_end_matches('/').to_owned());
        }
        if let Some(rest) = line.strip_prefix("Sign in as ") {
            let words: Vec<_> = rest.split_whitespace().collect();
            login = Some((words[0].to_owned(), words[3].to_owned()));
        }
    }
    let (address, (email, password)) = (address.expect("address"), login.expect("login"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let unauthenticated = http.get(format!("{address}/")).send().await.expect("get /");
    assert_eq!(
        unauthenticated.status(),
        303,
        "the page asks to sign in first"
    );
    let signed_in = http
        .post(format!("{address}/login"))
        .form(&[("email", email.as_str()), ("password", password.as_str())])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let page = http
        .get(format!("{address}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("fleet page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Managed Backups"), "{page}");
    for name in ["pbx-01", "pbx-02", "pbx-03"] {
        assert!(page.contains(name), "{name} on the fleet page");
    }
    assert!(
        page.contains("pbx_auth"),
        "pbx-02's failure reason is shown"
    );
    assert!(page.contains("3 instances"), "the demo fleet, nothing else");

    let child = &mut running.0;
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "the demo ends cleanly on SIGTERM: {status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still serving after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}
