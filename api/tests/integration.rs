//! The API's integration tests, one binary with a module per concern under `tests/integration/`:
//! the HTTP API, pages and access rules against a real store (SQLite and PostgreSQL), the
//! OpenAPI document, and the pages in a headless Chromium over WebDriver (`browser`).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

mod integration {
    mod alert_lifecycle;
    mod alerts_page;
    mod audit_page;
    mod authorization;
    mod bad_values;
    mod browser;
    mod certificates;
    mod client_rules;
    mod fleet_page;
    mod instance_charts;
    mod instance_endpoint;
    mod live;
    mod native_pages;
    mod offboarding;
    mod openapi;
    mod projections;
    mod recheck_coverage;
    mod streamed_lists;
}
