//! Security headers on every response (pages, JSON, CSV, downloads, errors and unknown routes
//! alike): `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, a strict
//! `Content-Security-Policy` and, when the request reached us over TLS (an `https` URI, or
//! `X-Forwarded-Proto: https` from a proxy the configuration says to trust),
//! `Strict-Transport-Security`.

use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::Shared;

/// The policy of every response: same-origin resources only, forms post only to us, no
/// `<base>`, never framed.
pub const CSP: &str =
    "default-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// HSTS: a year, subdomains included.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Whether the request came over TLS (directly, or through a trusted proxy that says so).
pub fn over_tls(request: &Request, trust_forwarded_proto: bool) -> bool {
    if request.uri().scheme_str() == Some("https") {
        return true;
    }
    trust_forwarded_proto
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The middleware: runs the request, then sets the headers on whatever came back.
pub async fn security_headers(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let tls = over_tls(&request, state.options.trust_forwarded_proto);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    if tls {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forwarded: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/x");
        if let Some(proto) = forwarded {
            builder = builder.header("x-forwarded-proto", proto);
        }
        builder.body(axum::body::Body::empty()).expect("a request")
    }

    #[test]
    fn a_forwarded_proto_counts_only_when_trusted() {
        assert!(!over_tls(&request(None), true));
        assert!(!over_tls(&request(Some("https")), false));
        assert!(over_tls(&request(Some("https")), true));
        assert!(over_tls(&request(Some("HTTPS ")), true));
        assert!(!over_tls(&request(Some("http")), true));
    }
}
