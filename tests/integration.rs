//! The `restorable` binary's integration tests, one test binary with a module per concern under
//! `tests/integration/`: the CLI and server run as a user would, against real servers
//! (PostgreSQL, NATS JetStream, the local AWS endpoint) and the PBX simulator. The long chaos run
//! is `scripts/chaos.sh`; its short version is `integration::chaos`.

mod common;

mod integration {
    mod accounts;
    mod alert_cli;
    mod chaos;
    mod cycle_abort;
    mod dead_letters;
    mod demo;
    mod demo_serve;
    mod exit_codes;
    mod instance_remove;
    mod json_output;
    mod killed_worker;
    mod operations;
    mod production;
    mod progress_bars;
    mod schemas;
    mod verify_cli;
}
