//! The web pages in a real browser: headless Chromium driven over W3C WebDriver (chromedriver
//! installed by scripts/install-deps.sh), against the test world's server on 127.0.0.1 — which
//! Chromium treats as a secure origin, so the `__Secure-` session cookie works over plain HTTP.
//!
//! - A viewer signs in through the form and sees their tenant's instance, its ladder (Secured
//!   and Verified reached) and nothing of the other tenant.
//! - An owner opens the instance whose copy failed and reads the failure (stage and reason code)
//!   on its Backups tab.
//! - A wrong password shows the error and leaves the browser without a session.
//! - The session cookie is HttpOnly: scripts in the page cannot read it.
//! - An owner reads the fleet overview (a count per status, linked to the filter; re-check
//!   coverage; the day's failures), the Alerts page and its state filter, the Audit page and its
//!   action filter, and the instance page's charts drawn at a readable size.
//!
//! Without chromedriver or Chromium these tests fail, naming scripts/install-deps.sh, unless
//! `RESTORABLE_SKIP_BROWSER=1` asks to skip them.

use crate::common;
use crate::webdriver;

use common::{email, World, PASSWORD};
use restorable_api::auth::{Role, SESSION_COOKIE};
use webdriver::Browser;

/// The world and a browser, or `None` when the browser tests are skipped on purpose.
async fn setup() -> Option<(World, Browser)> {
    let (chromedriver, chromium) = webdriver::binaries()?;
    let world = World::sqlite().await;
    let browser = Browser::start(&chromedriver, &chromium).await;
    Some((world, browser))
}

/// Fills the sign-in form and submits it.
async fn sign_in(browser: &Browser, world: &World, email: &str, password: &str) {
    browser.goto(&world.url("/login")).await;
    let field = browser.find("#email").await;
    browser.type_into(&field, email).await;
    let field = browser.find("#password").await;
    browser.type_into(&field, password).await;
    let button = browser.find("#sign-in").await;
    browser.click(&button).await;
}

/// Waits until the browser is at a URL containing `part` (a click's navigation done); panics
/// after the finder's wait.
async fn arrive_at(browser: &Browser, part: &str) {
    let until = std::time::Instant::now() + webdriver::IMPLICIT_WAIT;
    loop {
        let url = browser.url().await;
        if url.contains(part) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "never reached {part}: at {url}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The texts of every element matching `selector`.
async fn texts(browser: &Browser, selector: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(selector).await {
        out.push(browser.text(&element).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_signs_in_and_sees_their_fleet_only() {
    let Some((world, browser)) = setup().await else {
        return;
    };
    sign_in(&browser, &world, &email("acme", Role::Viewer), PASSWORD).await;

    let table = browser.find("table#fleet").await;
    assert_eq!(
        browser.url().await,
        world.url("/"),
        "signing in lands on the fleet page"
    );
    let rows = browser.find_all("table#fleet tbody tr").await;
    assert_eq!(rows.len(), 1, "one instance: acme's");
    let instance = browser.attribute(&rows[0], "data-instance").await;
    assert_eq!(instance, Some(world.acme.instance.to_string()));
    let row = browser.text(&rows[0]).await;
    for shown in ["hq", "hq.acme.example", "acme", "Healthy"] {
        assert!(row.contains(shown), "{shown:?} in the row: {row}");
    }
    let reached = texts(&browser, "table#fleet tbody tr .rung.reached").await;
    for rung in ["Captured", "Secured", "Verified"] {
        assert!(
            reached.iter().any(|r| r == rung),
            "{rung} reached: {reached:?}"
        );
    }
    assert!(
        browser
            .find_all("table#fleet .rung.failed")
            .await
            .is_empty(),
        "acme's copy failed nowhere"
    );
    let page = browser.text(&browser.find("body").await).await;
    assert!(
        !page.contains("globex"),
        "nothing of globex on acme's page: {page}"
    );
    assert!(
        !browser
            .text(&table)
            .await
            .contains(&world.globex.instance.to_string())
            && browser
                .find_all(&format!("[data-instance=\"{}\"]", world.globex.instance))
                .await
                .is_empty(),
        "globex's instance is not listed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_reads_why_the_copy_failed_on_the_backups_tab() {
    let Some((world, browser)) = setup().await else {
        return;
    };
    sign_in(&browser, &world, &email("globex", Role::Owner), PASSWORD).await;

    let link = browser
        .find("table#fleet tbody tr a[href^=\"/instances/\"]")
        .await;
    assert_eq!(browser.text(&link).await, "hq");
    browser.click(&link).await;

    let failure = browser.find(".reason.failure").await;
    assert_eq!(
        browser.url().await,
        world.url(&format!("/instances/{}", world.globex.instance)),
        "the link opens globex's instance"
    );
    let reason = browser.text(&failure).await;
    assert!(
        reason.starts_with("Failed at verify: wrong_key"),
        "the stage and the reason code: {reason}"
    );
    let row = browser.find("table#backups tbody tr[data-cycle]").await;
    assert_eq!(
        browser.attribute(&row, "data-cycle").await,
        Some(world.globex.cycle.to_string())
    );
    assert_eq!(
        texts(&browser, "table#backups .rung.failed").await,
        ["Verified"],
        "the ladder marks the rung it failed to reach"
    );
    let reached = texts(&browser, "table#backups .rung.reached").await;
    assert_eq!(reached, ["Captured", "Secured"], "reached before verify");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_shows_the_error_and_opens_no_session() {
    let Some((world, browser)) = setup().await else {
        return;
    };
    sign_in(
        &browser,
        &world,
        &email("acme", Role::Viewer),
        "not the password at all",
    )
    .await;

    let error = browser.find("#login-error").await;
    assert_eq!(
        browser.text(&error).await,
        "Wrong e-mail address or password."
    );
    assert!(
        browser.find_all("table#fleet").await.is_empty(),
        "no fleet page after a wrong password"
    );
    let cookies = browser.cookies().await;
    assert!(
        cookies.iter().all(|c| c["name"] != SESSION_COOKIE),
        "no session cookie after a wrong password: {cookies:?}"
    );
    browser.goto(&world.url("/")).await;
    browser.find("#sign-in").await;
    assert_eq!(
        browser.url().await,
        world.url("/login"),
        "the fleet page still sends the browser to sign in"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_http_only() {
    let Some((world, browser)) = setup().await else {
        return;
    };
    sign_in(&browser, &world, &email("acme", Role::Viewer), PASSWORD).await;
    browser.find("table#fleet").await;

    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == SESSION_COOKIE)
        .unwrap_or_else(|| panic!("the browser holds the session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");

    // A cookie scripts may read shows up in document.cookie: the check below is not vacuous.
    let seen = browser
        .execute("document.cookie = 'probe=visible; path=/'; return document.cookie;")
        .await;
    let seen = seen.as_str().expect("document.cookie is a string");
    assert!(
        seen.contains("probe=visible"),
        "document.cookie works: {seen:?}"
    );
    assert!(
        !seen.contains(SESSION_COOKIE) && !seen.contains(session["value"].as_str().expect("value")),
        "scripts cannot read the session cookie: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_reads_the_overview_the_alerts_and_audit_pages_and_the_chart() {
    use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
    use restorable_domain::audit::{ActionRecorded, AuditAction};

    let Some((world, browser)) = setup().await else {
        return;
    };
    let acme = &world.acme;
    let store = &world.pipeline.store;
    store
        .alerts(
            &acme.instance.to_string(),
            AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                kind: AlertKind::BackupStale,
                tenant_id: acme.tenant.clone(),
                instance_id: acme.instance,
                cycle_id: None,
                stage: None,
                reason: None,
                detail: "no copy for a while".into(),
                raised_at: chrono::Utc::now(),
                position: i64::MAX,
            }),
        )
        .await
        .expect("raise");
    for (actor, action) in [
        ("downloader@acme.example", AuditAction::Download),
        ("stopper@acme.example", AuditAction::Stop),
    ] {
        store
            .audit(
                acme.tenant.as_str(),
                ActionRecorded {
                    tenant_id: acme.tenant.clone(),
                    actor: actor.into(),
                    action,
                    instance_id: Some(acme.instance),
                    cycle_id: None,
                    key_version: None,
                    at: chrono::Utc::now(),
                },
            )
            .await
            .expect("audited");
    }
    world.read.catch_up_and_store(store).await.expect("fold");
    sign_in(&browser, &world, &email("acme", Role::Owner), PASSWORD).await;

    // The overview: a count per status, each a link to the fleet filtered by it.
    browser.find("table#fleet").await;
    let healthy = browser.find(".counts a.count.healthy").await;
    assert_eq!(browser.text(&healthy).await, "1 Healthy");
    let coverage = texts(&browser, ".coverage").await.join(" ");
    assert!(coverage.starts_with("Re-check coverage"), "{coverage}");
    let recent = texts(&browser, ".recent").await.join(" ");
    assert!(recent.starts_with("Failures in the last 24 h"), "{recent}");
    browser
        .click(&browser.find(".counts a.count.stopped").await)
        .await;
    arrive_at(&browser, "status=stopped").await;
    browser.find("p.summary").await;
    assert!(
        browser
            .find_all("table#fleet tbody tr[data-instance]")
            .await
            .is_empty(),
        "no stopped instance"
    );

    // The Alerts page, from the navigation: the open alert, then the state filter.
    browser
        .click(&browser.find("nav a[href=\"/alerts\"]").await)
        .await;
    arrive_at(&browser, "/alerts").await;
    let row = browser.find("table#alerts tbody tr").await;
    let text = browser.text(&row).await;
    assert!(
        text.contains("Backup Stale") && text.contains("no copy for a while"),
        "{text}"
    );
    browser
        .click(
            &browser
                .find("select[name=state] option[value=resolved]")
                .await,
        )
        .await;
    browser
        .click(&browser.find("form.filters button").await)
        .await;
    arrive_at(&browser, "state=resolved").await;
    browser.find("p.summary").await;
    assert!(browser.find_all("table#alerts tbody tr").await.is_empty());

    // The Audit page: both records, then only the download by the action filter.
    browser
        .click(&browser.find("nav a[href=\"/audit\"]").await)
        .await;
    arrive_at(&browser, "/audit").await;
    browser.find("table#audit").await;
    let all = texts(&browser, "table#audit tbody tr").await.join("\n");
    assert!(
        all.contains("downloader@acme.example") && all.contains("stopper@acme.example"),
        "{all}"
    );
    browser
        .click(
            &browser
                .find("select[name=action] option[value=download]")
                .await,
        )
        .await;
    browser
        .click(&browser.find("form.filters button").await)
        .await;
    arrive_at(&browser, "action=download").await;
    browser.find("p.summary").await;
    let rows = texts(&browser, "table#audit tbody tr").await;
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.contains("download")),
        "{rows:?}"
    );
    assert!(!rows.iter().any(|r| r.contains("stopper")), "{rows:?}");

    // The instance page draws its copies over time: a dot per copy, its value as the tooltip.
    browser
        .goto(&world.url(&format!("/instances/{}", acme.instance)))
        .await;
    let charts = browser.find_all("figure.chart svg").await;
    assert_eq!(charts.len(), 2, "restore duration and size");
    assert!(!browser
        .find_all("figure.chart svg polyline")
        .await
        .is_empty());
    let dots = browser.find_all("figure.chart svg circle").await;
    assert!(dots.len() >= 2, "a dot per copy and chart");
    let size = browser
        .execute(
            "const svg = document.querySelectorAll('figure.chart svg')[1]; \
             const box = svg.getBoundingClientRect(); return [box.width, box.height];",
        )
        .await;
    let drawn = size.as_array().expect("[width, height]");
    assert!(
        drawn.iter().all(|v| v.as_f64().unwrap_or(0.0) > 50.0),
        "the chart is drawn at a readable size: {size}"
    );
}
