//! What the S3 vault and the KMS sealer share: the HTTP client (rustls on *ring*), static
//! credentials from the environment, and how a failed SDK call is classified (transient or
//! permanent) and described without credentials.
//!
//! # Layout
//! - this file: client, credentials, error classification.
//! - [`emulator`]: work-arounds for the local AWS endpoint (moto) that stay harmless on AWS;
//!   each is listed in `AWS_GAPS.md`.

pub(crate) mod emulator;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, SharedHttpClient};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The HTTP client every AWS SDK client here uses: hyper 1 with rustls on *ring* (already in the
/// dependency graph through reqwest), instead of the SDKs' default aws-lc build.
pub(crate) fn aws_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Static credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the optional
/// `AWS_SESSION_TOKEN`). The error names the missing variable, never a value.
pub(crate) fn env_credentials() -> Result<Credentials, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let access_key = var("AWS_ACCESS_KEY_ID")
        .ok_or("AWS credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
    let secret_key = var("AWS_SECRET_ACCESS_KEY").ok_or(
        "AWS credentials missing: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
    )?;
    Ok(Credentials::new(
        access_key,
        secret_key,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// A failed SDK call (every AWS operation's error has this shape).
pub(crate) type AwsError<E> = SdkError<E, HttpResponse>;

/// The HTTP status of a failed call, if a response came back.
pub(crate) fn status<E>(err: &AwsError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code (`NoSuchKey`, `AccessDenied`, ...), if it answered with one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &AwsError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Error codes of S3 and KMS that mean "busy or briefly broken, try again": throttling,
/// internal errors and timeouts of the service (the same families the SDK's own retry
/// classifier treats as throttling or transient).
const TRANSIENT_CODES: &[&str] = &[
    // Throttling.
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    // The service broken inside or not answering in time.
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
];

/// Whether a failed S3 or KMS call may succeed if tried again later: a timeout, a connection
/// that could not be made or broke (a dispatch failure that is not a malformed request), an
/// answer cut off or unreadable on the wire, or an answer of the service with a throttling or
/// internal-error code ([`TRANSIENT_CODES`]) or an HTTP status of 408, 429 or 5xx (except
/// 501, "not implemented"). Everything else — `NoSuchKey`, `NoSuchVersion`, `AccessDenied`,
/// `InvalidCiphertextException`, `DisabledException`, a request that could not be built — is
/// permanent.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(err: &AwsError<E>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(_) => {
            code(err).is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status(err).is_some_and(|s| matches!(s, 408 | 429 | 500 | 502..=599))
        }
        _ => false,
    }
}

/// What went wrong in a failed call, for an error message: the service's code, HTTP status and
/// message, or the transport failure with its causes. Never contains credentials.
pub(crate) fn describe<E>(err: &AwsError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(e) if e.err().code().is_none() => {
            // An answer the SDK could not read: show the start of it.
            let body = e.raw().body().bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            format!(
                "unreadable answer (HTTP {}): {text:?}",
                e.raw().status().as_u16()
            )
        }
        SdkError::ServiceError(e) => {
            let meta = e.err();
            format!(
                "{} (HTTP {}): {}",
                meta.code().unwrap_or("unknown error"),
                e.raw().status().as_u16(),
                meta.message().unwrap_or("no message")
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("endpoint unreachable: {}", DisplayErrorContext(err))
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::s3::{from_aws_time, remote, to_aws_time};
    use crate::vault::VaultError;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use chrono::{TimeZone, Utc};
    use std::io;

    fn answer(status: u16, code: Option<&str>) -> AwsError<HeadObjectError> {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().expect("a status code"), SdkBody::empty());
        SdkError::service_error(HeadObjectError::generic(meta.build()), raw)
    }

    #[test]
    fn throttling_5xx_timeouts_and_broken_connections_are_transient() {
        for (status, code) in [
            (503, Some("SlowDown")),
            (500, Some("InternalError")),
            (503, Some("ServiceUnavailable")),
            (400, Some("RequestTimeout")),
            (400, Some("ThrottlingException")),
            (500, Some("KMSInternalException")),
            (502, None),
            (504, None),
            (429, None),
        ] {
            assert!(is_transient(&answer(status, code)), "{status} {code:?}");
        }
        let timeout: AwsError<HeadObjectError> =
            SdkError::timeout_error(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert!(is_transient(&timeout));
        let refused: AwsError<HeadObjectError> = SdkError::dispatch_failure(ConnectorError::io(
            Box::new(io::Error::new(io::ErrorKind::ConnectionRefused, "refused")),
        ));
        assert!(is_transient(&refused));
        let timed_out: AwsError<HeadObjectError> = SdkError::dispatch_failure(
            ConnectorError::timeout(Box::new(io::Error::other("connect timeout"))),
        );
        assert!(is_transient(&timed_out));
        let cut_off: AwsError<HeadObjectError> = SdkError::response_error(
            io::Error::new(io::ErrorKind::UnexpectedEof, "cut off"),
            HttpResponse::new(200.try_into().expect("200"), SdkBody::empty()),
        );
        assert!(is_transient(&cut_off));
    }

    #[test]
    fn missing_objects_refusals_and_bad_requests_are_permanent() {
        for (status, code) in [
            (404, Some("NoSuchKey")),
            (404, Some("NoSuchVersion")),
            (404, None),
            (403, Some("AccessDenied")),
            (400, Some("InvalidCiphertextException")),
            (400, Some("DisabledException")),
            (501, Some("NotImplemented")),
            (412, Some("PreconditionFailed")),
        ] {
            assert!(!is_transient(&answer(status, code)), "{status} {code:?}");
        }
        let malformed: AwsError<HeadObjectError> = SdkError::dispatch_failure(
            ConnectorError::user(Box::new(io::Error::other("invalid header"))),
        );
        assert!(!is_transient(&malformed));
        let unbuilt: AwsError<HeadObjectError> =
            SdkError::construction_failure(io::Error::other("no bucket"));
        assert!(!is_transient(&unbuilt));
    }

    #[test]
    fn a_failed_call_becomes_unavailable_or_remote_by_its_kind() {
        let throttled = remote("HeadObject", "s3://b/k", &answer(503, Some("SlowDown")));
        assert!(
            matches!(throttled, VaultError::Unavailable(_)) && throttled.is_transient(),
            "{throttled:?}"
        );
        assert!(throttled.to_string().contains("SlowDown"), "{throttled}");
        let denied = remote("HeadObject", "s3://b/k", &answer(403, Some("AccessDenied")));
        assert!(
            matches!(denied, VaultError::Remote(_)) && !denied.is_transient(),
            "{denied:?}"
        );
    }

    #[test]
    fn times_convert_both_ways() {
        let t = Utc
            .with_ymd_and_hms(2031, 5, 6, 7, 8, 9)
            .single()
            .expect("date");
        assert_eq!(from_aws_time(&to_aws_time(t)), Some(t));
    }
}
