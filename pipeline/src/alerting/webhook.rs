//! The webhook route: a signed JSON `POST`, redirects not followed, retried with back-off on
//! connection errors, timeouts, 408, 429 and 5xx; any other 4xx is final.

use super::*;

pub(super) async fn post_webhook(
    webhook: &WebhookRoute,
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let shown = redact_url(&webhook.url);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(policy.attempt_timeout)
        .timeout(policy.attempt_timeout)
        .build()
        .map_err(|e| AlertRouteError::Http {
            url: shown.clone(),
            detail: chain(&e.without_url()),
        })?;
    let signature = format!(
        "sha256={}",
        sign(webhook.secret.expose_secret().as_bytes(), &delivery.body)
    );
    let (http, shown, signature) = (&http, &shown, &signature);
    retrying(policy, "webhook", &delivery.id, || async move {
        let sent = http
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, delivery.event_type)
            .header(DELIVERY_HEADER, &delivery.id)
            .body(delivery.body.clone())
            .send()
            .await;
        let response = sent.map_err(|e| {
            Attempt::Retry(AlertRouteError::Http {
                url: shown.clone(),
                detail: chain(&e.without_url()),
            })
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = AlertRouteError::Status {
            url: shown.clone(),
            status: status.as_u16(),
        };
        let final_answer = status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if final_answer {
            Attempt::GiveUp(error)
        } else {
            Attempt::Retry(error)
        })
    })
    .await
}
