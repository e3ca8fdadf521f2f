//! Signing in (`/login`: the form, then a session cookie or the reason there is none — wrong
//! credentials, or throttled with `Retry-After`) and signing out (`/logout`).

use askama::Template;
use axum::extract::{Form, FromRequestParts, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::layout::{html, Nav};
use crate::auth;
use crate::error::ApiError;
use crate::state::Shared;

/// The sign-in page, with why the last attempt failed (if it did).
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    nav: Option<Nav<'static>>,
    error: Option<String>,
}

impl LoginPage {
    fn failed(error: Option<String>) -> Self {
        LoginPage {
            title: "Sign in",
            nav: None,
            error,
        }
    }
}

pub(super) async fn login_page() -> Response {
    html(&LoginPage::failed(None))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    email: String,
    password: SecretString,
}

/// The client's address, when the server recorded it (see [`crate::serve`]).
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

pub(super) async fn log_in(
    State(state): State<Shared>,
    ClientAddress(address): ClientAddress,
    Form(form): Form<LoginForm>,
) -> Response {
    match auth::log_in_from(&state, &form.email, form.password, address).await {
        Ok(auth::LogIn::Throttled(wait)) => {
            let secs = crate::throttle::retry_after_secs(wait);
            let mut response = html(&LoginPage::failed(Some(format!(
                "Too many attempts: try again in {secs} s."
            ))));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Ok(auth::LogIn::Session(session)) => (
            StatusCode::SEE_OTHER,
            [
                (LOCATION, "/".to_owned()),
                (SET_COOKIE, auth::session_cookie(Some(&session.token))),
            ],
        )
            .into_response(),
        Ok(auth::LogIn::Wrong) => {
            let mut response = html(&LoginPage::failed(Some(
                "Wrong e-mail address or password.".to_owned(),
            )));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        Err(error) => ApiError::internal(error).into_response(),
    }
}

pub(super) async fn log_out(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = auth::session_token(&headers) {
        if let Err(error) = auth::log_out(&state.pipeline.store, &token).await {
            return ApiError::from(error).into_response();
        }
        state.credentials_changed.notify_waiters();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/login".to_owned()),
            (SET_COOKIE, auth::session_cookie(None)),
        ],
    )
        .into_response()
}
