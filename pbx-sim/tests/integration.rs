//! The simulator's integration tests, one binary with a module per concern under
//! `tests/integration/`: the XAPI over HTTP as the pipeline's client sees it, and the faults.

mod common;

mod integration {
    mod faults;
    mod http_api;
}
