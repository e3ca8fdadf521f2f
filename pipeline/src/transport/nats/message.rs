//! The wire form of an event on NATS: the subject says whose and what it is, the headers carry
//! its identity and position, the body is the event's own JSON — the document
//! `schemas/events/<Aggregate>.<Type>.v<version>.json` describes, checked on both sides.
//!
//! ```text
//! subject  restorable.events.<tenant>.<instance>.<EventType>   (instance "tenant" for TenantKey)
//! headers  Nats-Msg-Id: <AggregateType>:<aggregate id>:<sequence>   (de-duplication)
//!          Restorable-Aggregate-Type, -Aggregate-Id, -Sequence, -Event-Type, -Event-Version,
//!          -Position
//! body     {"object_key": ..., "sha256": ..., ...}
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::store::LoggedEvent;

const AGGREGATE_TYPE: &str = "Restorable-Aggregate-Type";
const AGGREGATE_ID: &str = "Restorable-Aggregate-Id";
const SEQUENCE: &str = "Restorable-Sequence";
const EVENT_TYPE: &str = "Restorable-Event-Type";
const EVENT_VERSION: &str = "Restorable-Event-Version";
const POSITION: &str = "Restorable-Position";
/// Why a dead letter was given up on.
pub const DEAD_LETTER_REASON: &str = "Restorable-Dead-Letter-Reason";

/// Why an event cannot travel (or did not arrive in a usable form).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A header is missing or not a number where one is expected.
    #[error("message header {0} missing or invalid")]
    Header(&'static str),
    /// The body is not the event's JSON.
    #[error("{event}: the body is not valid JSON: {detail}")]
    NotJson {
        /// `Aggregate.Type vVersion`.
        event: String,
        /// The parser's message.
        detail: String,
    },
    /// The body does not match the event's schema (or no schema exists for it).
    #[error("{event}: does not match its schema: {detail}")]
    Schema {
        /// `Aggregate.Type vVersion`.
        event: String,
        /// The first violation.
        detail: String,
    },
    /// No schema exists for this event type and version: written by a newer version of
    /// Restorable. Not a bad event: whoever meets it waits for an upgrade, it never skips it.
    #[error("{0}: unknown event type or version (written by a newer Restorable?)")]
    UnknownVersion(String),
    /// A subject token would contain a character NATS reserves.
    #[error("{0:?} cannot be a subject token")]
    Token(String),
}

/// Whose event it is: the tenant and instance tokens of its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// The tenant id.
    pub tenant: String,
    /// The instance id, or `tenant` for tenant-wide events.
    pub instance: String,
}

/// An event ready to publish.
#[derive(Debug)]
pub struct Outgoing {
    /// Where it goes.
    pub subject: String,
    /// Identity and position (including `Nats-Msg-Id`).
    pub headers: HeaderMap,
    /// The event's JSON.
    pub body: Bytes,
}

fn token(text: &str) -> Result<&str, WireError> {
    let bad = text.is_empty()
        || text
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace());
    if bad {
        Err(WireError::Token(text.to_owned()))
    } else {
        Ok(text)
    }
}

/// The subject of an event.
///
/// # Errors
/// [`WireError::Token`] if a part is not a valid token.
pub fn subject(routing: &Routing, event_type: &str) -> Result<String, WireError> {
    Ok(format!(
        "restorable.events.{}.{}.{}",
        token(&routing.tenant)?,
        token(&routing.instance)?,
        token(event_type)?
    ))
}

/// The de-duplication id of an event: the same event always gets the same id.
pub fn message_id(event: &LoggedEvent) -> String {
    format!(
        "{}:{}:{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

fn label(aggregate_type: &str, event_type: &str, version: &str) -> String {
    format!("{aggregate_type}.{event_type} v{version}")
}

/// Validators of every event schema this release knows, built once.
fn validators() -> &'static HashMap<(String, String, String), jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<(String, String, String), jsonschema::Validator>> =
        OnceLock::new();
    VALIDATORS.get_or_init(|| {
        restorable_domain::schema::event_schemas()
            .into_iter()
            .filter_map(|(aggregate, event, version, schema)| {
                let value = serde_json::to_value(&schema).ok()?;
                let validator = jsonschema::validator_for(&value).ok()?;
                Some((
                    (aggregate.to_owned(), event.to_owned(), version.to_owned()),
                    validator,
                ))
            })
            .collect()
    })
}

/// Checks an event body against its schema.
///
/// # Errors
/// [`WireError::Schema`] naming the first violation, or [`WireError::UnknownVersion`].
pub fn validate(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    body: &serde_json::Value,
) -> Result<(), WireError> {
    let event = label(aggregate_type, event_type, version);
    let key = (
        aggregate_type.to_owned(),
        event_type.to_owned(),
        version.to_owned(),
    );
    let validator = validators()
        .get(&key)
        .ok_or_else(|| WireError::UnknownVersion(event.clone()))?;
    validator.validate(body).map_err(|e| WireError::Schema {
        event,
        detail: format!("{e} at {}", e.instance_path()),
    })
}

/// The event as a message: its body taken out of the stored `{"<Type>": body}` form and
/// checked against its schema.
///
/// # Errors
/// [`WireError`] if the stored payload is malformed or does not match the schema.
pub fn encode(event: &LoggedEvent, routing: &Routing) -> Result<Outgoing, WireError> {
    let name = label(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
    );
    let stored: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| WireError::NotJson {
            event: name.clone(),
            detail: e.to_string(),
        })?;
    let body = match stored {
        serde_json::Value::Object(mut outer) if outer.len() == 1 => outer
            .remove(&event.event_type)
            .ok_or_else(|| WireError::Schema {
                event: name.clone(),
                detail: "the stored payload is not tagged with its event type".to_owned(),
            })?,
        _ => {
            return Err(WireError::Schema {
                event: name,
                detail: "the stored payload is not a tagged event".to_owned(),
            })
        }
    };
    validate(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &body,
    )?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id(event).as_str());
    headers.insert(AGGREGATE_TYPE, event.aggregate_type.as_str());
    headers.insert(AGGREGATE_ID, event.aggregate_id.as_str());
    headers.insert(SEQUENCE, event.sequence.to_string().as_str());
    headers.insert(EVENT_TYPE, event.event_type.as_str());
    headers.insert(EVENT_VERSION, event.event_version.as_str());
    headers.insert(POSITION, event.position.to_string().as_str());
    Ok(Outgoing {
        subject: subject(routing, &event.event_type)?,
        headers,
        body: Bytes::from(body.to_string()),
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WireError> {
    headers
        .get(name)
        .map(|v| v.as_str())
        .ok_or(WireError::Header(name))
}

fn number(headers: &HeaderMap, name: &'static str) -> Result<i64, WireError> {
    header(headers, name)?
        .parse()
        .map_err(|_| WireError::Header(name))
}

/// The event a message carries, checked against its schema, in the stored form consumers
/// decode.
///
/// # Errors
/// [`WireError`] for missing headers, a body that is not JSON, or one that breaks the schema.
pub fn decode(headers: Option<&HeaderMap>, body: &[u8]) -> Result<LoggedEvent, WireError> {
    let headers = headers.ok_or(WireError::Header(EVENT_TYPE))?;
    let aggregate_type = header(headers, AGGREGATE_TYPE)?.to_owned();
    let event_type = header(headers, EVENT_TYPE)?.to_owned();
    let event_version = header(headers, EVENT_VERSION)?.to_owned();
    let name = label(&aggregate_type, &event_type, &event_version);
    let body: serde_json::Value = serde_json::from_slice(body).map_err(|e| WireError::NotJson {
        event: name,
        detail: e.to_string(),
    })?;
    validate(&aggregate_type, &event_type, &event_version, &body)?;
    let payload = serde_json::json!({ event_type.as_str(): body }).to_string();
    Ok(LoggedEvent {
        position: number(headers, POSITION)?,
        aggregate_type,
        aggregate_id: header(headers, AGGREGATE_ID)?.to_owned(),
        sequence: number(headers, SEQUENCE)?,
        event_type,
        event_version,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::{examples, BackupCycleEvent};

    fn captured() -> LoggedEvent {
        LoggedEvent {
            position: 12,
            aggregate_type: "BackupCycle".to_owned(),
            aggregate_id: "c-1".to_owned(),
            sequence: 2,
            event_type: "Captured".to_owned(),
            event_version: restorable_domain::EVENT_VERSION.to_owned(),
            payload: serde_json::to_string(&BackupCycleEvent::Captured(examples::captured()))
                .expect("json"),
        }
    }

    fn routing() -> Routing {
        Routing {
            tenant: "acme".to_owned(),
            instance: "i-1".to_owned(),
        }
    }

    #[test]
    fn an_event_survives_the_trip_and_lands_on_its_subject() {
        let event = captured();
        let out = encode(&event, &routing()).expect("encode");
        assert_eq!(out.subject, "restorable.events.acme.i-1.Captured");
        assert_eq!(
            out.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("BackupCycle:c-1:2")
        );
        let body: serde_json::Value = serde_json::from_slice(&out.body).expect("json");
        assert!(body.get("sha256").is_some(), "the body is the event itself");
        let back = decode(Some(&out.headers), &out.body).expect("decode");
        assert_eq!(
            back.decode::<BackupCycleEvent>().expect("typed"),
            BackupCycleEvent::Captured(examples::captured())
        );
        assert_eq!((back.position, back.sequence), (12, 2));
    }

    #[test]
    fn a_body_that_breaks_the_schema_is_refused_by_name() {
        let out = encode(&captured(), &routing()).expect("encode");
        let error = decode(Some(&out.headers), br#"{"sha256": 7}"#).expect_err("schema");
        assert!(
            error.to_string().contains("BackupCycle.Captured v1.0"),
            "{error}"
        );
        let error = decode(Some(&out.headers), b"not json").expect_err("json");
        assert!(matches!(error, WireError::NotJson { .. }), "{error}");
        let error = decode(None, &out.body).expect_err("headers");
        assert!(matches!(error, WireError::Header(_)), "{error}");
        let mut stored = captured();
        stored.event_version = "9.9".to_owned();
        let error = encode(&stored, &routing()).expect_err("unknown version");
        assert!(matches!(error, WireError::UnknownVersion(_)), "{error}");
    }

    #[test]
    fn a_token_with_a_dot_or_wildcard_is_refused() {
        for bad in ["a.b", "*", ">", "", "a b"] {
            let routing = Routing {
                tenant: bad.to_owned(),
                instance: "i".to_owned(),
            };
            assert!(subject(&routing, "Captured").is_err(), "{bad:?}");
        }
    }
}
