#!/usr/bin/env bash
# The whole test suite (README: "Run the tests"). Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
# What the tests drive for real (sops, age, fuse3, sshd, nginx, kubectl...): installed
# where missing, so this works on a fresh machine by itself.
bash scripts/setup.sh || exit 1
sops --version
cargo build --release --locked || exit 1
# Property tests run one fixed set of cases here, so a run is repeatable; explore with
# another seed and more cases by setting PROPTEST_RNG_SEED and PROPTEST_CASES.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261201}"
log=$(mktemp)
cargo test --release --locked --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
rm -f "$log"
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
