//! The live update stream: a change to an instance reaches the subscribers who may see it, as
//! a server-sent event naming the view and carrying the row, and nobody else's.

use crate::common;

use std::time::Duration;

use common::World;
use restorable_api::auth::Role;

/// Reads the stream until `wanted` appears or `limit` passes; returns what was read.
async fn read_until(response: &mut reqwest::Response, wanted: &str, limit: Duration) -> String {
    let mut text = String::new();
    let _ = tokio::time::timeout(limit, async {
        while let Ok(Some(chunk)) = response.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(wanted) {
                return;
            }
        }
    })
    .await;
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn ladder_changes_stream_to_the_tenants_own_subscribers_only() {
    let world = World::sqlite().await;
    let subscribe = |tenant: &common::TenantWorld| {
        world
            .http
            .get(world.url("/api/v1/stream"))
            .bearer_auth(&tenant.tokens[&Role::Viewer])
            .send()
    };
    let mut acme = subscribe(&world.acme).await.expect("acme subscribes");
    let mut globex = subscribe(&world.globex).await.expect("globex subscribes");
    assert_eq!(acme.status(), 200);
    assert_eq!(
        acme.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let before: serde_json::Value = world
        .http
        .get(world.url("/api/v1/fleet"))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await
        .expect("fleet")
        .json()
        .await
        .expect("json");
    assert_eq!(before[0]["stopped"], false, "{before}");
    let stop = world
        .http
        .post(world.url(&format!("/api/v1/instances/{}/stop", world.acme.instance)))
        .bearer_auth(&world.acme.tokens[&Role::Administrator])
        .send()
        .await
        .expect("stop");
    assert_eq!(stop.status(), 200);
    let instance = world.acme.instance.to_string();
    let seen = read_until(&mut acme, "\"stopped\":true", Duration::from_secs(20)).await;
    assert!(seen.contains("event: fleet"), "a fleet event: {seen}");
    assert!(
        seen.contains(&instance) && seen.contains("\"stopped\":true"),
        "{seen}"
    );
    let other = read_until(&mut globex, &instance, Duration::from_secs(2)).await;
    assert!(
        !other.contains(&instance),
        "globex must not hear of acme: {other}"
    );
}
