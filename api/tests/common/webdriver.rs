//! A small W3C WebDriver client for the browser tests: starts `chromedriver` on a free port of
//! 127.0.0.1 (waiting for `GET /status` to say it is ready), opens a headless Chromium session
//! and speaks the few commands the tests need over HTTP with reqwest. Dropping the [`Browser`]
//! ends the session (chromedriver then quits Chromium), kills chromedriver's process group and
//! removes the scratch dir Chromium kept its profile in, so nothing outlives a test, passed or
//! failed.
//!
//! Binaries: `RESTORABLE_CHROMEDRIVER` / `RESTORABLE_CHROMIUM` (scripts/services.sh exports
//! them), else `chromedriver` / `chromium` on `PATH`. scripts/install-deps.sh installs Debian's
//! `chromium-driver` and `chromium`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to answer ready, and Chromium to start.
const STARTUP: Duration = Duration::from_secs(60);
/// How long a `find` waits for its element to appear (the session's implicit wait).
pub const IMPLICIT_WAIT: Duration = Duration::from_secs(15);

/// Finds `name`: the path in `env` if set, else the first `name` on `PATH` (or in /usr/bin);
/// `Err` says where it looked.
fn binary(env: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} is not a file", path.display()))
        };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("{env} is not set and no {name} is on PATH"))
}

/// The chromedriver and Chromium to use; `None` when `RESTORABLE_SKIP_BROWSER=1` says to skip.
///
/// # Panics
/// Either binary is missing (and skipping was not asked for): the message says how to fix it.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    if std::env::var("RESTORABLE_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("RESTORABLE_SKIP_BROWSER=1: skipping the browser test");
        return None;
    }
    let find = |env: &str, name: &str, package: &str| {
        binary(env, name).unwrap_or_else(|why| {
            panic!(
                "the browser tests need {name} ({why}): run scripts/install-deps.sh, which \
                 installs the Debian package {package}, or set RESTORABLE_SKIP_BROWSER=1 to \
                 skip these tests explicitly"
            )
        })
    };
    Some((
        find("RESTORABLE_CHROMEDRIVER", "chromedriver", "chromium-driver"),
        find("RESTORABLE_CHROMIUM", "chromium", "chromium"),
    ))
}

/// A headless Chromium session driven through its own chromedriver.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    port: u16,
    session_id: String,
    driver: Child,
    /// chromedriver's log and TMPDIR (Chromium's profile): removed once both are gone.
    _scratch: tempfile::TempDir,
}

/// An element found in the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    ///
    /// # Panics
    /// Chromedriver does not start or get ready in time, or the session cannot be created.
    pub async fn start(chromedriver: &Path, chromium: &Path) -> Self {
        let scratch = tempfile::tempdir().expect("a scratch dir for chromedriver and Chromium");
        let log = scratch.path().join("chromedriver.log");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            // Chromium's profile and singleton dirs go here, not in /tmp (a killed browser
            // would leave them behind).
            .env("TMPDIR", scratch.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Drop kills chromedriver and whatever it started in one go.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            if let Ok(Some(exit)) = driver.try_wait() {
                panic!(
                    "chromedriver exited ({exit}) before it was ready on port {port}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = kill_group(&mut driver);
                panic!("chromedriver was not ready on port {port} within {STARTUP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
            "timeouts": {"implicit": IMPLICIT_WAIT.as_millis() as u64, "pageLoad": 60_000},
        }}});
        let answer = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await;
        let value = match answer {
            Ok(response) => response.json::<Value>().await.unwrap_or_default(),
            Err(error) => json!({"value": {"error": error.to_string()}}),
        };
        let Some(session_id) = value["value"]["sessionId"].as_str().map(str::to_owned) else {
            let _ = kill_group(&mut driver);
            panic!(
                "chromedriver could not start {} headless: {}\n{}",
                chromium.display(),
                value["value"],
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self {
            http,
            session: format!("{base}/session/{session_id}"),
            port,
            session_id,
            driver,
            _scratch: scratch,
        }
    }

    /// Sends a command; its answer's `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON: {e}"));
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status}: {} — {}",
            answer["value"]["error"],
            answer["value"]["message"]
        );
        answer["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url` (returns once the page has loaded).
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().expect("a URL").to_owned()
    }

    /// The first element matching the CSS `selector`, waiting up to [`IMPLICIT_WAIT`] for it.
    pub async fn find(&self, selector: &str) -> Element {
        let found = self
            .post(
                "/element",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        Element(
            found[ELEMENT_KEY]
                .as_str()
                .expect("an element reference")
                .to_owned(),
        )
    }

    /// Every element matching `selector` now (no waiting).
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        let found = self
            .post(
                "/elements",
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        found
            .as_array()
            .expect("a list of elements")
            .iter()
            .map(|e| {
                Element(
                    e[ELEMENT_KEY]
                        .as_str()
                        .expect("an element reference")
                        .to_owned(),
                )
            })
            .collect()
    }

    /// The rendered text of `element`.
    pub async fn text(&self, element: &Element) -> String {
        let text = self.get(&format!("/element/{}/text", element.0)).await;
        text.as_str().expect("text").to_owned()
    }

    /// The value of `element`'s attribute `name`, if it has one.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .get(&format!("/element/{}/attribute/{name}", element.0))
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks `element` (a link or submit button: returns once the next page has loaded).
    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// The cookies the browser holds for the current page, as WebDriver describes them
    /// (`name`, `value`, `httpOnly`, `secure`, `sameSite`, …): what the browser stores, HttpOnly
    /// ones included.
    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .expect("a list of cookies")
            .clone()
    }
}

/// Kills `driver`'s process group (chromedriver and any Chromium left) and reaps chromedriver.
fn kill_group(driver: &mut Child) -> std::io::Result<()> {
    // The group's id is chromedriver's pid (`process_group(0)`); `kill -- -PGID` signals them all.
    let group = format!("-{}", driver.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    if !matches!(killed, Ok(status) if status.success()) {
        let _ = driver.kill();
    }
    driver.wait().map(|_| ())
}

/// `DELETE /session/ID` with a plain blocking request (Drop cannot await): chromedriver then
/// quits Chromium and removes its profile. Returns once the answer's head has arrived (the
/// answer is sent after Chromium has quit; chromedriver keeps the connection open).
fn delete_session(port: u16, session_id: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "chromedriver answered {:?}",
            String::from_utf8_lossy(&answer)
        )))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Err(error) = delete_session(self.port, &self.session_id) {
            eprintln!(
                "ending the WebDriver session failed ({error}); killing chromedriver's group"
            );
        }
        if let Err(error) = kill_group(&mut self.driver) {
            eprintln!("reaping chromedriver failed: {error}");
        }
    }
}
