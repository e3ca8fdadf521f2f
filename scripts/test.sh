#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/install-deps.sh), then runs every test of
# every crate — unit, given-when-then, integration against the PBX simulator, the binary's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --all-targets "$@"
