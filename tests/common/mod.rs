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
