//! What the binary's tests share: the `restorable` binary as a command that ignores the
//! backend settings of the environment it runs in (each test says which backends it wants).
#![allow(dead_code)] // each test file uses its own part

use std::process::Command;

/// The environment variables that would point the binary at backends the test did not choose.
const BACKEND_VARIABLES: &[&str] = &[
    "RESTORABLE_DATABASE_URL",
    "RESTORABLE_NATS_URL",
    "RESTORABLE_S3_BUCKET",
    "RESTORABLE_S3_ENDPOINT",
    "RESTORABLE_KMS_KEY_ID",
    "RESTORABLE_KMS_ENDPOINT",
    "RESTORABLE_CONFIG",
];

/// The built `restorable` binary, with no backend setting inherited.
pub fn restorable() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_restorable"));
    for variable in BACKEND_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The one JSON document a `--json` command printed on stdout (on one line), validated against
/// its published schema `schemas/cli/<schema>`.
pub fn cli_json(stdout: &[u8], schema: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON document on one line: {text}");
    let value: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/cli")
        .join(schema);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{path:?}: {errors:?}\n{value}");
    value
}
