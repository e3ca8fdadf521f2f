//! Query filters and form values are parsed into their enums before any handler runs: a value
//! outside them (a status filter, an instance action) is a 400 — JSON for the API, an error page
//! for the pages — and nothing is done or audited.

use crate::common;

use common::World;
use restorable_api::auth::Role;

#[tokio::test(flavor = "multi_thread")]
async fn a_value_outside_its_enum_is_a_400_and_does_nothing() {
    let world = World::sqlite().await;
    let viewer = &world.acme.tokens[&Role::Viewer];
    let admin = &world.acme.tokens[&Role::Administrator];
    let get = |token: &str, path: &str| {
        world
            .http
            .get(world.url(path))
            .bearer_auth(token.to_owned())
            .send()
    };

    // The status filter of the JSON fleet.
    let refused = get(viewer, "/api/v1/fleet?status=exploded")
        .await
        .expect("request");
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.expect("a JSON error");
    assert!(body["error"].is_string(), "{body}");
    for good in ["", "healthy", "needs_attention", "stopped"] {
        let answered = get(viewer, &format!("/api/v1/fleet?status={good}"))
            .await
            .expect("request");
        assert_eq!(answered.status(), 200, "status={good}");
    }

    // The status filter of the fleet page.
    let refused = get(viewer, "/?tenant=acme&status=Healthy")
        .await
        .expect("request");
    assert_eq!(refused.status(), 400);
    assert!(refused
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert_eq!(
        refused
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let page = refused.text().await.expect("body");
    assert!(page.contains("<h1>400</h1>"), "{page}");
    assert!(page.contains("<nav>"), "the visitor keeps the navigation");

    // An instance action nobody knows: refused before anything is looked at or done.
    let audit_before = get(admin, "/api/v1/audit")
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    for instance in [world.acme.instance, world.globex.instance] {
        let refused = world
            .http
            .post(world.url(&format!("/instances/{instance}/action")))
            .bearer_auth(admin)
            .form(&[("action", "delete-everything")])
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 400, "{instance}");
        let page = refused.text().await.expect("body");
        assert!(page.contains("<h1>400</h1>"), "{page}");
    }
    let audit_after = get(admin, "/api/v1/audit")
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(audit_before, audit_after, "nothing was audited");
    let fleet: serde_json::Value = get(admin, "/api/v1/fleet")
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert!(
        fleet
            .as_array()
            .expect("rows")
            .iter()
            .all(|row| row["stopped"] == false),
        "nothing was stopped"
    );
}
