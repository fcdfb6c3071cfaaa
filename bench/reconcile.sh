#!/usr/bin/env bash
# Reconcile benchmark: N ConfigMaps (default 1000), a first apply and a no-op resync, with
# `valuesfs reconcile --once` and with `kubectl apply --server-side -f DIR`, each against
# a fresh fake API server (tests/fakeapi, run by examples/fakeapi.rs) in the same run.
# Prints wall times and the requests (all, and those that write) each tool sent.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
cargo build --release --quiet --bin valuesfs --example fakeapi
tmp=$(mktemp -d)
# `fake` runs in a command substitution: its pid goes to a file the trap reads.
cleanup() { for f in "$tmp"/pid.*; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/m"
for i in $(seq 1 "$N"); do
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: default\ndata:\n  index: "%d"\n  text: some value\n' "$i" "$i" > "$tmp/m/cm-$i.yaml"
done

fake() {
  target/release/examples/fakeapi > "$tmp/url.$1" 2>/dev/null &
  echo $! > "$tmp/pid.$1"
  for _ in $(seq 1 50); do [ -s "$tmp/url.$1" ] && break; sleep 0.1; done
  cat "$tmp/url.$1"
}
counts() { curl -s "$1/_fake/requests" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], d["writes"])'; }
now() { date +%s.%N; }
row() { # tool, run, start, end, url
  read -r total writes < <(counts "$5")
  printf '| %s | %s | %.2f | %s | %s |\n' "$1" "$2" "$(echo "$4 - $3" | bc -l)" "$total" "$writes"
}

echo "| tool | run | seconds | requests | write requests |"
echo "|---|---|---|---|---|"
url=$(fake kubectl)
cat > "$tmp/kubeconfig" <<K
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "$url"}}]
contexts: [{name: fake, context: {cluster: fake, user: me}}]
users: [{name: me, user: {}}]
current-context: fake
K
k() { kubectl --kubeconfig "$tmp/kubeconfig" --cache-dir "$tmp/cache" "$@" > /dev/null; }
counts "$url" > /dev/null
t0=$(now); k apply --server-side -f "$tmp/m"; t1=$(now); row "kubectl apply --server-side" "first apply" "$t0" "$t1" "$url"
t0=$(now); k apply --server-side -f "$tmp/m"; t1=$(now); row "kubectl apply --server-side" "no-op" "$t0" "$t1" "$url"

url=$(fake valuesfs)
v() { target/release/valuesfs reconcile --once --server "$url" --path "$tmp/m" --applyset bench --prune > /dev/null; }
counts "$url" > /dev/null
t0=$(now); v; t1=$(now); row "valuesfs reconcile --once --prune" "first apply" "$t0" "$t1" "$url"
t0=$(now); v; t1=$(now); row "valuesfs reconcile --once --prune" "no-op" "$t0" "$t1" "$url"
