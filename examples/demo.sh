#!/usr/bin/env bash
# The demo on a fresh machine: install what is missing (fuse3, build tools), build, and
# run `valuesfs demo DIR` (default: a new temporary folder). Ctrl-C unmounts and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
cargo build --release -q --bin valuesfs
dir=${1:-$(mktemp -d)/demo}
exec target/release/valuesfs demo "$dir"
