#!/usr/bin/env bash
# Merge benchmark: a ~1 MiB values file with 1 000 env items, ours and theirs each
# appending an item and changing a value. valuesfs's structural merge (in process, best
# of 5) against `git merge-file` on the same three texts (a process, best of 5; it
# conflicts on the two appends, which the structural merge lands). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --example merge_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$(target/release/examples/merge_bench "$work" "${ITEMS:-1000}" 5)
bytes=$(awk '/^bytes/ {print $2}' <<<"$out")
ours_ms=$(awk '/^merge_ms/ {print $2}' <<<"$out")
best=999999999
for _ in 1 2 3 4 5; do
  s=$(date +%s%N)
  git merge-file -p "$work/ours.yaml" "$work/base.yaml" "$work/theirs.yaml" >/dev/null && rc=0 || rc=$?
  e=$(date +%s%N)
  [ $((e - s)) -lt $best ] && best=$((e - s))
done
git_ms=$(awk -v n=$best 'BEGIN { printf "%.2f", n / 1e6 }')
echo "| merge of a $bytes B values file, ${ITEMS:-1000} list items | ms | result |"
echo "|---|---|---|"
echo "| valuesfs structural merge (in process) | $ours_ms | both items land |"
echo "| git merge-file (process) | $git_ms | $([ "$rc" = 0 ] && echo clean || echo "conflict ($rc hunk(s))") |"
echo "| ratio valuesfs / git | $(awk -v a=$ours_ms -v b=$git_ms 'BEGIN { printf "%.1fx", a / b }') | |"
