//! The Alerts page: a tenant's user sees its open alert (kind, a link to the instance page, the
//! reason) and nothing of another tenant's; the state filter moves it between open and
//! resolved; a state it does not know is a clear 400; a visitor who is not signed in is sent to
//! sign in; every page links to it.

use crate::common;

use common::World;
use restorable_api::auth::Role;

async fn get(world: &World, token: Option<&str>, path: &str) -> (u16, String) {
    let request = world.http.get(world.url(path));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_sees_its_own_alerts_by_state() {
    let world = World::sqlite().await;
    let globex = &world.globex;
    let viewer = &globex.tokens[&Role::Viewer];
    let (status, page) = get(&world, Some(viewer), "/alerts").await;
    assert_eq!(status, 200, "{page}");
    let instance = globex.instance.to_string();
    assert!(
        page.contains("<a href=\"/alerts\">Alerts</a>"),
        "the navigation links it"
    );
    assert!(page.contains("Backup Failed"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"/instances/{instance}\">")),
        "{page}"
    );
    assert!(page.contains("wrong_key"), "the reason: {page}");
    assert!(page.contains(">open<"), "{page}");
    assert!(page.contains("1 alert ·"), "{page}");

    // Resolved: none yet; all: the same one.
    let (_, resolved) = get(&world, Some(viewer), "/alerts?state=resolved").await;
    assert!(
        !resolved.contains(&format!("data-instance=\"{instance}\"")),
        "{resolved}"
    );
    assert!(resolved.contains("0 alerts"));
    let (_, all) = get(&world, Some(viewer), "/alerts?state=all&tenant=globex").await;
    assert!(all.contains(&format!("data-instance=\"{instance}\"")));
    let (_, other) = get(&world, Some(viewer), "/alerts?tenant=acme").await;
    assert!(other.contains("0 alerts"), "{other}");

    // Acme's users never see globex's alert.
    let acme_viewer = &world.acme.tokens[&Role::Viewer];
    let (status, acme) = get(&world, Some(acme_viewer), "/alerts?state=all").await;
    assert_eq!(status, 200);
    assert!(
        !acme.contains(&instance) && !acme.contains("globex"),
        "{acme}"
    );

    // Bad values are named; no sign-in, no page.
    let (status, bad) = get(&world, Some(viewer), "/alerts?state=acked").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("state"), "{bad}");
    let (status, _) = get(
        &world,
        Some(viewer),
        &format!("/alerts?tenant={}", "x".repeat(65)),
    )
    .await;
    assert_eq!(status, 400);
    // A tenant filter is written back into the form, escaped.
    let (status, echoed) = get(
        &world,
        Some(viewer),
        "/alerts?tenant=%22%3E%3Cscript%3Ex%3C%2Fscript%3E",
    )
    .await;
    assert_eq!(status, 200);
    assert!(!echoed.contains("<script>"), "{echoed}");
    assert!(echoed.contains("&gt;&lt;script&gt;"), "{echoed}");
    assert!(echoed.contains("0 alerts"));
    let response = world
        .http
        .get(world.url("/alerts"))
        .send()
        .await
        .expect("request");
    assert!(
        response.status().is_redirection() || response.status().as_u16() == 401,
        "{}",
        response.status()
    );
}
