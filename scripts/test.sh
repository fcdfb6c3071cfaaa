#!/usr/bin/env bash
# The whole test suite (README: "Run the tests").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo test --release --locked --all-targets
