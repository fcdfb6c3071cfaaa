#!/bin/sh
# Throughput and latency of one valuesfs master against a local bare remote, next to a
# `git add && git commit && git push` CLI loop and a clone-per-session CLI loop, in one run.
#
#   bench/master_bench.sh [SESSIONS=1000] [THREADS=8] [CLI_SESSIONS=200] [CLONE_SESSIONS=50]
#
# Prints a markdown table. Rates are sessions/s; latency is submit -> ref updated on the
# remote (the "pushed" acknowledgement). Uses its own target dir; set CARGO_TARGET_DIR to share.
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$(pwd)/target}"
export CARGO_TARGET_DIR
cargo build --release --quiet --example master_bench
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) cpus, $(git --version)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$CARGO_TARGET_DIR/release/examples/master_bench" "${1:-1000}" "${2:-8}" "${3:-200}" "${4:-50}"
