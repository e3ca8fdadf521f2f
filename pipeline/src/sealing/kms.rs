//! The production key-sealing adapter: AWS KMS `Encrypt`/`Decrypt` with an encryption context.
//!
//! [`KmsKeySealer`] implements the [`KeySealer`] port. Each seal is one `Encrypt` under the
//! configured key; the port's context string becomes a KMS *encryption context* (see
//! [`encryption_context`]), which KMS binds to the ciphertext and records in CloudTrail, so a
//! sealed password copied to another tenant's record does not open there. The sealed text is
//! `kms:` followed by base64 of the ciphertext blob, which tells it apart from the local
//! sealer's output.
//!
//! `Decrypt` is called without a key id: KMS finds the key from the blob, so secrets sealed
//! under an older key still open after the configured key is changed (as long as the old key is
//! enabled and the caller may use it).
//!
//! Plaintext lives in [`SecretString`] and [`Zeroizing`] buffers on our side; the request and
//! response bodies the SDK builds are outside our control (they are dropped, not wiped, after
//! the call). No error ever carries plaintext: KMS errors are reported by code and message.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, KeyUsageType};
use aws_sdk_kms::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{KeySealer, SealError, SealedSecret};
use crate::aws::{aws_http_client, code, describe, env_credentials, is_transient, AwsError};

/// Prefix of the sealed text KMS makes.
pub const SEALED_PREFIX: &str = "kms:";
/// How long connecting to KMS may take, and one attempt of a call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// The context and plaintext of [`KmsKeySealer::check`]'s round trip (not secret).
const PROBE_CONTEXT: &str = "restorable-doctor-probe";
const PROBE_TEXT: &str = "restorable KMS probe";

/// Which KMS key seals, and where KMS is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsConfig {
    /// A non-AWS endpoint (a local emulator); `None` = AWS's own endpoint for `region`.
    pub endpoint: Option<String>,
    /// The key new secrets are sealed under: key id, ARN or `alias/...`.
    pub key_id: String,
    /// The AWS region, e.g. `eu-central-1`.
    pub region: String,
}

/// Key sealing with AWS KMS.
#[derive(Clone)]
pub struct KmsKeySealer {
    /// The SDK client.
    client: Client,
    /// The key new secrets are sealed under.
    key_id: String,
}

impl fmt::Debug for KmsKeySealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeySealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The KMS encryption context for a port context string:
/// - `tenant-password/<tenant>` → `{purpose: tenant-password, tenant_id: <tenant>}`
/// - `pbx-credentials/<tenant>/<instance>` →
///   `{purpose: pbx-credentials, tenant_id: <tenant>, instance_id: <instance>}`
/// - anything else → `{purpose: <the whole string>}`.
///
/// Distinct strings give distinct contexts (only the patterned ones have a `tenant_id`).
pub fn encryption_context(context: &str) -> HashMap<String, String> {
    let parts: Vec<&str> = context.split('/').collect();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    match parts.as_slice() {
        ["tenant-password", tenant] if !tenant.is_empty() => HashMap::from([
            pair("purpose", "tenant-password"),
            pair("tenant_id", tenant),
        ]),
        ["pbx-credentials", tenant, instance] if !tenant.is_empty() && !instance.is_empty() => {
            HashMap::from([
                pair("purpose", "pbx-credentials"),
                pair("tenant_id", tenant),
                pair("instance_id", instance),
            ])
        }
        _ => HashMap::from([pair("purpose", context)]),
    }
}

/// A failed KMS call as [`SealError::Unavailable`] when it may pass (throttling, an internal
/// error, a timeout, no connection: [`is_transient`]), else as [`SealError::Kms`].
fn kms_error<E>(operation: &str, key: &str, err: &AwsError<E>) -> SealError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if is_transient(err) {
        return SealError::Unavailable(format!(
            "KMS {operation} with key {key}: {} (the key service is unavailable; trying again \
             later may succeed)",
            describe(err)
        ));
    }
    let hint = match code(err) {
        Some("NotFoundException") => " (no such key: check the key id and region)",
        Some("DisabledException") => " (the key is disabled: enable it or configure another)",
        Some("KMSInvalidStateException") => " (the key is pending deletion or not usable)",
        Some("AccessDeniedException") => " (the credentials may not use this key)",
        _ => "",
    };
    SealError::Kms(format!(
        "KMS {operation} with key {key}: {}{hint}",
        describe(err)
    ))
}

impl KmsKeySealer {
    /// A sealer using `config.key_id`, with static credentials from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`). Nothing is
    /// contacted yet: see [`KmsKeySealer::check`].
    ///
    /// # Errors
    /// [`SealError::Kms`] if the credentials are not in the environment.
    pub fn new(config: KmsConfig) -> Result<Self, SealError> {
        let credentials = env_credentials().map_err(SealError::Kms)?;
        Ok(Self::with_credentials(config, credentials))
    }

    /// A sealer using `config.key_id` with the given credentials.
    pub fn with_credentials(config: KmsConfig, credentials: Credentials) -> Self {
        let mut builder = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region))
            .credentials_provider(credentials)
            .http_client(aws_http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            key_id: config.key_id,
        }
    }

    /// The key new secrets are sealed under.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The underlying SDK client (for setup and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `doctor` probe: the key exists, is enabled and is a symmetric ENCRYPT_DECRYPT key,
    /// and a non-secret probe seals and unseals. Returns a one-line description.
    ///
    /// # Errors
    /// [`SealError::Kms`] naming what is wrong.
    pub async fn check(&self) -> Result<String, SealError> {
        let key = &self.key_id;
        let described = self
            .client
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| kms_error("DescribeKey", key, &e))?;
        let meta = described
            .key_metadata()
            .ok_or_else(|| SealError::Kms(format!("KMS DescribeKey {key}: no key metadata")))?;
        let state = meta.key_state().map_or("unknown", KeyState::as_str);
        if !meta.enabled() || meta.key_state() != Some(&KeyState::Enabled) {
            return Err(SealError::Kms(format!(
                "KMS key {key} is not usable: enabled={}, state {state}; enable it or \
                 configure another key",
                meta.enabled()
            )));
        }
        if meta.key_usage() != Some(&KeyUsageType::EncryptDecrypt) {
            return Err(SealError::Kms(format!(
                "KMS key {key} has usage {}, not ENCRYPT_DECRYPT: use a symmetric encryption key",
                meta.key_usage().map_or("unknown", KeyUsageType::as_str)
            )));
        }
        let probe = SecretString::from(PROBE_TEXT.to_owned());
        let sealed = self.seal(PROBE_CONTEXT, &probe).await?;
        let opened = self.unseal(PROBE_CONTEXT, &sealed).await?;
        if opened.expose_secret() != PROBE_TEXT {
            return Err(SealError::Kms(format!(
                "KMS key {key}: the encrypt/decrypt round trip returned other bytes"
            )));
        }
        Ok(format!(
            "kms key {} ({}): enabled, ENCRYPT_DECRYPT, {}; encrypt/decrypt round trip ok",
            meta.arn().unwrap_or(meta.key_id()),
            key,
            meta.key_spec().map_or("unknown spec", |s| s.as_str()),
        ))
    }
}

#[async_trait::async_trait]
impl KeySealer for KmsKeySealer {
    async fn seal(&self, context: &str, secret: &SecretString) -> Result<SealedSecret, SealError> {
        let plaintext = Blob::new(secret.expose_secret().as_bytes().to_vec());
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(plaintext)
            .set_encryption_context(Some(encryption_context(context)))
            .send()
            .await
            .map_err(|e| kms_error("Encrypt", &self.key_id, &e))?;
        let blob = out.ciphertext_blob().ok_or_else(|| {
            SealError::Kms(format!(
                "KMS Encrypt with key {}: no ciphertext",
                self.key_id
            ))
        })?;
        Ok(SealedSecret::from_string(format!(
            "{SEALED_PREFIX}{}",
            BASE64.encode(blob.as_ref())
        )))
    }

    async fn unseal(
        &self,
        context: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, SealError> {
        let encoded = sealed
            .as_str()
            .trim()
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let blob = BASE64.decode(encoded).map_err(|_| SealError::Malformed)?;
        if blob.is_empty() {
            return Err(SealError::Malformed);
        }
        let out = match self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(encryption_context(context)))
            .send()
            .await
        {
            Ok(out) => out,
            // KMS says only "invalid ciphertext" for a wrong context, an altered blob and a
            // blob of another key: all are a failed authentication here.
            Err(e)
                if matches!(
                    code(&e),
                    Some("InvalidCiphertextException" | "IncorrectKeyException")
                ) =>
            {
                return Err(SealError::Tampered)
            }
            Err(e) => return Err(kms_error("Decrypt", "from the ciphertext", &e)),
        };
        let plaintext = Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| SealError::Kms("KMS Decrypt: no plaintext returned".to_owned()))?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ErrorMetadata, SdkError};
    use aws_sdk_kms::operation::decrypt::DecryptError;
    use aws_sdk_s3::primitives::SdkBody;

    fn kms_answer(status: u16, code: &str) -> AwsError<DecryptError> {
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(
            DecryptError::generic(ErrorMetadata::builder().code(code).build()),
            raw,
        )
    }

    #[test]
    fn throttling_and_internal_errors_are_unavailable_refusals_are_not() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (500, "KMSInternalException"),
            (500, "DependencyTimeoutException"),
            (503, "ServiceUnavailableException"),
        ] {
            let error = kms_error("Decrypt", "k", &kms_answer(status, code));
            assert!(
                matches!(error, SealError::Unavailable(_)) && error.is_transient(),
                "{code}: {error:?}"
            );
        }
        for (status, code) in [
            (400, "AccessDeniedException"),
            (400, "NotFoundException"),
            (400, "DisabledException"),
            (400, "KMSInvalidStateException"),
        ] {
            let error = kms_error("Decrypt", "k", &kms_answer(status, code));
            assert!(
                matches!(error, SealError::Kms(_)) && !error.is_transient(),
                "{code}: {error:?}"
            );
        }
    }

    #[test]
    fn contexts_map_to_kms_encryption_contexts() {
        let ctx = encryption_context("tenant-password/t1");
        assert_eq!(ctx.len(), 2);
        assert_eq!(ctx["purpose"], "tenant-password");
        assert_eq!(ctx["tenant_id"], "t1");

        let ctx = encryption_context("pbx-credentials/t1/i9");
        assert_eq!(ctx.len(), 3);
        assert_eq!(ctx["purpose"], "pbx-credentials");
        assert_eq!(ctx["tenant_id"], "t1");
        assert_eq!(ctx["instance_id"], "i9");

        for other in [
            "ctx",
            "tenant-password",
            "tenant-password/",
            "tenant-password/a/b",
            "",
        ] {
            let ctx = encryption_context(other);
            assert_eq!(ctx.len(), 1, "{other}");
            assert_eq!(ctx["purpose"], other);
        }
    }
}
