//! The re-check coverage on the fleet page and in `/metrics`: of the stored copies a viewer may
//! see, the share proven within the window, the oldest proof, those failing — each tenant sees
//! only its own copies (globex's only copy failed verify: nothing of it is watched); a copy that
//! fails its re-check shows in `/metrics` at once.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use chrono::Utc;
use common::World;
use restorable_api::auth::Role;
use restorable_domain::cycle::BackupCycle;
use restorable_pipeline::recheck::sweep_at;

async fn get(world: &World, path: &str, token: Option<&str>) -> String {
    let mut request = world.http.get(world.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.expect("body")
}

/// The coverage line of a fleet page.
fn coverage(page: &str) -> &str {
    page.split("<p class=\"coverage\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_default()
}

/// The value of a gauge in `/metrics`.
fn gauge<'a>(metrics: &'a str, name: &str) -> &'a str {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_page_and_metrics_show_the_coverage_of_the_copies_one_may_see() {
    let world = World::sqlite().await;
    let now = Utc::now();
    sweep_at(&world.pipeline, now).await.expect("sweep");

    let acme = get(&world, "/", Some(&world.acme.tokens[&Role::Viewer])).await;
    assert!(
        coverage(&acme).starts_with(
            "Re-check coverage: 100.0 % of 1 stored copy proven in the last 7 days · oldest proof "
        ),
        "{}",
        coverage(&acme)
    );
    let globex = get(&world, "/", Some(&world.globex.tokens[&Role::Viewer])).await;
    assert_eq!(coverage(&globex), "Re-check coverage: no stored copies yet");
    let asked_for_another = get(
        &world,
        "/?tenant=acme",
        Some(&world.globex.tokens[&Role::Viewer]),
    )
    .await;
    assert_eq!(
        coverage(&asked_for_another),
        "Re-check coverage: no stored copies yet"
    );

    let metrics = get(&world, "/metrics", None).await;
    assert_eq!(gauge(&metrics, "restorable_recheck_copies"), "1");
    assert_eq!(gauge(&metrics, "restorable_recheck_proven"), "1");
    assert_eq!(
        gauge(&metrics, "restorable_recheck_coverage_ratio"),
        "1.000000"
    );
    assert_eq!(gauge(&metrics, "restorable_recheck_failing"), "0");

    // Bit rot in acme's copy: its re-check a window later fails, and `/metrics` says so.
    let cycle: BackupCycle = world
        .pipeline
        .store
        .load(&world.acme.cycle.to_string())
        .await
        .expect("cycle");
    let key = cycle.captured.expect("captured").object_key;
    let file = world.data_dir.join("vault").join("objects").join(key);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = std::fs::read(&file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).expect("write");
    let later = now + world.pipeline.settings.recheck_window + chrono::Duration::minutes(1);
    let swept = sweep_at(&world.pipeline, later).await.expect("sweep");
    assert_eq!(swept.failed.len(), 1, "{swept:?}");
    let metrics = get(&world, "/metrics", None).await;
    assert_eq!(gauge(&metrics, "restorable_recheck_failing"), "1");
    assert_eq!(gauge(&metrics, "restorable_recheck_copies"), "1");
}
