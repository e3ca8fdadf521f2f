//! Restore certificates on the web: a user who may see a Restore-Tested cycle downloads its
//! signed certificate (which checks offline); another tenant's user gets 404; the public page
//! `/certificates/{id}` answers without signing in, says "Genuine" for a real id with its facts
//! and nothing secret, and "Not genuine" for an altered or unknown id.

use crate::common;

use common::World;
use reqwest::StatusCode;
use restorable_api::auth::Role;
use restorable_pipeline::evidence::{
    certificate_fault, write_checkpoint, Certificate, LocalSigner, CHECKPOINT_RETENTION,
};

#[tokio::test]
async fn a_certificate_is_downloaded_by_its_tenant_and_vouched_for_by_the_public_page() {
    let world = World::sqlite().await;
    let path = format!("/cycles/{}/certificate", world.acme.cycle);
    let response = world
        .http
        .get(world.url(&path))
        .bearer_auth(&world.acme.tokens[&Role::Viewer])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let certificate: Certificate = response.json().await.expect("a certificate");
    assert_eq!(certificate_fault(&certificate), None);
    assert_eq!(certificate.facts.tenant, "acme");
    // Another tenant's user: as if it did not exist.
    let other = world
        .http
        .get(world.url(&path))
        .bearer_auth(&world.globex.tokens[&Role::Owner])
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // The public page, without signing in.
    let signer = LocalSigner::open_or_create(&world.data_dir.join("signing-key")).expect("key");
    write_checkpoint(
        &world.pipeline.store,
        world.pipeline.vault.as_ref(),
        &signer,
        CHECKPOINT_RETENTION,
    )
    .await
    .expect("checkpoint");
    let page = world
        .http
        .get(world.url(&format!("/certificates/{}", certificate.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.expect("body");
    assert!(body.contains("<strong>Genuine</strong>"), "{body}");
    assert!(body.contains(&certificate.facts.copy_sha256));
    assert!(!body.contains(&world.acme.pbx_secret));
    // One changed character of the id, or an id of nothing.
    let mut altered = certificate.id.clone();
    let last = if altered.ends_with('0') { "1" } else { "0" };
    altered.replace_range(altered.len() - 1.., last);
    for id in [altered.as_str(), "not-a-certificate", &"9".repeat(500)] {
        let body = world
            .http
            .get(world.url(&format!("/certificates/{id}")))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        assert!(
            body.contains("<strong>Not genuine</strong>"),
            "{id}: {body}"
        );
    }
}
