#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/install-deps.sh), makes sure of the servers
# the tests talk to (scripts/services.sh: PostgreSQL, NATS with JetStream, a moto server as the
# local AWS — the machine's own where it runs usable ones, else started here on free ports and
# stopped at exit), then runs every test of every crate — unit, given-when-then, integration
# against the PBX simulator and the servers, the binary's tests.
# RESTORABLE_TEST_FORCE_OWN_SERVICES=1 makes it start its own PostgreSQL and NATS all the same.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# No module imports a module that imports it back (DESIGN.md); python3 is there by now.
python3 scripts/module-cycles.py
trap 'exit 130' INT
trap 'exit 143' TERM
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap restorable_services_cleanup EXIT
# Libraries, binaries and tests; the benchmarks are built by clippy (.ci/run) and run by
# scripts/bench.sh in release, never as part of the suite.
cargo test --workspace --lib --bins --tests "$@"
