//! What every page shares: the visitor and the extractors that parse a query or form before
//! a handler runs (a refusal is an error page), the escaping of every template, the layout's
//! navigation, rendering with the pages' headers, error pages, times, status badges and the
//! ladder, and the compiled-in assets.

use std::fmt;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Datelike, Timelike, Utc};
use restorable_domain::ladder::Rung;
use restorable_projections::fleet::Status;
use serde::de::DeserializeOwned;

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::state::Shared;

/// A page's visitor: signed in, or sent to the sign-in page. The principal is also left in the
/// request's extensions, so that a query or form refused after it still gets the navigation.
pub struct Visitor(pub Principal);

impl FromRequestParts<Shared> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        match auth::identify(parts, &state.pipeline.store).await {
            Ok(Some(who)) => {
                parts.extensions.insert(who.clone());
                Ok(Visitor(who))
            }
            Ok(None) => Err(redirect("/login")),
            Err(error) => Err(error.into_response()),
        }
    }
}

/// A page's query string parsed into `T` (enums and all); anything else is an error page (400)
/// before the handler runs. Comes after [`Visitor`].
pub struct PageQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(PageQuery(value)),
            Err(rejection) => Err(page_error(
                parts.extensions.get::<Principal>(),
                ApiError::BadRequest(rejection.body_text()),
            )),
        }
    }
}

/// A page's form parsed into `T` (enums and all); a value it does not know is an error page
/// (400) before the handler runs. Comes after [`Visitor`].
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let who = request.extensions().get::<Principal>().cloned();
        match Form::<T>::from_request(request, state).await {
            Ok(Form(value)) => Ok(PageForm(value)),
            Err(FormRejection::FailedToDeserializeFormBody(error)) => Err(page_error(
                who.as_ref(),
                ApiError::BadRequest(error.body_text()),
            )),
            Err(FormRejection::FailedToDeserializeForm(error)) => Err(page_error(
                who.as_ref(),
                ApiError::BadRequest(error.body_text()),
            )),
            Err(other) => Err(other.into_response()),
        }
    }
}

/// The HTML escaping of every template (set in `api/askama.toml`): `&`, `<`, `>`, `"` and `'`
/// as the named or numeric entities the pages have always used.
#[derive(Clone, Copy, Debug)]
pub struct HtmlEntities;

impl askama::filters::Escaper for HtmlEntities {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        let mut written = 0;
        for (at, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            dest.write_str(&text[written..at])?;
            dest.write_str(entity)?;
            written = at + 1;
        }
        dest.write_str(&text[written..])
    }
}

/// The navigation of a signed-in visitor (in the layout, `base.html`).
pub(crate) struct Nav<'a> {
    pub(super) actor: &'a str,
    pub(super) role: &'static str,
    pub(super) csrf: &'a str,
}

impl<'a> Nav<'a> {
    pub(super) fn of(who: Option<&'a Principal>) -> Option<Self> {
        who.map(|who| Nav {
            actor: &who.actor,
            role: who.role.as_str(),
            csrf: who.csrf(),
        })
    }
}

/// A rendered page with the pages' headers (never cached: it names the visitor and carries
/// their form token), or a 500 if the template failed.
pub(super) fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            [
                (CONTENT_SECURITY_POLICY, crate::headers::CSP),
                (CACHE_CONTROL, "no-store"),
            ],
            Html(body),
        )
            .into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

pub(super) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// An error page: the status code and the error's message (never an internal error's cause).
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    code: u16,
    message: String,
}

pub(super) fn page_error(who: Option<&Principal>, error: ApiError) -> Response {
    let status = error.status();
    let message = match &error {
        ApiError::Internal(_) => "Something went wrong on our side.".to_owned(),
        other => other.to_string(),
    };
    if let ApiError::Internal(cause) = &error {
        tracing::error!(%cause, "page failed");
    }
    let mut response = html(&ErrorPage {
        title: "Error",
        nav: Nav::of(who),
        code: status.as_u16(),
        message,
    });
    *response.status_mut() = status;
    response
}

/// `2026-11-25 14:05 UTC`, or a dash for never (written field by field: a strftime pattern is
/// parsed again on every call).
pub(super) fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or("—".to_owned(), |t| {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        )
    })
}

/// A status as the `status_badge` macro shows it.
pub(crate) struct Badge {
    pub(super) class: &'static str,
    pub(super) label: String,
}

impl Badge {
    pub(super) fn of(status: Status) -> Self {
        let class = match status {
            Status::Healthy => "healthy",
            Status::NeedsAttention => "attention",
            Status::Stopped => "stopped",
        };
        Badge {
            class,
            label: status.to_string(),
        }
    }
}

/// One rung as the `ladder` macro shows it: `reached`, `failed` or `pending`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RungMark {
    pub(super) label: &'static str,
    pub(super) class: &'static str,
}

/// The ladder of one copy: each rung reached, the one it failed at, or not (yet) reached.
pub(super) fn ladder(reached: Option<Rung>, failed: bool) -> [RungMark; 4] {
    let mut failure_shown = false;
    [
        (Rung::Captured, "Captured"),
        (Rung::Secured, "Secured"),
        (Rung::Verified, "Verified"),
        (Rung::RestoreTested, "Restore-Tested"),
    ]
    .map(|(rung, label)| {
        let class = match reached {
            Some(r) if r >= rung => "reached",
            _ if failed && !failure_shown => {
                failure_shown = true;
                "failed"
            }
            _ => "pending",
        };
        RungMark { label, class }
    })
}

pub(super) async fn live_js() -> Response {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], LIVE_JS).into_response()
}

/// Reloads the page (at most every two seconds) when the ladder changes.
const LIVE_JS: &str = include_str!("../../assets/live.js");

pub(super) async fn style_css() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS).into_response()
}

const STYLE_CSS: &str = include_str!("../../assets/style.css");

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_written_to_the_minute_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 59).single();
        assert_eq!(time(at), "2026-03-04 05:06 UTC");
        assert_eq!(time(None), "—");
    }

    #[test]
    fn text_is_escaped_with_the_usual_entities() {
        let mut out = String::new();
        askama::filters::Escaper::write_escaped_str(
            &HtmlEntities,
            &mut out,
            "<a href=\"x\">Tom & Jerry's</a>",
        )
        .expect("written");
        assert_eq!(
            out,
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn the_ladder_marks_the_first_rung_not_reached_as_failed() {
        let classes = |reached, failed| ladder(reached, failed).map(|r| r.class);
        assert_eq!(
            classes(Some(Rung::Secured), true),
            ["reached", "reached", "failed", "pending"]
        );
        assert_eq!(
            classes(None, true),
            ["failed", "pending", "pending", "pending"]
        );
        assert_eq!(classes(Some(Rung::RestoreTested), false), ["reached"; 4]);
    }
}
