//! The NATS transport across an outage: events committed while nats-server is down are all
//! published, once each, after it returns (the outbox relay's checkpoint holds until JetStream
//! acknowledges), and every message is the event JSON its schema describes.

use std::collections::BTreeSet;
use std::time::Duration;

use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::runtime::driver::head_position;
use restorable_pipeline::setup::Backends;
use restorable_pipeline::transport::nats::message::{decode, message_id};
use restorable_pipeline::transport::nats::relay::{Relay, CHECKPOINT};
use restorable_pipeline::transport::nats::{Nats, NatsConfig, EVENTS_STREAM};
use restorable_testkit::{test_server_url, NatsServer, ScratchDatabase};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

async fn enrol_one(pipeline: &Pipeline, name: &str) -> InstanceId {
    enrol(
        pipeline,
        EnrolRequest {
            tenant: TenantId::new("acme").expect("tenant"),
            name: name.to_owned(),
            fqdn: format!("{name}.example"),
            api_url: format!("https://{name}.example"),
            credentials: PbxCredentials {
                client_id: SecretString::from("id".to_owned()),
                client_secret: SecretString::from("secret".to_owned()),
            },
            schedule: Schedule {
                interval_minutes: 60,
            },
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol")
}

async fn wait_until_relayed(pipeline: &Pipeline, limit: Duration) {
    let head = head_position(pipeline).await.expect("head");
    let deadline = tokio::time::Instant::now() + limit;
    while pipeline
        .store
        .checkpoint(CHECKPOINT)
        .await
        .expect("checkpoint")
        < head
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up with position {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_while_nats_is_down_are_all_published_once_after_it_returns() {
    let database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("PostgreSQL for tests");
    let mut server = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let backends = Backends {
        data_dir: data.path().to_owned(),
        database_url: Some(database.url().to_owned()),
        nats: Some(NatsConfig { url: server.url() }),
        s3: None,
        kms: None,
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let nats = pipeline.nats.clone().expect("nats");
    let shutdown = CancellationToken::new();
    let relay =
        tokio::spawn(Relay::new(pipeline.store.clone(), nats.clone()).run(shutdown.clone()));

    for name in ["hq", "branch"] {
        enrol_one(&pipeline, name).await;
    }
    wait_until_relayed(&pipeline, Duration::from_secs(30)).await;
    let before_outage = head_position(&pipeline).await.expect("head");

    server.stop();
    for name in ["depot", "annex", "lab"] {
        let instance = enrol_one(&pipeline, name).await;
        open_cycle(&pipeline, instance, Trigger::Manual)
            .await
            .expect("open a cycle");
    }
    let head = head_position(&pipeline).await.expect("head");
    assert!(
        head > before_outage,
        "events were committed during the outage"
    );
    // Give the relay every chance to (wrongly) claim them while the server is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pipeline
            .store
            .checkpoint(CHECKPOINT)
            .await
            .expect("checkpoint"),
        before_outage,
        "nothing can be published while NATS is down"
    );

    server.resume();
    wait_until_relayed(&pipeline, Duration::from_secs(60)).await;
    shutdown.cancel();
    relay.await.expect("relay");

    // The stream holds every event of the store exactly once, as schema-valid event JSON.
    let reader = Nats::connect(&NatsConfig { url: server.url() })
        .await
        .expect("connect");
    let mut stream = reader
        .jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .expect("stream");
    let count = stream.info().await.expect("info").state.messages;
    let events = pipeline.store.read_after(0, 10_000).await.expect("events");
    assert_eq!(
        count,
        events.len() as u64,
        "one message per event, no duplicates"
    );
    let mut published = BTreeSet::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await.expect("message");
        let event = decode(Some(&message.headers), &message.payload).expect("a valid event");
        assert!(
            message.subject.starts_with("restorable.events.acme."),
            "{}",
            message.subject
        );
        assert!(message.subject.ends_with(&format!(".{}", event.event_type)));
        published.insert(message_id(&event));
    }
    let committed: BTreeSet<_> = events.iter().map(message_id).collect();
    assert_eq!(published, committed);
}

/// A capture stage whose infrastructure always fails.
struct AlwaysBroken;

#[async_trait::async_trait]
impl restorable_pipeline::transport::Consumer for AlwaysBroken {
    fn name(&self) -> &'static str {
        "capture"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &["CycleStarted"]
    }
    fn wants(&self, event: &restorable_pipeline::store::LoggedEvent) -> bool {
        event.event_type == "CycleStarted"
    }
    async fn react(
        &self,
        _event: restorable_pipeline::store::LoggedEvent,
    ) -> Result<(), restorable_pipeline::store::StoreError> {
        Err(restorable_pipeline::store::StoreError::Unavailable(
            "the event store is unreachable".to_owned(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_goes_to_the_dead_letters_and_fails_its_cycle() {
    use restorable_pipeline::stages::start::StartStage;
    use restorable_pipeline::transport::nats::worker::{run_worker, WorkerSettings};
    use restorable_pipeline::transport::nats::DEAD_LETTER_STREAM;

    let database = ScratchDatabase::create(&test_server_url())
        .await
        .expect("PostgreSQL for tests");
    let server = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let backends = Backends {
        data_dir: data.path().to_owned(),
        database_url: Some(database.url().to_owned()),
        nats: Some(NatsConfig { url: server.url() }),
        s3: None,
        kms: None,
    };
    let pipeline = Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline");
    let nats = pipeline.nats.clone().expect("nats");
    let shutdown = CancellationToken::new();
    let settings = WorkerSettings {
        concurrency: 1,
        poison_after: 3,
        ack_wait: Duration::from_secs(5),
        grace: Duration::from_secs(1),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Relay::new(pipeline.store.clone(), nats.clone()).run(shutdown.clone()));
    for consumer in [
        std::sync::Arc::new(StartStage::new(pipeline.clone()))
            as std::sync::Arc<dyn restorable_pipeline::transport::Consumer>,
        std::sync::Arc::new(AlwaysBroken),
    ] {
        let worker = run_worker(
            pipeline.clone(),
            nats.clone(),
            consumer,
            settings.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move { worker.await.expect("worker") });
    }
    let instance = enrol_one(&pipeline, "hq").await;
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
        .await
        .expect("open");

    // Deliveries 1 and 2 fail while the store answers and are naked (1 s, 2 s); the third
    // gives up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let state: restorable_domain::cycle::BackupCycle = pipeline
            .store
            .load(&cycle.to_string())
            .await
            .expect("cycle");
        if let Some(failed) = state.failed {
            break failed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cycle never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    assert_eq!(failed.stage, restorable_domain::ladder::Stage::Capture);
    assert_eq!(
        failed.reason,
        restorable_domain::ladder::FailureReason::Internal
    );
    assert!(failed.retryable);
    assert!(
        failed
            .detail
            .contains("gave up on CycleStarted after 3 attempts")
            && failed.detail.contains("the event store is unreachable"),
        "{}",
        failed.detail
    );
    let mut dead = nats
        .jetstream
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .expect("dead letters");
    assert_eq!(dead.info().await.expect("info").state.messages, 1);
    let letter = dead.get_raw_message(1).await.expect("the dead letter");
    assert!(
        letter
            .subject
            .starts_with("restorable.deadletter.capture.acme."),
        "{}",
        letter.subject
    );
    let event = decode(Some(&letter.headers), &letter.payload).expect("the event itself");
    assert_eq!(event.event_type, "CycleStarted");
    let listed = pipeline
        .store
        .dead_letters(true)
        .await
        .expect("dead letters");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].consumer.as_str(),
            listed[0].event_type.as_str(),
            listed[0].attempts
        ),
        ("capture", "CycleStarted", 3)
    );
}
