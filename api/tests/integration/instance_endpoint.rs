//! The instance page shows where the PBX is, warns when plain http to a host that is not
//! loopback is allowed, and lists every `endpoint_changed` with the old and the new origin.

use crate::common;

use common::World;
use restorable_api::auth::Role;
use restorable_domain::audit::AuditAction;
use restorable_domain::instance::Instance;
use restorable_pipeline::enrolment::{enrol_with, EnrolOptions, EnrolRequest};
use restorable_pipeline::pipeline::PbxCredentials;
use secrecy::SecretString;

async fn page(world: &World, token: &str, path: &str) -> String {
    let response = world
        .http
        .get(world.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repointed_insecure_instance_shows_the_change_and_a_warning() {
    let world = World::sqlite().await;
    let viewer = &world.acme.tokens[&Role::Viewer];
    let path = format!("/instances/{}", world.acme.instance);
    let before = page(&world, viewer, &path).await;
    assert!(!before.contains("plain http is allowed"), "{before}");
    assert!(!before.contains("endpoint_changed"), "{before}");

    let instance: Instance = world
        .pipeline
        .store
        .load(&world.acme.instance.to_string())
        .await
        .expect("instance");
    let enrolled = instance.enrolled.expect("enrolled");
    let old_origin = restorable_pipeline::pbx::origin_of(&enrolled.api_url);
    enrol_with(
        &world.pipeline,
        EnrolRequest {
            tenant: enrolled.tenant_id.clone(),
            name: enrolled.name.clone(),
            fqdn: enrolled.fqdn.clone(),
            api_url: "http://10.9.8.7:5000/".into(),
            credentials: PbxCredentials {
                client_id: SecretString::from("id"),
                client_secret: SecretString::from("another-secret"),
            },
            schedule: enrolled.schedule,
            restore_policy: enrolled.restore_policy,
        },
        &EnrolOptions {
            actor: "admin@acme.example".into(),
            allow_insecure_http: true,
        },
    )
    .await
    .expect("repointed");

    let after = page(&world, viewer, &path).await;
    assert!(after.contains("plain http is allowed"), "{after}");
    assert!(after.contains("endpoint_changed"), "{after}");
    assert!(
        after.contains(&format!("<code>{old_origin}</code>")),
        "{after}"
    );
    assert!(
        after.contains("<code>http://10.9.8.7:5000</code>"),
        "{after}"
    );
    assert!(!after.contains("another-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_plain_http_to_a_remote_pbx_and_audits_a_repoint_under_the_caller() {
    let world = World::sqlite().await;
    let admin = &world.acme.tokens[&Role::Administrator];
    let enrol = |url: &'static str| {
        world
            .http
            .post(world.url("/api/v1/instances"))
            .bearer_auth(admin)
            .json(&serde_json::json!({
                "tenant": "acme",
                "name": "branch",
                "url": url,
                "client_id": "id",
                "client_secret": "a-secret",
            }))
            .send()
    };
    let refused = enrol("http://pbx.example.test").await.expect("request");
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.expect("body");
    assert!(text.contains("https"), "{text}");

    assert_eq!(
        enrol("https://pbx.example.test").await.expect("r").status(),
        201
    );
    assert_eq!(
        enrol("https://moved.example.test")
            .await
            .expect("r")
            .status(),
        201
    );
    let trail = world
        .pipeline
        .store
        .history("AuditTrail", "acme")
        .await
        .expect("history");
    let records: Vec<_> = trail
        .iter()
        .filter_map(|e| {
            serde_json::from_str::<restorable_domain::audit::AuditEvent>(&e.payload).ok()
        })
        .map(|restorable_domain::audit::AuditEvent::ActionRecorded(r)| r)
        .collect();
    let repoints: Vec<_> = records
        .iter()
        .filter(|r| r.action == AuditAction::EndpointChanged)
        .collect();
    assert_eq!(repoints.len(), 1, "{records:?}");
    let enrolments: Vec<_> = records
        .iter()
        .filter(|r| r.action == AuditAction::Enrol && r.instance_id == repoints[0].instance_id)
        .collect();
    assert_eq!(enrolments.len(), 2, "{records:?}");
    assert_eq!(
        repoints[0].actor, enrolments[1].actor,
        "under the caller's name"
    );
    assert!(
        repoints[0]
            .actor
            .contains(&common::email("acme", Role::Administrator)),
        "{}",
        repoints[0].actor
    );
}

/// The API enrols with the same restore policy the CLI takes: each part given is kept, the rest
/// defaults; a window or target out of range is refused (409) and enrols nothing — also when
/// the instance is enrolled already; a part of the wrong type is a bad request (400) whose
/// answer never echoes the body (it carries the secret).
#[tokio::test(flavor = "multi_thread")]
async fn the_api_enrols_with_a_restore_policy_and_refuses_one_out_of_range() {
    use restorable_domain::instance::{RestorePolicy, RestoreSelection};

    let world = World::sqlite().await;
    let admin = &world.acme.tokens[&Role::Administrator];
    let enrol = |name: &'static str, extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "tenant": "acme",
            "name": name,
            "url": "https://pbx.example.test",
            "client_id": "id",
            "client_secret": "a-secret-not-to-echo",
        });
        for (key, value) in extra.as_object().expect("an object") {
            body[key] = value.clone();
        }
        world
            .http
            .post(world.url("/api/v1/instances"))
            .bearer_auth(admin)
            .json(&body)
            .send()
    };
    let policy_of = async |response: reqwest::Response| -> RestorePolicy {
        assert_eq!(response.status(), 201);
        let answer: serde_json::Value = response.json().await.expect("json");
        let id = answer["instance_id"].as_str().expect("instance_id");
        let instance: Instance = world.pipeline.store.load(id).await.expect("instance");
        instance.enrolled.expect("enrolled").restore_policy
    };

    let given = enrol(
        "random",
        serde_json::json!({
            "restore_every": 3,
            "restore_max_age_hours": 48,
            "restore_target_minutes": 30,
            "restore_random_within_days": 14,
        }),
    )
    .await
    .expect("request");
    assert_eq!(
        policy_of(given).await,
        RestorePolicy {
            every_nth_verified: 3,
            max_age_hours: 48,
            target_minutes: 30,
            selection: RestoreSelection::RandomWithinDays { days: 14 },
        }
    );
    let defaults = enrol("plain", serde_json::json!({}))
        .await
        .expect("request");
    assert_eq!(policy_of(defaults).await, RestorePolicy::default());

    for (name, extra) in [
        (
            "too-wide",
            serde_json::json!({ "restore_random_within_days": 367 }),
        ),
        (
            "no-window",
            serde_json::json!({ "restore_random_within_days": 0 }),
        ),
        (
            "no-target",
            serde_json::json!({ "restore_target_minutes": 0 }),
        ),
        (
            "slow-target",
            serde_json::json!({ "restore_target_minutes": 1441 }),
        ),
    ] {
        let refused = enrol(name, extra).await.expect("request");
        assert_eq!(refused.status(), 409, "{name}");
        let named = world
            .pipeline
            .store
            .aggregate_ids("Instance")
            .await
            .expect("ids");
        let mut any = false;
        for id in named {
            let instance: Instance = world.pipeline.store.load(&id).await.expect("instance");
            any |= instance.enrolled.is_some_and(|e| e.name == name);
        }
        assert!(!any, "{name}: nothing enrolled");
    }
    // Enrolling the enrolled instance again (same URL and credentials: nothing to re-point)
    // with a window out of range is refused too, not waved through as a no-op.
    let again = enrol(
        "random",
        serde_json::json!({ "restore_random_within_days": 367 }),
    )
    .await
    .expect("request");
    assert_eq!(again.status(), 409, "an enrolled instance, enrolled again");
    let mistyped = enrol(
        "mistyped",
        serde_json::json!({ "restore_random_within_days": "fourteen" }),
    )
    .await
    .expect("request");
    assert_eq!(mistyped.status(), 400);
    let text = mistyped.text().await.expect("body");
    assert!(!text.contains("a-secret-not-to-echo"), "{text}");
}
