//! Tests of alert delivery: messages, signatures, route checks, retries.

use std::collections::HashMap;

use super::*;
use restorable_domain::alert::AlertKind;
use secrecy::SecretString;

#[test]
fn the_signer_matches_rfc_4231_test_case_2() {
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), expected);
    assert!(verify(
        b"Jefe",
        b"what do ya want for nothing?",
        &format!("sha256={expected}")
    ));
    assert!(!verify(
        b"Jeff",
        b"what do ya want for nothing?",
        &format!("sha256={expected}")
    ));
    assert!(!verify(
        b"Jefe",
        b"what do ya want for nothing!",
        &format!("sha256={expected}")
    ));
    assert!(!verify(b"Jefe", b"what do ya want for nothing?", expected));
}

#[test]
fn back_off_doubles() {
    let policy = RetryPolicy::default();
    let pauses: Vec<_> = (1..policy.attempts)
        .map(|n| policy.delay_after(n))
        .collect();
    assert_eq!(
        pauses,
        [500, 1000, 2000, 4000, 8000].map(Duration::from_millis)
    );
}

#[test]
fn the_retry_loop_pauses_exactly_as_the_policy_says() {
    use backon::BackoffBuilder;
    for attempts in [1, 2, 6] {
        let policy = RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        };
        let pauses: Vec<_> = policy.backoff().build().collect();
        let expected: Vec<_> = (1..attempts).map(|n| policy.delay_after(n)).collect();
        assert_eq!(pauses, expected, "{attempts} attempts");
    }
}

#[tokio::test(start_paused = true)]
async fn a_route_is_tried_as_often_as_the_policy_says_then_given_up() {
    let tries = std::sync::atomic::AtomicU32::new(0);
    let policy = RetryPolicy::default();
    let outcome = retrying(&policy, "webhook", "d:1", || async {
        tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(Attempt::Retry(AlertRouteError::NoSmtpRelay))
    })
    .await;
    assert_eq!(
        tries.load(std::sync::atomic::Ordering::SeqCst),
        policy.attempts
    );
    assert!(
        matches!(outcome, Err(AlertRouteError::GaveUp { attempts, .. }) if attempts == policy.attempts),
        "{outcome:?}"
    );
    let final_tries = std::sync::atomic::AtomicU32::new(0);
    let outcome = retrying(&policy, "webhook", "d:2", || async {
        final_tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(Attempt::GiveUp(AlertRouteError::NoSmtpRelay))
    })
    .await;
    assert_eq!(final_tries.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        matches!(outcome, Err(AlertRouteError::NoSmtpRelay)),
        "{outcome:?}"
    );
}

#[test]
fn a_lease_outlasts_every_attempt_and_pause() {
    // Pauses 0.5 + 1 + 2 + 4 + 8 s, six attempts of 10 s, and one more as a margin.
    assert_eq!(
        RetryPolicy::default().longest_delivery(),
        Duration::from_millis(85_500)
    );
}

#[test]
fn logged_urls_lose_their_password_and_query() {
    assert_eq!(
        redact_url("https://user:pw@hooks.example/a/b?token=s3cret#x"),
        "https://user:***@hooks.example/a/b"
    );
    assert_eq!(redact_url("not a url?token=s3cret"), "<not a URL>");
}

#[test]
fn the_webhook_secret_is_not_in_debug_output() {
    let routes = AlertRoutes {
        smtp: Some(SmtpRelay {
            host: "smtp.example.com".into(),
            port: 587,
            from: "alerts@example.com".into(),
            username: Some("alerts".into()),
            password: Some(SecretString::from("smtp-pass-123")),
            starttls: true,
        }),
        tenants: HashMap::from([(
            TenantId::new("acme").expect("slug"),
            TenantRoutes {
                webhook: Some(WebhookRoute {
                    url: "https://hooks.example/x?token=query-secret".into(),
                    secret: SecretString::from("hook-secret-456"),
                }),
                email_to: vec![],
                slack: Some(ChatRoute {
                    url: SecretString::from("https://hooks.slack.com/services/T0/B0/slack-token"),
                }),
                teams: Some(ChatRoute {
                    url: SecretString::from("https://acme.webhook.office.com/teams-token"),
                }),
                pagerduty: Some(PagerDutyRoute {
                    routing_key: SecretString::from("pd-routing-key-789"),
                    events_url: PAGERDUTY_EVENTS_URL.into(),
                }),
                times: RouteTimes::default(),
                digest_hour: None,
            },
        )]),
        operations: None,
        console_url: None,
    };
    routes.check().expect("valid");
    let shown = format!("{routes:?}");
    for secret in [
        "smtp-pass-123",
        "hook-secret-456",
        "query-secret",
        "slack-token",
        "teams-token",
        "pd-routing-key-789",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn misconfigured_routes_are_named() {
    let acme = TenantId::new("acme").expect("slug");
    let relay = SmtpRelay {
        host: "smtp.example.com".into(),
        port: 587,
        from: "alerts@example.com".into(),
        username: None,
        password: None,
        starttls: true,
    };
    let with = |smtp: Option<SmtpRelay>, routes: TenantRoutes| AlertRoutes {
        smtp,
        tenants: HashMap::from([(acme.clone(), routes)]),
        operations: None,
        console_url: None,
    };
    let webhook = |url: &str, secret: &str| TenantRoutes {
        webhook: Some(WebhookRoute {
            url: url.into(),
            secret: SecretString::from(secret),
        }),
        email_to: vec![],
        ..TenantRoutes::default()
    };
    let chat = |url: &str, slack: bool| {
        let route = Some(ChatRoute {
            url: SecretString::from(url),
        });
        if slack {
            TenantRoutes {
                slack: route,
                ..TenantRoutes::default()
            }
        } else {
            TenantRoutes {
                teams: route,
                ..TenantRoutes::default()
            }
        }
    };
    let pagerduty = |url: &str, key: &str| TenantRoutes {
        pagerduty: Some(PagerDutyRoute {
            routing_key: SecretString::from(key),
            events_url: url.into(),
        }),
        ..TenantRoutes::default()
    };
    let mail = |to: &str| TenantRoutes {
        webhook: None,
        email_to: vec![to.into()],
        ..TenantRoutes::default()
    };
    let cases = [
        (
            with(None, webhook("ftp://h/x", "s")),
            "alert_routes.acme.webhook_url",
        ),
        (
            with(None, webhook("https://h/x", "")),
            "alert_routes.acme.webhook_secret",
        ),
        (with(None, mail("ops@acme.example")), "need an [smtp] relay"),
        (
            with(Some(relay.clone()), mail("not an address")),
            "alert_routes.acme.email_to",
        ),
        (
            with(
                Some(SmtpRelay {
                    starttls: false,
                    ..relay.clone()
                }),
                mail("ops@acme.example"),
            ),
            "smtp.starttls",
        ),
        (
            with(
                None,
                chat("http://hooks.slack.com/services/T0/B0/secret-path", true),
            ),
            "alert_routes.acme.slack_webhook_env",
        ),
        (
            with(None, chat("not a url at all", false)),
            "alert_routes.acme.teams_webhook_env",
        ),
        (
            with(
                None,
                pagerduty("https://events.pagerduty.com/v2/enqueue", " "),
            ),
            "alert_routes.acme.pagerduty_routing_key_env",
        ),
        (
            with(None, pagerduty("ftp://events.example/v2/enqueue", "key")),
            "alert_routes.acme.pagerduty_events_url",
        ),
    ];
    for (routes, named) in cases {
        let error = routes.check().expect_err("refused");
        assert!(error.to_string().contains(named), "{named}: {error}");
        assert!(!error.to_string().contains("secret-path"), "{error}");
    }
    let console = AlertRoutes {
        console_url: Some("javascript:alert(1)".into()),
        ..with(None, chat("http://127.0.0.1:9/loopback", true))
    };
    let error = console.check().expect_err("refused");
    assert!(error.to_string().contains("console_url"), "{error}");
    let fine = with(
        Some(SmtpRelay {
            host: "127.0.0.1".into(),
            starttls: false,
            ..relay
        }),
        TenantRoutes {
            webhook: Some(WebhookRoute {
                url: "http://127.0.0.1:9/hook".into(),
                secret: SecretString::from("s"),
            }),
            email_to: vec!["ops@acme.example".into()],
            ..TenantRoutes::default()
        },
    );
    fine.check().expect("a loopback relay may be unencrypted");
}

/// An alert `x-1` of `kind` on acme's nil instance, raised at the epoch, explained by `detail`.
fn raised_alert(kind: AlertKind, detail: &str) -> AlertRaised {
    AlertRaised {
        alert_id: "x-1".into(),
        kind,
        tenant_id: TenantId::new("acme").expect("slug"),
        instance_id: InstanceId(uuid::Uuid::nil()),
        cycle_id: None,
        stage: None,
        reason: None,
        detail: detail.into(),
        raised_at: DateTime::<Utc>::UNIX_EPOCH,
        position: 0,
    }
}

#[test]
fn the_message_has_every_key_and_a_resolution_repeats_the_alert() {
    let raised = raised_alert(AlertKind::BackupStale, "no copy has reached Secured yet");
    let body: serde_json::Value =
        serde_json::from_slice(&AlertMessage::raised(&raised).to_json()).expect("json");
    let keys: Vec<_> = body.as_object().expect("object").keys().cloned().collect();
    for key in [
        "alert",
        "state",
        "alert_id",
        "tenant_id",
        "instance_id",
        "cycle_id",
        "stage",
        "reason",
        "detail",
        "raised_at",
        "resolved_at",
        "resolved_by",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {body}");
    }
    assert_eq!(body["alert"], "Backup Stale");
    assert_eq!(body["state"], "raised");
    let by = CycleId(uuid::Uuid::nil());
    let resolved = AlertMessage::resolved(
        &raised,
        &AlertResolved {
            alert_id: "x-1".into(),
            kind: AlertKind::BackupStale,
            resolved_by: Some(by),
            resolved_at: DateTime::<Utc>::UNIX_EPOCH,
        },
    );
    assert_eq!(resolved.event_type(), "AlertResolved");
    assert_eq!(resolved.state, "resolved");
    assert_eq!(resolved.detail, raised.detail);
    assert_eq!(resolved.resolved_by, Some(by));
    assert!(resolved
        .text("d-1")
        .contains(&format!("Resolved by: cycle {by}")));
}

/// A native alert the watch resolved between captures names no cycle, in the JSON (`null`)
/// and in words.
#[test]
fn a_resolution_by_the_native_watch_names_the_watch() {
    let raised = raised_alert(
        AlertKind::NativeBackupStale,
        "the PBX's own daily backup last ran",
    );
    let resolved = AlertMessage::resolved(
        &raised,
        &AlertResolved {
            alert_id: "x-1".into(),
            kind: AlertKind::NativeBackupStale,
            resolved_by: None,
            resolved_at: DateTime::<Utc>::UNIX_EPOCH,
        },
    );
    let body: serde_json::Value = serde_json::from_slice(&resolved.to_json()).expect("json");
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["resolved_by"], serde_json::Value::Null);
    assert!(body["resolved_at"].is_string());
    let text = resolved.text("d-1");
    assert!(
        text.contains("Resolved by: the native backup watch"),
        "{text}"
    );
}

#[test]
fn a_hostile_detail_stays_plain_text_on_every_chat_route_and_pagerduty_keeps_one_key() {
    let hostile = "<!channel> <https://evil.example|click> [here](https://evil.example) & ";
    let raised = AlertRaised {
        alert_id: "i-7".into(),
        cycle_id: Some(CycleId(uuid::Uuid::nil())),
        stage: Some(Stage::Verify),
        reason: Some(FailureReason::PbxAuth),
        ..raised_alert(
            AlertKind::BackupFailed,
            &format!("{hostile}{}", "é".repeat(3_000)),
        )
    };
    let delivery = Delivery::of_tenant(&AlertMessage::raised(&raised), "i", 1);
    let console = Some("https://console.example/");
    let page = format!("https://console.example/instances/{}", uuid::Uuid::nil());

    let slack = slack::message(&delivery.card, console);
    let text = slack.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://evil"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt;"));
    assert_eq!(slack["blocks"][3]["elements"][0]["url"], page.as_str());
    let detail = slack["blocks"][2]["text"]["text"].as_str().expect("detail");
    assert!(detail.chars().count() <= 3_000, "Slack's section limit");
    assert!(
        detail.starts_with("&lt;!channel&gt;") && detail.ends_with('…'),
        "{detail}"
    );

    let teams = teams::message(&delivery.card, console);
    let content = &teams["attachments"][0]["content"];
    assert_eq!(content["body"][2]["type"], "RichTextBlock");
    let run = content["body"][2]["inlines"][0]["text"]
        .as_str()
        .expect("run");
    assert!(run.starts_with(hostile), "plain text, as written: {run}");
    assert_eq!(run.chars().count(), card::DETAIL_CHARS);
    assert_eq!(content["actions"][0]["url"], page.as_str());
    assert!(
        teams::message(&delivery.card, None)["attachments"][0]["content"]
            .get("actions")
            .is_none()
    );

    let trigger = pagerduty::event(&delivery.card, "key", console);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "restorable/i-7");
    let summary = trigger["payload"]["summary"].as_str().expect("summary");
    assert_eq!(summary.chars().count(), 1_024);
    let resolution = AlertMessage::resolved(
        &raised,
        &AlertResolved {
            alert_id: "i-7".into(),
            kind: AlertKind::BackupFailed,
            resolved_by: Some(CycleId(uuid::Uuid::nil())),
            resolved_at: DateTime::<Utc>::UNIX_EPOCH,
        },
    );
    let resolved = Delivery::of_tenant(&resolution, "i", 2);
    let resolve = pagerduty::event(&resolved.card, "key", console);
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
}

#[test]
fn a_chat_webhook_is_shown_as_its_host_alone() {
    assert_eq!(
        host_of("https://hooks.slack.com/services/T0/B0/secret-token?x=1#y"),
        "https://hooks.slack.com"
    );
    assert_eq!(
        host_of("http://127.0.0.1:8080/teams/secret-token"),
        "http://127.0.0.1:8080"
    );
    assert_eq!(host_of("not a url secret-token"), "(not a URL)");
    let error = AlertRouteError::Status {
        route: "slack",
        url: host_of("https://hooks.slack.com/services/T0/B0/secret-token"),
        status: 404,
    };
    assert_eq!(error.to_string(), "slack https://hooks.slack.com: HTTP 404");
}

#[test]
fn an_empty_detail_leaves_no_empty_slack_section() {
    let raised = raised_alert(AlertKind::BackupStale, "  ");
    let delivery = Delivery::of_tenant(&AlertMessage::raised(&raised), "i", 1);
    let message = slack::message(&delivery.card, None);
    let blocks = message["blocks"].as_array().expect("blocks");
    for block in blocks {
        if let Some(text) = block["text"]["text"].as_str() {
            assert!(!text.trim().is_empty(), "{message}");
        }
    }
    assert_eq!(blocks.len(), 3, "header, facts, context: {message}");
}
