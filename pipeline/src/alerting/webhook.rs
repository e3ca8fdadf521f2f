//! The generic webhook route: the alert's JSON document, signed (HMAC-SHA256 of the exact body
//! bytes under the route's secret), posted by [`post_json`] with the event and delivery headers.

use super::post::{post_json, Post};
use super::*;

pub(super) async fn post_webhook(
    webhook: &WebhookRoute,
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let signature = format!(
        "sha256={}",
        sign(webhook.secret.expose_secret().as_bytes(), &delivery.body)
    );
    let post = Post {
        route: "webhook",
        url: &webhook.url,
        shown: redact_url(&webhook.url),
        headers: vec![
            (SIGNATURE_HEADER, signature),
            (EVENT_HEADER, delivery.event_type.to_owned()),
            (DELIVERY_HEADER, delivery.id.clone()),
        ],
        body: delivery.body.clone(),
    };
    post_json(post, &delivery.id, policy).await
}
