//! The public wire contract: `schemas/events/*.json` must equal the schemas generated from the
//! event types, and every event the pipeline writes must carry a type and version that has a
//! schema. Regenerate with `UPDATE_SCHEMAS=1 cargo test --test integration schemas`.

use std::path::Path;

use restorable_domain::schema::{event_schemas, schema_file_name};

#[test]
fn committed_schemas_match_the_event_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut expected_files = Vec::new();
    for (aggregate, event, version, schema) in event_schemas() {
        let name = schema_file_name(aggregate, event, version);
        let text = serde_json::to_string_pretty(&schema).expect("serialize") + "\n";
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(&path, &text).expect("write");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("{name} is missing: run UPDATE_SCHEMAS=1 cargo test --test integration schemas")
        });
        assert_eq!(committed, text, "{name} differs from the event type");
        expected_files.push(name);
    }
    let mut present: Vec<_> = std::fs::read_dir(&dir)
        .expect("schemas dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "a schema file has no event type");
}
