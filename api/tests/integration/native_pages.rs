//! The PBX's own backups on the pages: the instance page's "Native PBX backups" section and the
//! fleet page's column, from the reading the world's captures took of the simulators (both
//! healthy native schedules: daily, encrypted, a backup 6 hours old).

use crate::common;

use common::World;
use restorable_api::auth::Role;

async fn page(world: &World, path: &str, token: &str) -> String {
    world
        .http
        .get(world.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html")
}

#[tokio::test]
async fn the_native_schedule_read_at_capture_shows_on_the_instance_and_fleet_pages() {
    let world = World::sqlite().await;
    let token = &world.acme.tokens[&Role::Viewer];
    let instance = page(
        &world,
        &format!("/instances/{}", world.acme.instance),
        token,
    )
    .await;
    let section = instance
        .split("<h2>Native PBX backups</h2>")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .unwrap_or_else(|| panic!("no native section: {instance}"));
    assert!(
        section.contains("<li>Schedule: on, daily, encrypted</li>"),
        "{section}"
    );
    assert!(section.contains("Newest native backup: "), "{section}");
    assert!(section.contains("(1 on the PBX&#39;s disk)"), "{section}");
    assert!(!section.contains("reason failure"), "healthy: {section}");

    let fleet = page(&world, "/", token).await;
    assert!(fleet.contains("<th>Native backups</th>"), "{fleet}");
    let row = fleet
        .split(&format!("data-instance=\"{}\"", world.acme.instance))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no acme row: {fleet}"));
    assert!(
        row.contains("<td class=\"native healthy\">OK</td>"),
        "{row}"
    );
}
