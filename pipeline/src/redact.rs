//! The one way a URL is shown in a message, a log line or an error: [`redact_url`]. A leaf.

use url::Url;

/// `text` fit to be shown: a URL keeps its scheme, user, host, port and path, with any password
/// replaced by `***` and its query and fragment (where webhook tokens live) dropped; a URL with
/// none of those is shown as given. Text that does not parse as a URL is shown as given when it
/// cannot hold a secret (a file path), else as `<not a URL>`.
pub fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if !url.cannot_be_a_base() => {
            if url.password().is_none() && url.query().is_none() && url.fragment().is_none() {
                return text.to_owned();
            }
            url.set_query(None);
            url.set_fragment(None);
            if url.password().is_some() {
                // Only fails on a URL without a host, which has no password either.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        _ if text.contains(['@', '?', '#']) => "<not a URL>".to_owned(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_queries_and_fragments_are_never_shown() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("https://user:pw@hooks.example/a/b?token=s3cret#x"),
            "https://user:***@hooks.example/a/b"
        );
        assert_eq!(redact_url("not a url?token=s3cret"), "<not a URL>");
        assert_eq!(redact_url("u:hunter2@h:bad"), "<not a URL>");
    }

    #[test]
    fn what_holds_no_secret_is_shown_as_given() {
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("https://s3.example"), "https://s3.example");
        assert_eq!(redact_url("/var/lib/events.db"), "/var/lib/events.db");
    }
}
