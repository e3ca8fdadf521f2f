//! KMS key sealing against a real local KMS endpoint (moto, or `RESTORABLE_TEST_AWS_ENDPOINT`):
//! round trips, the encryption context as a tenant boundary, opening secrets sealed under an
//! older key, malformed input, plaintext never in errors, and the `doctor` check.

/// The local AWS endpoint shared by the suite.
mod aws {
    pub use restorable_testkit::{aws_endpoint as endpoint, AWS_REGION as REGION};
}

use restorable_pipeline::sealing::{KeySealer, SealError, SealedSecret};
use restorable_pipeline::sealing::{KmsConfig, KmsKeySealer};
use secrecy::{ExposeSecret, SecretString};

const PLAINTEXT: &str = "Zq8RtVisibleTenantPw24ch";

fn config(key_id: &str) -> KmsConfig {
    KmsConfig {
        endpoint: Some(aws::endpoint().to_owned()),
        key_id: key_id.to_owned(),
        region: aws::REGION.to_owned(),
    }
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

/// A new symmetric KMS key and a sealer configured with it.
async fn sealer_with_new_key() -> KmsKeySealer {
    // The key id is not known yet: create the key through a sealer's client.
    let bootstrap = KmsKeySealer::new(config("unset")).expect("sealer");
    let key = bootstrap
        .client()
        .create_key()
        .description("restorable test key")
        // Explicit, as a setup script would do: the emulator leaves KeyUsage empty otherwise
        // (real KMS defaults to these).
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
        .send()
        .await
        .expect("CreateKey");
    let key_id = key
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned();
    KmsKeySealer::new(config(&key_id)).expect("sealer")
}

#[tokio::test]
async fn a_tenant_password_seals_and_unseals() {
    let sealer = sealer_with_new_key().await;
    let context = "tenant-password/tenant-7";
    let sealed = sealer
        .seal(context, &secret(PLAINTEXT))
        .await
        .expect("seal");
    assert!(sealed.as_str().starts_with("kms:"), "{sealed}");
    assert!(!sealed.as_str().contains(PLAINTEXT));
    let opened = sealer.unseal(context, &sealed).await.expect("unseal");
    assert_eq!(opened.expose_secret(), PLAINTEXT);

    let context = "pbx-credentials/tenant-7/pbx-3";
    let sealed = sealer
        .seal(context, &secret("api-client-secret"))
        .await
        .expect("seal");
    let opened = sealer.unseal(context, &sealed).await.expect("unseal");
    assert_eq!(opened.expose_secret(), "api-client-secret");
}

#[tokio::test]
async fn another_context_is_tampered() {
    let sealer = sealer_with_new_key().await;
    let sealed = sealer
        .seal("tenant-password/tenant-a", &secret(PLAINTEXT))
        .await
        .expect("seal");
    for wrong in [
        "tenant-password/tenant-b",
        "pbx-credentials/tenant-a/pbx-1",
        "tenant-password",
        "anything",
    ] {
        let err = sealer.unseal(wrong, &sealed).await.unwrap_err();
        assert!(matches!(err, SealError::Tampered), "{wrong}: {err:?}");
    }
    // The KMS encryption context is what binds it: KMS itself refuses another tenant id.
    let blob = base64_blob(&sealed);
    let raw = sealer
        .client()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
        .encryption_context("purpose", "tenant-password")
        .encryption_context("tenant_id", "tenant-b")
        .send()
        .await;
    assert!(raw.is_err(), "KMS decrypted under another tenant id");
}

fn base64_blob(sealed: &SealedSecret) -> Vec<u8> {
    use base64::Engine as _;
    let text = sealed.as_str().strip_prefix("kms:").expect("kms: prefix");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test]
async fn secrets_sealed_under_an_older_key_still_open_after_the_key_changes() {
    let old = sealer_with_new_key().await;
    let sealed = old
        .seal("tenant-password/tenant-r", &secret(PLAINTEXT))
        .await
        .expect("seal under key A");
    let new = sealer_with_new_key().await;
    assert_ne!(old.key_id(), new.key_id());
    let opened = new
        .unseal("tenant-password/tenant-r", &sealed)
        .await
        .expect("key B's sealer opens what key A sealed");
    assert_eq!(opened.expose_secret(), PLAINTEXT);

    // New seals use the new key.
    let resealed = new
        .seal("tenant-password/tenant-r", &secret(PLAINTEXT))
        .await
        .expect("seal under key B");
    let raw = new
        .client()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(base64_blob(&resealed)))
        .encryption_context("purpose", "tenant-password")
        .encryption_context("tenant_id", "tenant-r")
        .send()
        .await
        .expect("raw decrypt");
    let used = raw.key_id().expect("key id");
    assert!(used.contains(new.key_id()), "{used} vs {}", new.key_id());
}

#[tokio::test]
async fn garbage_is_malformed_and_a_forged_blob_is_tampered() {
    let sealer = sealer_with_new_key().await;
    for text in ["", "not sealed", "kms:", "kms:!!not base64!!", "AAAA"] {
        let err = sealer
            .unseal(
                "tenant-password/t",
                &SealedSecret::from_string(text.to_owned()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SealError::Malformed), "{text:?}: {err:?}");
    }
    let err = sealer
        .unseal(
            "tenant-password/t",
            &SealedSecret::from_string("kms:AAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SealError::Tampered), "{err:?}");
}

#[tokio::test]
async fn plaintext_never_appears_in_errors_or_debug_output() {
    let sealer = sealer_with_new_key().await;
    let pw = secret(PLAINTEXT);
    let sealed = sealer.seal("tenant-password/t", &pw).await.expect("seal");
    let opened = sealer
        .unseal("tenant-password/t", &sealed)
        .await
        .expect("unseal");

    let mut errors = vec![
        sealer
            .unseal("tenant-password/u", &sealed)
            .await
            .unwrap_err(),
        sealer
            .unseal("t", &SealedSecret::from_string(format!("kms:{PLAINTEXT}")))
            .await
            .unwrap_err(),
    ];
    // A seal that KMS refuses (no such key) while holding the plaintext.
    let missing =
        KmsKeySealer::new(config("11111111-2222-3333-4444-555555555555")).expect("sealer");
    errors.push(missing.seal("tenant-password/t", &pw).await.unwrap_err());
    for err in &errors {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(PLAINTEXT), "{text}");
    }
    assert!(matches!(errors[2], SealError::Kms(_)), "{:?}", errors[2]);
    assert!(!errors[2].is_transient(), "no such key is permanent");
    for text in [
        format!("{pw:?}"),
        format!("{opened:?}"),
        format!("{sealed} {sealed:?}"),
        format!("{sealer:?}"),
    ] {
        assert!(!text.contains(PLAINTEXT), "{text}");
    }
}

#[tokio::test]
async fn check_passes_for_a_usable_key_and_fails_clearly_otherwise() {
    let sealer = sealer_with_new_key().await;
    let line = sealer.check().await.expect("check");
    assert!(line.contains(sealer.key_id()), "{line}");
    assert!(line.contains("round trip ok"), "{line}");

    let missing_id = "99999999-8888-7777-6666-555555555555";
    let missing = KmsKeySealer::new(config(missing_id)).expect("sealer");
    let err = missing.check().await.unwrap_err();
    assert!(matches!(err, SealError::Kms(_)), "{err:?}");
    assert!(!err.is_transient(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(missing_id), "{text}");
    assert!(text.contains("NotFoundException"), "{text}");

    sealer
        .client()
        .disable_key()
        .key_id(sealer.key_id())
        .send()
        .await
        .expect("DisableKey");
    let text = sealer.check().await.unwrap_err().to_string();
    assert!(text.contains("not usable"), "{text}");
    assert!(text.contains(sealer.key_id()), "{text}");
}

#[tokio::test]
async fn an_unreachable_kms_is_a_clear_transient_error() {
    aws::endpoint(); // credentials in the environment
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sealer = KmsKeySealer::new(KmsConfig {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        key_id: "alias/restorable".to_owned(),
        region: aws::REGION.to_owned(),
    })
    .expect("sealer");
    let err = sealer
        .seal("tenant-password/t", &secret(PLAINTEXT))
        .await
        .unwrap_err();
    assert!(matches!(err, SealError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient(), "no connection may pass: {err:?}");
    let text = err.to_string();
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains(PLAINTEXT), "{text}");
}

/// A KMS key (ECC_NIST_P256, SIGN_VERIFY) signs checkpoints: an export of its history verifies
/// offline with nothing but the public key it holds, a changed header fails, and a symmetric
/// key is refused as a signer naming what is needed.
#[tokio::test]
async fn a_kms_key_signs_checkpoints_that_verify_offline() {
    use restorable_pipeline::evidence::{
        export_tenant, signature_holds, verify_export, write_checkpoint, EvidenceSchedule,
        ExportRange, KmsSigner, Signer, CHECKPOINT_RETENTION,
    };
    let bootstrap = KmsKeySealer::new(config("unset")).expect("sealer");
    let key_id = bootstrap
        .client()
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .expect("metadata")
        .key_id()
        .to_owned();
    let signer = KmsSigner::connect(config(&key_id)).await.expect("signer");
    let signature = signer.sign(b"checkpoint").await.expect("sign");
    assert!(signature_holds(
        &signer.public_key_hex(),
        b"checkpoint",
        &signature
    ));
    assert!(!signature_holds(
        &signer.public_key_hex(),
        b"checkpoinT",
        &signature
    ));

    let dir = tempfile::tempdir().expect("dir");
    let store = restorable_pipeline::store::Store::open(dir.path())
        .await
        .expect("store");
    let vault =
        restorable_pipeline::vault::LocalVault::open(dir.path().join("vault")).expect("vault");
    let tenant = restorable_domain::ids::TenantId::new("acme").expect("tenant");
    store
        .audit(
            "acme",
            restorable_domain::audit::ActionRecorded {
                tenant_id: tenant,
                actor: "owner@example".into(),
                action: restorable_domain::audit::AuditAction::BackupNow,
                instance_id: None,
                cycle_id: None,
                key_version: None,
                at: chrono::Utc::now(),
            },
        )
        .await
        .expect("audit");
    write_checkpoint(&store, &vault, &signer, CHECKPOINT_RETENTION)
        .await
        .expect("checkpoint");
    let out = dir.path().join("export");
    export_tenant(
        &store,
        &vault,
        &signer,
        "acme",
        &out,
        ExportRange::default(),
        &EvidenceSchedule::default(),
    )
    .await
    .expect("export");
    let proven = verify_export(&out).expect("readable").expect("intact");
    assert_eq!((proven.events, proven.checkpoints), (1, 2));
    assert_eq!(proven.key_ids, vec![signer.key_id()]);
    let checkpoints = std::fs::read_to_string(out.join("checkpoints.jsonl")).expect("read");
    std::fs::write(
        out.join("checkpoints.jsonl"),
        checkpoints.replacen("\"sequence\":1", "\"sequence\":7", 1),
    )
    .expect("write");
    assert!(verify_export(&out).expect("readable").is_err());

    let symmetric = sealer_with_new_key().await;
    let refused = KmsSigner::connect(config(symmetric.key_id()))
        .await
        .err()
        .expect("a symmetric key cannot sign");
    assert!(refused.to_string().contains("ECC_NIST_P256"), "{refused}");
}
