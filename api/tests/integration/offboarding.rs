//! Offboarding through the API and the instance page: removing asks for a ticked confirmation
//! on the page, stops the instance for good (resume and backup now are refused), is audited
//! (`remove_instance`), says on the page from when its copies and credentials go, and a
//! second removal changes nothing. A copy retention removed is neither offered nor served.

use crate::common::World;

use restorable_api::auth::Role;
use restorable_domain::instance::Instance;

async fn post(world: &World, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = world
        .http
        .post(world.url(path))
        .bearer_auth(&world.acme.tokens[&Role::Administrator])
        .form(form)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn fetch(world: &World, path: &str) -> reqwest::Response {
    world
        .http
        .get(world.url(path))
        .bearer_auth(&world.acme.tokens[&Role::Administrator])
        .send()
        .await
        .expect("request")
}

async fn get(world: &World, path: &str) -> String {
    fetch(world, path).await.text().await.expect("body")
}

async fn status_of(world: &World, path: &str) -> u16 {
    fetch(world, path).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_removed_once_confirmed_stops_for_good_and_is_audited() {
    let world = World::sqlite().await;
    let id = world.acme.instance.to_string();
    let page = format!("/instances/{id}");
    let action = format!("/instances/{id}/action");
    assert!(get(&world, &page).await.contains("Remove instance"));

    // Without the confirmation box ticked the page refuses, and nothing happens.
    let (status, body) = post(&world, &action, &[("action", "remove")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be undone"), "{body}");
    let instance: Instance = world.pipeline.store.load(&id).await.expect("load");
    assert!(instance.removed.is_none());

    let (status, body) = post(
        &world,
        &action,
        &[("action", "remove"), ("confirm", "remove")],
    )
    .await;
    assert!(status == 303 || status == 200, "{status} {body}");
    let instance: Instance = world.pipeline.store.load(&id).await.expect("load");
    let removed = instance.removed.expect("removed");
    assert_eq!(
        removed.purge_after - removed.removed_at,
        chrono::Duration::days(30)
    );

    // Stopped for good.
    for refused in ["resume", "backup-now"] {
        let (status, body) = post(&world, &format!("/api/v1/instances/{id}/{refused}"), &[]).await;
        assert_eq!(status, 409, "{refused}: {body}");
    }
    // Removing again is fine and keeps the first date.
    let (status, body) = post(&world, &format!("/api/v1/instances/{id}/remove"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let again: Instance = world.pipeline.store.load(&id).await.expect("load");
    assert_eq!(
        again.removed.map(|r| r.purge_after),
        Some(removed.purge_after)
    );

    // The page says so and offers no more actions.
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("projected");
    let html = get(&world, &page).await;
    assert!(html.contains("Removed on"), "{html}");
    assert!(!html.contains("Remove instance") && !html.contains("Back up now"));
    // Audited, twice (the page and the API), under the administrator's name.
    let audit = get(&world, "/api/v1/audit").await;
    assert_eq!(audit.matches("\"remove_instance\"").count(), 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_removed_by_retention_is_no_longer_offered_or_served() {
    use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, CopyRemoved, RemovedBecause};
    let world = World::sqlite().await;
    let cycle = world.acme.cycle.to_string();
    let download = format!("/api/v1/cycles/{cycle}/download");
    assert_eq!(status_of(&world, &download).await, 200);
    let page = format!("/instances/{}", world.acme.instance);
    assert!(
        get(&world, &page).await.contains(&download),
        "a download link while stored"
    );
    // Recorded removed (as the retention sweep records it once its lock has run out).
    let stored: BackupCycle = world.pipeline.store.load(&cycle).await.expect("cycle");
    let retain_until = stored.retain_until.expect("locked");
    let removed = CopyRemoved {
        because: RemovedBecause::Expired,
        retain_until,
        removed_at: retain_until,
    };
    world
        .pipeline
        .store
        .cycle(&cycle, BackupCycleCommand::RecordCopyRemoved(removed))
        .await
        .expect("record removed");
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("projected");
    assert_eq!(status_of(&world, &download).await, 404);
    let html = get(&world, &page).await;
    assert!(html.contains("removed "), "{html}");
    assert!(
        !html.contains(&download),
        "no download link for a removed copy"
    );
    let rows = get(
        &world,
        &format!("/api/v1/instances/{}/backups", world.acme.instance),
    )
    .await;
    assert!(rows.contains("\"removed_at\":\""), "{rows}");
}
