//! A fault-injecting HTTP proxy in front of the local AWS endpoint (moto), for the tests of
//! transient and permanent KMS and S3 errors: moto cannot throttle on demand, so the fault is
//! injected on the wire. The proxy answers the next N requests (or all of them) with the error
//! the real service sends — KMS: HTTP 400 `{"__type": "ThrottlingException"}`; S3: HTTP 503
//! `<Code>SlowDown</Code>` — or with a permanent refusal (`AccessDeniedException`,
//! `AccessDenied`), and forwards every other request to moto unchanged.
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

/// Which service's error documents the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// AWS JSON 1.1 errors (`__type`).
    Kms,
    /// S3 XML errors (`<Error><Code>`).
    S3,
}

/// What the proxy does to the requests it is told to fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The service is busy: KMS `ThrottlingException`, S3 503 `SlowDown`.
    Throttle,
    /// The caller may not: KMS `AccessDeniedException`, S3 403 `AccessDenied`.
    Deny,
}

struct ProxyState {
    service: Service,
    upstream: String,
    client: reqwest::Client,
    fault: Mutex<Fault>,
    /// Requests still to fault; `u32::MAX`: every request.
    remaining: AtomicU32,
    /// Requests faulted so far.
    faulted: AtomicU32,
    /// Requests forwarded so far.
    forwarded: AtomicU32,
}

/// A running proxy (it stops with the test's runtime).
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    /// Starts a proxy for `service` in front of `upstream` (e.g. moto's URL), passing everything
    /// until told otherwise.
    pub async fn start(service: Service, upstream: &str) -> Self {
        let state = Arc::new(ProxyState {
            service,
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            fault: Mutex::new(Fault::Throttle),
            remaining: AtomicU32::new(0),
            faulted: AtomicU32::new(0),
            forwarded: AtomicU32::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    /// The URL to configure as the service's endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, fault: Fault, count: u32) {
        if let Ok(mut slot) = self.state.fault.lock() {
            *slot = fault;
        }
        self.state.remaining.store(count, Ordering::SeqCst);
    }

    /// Throttles the next `count` requests.
    pub fn throttle(&self, count: u32) {
        self.set(Fault::Throttle, count);
    }

    /// Throttles every request until [`FaultProxy::pass`].
    pub fn throttle_always(&self) {
        self.set(Fault::Throttle, u32::MAX);
    }

    /// Refuses every request with access denied until [`FaultProxy::pass`].
    pub fn deny_always(&self) {
        self.set(Fault::Deny, u32::MAX);
    }

    /// Forwards everything again.
    pub fn pass(&self) {
        self.state.remaining.store(0, Ordering::SeqCst);
    }

    /// How many requests were faulted so far.
    pub fn faulted(&self) -> u32 {
        self.state.faulted.load(Ordering::SeqCst)
    }

    /// How many requests were forwarded so far.
    pub fn forwarded(&self) -> u32 {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

impl ProxyState {
    /// Takes one fault off the budget, if any is left.
    fn take_fault(&self) -> Option<Fault> {
        let taken = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if !taken {
            return None;
        }
        self.faulted.fetch_add(1, Ordering::SeqCst);
        self.fault.lock().ok().map(|f| *f)
    }

    fn fault_response(&self, fault: Fault) -> Response {
        let (status, content_type, body) = match (self.service, fault) {
            (Service::Kms, Fault::Throttle) => (
                StatusCode::BAD_REQUEST,
                "application/x-amz-json-1.1",
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
            ),
            (Service::Kms, Fault::Deny) => (
                StatusCode::BAD_REQUEST,
                "application/x-amz-json-1.1",
                r#"{"__type":"AccessDeniedException","message":"not authorized to use the key"}"#
                    .to_owned(),
            ),
            (Service::S3, fault) => {
                let (status, code, message) = match fault {
                    Fault::Throttle => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "SlowDown",
                        "Please reduce your request rate.",
                    ),
                    Fault::Deny => (StatusCode::FORBIDDEN, "AccessDenied", "Access Denied"),
                };
                (
                    status,
                    "application/xml",
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                         <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
                    ),
                )
            }
        };
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .header("x-amzn-requestid", "fault-proxy")
            .body(Body::from(body))
            .unwrap_or_default()
    }
}

/// Headers that describe one hop, not the message.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::HOST,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::EXPECT,
        header::CONTENT_LENGTH,
    ]
    .contains(name)
}

async fn handle(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(fault) = state.take_fault() {
        return state.fault_response(fault);
    }
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = HeaderMap::new();
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    let answer = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .headers(forwarded)
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("fault proxy: upstream failed: {error}")))
                .unwrap_or_default()
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap_or_default()
}
