//! `schemas/openapi.json` documents the HTTP API exactly as routed: its (method, path) pairs are
//! those of [`restorable_api::json::ROUTES`] (no more, no fewer), every operation declares a 2xx
//! answer and each path parameter of its template, and every `$ref` resolves inside the
//! document. The row schemas also name exactly the fields the rows serialize, their enums hold
//! exactly the values the Rust types accept, and the documented enrolment body deserializes.
//! Against a running server, every operation answers 401, 403, 404 and 429 only where the
//! document says it does, with the documented error body. Plain `serde_json`, no OpenAPI crate.

use crate::common;

use std::collections::BTreeSet;

use restorable_api::json::ROUTES;
use serde_json::Value;

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/openapi.json");

/// The keys of a path item that are operations.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let text =
        std::fs::read_to_string(DOCUMENT).unwrap_or_else(|e| panic!("reading {DOCUMENT}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DOCUMENT} is not JSON: {e}"))
}

fn paths(doc: &Value) -> &serde_json::Map<String, Value> {
    doc.get("paths")
        .and_then(Value::as_object)
        .expect("the document has a `paths` object")
}

/// Every (method, path, path item, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value, &Value)> {
    let mut all = Vec::new();
    for (path, item) in paths(doc) {
        let item_map = item
            .as_object()
            .unwrap_or_else(|| panic!("path item {path} is not an object"));
        for (key, operation) in item_map {
            if METHODS.contains(&key.as_str()) {
                all.push((key.clone(), path.clone(), item, operation));
            }
        }
    }
    all
}

/// Resolves a local reference (`#/a/b`, JSON Pointer with `~0`/`~1` escapes).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(doc);
    }
    pointer.strip_prefix('/')?;
    doc.pointer(pointer)
}

/// `value`, following `$ref`s; `None` if one does not resolve (reported by
/// `every_ref_resolves_inside_the_document`) or the chain is too long (a cycle).
fn deref<'a>(doc: &'a Value, mut value: &'a Value) -> Option<&'a Value> {
    for _ in 0..8 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => value = resolve(doc, reference)?,
            None => return Some(value),
        }
    }
    None
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn it_is_openapi_3_1() {
    let doc = document();
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        version.starts_with("3.1."),
        "openapi version {version:?}, expected 3.1.x"
    );
    for field in ["title", "version"] {
        assert!(
            doc.pointer(&format!("/info/{field}"))
                .and_then(Value::as_str)
                .is_some(),
            "info.{field} is missing"
        );
    }
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _, _)| (method, path))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "ROUTES lists a route twice");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "schemas/openapi.json and json::ROUTES differ.\n  \
         routed but not documented (add to the document): {undocumented:?}\n  \
         documented but not routed (remove from the document, or add to ROUTES): {unrouted:?}"
    );
}

#[test]
fn every_operation_has_a_success_answer_and_declares_its_path_parameters() {
    let doc = document();
    let mut problems = Vec::new();
    let mut operation_ids = BTreeSet::new();
    for (method, path, item, operation) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        let responses = operation.get("responses").and_then(Value::as_object);
        let success = responses.is_some_and(|r| {
            r.keys()
                .any(|code| (code.starts_with('2') && code.len() == 3) || code == "2XX")
        });
        if !success {
            problems.push(format!("{name}: no 2xx response"));
        }
        for (code, response) in responses.into_iter().flatten() {
            match deref(&doc, response) {
                None => problems.push(format!("{name}: response {code}'s $ref does not resolve")),
                Some(r) if r.get("description").and_then(Value::as_str).is_none() => {
                    problems.push(format!("{name}: response {code} has no description"));
                }
                Some(_) => {}
            }
        }
        match operation.get("operationId").and_then(Value::as_str) {
            Some(id) if !operation_ids.insert(id.to_owned()) => {
                problems.push(format!("{name}: operationId {id:?} is used twice"));
            }
            Some(_) => {}
            None => problems.push(format!("{name}: no operationId")),
        }

        // Path parameters: the path item's, overridden by the operation's (same name and `in`).
        let mut declared = BTreeSet::new();
        for list in [item.get("parameters"), operation.get("parameters")]
            .into_iter()
            .flatten()
        {
            for parameter in list.as_array().into_iter().flatten() {
                let Some(parameter) = deref(&doc, parameter) else {
                    problems.push(format!("{name}: a parameter's $ref does not resolve"));
                    continue;
                };
                if parameter.get("in").and_then(Value::as_str) != Some("path") {
                    continue;
                }
                let Some(param_name) = parameter.get("name").and_then(Value::as_str) else {
                    problems.push(format!("{name}: a path parameter without a name"));
                    continue;
                };
                if parameter.get("required") != Some(&Value::Bool(true)) {
                    problems.push(format!(
                        "{name}: path parameter {param_name} is not required"
                    ));
                }
                declared.insert(param_name.to_owned());
            }
        }
        let expected = template_params(&path);
        for missing in expected.difference(&declared) {
            problems.push(format!(
                "{name}: path parameter {{{missing}}} is not declared"
            ));
        }
        for extra in declared.difference(&expected) {
            problems.push(format!(
                "{name}: declares path parameter {extra} not in the path"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "operation problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_security_requirement_names_a_scheme() {
    let doc = document();
    let schemes = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
        .expect("components.securitySchemes");
    let mut requirements = vec![("top level".to_owned(), doc.get("security"))];
    for (method, path, _, operation) in operations(&doc) {
        requirements.push((
            format!("{} {path}", method.to_uppercase()),
            operation.get("security"),
        ));
    }
    let mut problems = Vec::new();
    for (place, security) in requirements {
        for requirement in security.and_then(Value::as_array).into_iter().flatten() {
            for scheme in requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if !schemes.contains_key(scheme) {
                    problems.push(format!("{place}: unknown security scheme {scheme:?}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_ref_resolves_inside_the_document() {
    fn walk(doc: &Value, value: &Value, at: &str, problems: &mut Vec<String>, count: &mut usize) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref") {
                    *count += 1;
                    match reference.as_str() {
                        Some(r) if resolve(doc, r).is_some() => {}
                        Some(r) => problems.push(format!("{at}: $ref {r:?} does not resolve")),
                        None => problems.push(format!("{at}: $ref is not a string")),
                    }
                }
                for (key, child) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    walk(doc, child, &format!("{at}/{escaped}"), problems, count);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(doc, child, &format!("{at}/{i}"), problems, count);
                }
            }
            _ => {}
        }
    }
    let doc = document();
    let mut problems = Vec::new();
    let mut count = 0;
    walk(&doc, &doc, "#", &mut problems, &mut count);
    assert!(count > 0, "the document has no $ref at all");
    assert!(
        problems.is_empty(),
        "unresolved references:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checks_themselves_work() {
    assert_eq!(
        template_params("/api/v1/instances/{instance_id}/backups"),
        BTreeSet::from(["instance_id".to_owned()])
    );
    let doc: Value = serde_json::json!({ "a": { "b/c": 1, "d~e": 2 } });
    assert_eq!(resolve(&doc, "#/a/b~1c"), Some(&Value::from(1)));
    assert_eq!(resolve(&doc, "#/a/d~0e"), Some(&Value::from(2)));
    assert_eq!(resolve(&doc, "#/a/missing"), None);
    assert_eq!(resolve(&doc, "other.json#/a"), None);
}

/// The property names of component schema `name` (through `allOf` and `$ref`), and the required
/// ones.
fn fields(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    fn collect(
        doc: &Value,
        schema: &Value,
        all: &mut BTreeSet<String>,
        required: &mut BTreeSet<String>,
    ) {
        let schema = deref(doc, schema).expect("the schema resolves");
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(doc, part, all, required);
        }
        all.extend(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
        required.extend(
            schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
    }
    let schema = doc
        .pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no component schema {name}"));
    let (mut all, mut required) = (BTreeSet::new(), BTreeSet::new());
    collect(doc, schema, &mut all, &mut required);
    (all, required)
}

/// The `enum` of component schema `name`.
fn enum_values(doc: &Value, name: &str) -> Vec<Value> {
    doc.pointer(&format!("/components/schemas/{name}/enum"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("component schema {name} has no enum"))
        .clone()
}

#[test]
fn the_row_schemas_name_the_serialized_fields() {
    use restorable_api::json::{FleetEntry, HistoryEntry};
    use restorable_domain::alert::AlertKind;
    use restorable_domain::audit::{ActionRecorded, AuditAction};
    use restorable_domain::cycle::examples;
    use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
    use restorable_projections::alerts::{Acknowledgement, AlertRow, Snooze};
    use restorable_projections::audit::AuditRow;
    use restorable_projections::backups::BackupRow;
    use restorable_projections::fleet::{FleetRow, Status};

    let doc = document();
    let started = examples::started();
    let failed = examples::failed(Stage::Verify, FailureReason::WrongKey);
    let at = examples::at();
    let fleet_row = FleetRow {
        instance_id: started.instance_id,
        tenant_id: started.tenant_id.clone(),
        name: "hq".into(),
        fqdn: "hq.example".into(),
        stopped: false,
        interval_secs: 86_400,
        cycles: 1,
        last_cycle: Some(started.cycle_id),
        last_cycle_at: Some(at),
        last_rung: Some(Rung::Captured),
        last_failure: Some(failed.clone()),
        last_secured: Some(at),
        last_verified: Some(at),
        last_restore_tested: Some(at),
        native_backups: Some(restorable_domain::native_backups::examples::healthy(at)),
    };
    let backup_row = BackupRow {
        cycle_id: started.cycle_id,
        instance_id: started.instance_id,
        tenant_id: started.tenant_id.clone(),
        trigger: Trigger::Manual,
        rung: Rung::Captured,
        size: Some(1),
        sha256: Some("0".repeat(64)),
        key_version: Some(1),
        retain_until: Some(at),
        started_at: at,
        captured_at: Some(at),
        secured_at: Some(at),
        verified_at: Some(at),
        restore_tested_at: Some(at),
        restore_ms: Some(1),
        failure: Some(failed.clone()),
        rechecked_at: Some(at),
        recheck_failure: Some(restorable_domain::cycle::examples::recheck_failed(
            7,
            restorable_domain::ladder::FailureReason::ChecksumMismatch,
        )),
        removed_at: Some(at),
    };
    let rows: Vec<(&str, Value)> = vec![
        ("Failed", serde_json::to_value(&failed).expect("json")),
        (
            "RecheckFailed",
            serde_json::to_value(restorable_domain::cycle::examples::recheck_failed(
                7,
                restorable_domain::ladder::FailureReason::ObjectMissing,
            ))
            .expect("json"),
        ),
        ("FleetRow", serde_json::to_value(&fleet_row).expect("json")),
        (
            "FleetEntry",
            serde_json::to_value(FleetEntry {
                row: fleet_row.clone(),
                status: Status::NeedsAttention,
            })
            .expect("json"),
        ),
        (
            "BackupRow",
            serde_json::to_value(&backup_row).expect("json"),
        ),
        (
            "AlertRow",
            serde_json::to_value(AlertRow {
                alert_id: format!("{}-1", started.instance_id),
                kind: AlertKind::BackupFailed,
                tenant_id: started.tenant_id.clone(),
                instance_id: started.instance_id,
                cycle_id: Some(started.cycle_id),
                stage: Some(Stage::Verify),
                reason: Some(FailureReason::WrongKey),
                detail: "x".into(),
                raised_at: at,
                resolved_at: Some(at),
                resolved_by: Some(started.cycle_id),
                acknowledged: Some(Acknowledgement {
                    by: "owner@acme.example".into(),
                    at,
                    note: "on it".into(),
                }),
                snoozed: Some(Snooze {
                    by: "owner@acme.example".into(),
                    until: at,
                    note: String::new(),
                }),
                reminded: [("slack".to_owned(), at)].into_iter().collect(),
            })
            .expect("json"),
        ),
        (
            "AuditRow",
            serde_json::to_value(AuditRow {
                position: 7,
                action: ActionRecorded {
                    tenant_id: started.tenant_id.clone(),
                    actor: "a@b.c".into(),
                    action: AuditAction::Download,
                    instance_id: Some(started.instance_id),
                    cycle_id: Some(started.cycle_id),
                    key_version: Some(1),
                    at,
                },
            })
            .expect("json"),
        ),
        (
            "HistoryEntry",
            serde_json::to_value(HistoryEntry {
                sequence: 1,
                event_type: "Captured".into(),
                event_version: "1.0".into(),
                payload: Value::Null,
            })
            .expect("json"),
        ),
        (
            "DeadLetter",
            serde_json::to_value(restorable_pipeline::store::DeadLetter {
                consumer: "capture".into(),
                position: 7,
                aggregate_type: "BackupCycle".into(),
                aggregate_id: started.cycle_id.to_string(),
                sequence: 1,
                event_type: "CycleStarted".into(),
                reason: "x".into(),
                attempts: 5,
                created_at: at.to_rfc3339(),
                replayed_at: None,
            })
            .expect("json"),
        ),
    ];
    let mut problems = Vec::new();
    for (name, row) in rows {
        let serialized: BTreeSet<String> = row
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        let (documented, required) = fields(&doc, name);
        if serialized != documented {
            problems.push(format!(
                "{name}: serialized but not documented {:?}; documented but not serialized {:?}",
                serialized.difference(&documented).collect::<Vec<_>>(),
                documented.difference(&serialized).collect::<Vec<_>>()
            ));
        }
        // Every field is always present (an absent value is `null`), so all are required.
        if required != serialized {
            problems.push(format!(
                "{name}: required {required:?}, but every serialized field {serialized:?} is always present"
            ));
        }
    }

    // Enums: the documented values are exactly what the types (de)serialize.
    fn check<T: serde::Serialize + serde::de::DeserializeOwned>(
        doc: &Value,
        name: &str,
        variants: &[T],
        problems: &mut Vec<String>,
    ) {
        let documented = enum_values(doc, name);
        let serialized: Vec<Value> = variants
            .iter()
            .map(|v| serde_json::to_value(v).expect("json"))
            .collect();
        for value in &serialized {
            if !documented.contains(value) {
                problems.push(format!("{name}: {value} is not documented"));
            }
        }
        for value in &documented {
            if serde_json::from_value::<T>(value.clone()).is_err() {
                problems.push(format!(
                    "{name}: documented {value} is not a value of the type"
                ));
            }
        }
        if documented.len() != serialized.len() {
            problems.push(format!(
                "{name}: documents {documented:?}, the type has {serialized:?}"
            ));
        }
    }
    check(
        &doc,
        "Status",
        &[Status::Healthy, Status::NeedsAttention, Status::Stopped],
        &mut problems,
    );
    check(
        &doc,
        "Rung",
        &[
            Rung::Started,
            Rung::Captured,
            Rung::Secured,
            Rung::Verified,
            Rung::RestoreTested,
        ],
        &mut problems,
    );
    check(
        &doc,
        "Stage",
        &[
            Stage::Capture,
            Stage::Secure,
            Stage::Verify,
            Stage::RestoreTest,
        ],
        &mut problems,
    );
    check(
        &doc,
        "Trigger",
        &[Trigger::Scheduled, Trigger::Manual],
        &mut problems,
    );
    // A kind added to the domain stops this compiling until it is listed here (and documented).
    let listed = |kind: AlertKind| match kind {
        AlertKind::BackupFailed
        | AlertKind::BackupStale
        | AlertKind::VerifyStale
        | AlertKind::RestoreSlow
        | AlertKind::NativeBackupDisabled
        | AlertKind::NativeBackupUnencrypted
        | AlertKind::NativeBackupStale
        | AlertKind::RecheckFailed => kind,
    };
    check(
        &doc,
        "AlertKind",
        &[
            listed(AlertKind::BackupFailed),
            listed(AlertKind::BackupStale),
            listed(AlertKind::VerifyStale),
            listed(AlertKind::RestoreSlow),
            listed(AlertKind::NativeBackupDisabled),
            listed(AlertKind::NativeBackupUnencrypted),
            listed(AlertKind::NativeBackupStale),
            listed(AlertKind::RecheckFailed),
        ],
        &mut problems,
    );
    check(&doc, "AuditAction", &AuditAction::ALL, &mut problems);
    // Failure reasons: the same codes as the event schema the domain generates.
    let events: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/events/BackupCycle.Failed.v1.0.json"
        ))
        .expect("the Failed event schema"),
    )
    .expect("JSON");
    let codes: Vec<Value> = events
        .pointer("/$defs/FailureReason/oneOf")
        .and_then(Value::as_array)
        .expect("FailureReason in the event schema")
        .iter()
        .filter_map(|v| v.get("const").cloned())
        .collect();
    let reasons: Vec<FailureReason> = codes
        .iter()
        .map(|c| serde_json::from_value(c.clone()).expect("a failure reason"))
        .collect();
    check(&doc, "FailureReason", &reasons, &mut problems);
    assert!(
        problems.is_empty(),
        "row schemas differ from the types:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_documented_enrolment_body_deserializes() {
    use restorable_api::actions::EnrolBody;

    let doc = document();
    let (all, required) = fields(&doc, "EnrolBody");
    let example = |name: &str| match name {
        "interval_minutes" | "restore_target_minutes" => Value::from(60),
        "restore_every" => Value::from(3),
        "restore_max_age_hours" => Value::from(48),
        "restore_random_within_days" => Value::from(30),
        "tenant" => Value::from("acme"),
        "url" => Value::from("https://pbx.example"),
        other => Value::from(format!("{other} value")),
    };
    let full: serde_json::Map<String, Value> =
        all.iter().map(|k| (k.clone(), example(k))).collect();
    // `deny_unknown_fields`: a documented field the type does not know would fail here.
    serde_json::from_value::<EnrolBody>(Value::Object(full.clone()))
        .unwrap_or_else(|e| panic!("every documented field: {e}"));
    let minimal: serde_json::Map<String, Value> =
        required.iter().map(|k| (k.clone(), example(k))).collect();
    serde_json::from_value::<EnrolBody>(Value::Object(minimal))
        .unwrap_or_else(|e| panic!("only the required fields: {e}"));
    for field in &required {
        let mut without = full.clone();
        without.remove(field);
        assert!(
            serde_json::from_value::<EnrolBody>(Value::Object(without)).is_err(),
            "{field} is documented as required but the body deserializes without it"
        );
    }
    assert_eq!(
        doc.pointer("/components/schemas/EnrolBody/properties/client_secret/writeOnly"),
        Some(&Value::Bool(true)),
        "client_secret must be writeOnly"
    );
}

/// Every operation, called as it really is: without credentials, as a viewer, and with ids
/// nobody has. Each 401, 403, 404 or 429 it answers must be documented for it (as the shared
/// error response, with a JSON `error`), each operation that documents 401 answers it without
/// credentials, and none documents 429 (the API does not throttle; see the document's info).
#[tokio::test(flavor = "multi_thread")]
async fn the_error_answers_are_exactly_the_documented_ones() {
    let world = common::World::sqlite().await;
    let doc = document();
    let viewer = world.acme.tokens[&restorable_api::auth::Role::Viewer].clone();
    let unknown = "00000000-0000-4000-8000-000000000000";
    let mut problems = Vec::new();
    let mut probed = 0;
    for (method, path, _, operation) in operations(&doc) {
        let responses = operation
            .get("responses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if responses.contains_key("429") {
            problems.push(format!(
                "{method} {path}: documents 429, which the API never answers"
            ));
        }
        let own = path
            .replace("{instance_id}", &world.acme.instance.to_string())
            .replace("{cycle_id}", &world.acme.cycle.to_string());
        let nobody = path
            .replace("{instance_id}", unknown)
            .replace("{cycle_id}", unknown);
        let probes = [
            ("without credentials", own.clone(), None),
            ("as a viewer", own, Some(&viewer)),
            ("with an unknown id", nobody, Some(&viewer)),
        ];
        for (how, concrete, token) in probes {
            if how == "with an unknown id" && !path.contains('{') {
                continue;
            }
            let mut request = match method.as_str() {
                "post" => world
                    .http
                    .post(world.url(&concrete))
                    .json(&serde_json::json!({})),
                _ => world.http.get(world.url(&concrete)),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("an answer");
            probed += 1;
            let status = response.status().as_u16();
            if ![401, 403, 404, 429].contains(&status) {
                continue;
            }
            let code = status.to_string();
            match responses.get(&code) {
                None => problems.push(format!(
                    "{method} {path} {how}: answers {status}, not documented"
                )),
                Some(documented) => {
                    let shared = match status {
                        401 => "#/components/responses/Unauthorized",
                        403 => "#/components/responses/Forbidden",
                        404 => "#/components/responses/NotFound",
                        _ => "#/components/responses/TooManyRequests",
                    };
                    if documented.get("$ref").and_then(Value::as_str) != Some(shared) {
                        problems.push(format!("{method} {path}: {status} is not {shared}"));
                    }
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if !body.get("error").is_some_and(Value::is_string) {
                        problems.push(format!(
                            "{method} {path} {how}: {status} without a JSON error: {body}"
                        ));
                    }
                }
            }
            if how == "without credentials" && responses.contains_key("401") && status != 401 {
                problems.push(format!(
                    "{method} {path}: documents 401 but answers {status} without credentials"
                ));
            }
        }
        if responses.contains_key("401") {
            // Checked above only when the probe answered an error; check the plain case too.
            let concrete = path
                .replace("{instance_id}", &world.acme.instance.to_string())
                .replace("{cycle_id}", &world.acme.cycle.to_string());
            let request = match method.as_str() {
                "post" => world.http.post(world.url(&concrete)),
                _ => world.http.get(world.url(&concrete)),
            };
            let status = request.send().await.expect("an answer").status().as_u16();
            if status != 401 {
                problems.push(format!(
                    "{method} {path}: documents 401 but answers {status} without credentials"
                ));
            }
        }
    }
    assert!(probed > 40, "probed {probed} calls");
    assert!(
        problems.is_empty(),
        "answers that differ from the document:\n  {}",
        problems.join("\n  ")
    );
}
