//! One JSON `POST` with every HTTP route's rules: redirects are not followed, each attempt is
//! bounded by the policy's timeout, and connection errors, timeouts, 408, 429 and 5xx are
//! retried with back-off; any other 4xx is final. The URL appears in errors and logs only as
//! `shown` (a chat webhook's path is its secret: those routes show the host alone).

use super::*;

/// What to post and where.
pub(super) struct Post<'a> {
    /// `webhook`, `slack`, `teams`, `pagerduty` (errors and logs).
    pub(super) route: &'static str,
    pub(super) url: &'a str,
    /// The URL as errors and logs show it.
    pub(super) shown: String,
    /// Headers besides `Content-Type: application/json`.
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Bytes,
}

/// Posts `post` as `delivery`, retrying as `policy` says.
pub(super) async fn post_json(
    post: Post<'_>,
    delivery: &str,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let Post {
        route,
        url,
        shown,
        headers,
        body,
    } = post;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(policy.attempt_timeout)
        .timeout(policy.attempt_timeout)
        .build()
        .map_err(|e| AlertRouteError::Http {
            route,
            url: shown.clone(),
            detail: chain(&e.without_url()),
        })?;
    let (http, shown, headers, body) = (&http, &shown, &headers, &body);
    retrying(policy, route, delivery, || async move {
        let mut request = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let sent = request.body(body.clone()).send().await;
        let response = sent.map_err(|e| {
            Attempt::Retry(AlertRouteError::Http {
                route,
                url: shown.clone(),
                detail: chain(&e.without_url()),
            })
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = AlertRouteError::Status {
            route,
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

/// Posts `message` (a Slack or Teams message) to the chat route's incoming webhook, the URL
/// shown as its host alone.
pub(super) async fn post_chat(
    route: &'static str,
    chat: &ChatRoute,
    message: serde_json::Value,
    delivery: &str,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let url = chat.url.expose_secret();
    let post = Post {
        route,
        url,
        shown: host_of(url),
        headers: Vec::new(),
        body: Bytes::from(message.to_string()),
    };
    post_json(post, delivery, policy).await
}
