//! The evidence's schedule and its faults, against real servers: `watch` writes a checkpoint
//! every configured interval and checks the history only when the last check (kept in the
//! store, so across a restart) is due; a vault that refuses (S3 throttled through a proxy) or a
//! database that is stopped (a private PostgreSQL cluster) makes a checkpoint and a check fail
//! as infrastructure errors — never a verdict on the history, never a History Tampered alert —
//! and both work again once the dependency is back.

use super::evidence_support::{self, open_pipeline, tampered_alerts};
use crate::fault_proxy::{FaultProxy, Service};

use chrono::Utc;
use restorable_domain::ids::TenantId;
use restorable_pipeline::evidence::{
    check_live, round, watch, write_checkpoint, EvidenceError, LocalSigner,
};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::store::Store;
use restorable_pipeline::vault::{S3Config, S3Vault};
use restorable_testkit::{aws_endpoint, unique_bucket, PostgresCluster, AWS_REGION};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Enrols `name` of acme now.
async fn enrol(store: &Store, name: &str) {
    let acme = TenantId::new("acme").expect("tenant");
    evidence_support::enrol(store, &acme, name, Utc::now()).await;
}

/// With a dependency down: a checkpoint and a check fail as the infrastructure error `is_kind`
/// accepts, and the scheduled round gives no verdict.
async fn fails_as_infrastructure(
    pipeline: &Pipeline,
    signer: &LocalSigner,
    is_kind: fn(&EvidenceError) -> bool,
) {
    let error = write_checkpoint(
        &pipeline.store,
        pipeline.vault.as_ref(),
        signer,
        chrono::Duration::days(1),
    )
    .await
    .expect_err("the checkpoint fails");
    assert!(is_kind(&error), "{error}");
    let error = check_live(&pipeline.store, pipeline.vault.as_ref())
        .await
        .expect_err("the check fails");
    assert!(is_kind(&error), "{error}");
    assert_eq!(round(pipeline, signer, true).await, None);
}

#[tokio::test]
async fn watch_writes_checkpoints_every_interval_and_checks_only_when_the_last_check_is_due() {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = Settings::default();
    settings.evidence.checkpoint_every = chrono::Duration::milliseconds(200);
    settings.evidence.check_every = chrono::Duration::hours(1);
    let pipeline = open_pipeline(dir.path(), None, settings).await;
    let signer =
        std::sync::Arc::new(LocalSigner::open_or_create(&dir.path().join("key")).expect("key"));
    enrol(&pipeline.store, "hq").await;
    assert_eq!(
        pipeline.store.last_history_check().await.expect("read"),
        None
    );

    let run = |for_ms: u64| {
        let (pipeline, signer) = (pipeline.clone(), signer.clone());
        async move {
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(watch(pipeline, signer, shutdown.clone()));
            tokio::time::sleep(Duration::from_millis(for_ms)).await;
            shutdown.cancel();
            task.await.expect("watch");
        }
    };
    run(900).await;
    let written = pipeline
        .store
        .checkpoint_index()
        .await
        .expect("index")
        .len();
    assert!(
        (2..=6).contains(&written),
        "a checkpoint now and every 200 ms for 0.9 s: {written}"
    );
    let checked = pipeline
        .store
        .last_history_check()
        .await
        .expect("read")
        .expect("checked at the first round");
    // A restart within the hour: checkpoints go on, the check is not run again.
    run(300).await;
    assert!(
        pipeline
            .store
            .checkpoint_index()
            .await
            .expect("index")
            .len()
            > written
    );
    assert_eq!(
        pipeline.store.last_history_check().await.expect("read"),
        Some(checked)
    );
    // The last check two hours old: the next round checks.
    let old = Utc::now() - chrono::Duration::hours(2);
    pipeline
        .store
        .record_history_check(old)
        .await
        .expect("record");
    run(100).await;
    let last = pipeline
        .store
        .last_history_check()
        .await
        .expect("read")
        .expect("checked");
    assert!(last > checked, "checked again: {last} after {checked}");
    assert_eq!(tampered_alerts(&pipeline).await, 0);
}

#[tokio::test]
async fn a_throttled_vault_fails_the_checkpoint_and_the_check_as_infrastructure_not_tampering() {
    let proxy = FaultProxy::start(Service::S3, aws_endpoint()).await;
    let config = S3Config {
        endpoint: Some(aws_endpoint().to_owned()),
        bucket: unique_bucket("evidence"),
        region: AWS_REGION.to_owned(),
    };
    S3Vault::new(config.clone())
        .expect("vault")
        .create_bucket_with_object_lock()
        .await
        .expect("bucket");
    let dir = tempfile::tempdir().expect("dir");
    let backends = Backends {
        data_dir: dir.path().to_owned(),
        s3: Some(S3Config {
            endpoint: Some(proxy.url()),
            ..config
        }),
        ..Backends::default()
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let signer = LocalSigner::open_or_create(&dir.path().join("key")).expect("key");
    enrol(&pipeline.store, "hq").await;
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));
    let indexed = pipeline.store.checkpoint_index().await.expect("index");
    assert_eq!(indexed.len(), 1);

    proxy.throttle_always();
    enrol(&pipeline.store, "branch").await;
    fails_as_infrastructure(&pipeline, &signer, |e| matches!(e, EvidenceError::Vault(_))).await;
    assert_eq!(tampered_alerts(&pipeline).await, 0);
    // Nothing indexed that was not written.
    assert_eq!(
        pipeline.store.checkpoint_index().await.expect("index"),
        indexed
    );
    assert!(proxy.faulted() > 0);

    proxy.pass();
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));
    assert_eq!(tampered_alerts(&pipeline).await, 0);
    let after = pipeline.store.checkpoint_index().await.expect("index");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(pipeline
        .vault
        .head(&restorable_pipeline::evidence::checkpoint_object(2))
        .await
        .expect("head")
        .is_some());
}

#[tokio::test]
async fn a_stopped_database_fails_the_checkpoint_and_the_check_as_infrastructure_not_tampering() {
    let mut cluster = tokio::task::spawn_blocking(PostgresCluster::start)
        .await
        .expect("join")
        .expect("a private PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = open_pipeline(dir.path(), Some(cluster.url()), Settings::default()).await;
    let signer = LocalSigner::open_or_create(&dir.path().join("key")).expect("key");
    enrol(&pipeline.store, "hq").await;
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));

    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop");
        cluster
    })
    .await
    .expect("join");
    fails_as_infrastructure(&pipeline, &signer, |e| matches!(e, EvidenceError::Store(_))).await;

    cluster = tokio::task::spawn_blocking(move || {
        cluster.resume().expect("resume");
        cluster
    })
    .await
    .expect("join");
    // The pool reconnects: the history is whole, nothing was raised while the database was down.
    enrol(&pipeline.store, "branch").await;
    assert_eq!(round(&pipeline, &signer, true).await, Some(true));
    assert_eq!(tampered_alerts(&pipeline).await, 0);
    drop(cluster);
}
