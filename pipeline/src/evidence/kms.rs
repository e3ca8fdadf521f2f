//! Signing with a KMS key in production (`--signing-key-id`): an asymmetric `ECC_NIST_P256`
//! key for `SIGN_VERIFY`, so the private key never leaves KMS. Its public key (`GetPublicKey`,
//! the DER SubjectPublicKeyInfo, hex) is read once when the signer is made; signatures are
//! `Sign` with `ECDSA_SHA_256` over the raw message (DER, hex). Offline verification needs only
//! the public key (`super::signature_holds`). Rotation: a new key id; the old public keys stay
//! published in the vault, so old checkpoints stay verifiable.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use aws_sdk_kms::Client;

use super::{key_id_of, EvidenceError, Signer};
use crate::sealing::{KmsConfig, KmsKeySealer};

/// A KMS key that signs.
pub struct KmsSigner {
    client: Client,
    key: String,
    public_key_hex: String,
}

impl KmsSigner {
    /// Connects to the key `config.key_id` and reads its public key.
    ///
    /// # Errors
    /// [`EvidenceError::Key`] if KMS cannot be reached or the key is not an `ECC_NIST_P256`
    /// signing key.
    pub async fn connect(config: KmsConfig) -> Result<Self, EvidenceError> {
        let key = config.key_id.clone();
        let client = KmsKeySealer::new(config)
            .map_err(|e| EvidenceError::Key(e.to_string()))?
            .client()
            .clone();
        let public = client
            .get_public_key()
            .key_id(&key)
            .send()
            .await
            .map_err(|e| {
                EvidenceError::Key(format!(
                    "KMS key {key}: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                ))
            })?;
        // Real KMS answers both fields; the local endpoint only the deprecated
        // CustomerMasterKeySpec (AWS_GAPS.md): either must say P-256.
        #[allow(deprecated)] // read only when the current field is absent
        let p256 = public.key_spec() == Some(&KeySpec::EccNistP256)
            || (public.key_spec().is_none()
                && public.customer_master_key_spec()
                    == Some(&aws_sdk_kms::types::CustomerMasterKeySpec::EccNistP256));
        if !p256 || public.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(EvidenceError::Key(format!(
                "KMS key {key} is {:?} for {:?}; checkpoints need an ECC_NIST_P256 key for SIGN_VERIFY",
                public.key_spec(),
                public.key_usage()
            )));
        }
        let der = public
            .public_key()
            .ok_or_else(|| EvidenceError::Key(format!("KMS key {key}: no public key returned")))?;
        Ok(Self {
            client,
            key,
            public_key_hex: hex::encode(der.as_ref()),
        })
    }
}

#[async_trait::async_trait]
impl Signer for KmsSigner {
    fn key_id(&self) -> String {
        key_id_of(&self.public_key_hex)
    }

    fn public_key_hex(&self) -> String {
        self.public_key_hex.clone()
    }

    async fn sign(&self, bytes: &[u8]) -> Result<String, EvidenceError> {
        let signed = self
            .client
            .sign()
            .key_id(&self.key)
            .message(Blob::new(bytes))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| {
                EvidenceError::Key(format!(
                    "KMS Sign with {}: {}",
                    self.key,
                    aws_sdk_kms::error::DisplayErrorContext(e)
                ))
            })?;
        let signature = signed
            .signature()
            .ok_or_else(|| EvidenceError::Key("KMS Sign returned no signature".into()))?;
        Ok(hex::encode(signature.as_ref()))
    }
}
