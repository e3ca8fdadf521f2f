//! Work-arounds for the local AWS endpoint (moto), each harmless against AWS itself and listed
//! in `AWS_GAPS.md` at the repository root: answers the SDK cannot parse although they report
//! success, read field by field from the raw body.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::AwsError;

/// A successful (HTTP 200, not an `<Error>` document) answer the SDK could not parse. The local
/// emulator names the root element of some answers `<...Response>` where S3 says `<...Result>`
/// or the configuration's own name; boto3 reads them, aws-sdk-s3 does not. The callers read the
/// one field they need from the raw answer and verify the outcome independently.
pub(crate) fn unparsed_success<E: ProvideErrorMetadata>(
    err: &AwsError<E>,
) -> Option<&HttpResponse> {
    match err {
        SdkError::ServiceError(e)
            if e.raw().status().as_u16() == 200
                && e.err().code().is_none()
                && !e
                    .raw()
                    .body()
                    .bytes()
                    .is_some_and(|b| b.windows(7).any(|w| w == b"<Error>")) =>
        {
            Some(e.raw())
        }
        _ => None,
    }
}

/// The text of the first `<name>` element of an XML answer (no nesting, no entities: enough for
/// the status words and ids it is used for).
pub(crate) fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim().to_owned())
}
