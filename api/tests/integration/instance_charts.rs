//! The instance page's charts, drawn on the server: a Restore-Tested copy gives a restore
//! duration chart and a stored copy a size chart, one dot per copy with its value as the
//! tooltip; an instance without restore tests has no restore chart.

use crate::common;

use common::World;
use restorable_api::auth::Role;

async fn page(world: &World, instance: String, token: &str) -> String {
    world
        .http
        .get(world.url(&format!("/instances/{instance}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html")
}

#[tokio::test]
async fn restore_duration_and_size_are_charted_per_copy() {
    let world = World::sqlite().await;
    let acme = page(
        &world,
        world.acme.instance.to_string(),
        &world.acme.tokens[&Role::Viewer],
    )
    .await;
    let charts: Vec<&str> = acme.split("<figure class=\"chart\">").skip(1).collect();
    assert_eq!(charts.len(), 2, "{acme}");
    assert!(
        charts[0].contains("<title>Restore duration</title>"),
        "{}",
        charts[0]
    );
    assert!(
        charts[1].contains("<title>Backup size</title>"),
        "{}",
        charts[1]
    );
    for chart in &charts {
        assert_eq!(
            chart.matches("<circle ").count(),
            1,
            "one copy, one dot: {chart}"
        );
        assert!(chart.contains("<polyline "), "{chart}");
    }
    assert!(charts[0].contains(" s</title></circle>"), "{}", charts[0]);
    assert!(charts[1].contains(" MiB</title></circle>"), "{}", charts[1]);
    for chart in &charts {
        let figure = chart.split("</figure>").next().unwrap_or_default();
        assert!(!figure.contains("<script"), "no script draws it: {figure}");
    }

    // Globex's copy failed before any restore test: a size, no restore duration.
    let globex = page(
        &world,
        world.globex.instance.to_string(),
        &world.globex.tokens[&Role::Viewer],
    )
    .await;
    assert!(
        !globex.contains("<title>Restore duration</title>"),
        "{globex}"
    );
}
