//! The Audit page and `audit.csv`: a tenant's user pages through every audited action of its
//! tenant, newest first, and nothing of another tenant's; the action and actor filters hold
//! across pages; a filter that matches little stops after a bounded read and goes on from
//! there; wrong values are a clear 400; what an actor chose is escaped on the page and cannot
//! run as a formula in the CSV; a store that cannot read the trail is an error page, not an
//! empty trail.

use std::collections::HashSet;

use crate::common::World;
use chrono::{Duration, Utc};
use restorable_api::auth::Role;
use restorable_api::pages::{AUDIT_PAGE_ROWS, AUDIT_SCANNED_ROWS};
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_pipeline::store::ViewRow;
use restorable_projections::audit::AuditRow;
use restorable_projections::model::position_key;

async fn get(world: &World, path: &str) -> (u16, String) {
    let response = world
        .http
        .get(world.url(path))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The actor column of the page's rows.
fn actors(page: &str) -> Vec<String> {
    let body = page.split("<tbody>").nth(1).unwrap_or_default();
    body.split("<tr data-position=")
        .skip(1)
        .filter_map(|row| row.split("<td>").nth(3))
        .filter_map(|cell| cell.split("</td>").next())
        .map(str::to_owned)
        .collect()
}

/// The "Older" link's target, unescaped.
fn older(page: &str) -> Option<String> {
    let rest = page.split("id=\"older\" href=\"").nth(1)?;
    Some(rest.split('"').next()?.replace("&amp;", "&"))
}

/// Every page from `path` on, following "Older": the actors of every row.
async fn every_page(world: &World, path: &str) -> (Vec<String>, usize) {
    let (status, mut page) = get(world, path).await;
    assert_eq!(status, 200, "{page}");
    let mut all = actors(&page);
    let mut pages = 1;
    while let Some(next) = older(&page) {
        let (status, body) = get(world, &next).await;
        assert_eq!(status, 200, "{body}");
        all.extend(actors(&body));
        page = body;
        pages += 1;
        assert!(pages < 100, "the pages end");
    }
    (all, pages)
}

async fn record(world: &World, acme: bool, actor: &str, action: AuditAction, at_second: i64) {
    let tenant = if acme { &world.acme } else { &world.globex };
    world
        .pipeline
        .store
        .audit(
            tenant.tenant.as_str(),
            ActionRecorded {
                tenant_id: tenant.tenant.clone(),
                actor: actor.to_owned(),
                action,
                instance_id: Some(tenant.instance),
                cycle_id: None,
                key_version: None,
                at: Utc::now() + Duration::seconds(at_second),
            },
        )
        .await
        .expect("audited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_pages_through_its_own_trail_with_filters() {
    let world = World::sqlite().await;
    let recorded = AUDIT_PAGE_ROWS * 2 + 13;
    for n in 0..recorded {
        let action = if n % 3 == 0 {
            AuditAction::Download
        } else {
            AuditAction::BackupNow
        };
        let n_at = i64::try_from(n).expect("small");
        record(
            &world,
            true,
            &format!("owner-{n}@acme.example"),
            action,
            n_at,
        )
        .await;
    }
    record(
        &world,
        true,
        "<script>alert(1)</script>",
        AuditAction::Stop,
        1_000,
    )
    .await;
    record(
        &world,
        true,
        "=HYPERLINK(\"x\")",
        AuditAction::Resume,
        1_001,
    )
    .await;
    record(
        &world,
        false,
        "spy@globex.example",
        AuditAction::Download,
        1_002,
    )
    .await;
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("projected");

    // What the API lists for acme is what the pages show, in the same order.
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&get(&world, "/api/v1/audit").await.1).expect("JSON");
    let (first_status, first) = get(&world, "/audit").await;
    assert_eq!(first_status, 200, "{first}");
    assert!(
        first.contains("<a href=\"/audit\">Audit</a>"),
        "the navigation links it"
    );
    assert!(first.contains("older ones follow"), "{first}");
    assert_eq!(actors(&first).len(), AUDIT_PAGE_ROWS);
    assert!(
        first.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !first.contains("<script>"),
        "an actor's text is escaped"
    );
    let (shown, pages) = every_page(&world, "/audit").await;
    let expected: Vec<String> = listed
        .iter()
        .map(|r| r["actor"].as_str().expect("actor").to_owned())
        .map(|a| {
            a.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        })
        .collect();
    assert_eq!(shown, expected, "every record once, newest first");
    assert_eq!(pages, listed.len().div_ceil(AUDIT_PAGE_ROWS));
    assert!(
        !shown.iter().any(|a| a.contains("globex")),
        "nothing of globex"
    );

    // The action filter holds across pages; so does the actor filter.
    let (downloads, _) = every_page(&world, "/audit?action=download").await;
    let wanted = listed.iter().filter(|r| r["action"] == "download").count();
    assert_eq!(downloads.len(), wanted);
    assert!(wanted > AUDIT_PAGE_ROWS / 2);
    let (one, _) = every_page(&world, "/audit?actor=OWNER-7%40").await;
    assert_eq!(
        one,
        vec!["owner-7@acme.example".to_owned()],
        "case-insensitive part"
    );
    // Another tenant's trail is not reachable by the tenant filter.
    let (status, other) = get(&world, "/audit?tenant=globex").await;
    assert_eq!(status, 200);
    assert!(
        actors(&other).is_empty() && other.contains("no audited actions"),
        "{other}"
    );

    // Wrong values are named.
    for (query, named) in [
        ("action=format_disk", "format_disk"),
        ("before=0", "before"),
        ("before=x", "before"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(&world, &format!("/audit?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(named), "{query}: {body}");
    }
    let (status, _) = get(&world, &format!("/audit?actor={}", "a".repeat(255))).await;
    assert_eq!(status, 400);

    // The CSV: every record of acme's, newest first; a formula is written as text.
    let (_, csv) = get(&world, "/api/v1/export/audit.csv").await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("header").clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        [
            "position",
            "at",
            "tenant",
            "actor",
            "action",
            "instance_id",
            "cycle_id",
            "key_version"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
    assert_eq!(rows.len(), listed.len());
    assert!(rows.iter().all(|r| &r[2] == "acme"));
    let positions: Vec<i64> = rows
        .iter()
        .map(|r| r[0].parse().expect("a position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(
        rows.iter().any(|r| &r[3] == "'=HYPERLINK(\"x\")"),
        "a formula is quoted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrow_filter_reads_a_bounded_part_of_a_long_trail_and_goes_on_from_there() {
    let world = World::sqlite().await;
    // One snooze, under more than a scan's worth of other records (written straight into the
    // view: a fast loader, as in streamed_lists.rs).
    record(
        &world,
        true,
        "snoozer@acme.example",
        AuditAction::AlertSnooze,
        0,
    )
    .await;
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("projected");
    let store = &world.pipeline.store;
    let listed: Vec<AuditRow> =
        serde_json::from_str(&get(&world, "/api/v1/audit").await.1).expect("audit rows");
    let template = listed
        .into_iter()
        .find(|r| r.action.action == AuditAction::AlertSnooze)
        .expect("the snooze is listed");
    let filler = AUDIT_SCANNED_ROWS + 50;
    let rows: Vec<ViewRow> = (1..=filler)
        .map(|n| {
            let mut row = template.clone();
            row.position = template.position + i64::try_from(n).expect("small") * 10;
            row.action.action = AuditAction::BackupNow;
            row.action.actor = format!("filler-{n}");
            ViewRow {
                view: "audit".into(),
                key: position_key(row.position),
                tenant_id: "acme".into(),
                instance_id: None,
                doc: serde_json::to_string(&row).expect("json"),
            }
        })
        .collect();
    let lease = store
        .acquire_lease("test-loader", "audit-page", 60_000)
        .await
        .expect("acquire")
        .expect("granted");
    store
        .save_view_rows(&rows, "test-loader", 1, &lease)
        .await
        .expect("saved");

    let (status, first) = get(&world, "/audit?action=alert_snooze").await;
    assert_eq!(status, 200, "{first}");
    assert!(actors(&first).is_empty(), "none among the newest read");
    let next = older(&first).expect("the reading stopped: it goes on");
    let stopped: i64 = next
        .rsplit("before=")
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a position");
    let newest_filler = template.position + i64::try_from(filler).expect("small") * 10;
    assert_eq!(
        stopped,
        newest_filler - i64::try_from(AUDIT_SCANNED_ROWS - 1).expect("small") * 10,
        "after exactly one scan's worth"
    );
    assert!(next.contains("action=alert_snooze"), "{next}");
    let (found, pages) = every_page(&world, "/audit?action=alert_snooze").await;
    assert_eq!(found, vec!["snoozer@acme.example".to_owned()]);
    assert_eq!(pages, 2);
    let unique: HashSet<&String> = found.iter().collect();
    assert_eq!(unique.len(), 1);
}

/// A store that cannot read the trail is an error page, never an empty trail that looks whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_read_the_trail_is_an_error_not_an_empty_page() {
    let world = World::sqlite().await;
    record(&world, true, "someone@acme.example", AuditAction::Stop, 0).await;
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("projected");
    let store = &world.pipeline.store;
    store
        .execute_sql("ALTER TABLE read_model RENAME TO read_model_away")
        .await
        .expect("the view's table taken away");
    let (status, page) = get(&world, "/audit").await;
    assert_eq!(status, 500, "{page}");
    assert!(!page.contains("no audited actions"), "{page}");
    store
        .execute_sql("ALTER TABLE read_model_away RENAME TO read_model")
        .await
        .expect("put back");
    let (status, page) = get(&world, "/audit").await;
    assert_eq!(status, 200);
    assert!(page.contains("someone@acme.example"), "{page}");
}
