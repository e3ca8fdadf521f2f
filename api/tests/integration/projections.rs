//! The read side is rebuildable: `rebuild` empties the stored views and replays the whole
//! history, and the result equals the live views — those in memory (fleet, alerts) and every
//! stored row, backups and audit included — on both backends. Also: a failed copy raises one alert, naming its reason.

use crate::common;

use common::World;
use restorable_domain::alert::AlertKind;
use restorable_pipeline::read_model::{rebuild, ReadSide};
use restorable_projections::model::VIEWS;

async fn stored_rows(world: &World) -> Vec<(String, String, String, String)> {
    let mut rows = Vec::new();
    for view in VIEWS {
        for row in world
            .pipeline
            .store
            .view_rows(view, None)
            .await
            .expect("rows")
        {
            rows.push((row.view, row.key, row.tenant_id, row.doc));
        }
    }
    rows
}

async fn rebuilt_equals_live(world: World) {
    // Some audit records too, so every view has rows.
    let owner = &world.acme.tokens[&restorable_api::auth::Role::Owner];
    let response = world
        .http
        .post(world.url(&format!(
            "/api/v1/cycles/{}/reveal-password",
            world.acme.cycle
        )))
        .bearer_auth(owner)
        .send()
        .await
        .expect("reveal");
    assert_eq!(response.status(), 200);
    world
        .read
        .catch_up_and_store(&world.pipeline.store)
        .await
        .expect("fold");
    let live = world.read.read().clone();
    let live_rows = stored_rows(&world).await;
    for view in ["backups", "audit"] {
        assert!(
            live_rows.iter().any(|row| row.0 == view),
            "a stored {view} row: {live_rows:?}"
        );
    }
    assert_eq!(live.fleet.rows().len(), 2);

    let rebuilt = rebuild(&world.pipeline.store).await.expect("rebuild");
    assert_eq!(rebuilt, live, "the rebuilt views equal the live ones");
    assert_eq!(
        stored_rows(&world).await,
        live_rows,
        "and so do the stored rows"
    );
    let reloaded = ReadSide::load(&world.pipeline.store).await.expect("load");
    assert_eq!(*reloaded.read(), live, "what a restarted process loads");
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilt_views_equal_the_live_ones_on_sqlite() {
    rebuilt_equals_live(World::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilt_views_equal_the_live_ones_on_postgresql() {
    rebuilt_equals_live(World::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_copy_raises_one_alert_naming_its_reason() {
    let world = World::sqlite().await;
    let model = world.read.read().clone();
    let alerts = model.alerts.rows();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = alerts[0];
    assert_eq!(alert.kind, AlertKind::BackupFailed);
    assert_eq!(alert.instance_id, world.globex.instance);
    assert_eq!(alert.cycle_id, Some(world.globex.cycle));
    assert!(alert.reason.is_some() && alert.resolved_at.is_none());
    let row = model.fleet.row(&world.globex.instance).expect("row");
    assert_eq!(
        row.status(chrono::Utc::now()),
        restorable_projections::fleet::Status::NeedsAttention
    );
}
