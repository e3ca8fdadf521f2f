//! Which PBX URLs are accepted (`https`, or `http` to a loopback address or by explicit
//! choice) and the origin (scheme, host, port) every request must stay on.

use reqwest::Url;

/// Why a PBX URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an absolute URL.
    #[error("the PBX URL is not an absolute URL ({0})")]
    NotAUrl(String),
    /// Neither `https` nor `http`.
    #[error("the PBX URL must be https (not {0})")]
    Scheme(String),
    /// A user name or password in the URL (it would end up in logs).
    #[error("the PBX URL must not carry a user name or password")]
    Userinfo,
    /// Plain `http` to a host that is not loopback, not explicitly allowed.
    #[error(
        "plain http to {0} would send the tenant's backup password in clear: use https, or \
         enrol the instance with allow_insecure_http (--allow-insecure-http)"
    )]
    InsecureHttp(String),
}

/// Whether `url`'s host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The origin of `url` (scheme, host, port) as a comparable key; `None` for an opaque origin
/// (which equals nothing, not even itself).
pub(super) fn origin_key(url: &Url) -> Option<String> {
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The origin of a URL as shown to people (`https://pbx.example:5001`), or the text itself when
/// it is not a URL.
pub fn origin_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

/// Checks a PBX base URL: `https`, or `http` to a loopback address, or `http` anywhere when
/// `allow_insecure_http`; no credentials in it.
///
/// # Errors
/// [`EndpointError`] naming what is wrong.
pub fn check_endpoint(api_url: &str, allow_insecure_http: bool) -> Result<Url, EndpointError> {
    let url = Url::parse(api_url).map_err(|e| EndpointError::NotAUrl(e.to_string()))?;
    if url.host().is_none() {
        return Err(EndpointError::NotAUrl("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Userinfo);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(EndpointError::InsecureHttp(
            url.origin().ascii_serialization(),
        )),
        other => Err(EndpointError::Scheme(other.to_owned())),
    }
}
