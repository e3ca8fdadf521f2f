//! The lists that grow with history — `backups.csv` and `/api/v1/audit` — are written a page
//! at a time as they are read: across many pages they hold every row of the caller's tenant
//! once, in order, and nothing of another tenant; a row that cannot be read fails the answer
//! (a 500 before anything is sent, a cut-short body after), never a shorter list that looks
//! whole. On both backends.

use std::collections::HashSet;

use crate::common::World;
use chrono::{Duration, Utc};
use restorable_api::auth::Role;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::CycleId;
use restorable_pipeline::read_model::{backup_row, PAGE_ROWS};
use restorable_pipeline::store::ViewRow;
use restorable_projections::backups::BackupRow;

/// `count` more cycles of `tenant`'s instance in the backups view, copies of its real cycle
/// under new ids, written straight into the view (a fast loader: the projector leaves rows it
/// does not fold alone). Returns every cycle id of the tenant's view.
async fn load_backup_rows(world: &World, acme: bool, count: usize) -> HashSet<CycleId> {
    let tenant = if acme { &world.acme } else { &world.globex };
    let store = &world.pipeline.store;
    let real: BackupRow = backup_row(store, &tenant.cycle)
        .await
        .expect("read")
        .expect("the tenant's cycle is stored");
    let rows: Vec<ViewRow> = (0..count)
        .map(|_| {
            let mut row = real.clone();
            row.cycle_id = CycleId::random();
            ViewRow {
                view: "backups".into(),
                key: row.cycle_id.to_string(),
                tenant_id: row.tenant_id.to_string(),
                instance_id: Some(row.instance_id.to_string()),
                doc: serde_json::to_string(&row).expect("json"),
            }
        })
        .collect();
    save_rows(world, &rows).await;
    rows.iter()
        .map(|r| r.key.parse().expect("a cycle id"))
        .chain([tenant.cycle])
        .collect()
}

/// Writes rows into the views under a loader's own lease.
async fn save_rows(world: &World, rows: &[ViewRow]) {
    let store = &world.pipeline.store;
    let lease = store
        .acquire_lease("test-loader", "streamed-lists", 60_000)
        .await
        .expect("acquire")
        .expect("granted");
    store
        .save_view_rows(rows, "test-loader", 1, &lease)
        .await
        .expect("saved");
}

async fn get(world: &World, path: &str) -> reqwest::Response {
    get_with(&world.http, world, path).await
}

/// The same through `client` (a cut-short body leaves its connection unusable: the test that
/// cuts one asks on fresh connections).
async fn get_with(client: &reqwest::Client, world: &World, path: &str) -> reqwest::Response {
    client
        .get(world.url(path))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await
        .expect("request")
}

async fn lists_are_whole_across_pages(world: World) {
    let pages = usize::try_from(PAGE_ROWS).expect("page size");
    let acme_cycles = load_backup_rows(&world, true, 2 * pages + 7).await;
    load_backup_rows(&world, false, pages + 3).await;

    let response = get(&world, "/api/v1/export/backups.csv").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("the whole body");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().expect("header").clone();
    assert_eq!(&header[0], "cycle_id");
    assert_eq!(&header[2], "tenant");
    let mut listed = Vec::new();
    for record in reader.records() {
        let record = record.expect("a CSV row");
        assert_eq!(&record[2], "acme", "only the caller's tenant");
        listed.push(record[0].parse::<CycleId>().expect("a cycle id"));
    }
    assert_eq!(listed.len(), acme_cycles.len(), "every row, once");
    assert_eq!(listed.iter().copied().collect::<HashSet<_>>(), acme_cycles);
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "by cycle id, no repeats"
    );

    // The audit list: more than two pages of real recorded actions.
    let store = &world.pipeline.store;
    let actions = 2 * pages + 11;
    let at = Utc::now();
    for n in 0..actions {
        store
            .audit(
                world.acme.tenant.as_str(),
                ActionRecorded {
                    tenant_id: world.acme.tenant.clone(),
                    actor: format!("owner-{n}@acme.example"),
                    action: AuditAction::BackupNow,
                    instance_id: Some(world.acme.instance),
                    cycle_id: None,
                    key_version: None,
                    at: at + Duration::seconds(i64::try_from(n).expect("small")),
                },
            )
            .await
            .expect("audited");
    }
    world
        .read
        .catch_up_and_store(store)
        .await
        .expect("projected");
    let response = get(&world, "/api/v1/audit").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    let rows: Vec<serde_json::Value> = response.json().await.expect("a JSON array");
    let positions: Vec<i64> = rows
        .iter()
        .map(|r| r["position"].as_i64().expect("a position"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    let actors: HashSet<&str> = rows
        .iter()
        .filter_map(|r| r["actor"].as_str())
        .filter(|actor| actor.starts_with("owner-"))
        .collect();
    assert_eq!(actors.len(), actions, "every recorded action");
    assert!(
        rows.iter().all(|r| r["tenant_id"].as_str() == Some("acme")),
        "only the caller's tenant"
    );
}

async fn an_unreadable_row_fails_the_list(world: World) {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let pages = usize::try_from(PAGE_ROWS).expect("page size");
    load_backup_rows(&world, true, pages + 5).await;
    let unreadable = |key: &str| ViewRow {
        view: "backups".into(),
        key: key.into(),
        tenant_id: "acme".into(),
        instance_id: Some(world.acme.instance.to_string()),
        doc: "{\"cycle_id\": \"not a row\"}".into(),
    };
    // Last by key: read on a later page, once the status is on its way. The connection is cut:
    // the client sees a broken body or, when the cut comes before the server flushed the head,
    // a broken response; never a list that ends as if whole.
    save_rows(
        &world,
        &[unreadable("ffffffff-ffff-4fff-bfff-ffffffffffff")],
    )
    .await;
    let cut = fresh
        .get(world.url("/api/v1/export/backups.csv"))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await;
    if let Ok(response) = cut {
        assert_eq!(response.status(), 200, "the first page was readable");
        assert!(
            response.bytes().await.is_err(),
            "the body is cut short, not ended as if whole"
        );
    }
    // First by key: read before anything is sent.
    save_rows(
        &world,
        &[unreadable("00000000-0000-4000-8000-000000000000")],
    )
    .await;
    let response = get_with(&fresh, &world, "/api/v1/export/backups.csv").await;
    assert_eq!(response.status(), 500);
    let body = response.text().await.expect("body");
    assert!(
        !body.contains("not a row"),
        "no stored detail leaks: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_whole_across_pages_on_sqlite() {
    lists_are_whole_across_pages(World::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_whole_across_pages_on_postgresql() {
    lists_are_whole_across_pages(World::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_row_fails_the_list_on_sqlite() {
    an_unreadable_row_fails_the_list(World::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_row_fails_the_list_on_postgresql() {
    an_unreadable_row_fails_the_list(World::postgres().await).await;
}
