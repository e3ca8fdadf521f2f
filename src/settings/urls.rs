//! The URLs of the settings: checked with `url::Url` (scheme and host), and shown in messages
//! only through [`redact_url`], so a password never is.

use anyhow::{bail, Result};
use url::Url;

pub use restorable_pipeline::redact::redact_url;

/// Checks that the setting `what` is a URL with a host and one of `schemes`.
pub(super) fn url_with_scheme(what: &str, text: &str, schemes: &[&str]) -> Result<()> {
    let shown = redact_url(text);
    let url = match Url::parse(text) {
        Ok(url) if !url.cannot_be_a_base() => Some(url),
        Err(url::ParseError::EmptyHost) => None,
        _ => bail!(
            "{what} {shown:?} is not a URL (expected {}://host...)",
            schemes[0]
        ),
    };
    let usable = url.is_some_and(|url| {
        schemes.contains(&url.scheme()) && url.host_str().is_some_and(|host| !host.is_empty())
    });
    if !usable {
        bail!(
            "{what} {shown:?}: expected a {} URL",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact_url("postgres://u:hunter2@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:hunter2@h:bad"), "<not a URL>");
        assert_eq!(redact_url("/var/lib/events.db"), "/var/lib/events.db");
    }
}
