#!/usr/bin/env bash
# Build the Debian package: the release binary, its completions and man pages (generated
# from the same clap definitions as --help), then cargo-deb. Extra arguments go to
# `cargo deb` (e.g. --output DIR). Needs cargo-deb (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
[ "${1:-}" = "--no-build" ] && shift || cargo build --release --locked
bash packaging/assets.sh "$target/release/valuesfs" "$target/release/package"
cargo deb --no-build --locked "$@"
