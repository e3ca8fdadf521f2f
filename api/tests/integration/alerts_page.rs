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

/// The rows of a page's table (each alert row carries its id).
fn alert_ids(page: &str) -> Vec<String> {
    page.split("data-alert=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The target of the link with `id` (`newer`, `older`), unescaped, if the page has one.
fn link(page: &str, id: &str) -> Option<String> {
    let rest = page.split(&format!("id=\"{id}\" href=\"")).nth(1)?;
    Some(rest.split('"').next()?.replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread")]
async fn many_alerts_are_paged_newest_first_and_the_links_keep_the_filters() {
    use restorable_api::pages::ALERTS_PAGE_ROWS;
    use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
    use restorable_domain::ids::InstanceId;

    let world = World::sqlite().await;
    let acme = &world.acme;
    let raised = ALERTS_PAGE_ROWS * 2 + 17;
    let at = chrono::Utc::now();
    for n in 0..raised {
        let instance = InstanceId::for_name(&acme.tenant, &format!("paged-{n}"));
        world
            .pipeline
            .store
            .alerts(
                &instance.to_string(),
                AlertCommand::Raise(AlertRaised {
                    alert_id: String::new(),
                    kind: AlertKind::BackupStale,
                    tenant_id: acme.tenant.clone(),
                    instance_id: instance,
                    cycle_id: None,
                    stage: None,
                    reason: None,
                    detail: format!("stale {n}"),
                    raised_at: at + chrono::Duration::seconds(i64::try_from(n).expect("small")),
                    position: i64::MAX,
                }),
            )
            .await
            .expect("raise");
    }
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("fold");
    let viewer = &acme.tokens[&Role::Viewer];
    let (status, first) = get(&world, Some(viewer), "/alerts?tenant=acme").await;
    assert_eq!(status, 200, "{first}");
    let total = raised; // acme's PBX is healthy: these are its only open alerts
    assert!(
        first.contains(&format!(
            "alerts 1–{ALERTS_PAGE_ROWS} of {total}, newest first"
        )),
        "{first}"
    );
    assert!(
        link(&first, "newer").is_none(),
        "the first page is the newest"
    );
    assert!(
        first.contains(&format!("stale {}", raised - 1)),
        "newest first"
    );

    let mut seen: Vec<String> = alert_ids(&first);
    assert_eq!(seen.len(), ALERTS_PAGE_ROWS);
    let mut page = first;
    let mut pages = 1;
    while let Some(older) = link(&page, "older") {
        assert!(
            older.contains("state=open") && older.contains("tenant=acme"),
            "{older}"
        );
        let (status, next) = get(&world, Some(viewer), &older).await;
        assert_eq!(status, 200, "{next}");
        assert!(link(&next, "newer").is_some(), "a later page links back");
        seen.extend(alert_ids(&next));
        page = next;
        pages += 1;
        assert!(pages < 10, "the pages end");
    }
    assert_eq!(pages, 3);
    assert!(page.contains("stale 0"), "the oldest is on the last page");
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), total, "every alert once");
    assert_eq!(unique.len(), total);

    let (status, beyond) = get(&world, Some(viewer), "/alerts?page=99").await;
    assert_eq!(status, 200);
    assert!(
        beyond.contains(&format!("no alerts on this page; {total} in all")),
        "{beyond}"
    );
    assert_eq!(
        link(&beyond, "newer").as_deref(),
        Some("/alerts?state=open&page=3"),
        "from past the end, back to the last page"
    );
    let (status, zero) = get(&world, Some(viewer), "/alerts?page=0").await;
    assert_eq!(status, 400, "{zero}");
    assert!(zero.contains("page"), "{zero}");
    let (status, _) = get(&world, Some(viewer), "/alerts?page=two").await;
    assert_eq!(status, 400);
}
