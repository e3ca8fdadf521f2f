//! The fleet page is paged: a large fleet is shown 200 rows at a time, with the total, the
//! page's place and links either side that keep the filters; every instance is on exactly one
//! page; a page past the last shows the last, and a page that is not a number is a clear 400.
//! The day's failures are counted per the viewer's tenants, and a store that cannot read them
//! leaves the line saying so.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::World;
use restorable_api::auth::Role;
use restorable_api::pages::FLEET_PAGE_ROWS;

/// Acme gets this many instances more than the one it has.
const ENROLLED: usize = FLEET_PAGE_ROWS + 5;

async fn get(world: &World, token: &str, path: &str) -> (u16, String) {
    let response = world
        .http
        .get(world.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The instance ids of the rows on a fleet page.
fn row_ids(page: &str) -> Vec<String> {
    page.split("<tr data-instance=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("closing quote").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_fleet_is_shown_a_page_at_a_time() {
    let world = World::sqlite().await;
    let admin = &world.acme.tokens[&Role::Administrator];
    let viewer = &world.acme.tokens[&Role::Viewer];
    for n in 0..ENROLLED {
        let response = world
            .http
            .post(world.url("/api/v1/instances"))
            .bearer_auth(admin)
            .json(&serde_json::json!({
                "tenant": "acme",
                "name": format!("branch-{n:03}"),
                "url": "https://pbx.example.test",
                "client_id": "id",
                "client_secret": "a-secret",
            }))
            .send()
            .await
            .expect("enrol");
        assert_eq!(response.status(), 201, "enrol branch-{n:03}");
    }
    let total = ENROLLED + 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let api_ids: BTreeSet<String> = loop {
        let (status, body) = get(&world, viewer, "/api/v1/fleet?tenant=acme").await;
        assert_eq!(status, 200);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("fleet JSON");
        if rows.len() == total {
            break rows
                .iter()
                .map(|r| r["instance_id"].as_str().expect("an id").to_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "{} of {total} rows", rows.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let (status, first) = get(&world, viewer, "/?tenant=acme").await;
    assert_eq!(status, 200);
    assert!(first.contains(&format!("{total} instances")), "the total");
    assert!(first.contains("Page 1 of 2"));
    assert!(
        first.contains("rel=\"next\" href=\"/?tenant=acme&amp;page=2\""),
        "the next page keeps the filter"
    );
    assert!(!first.contains("rel=\"prev\""), "nothing before page 1");
    let first_ids = row_ids(&first);
    assert_eq!(first_ids.len(), FLEET_PAGE_ROWS);

    let (status, second) = get(&world, viewer, "/?tenant=acme&page=2").await;
    assert_eq!(status, 200);
    assert!(second.contains("Page 2 of 2"));
    assert!(second.contains("rel=\"prev\" href=\"/?tenant=acme\""));
    assert!(
        !second.contains("rel=\"next\""),
        "nothing after the last page"
    );
    let second_ids = row_ids(&second);
    assert_eq!(second_ids.len(), total - FLEET_PAGE_ROWS);

    let mut paged: Vec<String> = first_ids.into_iter().chain(second_ids.clone()).collect();
    let shown = paged.len();
    paged.sort();
    paged.dedup();
    assert_eq!(paged.len(), shown, "no instance on two pages");
    assert_eq!(
        paged.into_iter().collect::<BTreeSet<_>>(),
        api_ids,
        "every instance on a page"
    );

    let (status, past) = get(&world, viewer, "/?tenant=acme&page=99").await;
    assert_eq!(status, 200);
    assert!(past.contains("Page 2 of 2"), "past the last: the last");
    assert_eq!(row_ids(&past), second_ids);

    for bad in ["0", "two", "-1"] {
        let (status, body) = get(&world, viewer, &format!("/?page={bad}")).await;
        assert_eq!(status, 400, "page={bad}");
        assert!(body.contains("is not a number from 1"), "{body}");
    }

    // A fleet of one has no pager.
    let globex_viewer = &world.globex.tokens[&Role::Viewer];
    let (status, small) = get(&world, globex_viewer, "/").await;
    assert_eq!(status, 200);
    assert!(small.contains(">1 instance ·"), "one instance");
    assert_eq!(row_ids(&small), vec![world.globex.instance.to_string()]);
    assert!(!small.contains("class=\"pager\""), "one page, no pager");
}

/// The top of the page counts the instances by status (each a link to that filter, keeping the
/// tenant), and those that need attention come first; the API keeps the fleet's order.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_counts_by_status_and_lists_those_needing_attention_first() {
    use restorable_api::auth::{add_user, issue_token, Scope};
    use secrecy::SecretString;

    let world = World::sqlite().await;
    add_user(
        &world.pipeline.store,
        "noc@msp.example",
        &SecretString::from("a-long-enough-password".to_owned()),
        Role::Viewer,
        &Scope::All,
    )
    .await
    .expect("add a viewer of every tenant");
    let every = issue_token(&world.pipeline.store, "noc@msp.example", "tests")
        .await
        .expect("token");
    let (status, page) = get(&world, &every, "/").await;
    assert_eq!(status, 200);
    let counts = page
        .split("<p class=\"counts\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .expect("the counts");
    for expected in [
        "<a class=\"count needs-attention\" href=\"/?status=needs_attention\"><strong>1</strong> Needs attention</a>",
        "<a class=\"count healthy\" href=\"/?status=healthy\"><strong>1</strong> Healthy</a>",
        "<a class=\"count stopped\" href=\"/?status=stopped\"><strong>0</strong> Stopped</a>",
    ] {
        assert!(counts.contains(expected), "{expected} in {counts}");
    }
    // Globex's PBX fails (wrong password): listed before acme's healthy one on the page ...
    assert_eq!(
        row_ids(&page),
        vec![
            world.globex.instance.to_string(),
            world.acme.instance.to_string()
        ]
    );
    // ... while the API keeps tenant order.
    let (_, body) = get(&world, &every, "/api/v1/fleet").await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("fleet JSON");
    let api_order: Vec<&str> = rows
        .iter()
        .map(|r| r["instance_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(
        api_order,
        vec![
            world.acme.instance.to_string(),
            world.globex.instance.to_string()
        ]
    );
    // A tenant's counts are its own, and its links keep it.
    let (_, acme) = get(&world, &every, "/?tenant=acme").await;
    assert!(
        acme.contains(
            "href=\"/?tenant=acme&amp;status=needs_attention\"><strong>0</strong> Needs attention"
        ),
        "{acme}"
    );
}

/// The failures of the last 24 hours head the page: globex's cycle failed verify (a wrong
/// password), so its viewer sees one, linked to its instance; acme's viewer sees none of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_days_failures_are_counted_and_listed_for_the_tenants_one_may_see() {
    let world = World::sqlite().await;
    let (status, globex) = get(&world, &world.globex.tokens[&Role::Viewer], "/").await;
    assert_eq!(status, 200);
    assert!(
        globex.contains("<p class=\"recent\">Failures in the last 24 h: 1</p>"),
        "{globex}"
    );
    assert!(
        globex.contains(&format!(
            "<li><a href=\"/instances/{}\">hq</a> (globex) ",
            world.globex.instance
        )),
        "{globex}"
    );
    assert!(globex.contains("verify failed: wrong_key</li>"), "{globex}");
    let (_, acme) = get(&world, &world.acme.tokens[&Role::Viewer], "/").await;
    assert!(
        acme.contains("<p class=\"recent\">Failures in the last 24 h: 0</p>"),
        "{acme}"
    );
    assert!(!acme.contains("recent-failures"), "{acme}");
}

/// The day's failures are read from storage: a store that cannot answer leaves the line saying
/// so, and the rest of the page (held in memory) is shown; once it answers, the count is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_read_the_failures_leaves_the_line_saying_so() {
    let world = World::sqlite().await;
    let viewer = &world.globex.tokens[&Role::Viewer];
    let store = &world.pipeline.store;
    store
        .execute_sql("ALTER TABLE read_model RENAME TO read_model_away")
        .await
        .expect("the view's table taken away");
    let (status, page) = get(&world, viewer, "/").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<p class=\"recent\">Failures in the last 24 h: not available right now</p>"),
        "{page}"
    );
    assert!(
        row_ids(&page).contains(&world.globex.instance.to_string()),
        "the fleet is still shown: {page}"
    );
    store
        .execute_sql("ALTER TABLE read_model_away RENAME TO read_model")
        .await
        .expect("put back");
    // Another filter: not the answer cached above.
    let (status, page) = get(&world, viewer, "/?tenant=globex").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<p class=\"recent\">Failures in the last 24 h: 1</p>"),
        "{page}"
    );
}
