//! The daily digest against a real store and a local SMTP sink: a tenant's digest comes once a
//! day, from its hour, listing its open alerts and the last 24 hours' failures (nothing of
//! another tenant, nothing older, text from outside kept on one line); a second process sends
//! nothing more; a refusing relay gives the day back for the next sweep; long lists are cut
//! with a count of the rest, read a page at a time.

use std::collections::HashMap;

use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::cycle::{BackupCycleCommand, CycleStarted, Failed};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage, Trigger};
use restorable_pipeline::alerting::{AlertRoutes, RetryPolicy, SmtpRelay, TenantRoutes};
use restorable_pipeline::digest::{send_due, DigestPlan, Outcome, LISTED};
use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;

use super::alert_routes::{pipeline_with, smtp_sink, tenant, Mail};
use super::evidence_support::enrol;

/// 2026-11-28 at `hour`:`minute` UTC.
fn today(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, hour, minute, 0)
        .single()
        .expect("a valid time")
}

fn relay(port: u16) -> SmtpRelay {
    SmtpRelay {
        host: "127.0.0.1".to_owned(),
        port,
        from: "Restorable <digest@restorable.test>".to_owned(),
        username: None,
        password: None,
        starttls: false,
    }
}

fn routes(port: u16, tenant: &TenantId, other: &TenantId) -> AlertRoutes {
    let with_digest = |to: &str| TenantRoutes {
        email_to: vec![to.to_owned()],
        digest_hour: Some(7),
        ..TenantRoutes::default()
    };
    AlertRoutes {
        smtp: Some(relay(port)),
        tenants: HashMap::from([
            (tenant.clone(), with_digest("ops@acme.example")),
            (other.clone(), with_digest("noc@globex.example")),
        ]),
        operations: None,
        console_url: Some("https://console.restorable.test/".to_owned()),
    }
}

fn retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        first_delay: std::time::Duration::from_millis(20),
        attempt_timeout: std::time::Duration::from_secs(5),
    }
}

/// Records a cycle of `instance` that fails at `stage` at `failed_at` with `detail`.
async fn fail_cycle(
    pipeline: &Pipeline,
    tenant: &TenantId,
    instance: InstanceId,
    failed_at: DateTime<Utc>,
    detail: &str,
) -> CycleId {
    let cycle = CycleId::random();
    let id = cycle.to_string();
    let commands = [
        BackupCycleCommand::Start(CycleStarted {
            cycle_id: cycle,
            instance_id: instance,
            tenant_id: tenant.clone(),
            trigger: Trigger::Scheduled,
            started_at: failed_at - Duration::minutes(1),
        }),
        BackupCycleCommand::RecordFailure(Failed {
            stage: Stage::Capture,
            reason: FailureReason::PbxUnreachable,
            detail: detail.to_owned(),
            retryable: true,
            failed_at,
        }),
    ];
    for command in commands {
        pipeline.store.cycle(&id, command).await.expect("cycle");
    }
    cycle
}

async fn raise(
    pipeline: &Pipeline,
    tenant: &TenantId,
    instance: InstanceId,
    raised_at: DateTime<Utc>,
    detail: &str,
) -> String {
    let command = AlertCommand::Raise(AlertRaised {
        alert_id: String::new(),
        kind: AlertKind::BackupFailed,
        tenant_id: tenant.clone(),
        instance_id: instance,
        cycle_id: Some(CycleId::random()),
        stage: Some(Stage::Verify),
        reason: Some(FailureReason::WrongKey),
        detail: detail.to_owned(),
        raised_at,
        position: 1,
    });
    pipeline
        .store
        .alerts(&instance.to_string(), command)
        .await
        .expect("raise");
    format!("{instance}-1")
}

/// A read side folded to the end of the log, its rows stored.
async fn folded(pipeline: &Pipeline) -> ReadSide {
    let read = ReadSide::load(&pipeline.store).await.expect("load");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    read
}

/// The body of a mail the sink took, its transfer encoding undone.
fn body(mail: &Mail) -> String {
    let (head, rest) = mail.data.split_once("\n\n").expect("headers, then a body");
    let head = head.to_ascii_lowercase();
    if head.contains("content-transfer-encoding: base64") {
        let joined: String = rest.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .expect("base64 body");
        String::from_utf8(bytes).expect("utf-8 body")
    } else if head.contains("content-transfer-encoding: quoted-printable") {
        let joined = rest.replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("=XX"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8 body")
    } else {
        rest.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_digest_lists_its_open_alerts_and_the_days_failures_once_a_day() {
    let (port, mails) = smtp_sink().await;
    let (acme, globex) = (tenant(), tenant());
    let (_dir, pipeline) = pipeline_with(routes(port, &acme, &globex)).await;
    let now = today(8, 30);
    let hq = enrol(&pipeline.store, &acme, "hq", now - Duration::days(40)).await;
    let branch = enrol(&pipeline.store, &acme, "branch", now - Duration::days(40)).await;
    let elsewhere = enrol(
        &pipeline.store,
        &globex,
        "elsewhere",
        now - Duration::days(40),
    )
    .await;

    let recent = fail_cycle(
        &pipeline,
        &acme,
        hq,
        now - Duration::hours(2),
        "connection refused\r\nBcc: attacker@evil.example",
    )
    .await;
    let also_recent = fail_cycle(
        &pipeline,
        &acme,
        branch,
        now - Duration::hours(23),
        "timed out",
    )
    .await;
    let yesterday = fail_cycle(
        &pipeline,
        &acme,
        hq,
        now - Duration::hours(25),
        "older failure",
    )
    .await;
    let theirs = fail_cycle(
        &pipeline,
        &globex,
        elsewhere,
        now - Duration::hours(1),
        "globex failure",
    )
    .await;
    raise(
        &pipeline,
        &acme,
        hq,
        now - Duration::days(3),
        "the copy does not open",
    )
    .await;
    let taken = raise(
        &pipeline,
        &acme,
        branch,
        now - Duration::hours(5),
        "branch verify",
    )
    .await;
    pipeline
        .store
        .alerts(
            &branch.to_string(),
            AlertCommand::Acknowledge {
                alert_id: taken.clone(),
                by: "owner@acme.example".into(),
                note: "on it".into(),
                at: now - Duration::hours(4),
            },
        )
        .await
        .expect("acknowledge");
    raise(
        &pipeline,
        &globex,
        elsewhere,
        now - Duration::hours(6),
        "globex alert",
    )
    .await;
    let read = folded(&pipeline).await;
    let plan = DigestPlan::of(&pipeline.settings.alert_routes);

    let early = send_due(&read, &pipeline.store, &plan, &retries(), today(6, 59))
        .await
        .expect("sweep");
    assert!(
        early.is_empty(),
        "before the hour nothing is due: {early:?}"
    );
    assert!(mails.lock().expect("lock").is_empty());

    let outcomes = send_due(&read, &pipeline.store, &plan, &retries(), now)
        .await
        .expect("sweep");
    assert_eq!(outcomes.len(), 2, "one digest per tenant: {outcomes:?}");
    let acme_digest = outcomes
        .iter()
        .find_map(|(t, o)| match o {
            Outcome::Sent(d) if t == &acme => Some(d.clone()),
            _ => None,
        })
        .expect("acme's digest was sent");
    assert_eq!((acme_digest.open_alerts, acme_digest.failures), (2, 2));

    let mails = mails.lock().expect("lock").clone();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let to_acme: Vec<&Mail> = mails
        .iter()
        .filter(|m| {
            m.recipients
                .iter()
                .any(|r| r.contains("<ops@acme.example>"))
        })
        .collect();
    assert_eq!(to_acme.len(), 1, "{mails:?}");
    let mail = to_acme[0];
    assert_eq!(mail.recipients.len(), 1, "{:?}", mail.recipients);
    let headers = mail.data.replace("\n ", " "); // unfolded
    assert!(
        headers.contains(&format!(
            "Subject: Restorable digest {acme} 2026-11-28: 2 open alerts, 2 failures"
        )),
        "{headers}"
    );
    let text = body(mail);
    for expected in [
        "Open alerts: 2".to_owned(),
        "Backup Failed on \"hq\" since 2026-11-25 08:30 UTC: verify (wrong_key): the copy does not open".to_owned(),
        "[acknowledged by owner@acme.example]".to_owned(),
        format!("https://console.restorable.test/instances/{hq}"),
        "Failures in the last 24 hours: 2".to_owned(),
        format!("; cycle {recent}"),
        format!("; cycle {also_recent}"),
        "connection refused  Bcc: attacker@evil.example".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    for absent in [
        yesterday.to_string(),
        theirs.to_string(),
        "globex".to_owned(),
        "older failure".to_owned(),
    ] {
        assert!(
            !text.contains(&absent),
            "{absent:?} in acme's digest:\n{text}"
        );
    }
    assert!(
        !mail.data.to_ascii_lowercase().contains("\nbcc:"),
        "a detail never becomes a header: {}",
        mail.data
    );

    // Later the same day, and from a second process: nothing more.
    let again = send_due(&read, &pipeline.store, &plan, &retries(), today(9, 0))
        .await
        .expect("sweep");
    let second = folded(&pipeline).await;
    let other_process = send_due(&second, &pipeline.store, &plan, &retries(), today(23, 59))
        .await
        .expect("sweep");
    assert!(
        again.is_empty() && other_process.is_empty(),
        "{again:?} {other_process:?}"
    );

    // The next day brings the next digest.
    let tomorrow = send_due(
        &read,
        &pipeline.store,
        &plan,
        &retries(),
        now + Duration::days(1),
    )
    .await
    .expect("sweep");
    assert_eq!(tomorrow.len(), 2, "{tomorrow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_the_relay_cannot_take_is_sent_at_the_next_sweep() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let (acme, globex) = (tenant(), tenant());
    let (_dir, pipeline) = pipeline_with(routes(closed, &acme, &globex)).await;
    let read = folded(&pipeline).await;
    let down = DigestPlan::of(&pipeline.settings.alert_routes);
    let outcomes = send_due(&read, &pipeline.store, &down, &retries(), today(7, 0))
        .await
        .expect("a relay down is not a store failure");
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for (_, outcome) in &outcomes {
        match outcome {
            Outcome::NotSent(why) => assert!(why.contains("e-mail via 127.0.0.1"), "{why}"),
            Outcome::Sent(d) => panic!("sent through a closed port: {d:?}"),
        }
    }
    let day = "2026-11-28";
    assert_eq!(
        pipeline
            .store
            .digest_sent_at(acme.as_str(), day)
            .await
            .expect("read"),
        None
    );

    let (port, mails) = smtp_sink().await;
    let up = DigestPlan::of(&routes(port, &acme, &globex));
    let outcomes = send_due(&read, &pipeline.store, &up, &retries(), today(7, 1))
        .await
        .expect("sweep");
    assert!(
        outcomes.iter().all(|(_, o)| matches!(o, Outcome::Sent(_))) && outcomes.len() == 2,
        "{outcomes:?}"
    );
    let text = body(&mails.lock().expect("lock")[0]);
    assert!(
        text.contains("No open alerts and no failed cycles in the last 24 hours."),
        "{text}"
    );
    assert!(pipeline
        .store
        .digest_sent_at(acme.as_str(), day)
        .await
        .expect("read")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_day_is_read_a_page_at_a_time_and_cut_with_a_count_of_the_rest() {
    let (port, mails) = smtp_sink().await;
    let (acme, globex) = (tenant(), tenant());
    let mut routes = routes(port, &acme, &globex);
    routes.tenants.remove(&globex);
    let (_dir, pipeline) = pipeline_with(routes).await;
    let now = today(12, 0);
    let hq = enrol(&pipeline.store, &acme, "hq", now - Duration::days(40)).await;
    // Older failures first (the log's order), then more than a page (500) within the day.
    for n in 0..20 {
        fail_cycle(
            &pipeline,
            &acme,
            hq,
            now - Duration::hours(30) + Duration::minutes(n),
            "old",
        )
        .await;
    }
    let within = 510;
    for n in 0..within {
        let at = now - Duration::hours(23) + Duration::seconds(i64::from(n) * 100);
        fail_cycle(&pipeline, &acme, hq, at, "refused").await;
    }
    let read = folded(&pipeline).await;
    let plan = DigestPlan::of(&pipeline.settings.alert_routes);
    let outcomes = send_due(&read, &pipeline.store, &plan, &retries(), now)
        .await
        .expect("sweep");
    let [(_, Outcome::Sent(digest))] = outcomes.as_slice() else {
        panic!("one digest sent: {outcomes:?}");
    };
    assert_eq!(digest.failures, usize::try_from(within).expect("small"));
    let text = body(&mails.lock().expect("lock")[0]);
    let listed = text
        .lines()
        .filter(|l| l.contains("(pbx_unreachable): refused; cycle"))
        .count();
    assert_eq!(listed, LISTED, "{text}");
    assert!(
        text.contains(&format!("... and {} more", digest.failures - LISTED)),
        "{text}"
    );
    assert!(!text.contains("): old;"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_gone_is_an_error_not_a_digest_sent_or_skipped() {
    let (port, mails) = smtp_sink().await;
    let (acme, globex) = (tenant(), tenant());
    let (_dir, pipeline) = pipeline_with(routes(port, &acme, &globex)).await;
    let read = folded(&pipeline).await;
    let plan = DigestPlan::of(&pipeline.settings.alert_routes);
    pipeline.store.close().await;
    let swept = send_due(&read, &pipeline.store, &plan, &retries(), today(8, 0)).await;
    assert!(
        matches!(
            swept,
            Err(restorable_pipeline::digest::DigestError::Store(_))
        ),
        "{swept:?}"
    );
    assert!(
        mails.lock().expect("lock").is_empty(),
        "nothing sent unclaimed"
    );
}
