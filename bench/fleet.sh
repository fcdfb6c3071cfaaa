#!/usr/bin/env bash
# A fleet of masters on one remote (issue 14). Starts N mounts (each its own valuesfs
# process and state dir), each with its network in a namespace made here, joined to the
# host by a veth link (entered with `nsenter --net`, so the FUSE mounts stay visible here;
# `ip netns exec` would hide them in a mount namespace). One `git daemon` on the host
# serves the remote; between each
# namespace and the daemon sits a delaying TCP relay (bench/fleet.py proxy: this kernel has
# no netem qdisc), RTT_MS round trip. Mounts run with --push sync, so a session's fsync
# returns once it is on the remote: that time is submit-to-remote. Each master gets RATE
# sessions/s for SECONDS. Reports sessions landed, p50/p99, fairness, push attempts per
# session (from each daemon's /metrics), the machine's idle CPU and where the busy CPU
# went, and checks with git that every acknowledged session is on the remote exactly once
# with its bytes (exit 1 otherwise). Mounts run in the foreground: their logs are m<i>/log.
#
# Env: N (default 20), RATE (1), SECONDS_RUN (30), RTT_MS (100), NO_BUILD=1. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
RATE=${RATE:-1}
SECONDS_RUN=${SECONDS_RUN:-30}
RTT_MS=${RTT_MS:-100}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin valuesfs
bin=$PWD/target/release/valuesfs
fleet=$PWD/bench/fleet.py
work=$(mktemp -d /tmp/fleet.XXXXXX)
port=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
  set +e
  for i in $(seq 0 $((N - 1))); do
    m=$work/m$i/mnt
    mountpoint -q "$m" 2>/dev/null && { "$bin" unmount "$m" >/dev/null 2>&1 || fusermount3 -uz "$m"; }
    ip netns del "vfsfleet$i" 2>/dev/null
    ip link del "vfb$i" 2>/dev/null
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

git init -q --bare -b main "$work/remote.git"
git -C "$work/remote.git" config receive.denyCurrentBranch ignore
seed=$(mktemp -d "$work/seed.XXXX")
git -C "$seed" init -q -b main
echo "fleet: true" > "$seed/README.yml"
git -C "$seed" add . && git -C "$seed" -c user.name=b -c user.email=b@b commit -qm seed
git -C "$seed" push -q "$work/remote.git" main
"$(git --exec-path)/git-daemon" --reuseaddr --listen=127.0.0.1 --port=$port --base-path="$work" --export-all \
  --enable=receive-pack "$work" > "$work/daemon.log" 2>&1 &
pids+=($!)
daemon_pid=$!

listens=()
for i in $(seq 0 $((N - 1))); do
  ns=vfsfleet$i
  ip netns add "$ns"
  ip link add "vfb$i" type veth peer name "vfn$i"
  ip link set "vfn$i" netns "$ns"
  ip addr add "10.201.$i.1/24" dev "vfb$i"
  ip link set "vfb$i" up
  ip netns exec "$ns" ip addr add "10.201.$i.2/24" dev "vfn$i"
  ip netns exec "$ns" ip link set "vfn$i" up
  ip netns exec "$ns" ip link set lo up
  listens+=("10.201.$i.1:9500")
done
python3 "$fleet" proxy $((RTT_MS / 2)) "$port" "${listens[@]}" > "$work/proxy.log" 2>&1 &
pids+=($!)
relay_pid=$!
for _ in $(seq 50); do grep -q ready "$work/proxy.log" && break; sleep 0.1; done

echo secret-token > "$work/token"
mounts=()
master_pids=()
for i in $(seq 0 $((N - 1))); do
  mkdir -p "$work/m$i/mnt"
  nsenter --net="/run/netns/vfsfleet$i" -- "$bin" mount "git://10.201.$i.1:9500/remote.git" "$work/m$i/mnt" \
    --state-dir "$work/m$i/state" --push sync --push-timeout 120s --foreground \
    --http 127.0.0.1:8080 --http-token-file "$work/token" > "$work/m$i/log" 2>&1 &
  pids+=($!)
  master_pids+=($!)
  mounts+=("$work/m$i/mnt")
done
for i in $(seq 0 $((N - 1))); do
  for _ in $(seq 200); do [ -f "$work/m$i/mnt/README.yml" ] && break; sleep 0.1; done
  [ -f "$work/m$i/mnt/README.yml" ] || { echo "mount $i did not come up:"; tail -5 "$work/m$i/log"; ls -la "$work/m$i/mnt"; exit 1; }
done

cpu_idle() { awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
groups=("masters=$(IFS=,; echo "${master_pids[*]}")" "git-daemon=$daemon_pid" "relay=$relay_pid")
python3 "$fleet" cpu "${groups[@]}" > "$work/cpu0"
read -r idle0 total0 < <(cpu_idle)
python3 "$fleet" drive "$SECONDS_RUN" "$RATE" "${mounts[@]}" > "$work/results.jsonl"
read -r idle1 total1 < <(cpu_idle)
python3 "$fleet" cpu "${groups[@]}" > "$work/cpu1"
mkdir -p "$work/metrics"
for i in $(seq 0 $((N - 1))); do
  nsenter --net="/run/netns/vfsfleet$i" -- curl -s -H "Authorization: Bearer secret-token" \
    http://127.0.0.1:8080/metrics > "$work/metrics/m$(printf %02d "$i").prom" || true
done
echo "Fleet: N=$N masters, $RATE session/s each for ${SECONDS_RUN}s, ${RTT_MS} ms round trip to git daemon."
echo
# The whole machine (masters, git daemon and its git processes, relay) during the drive:
# a run with no idle CPU measures this machine's cores, not the protocol.
echo "machine CPU idle during the run: $(awk -v a=$((idle1 - idle0)) -v b=$((total1 - total0)) 'BEGIN{printf "%.0f%%", 100 * a / b}') of $(nproc) cores"
# Where the busy CPU went (seconds of CPU during the drive, from /proc/PID/stat): the
# masters themselves, their pack-merge children, the git processes git daemon ran for
# every fetch and push, the relay; the rest is the driver and the kernel's own work.
busy=$(( (total1 - total0) - (idle1 - idle0) ))
paste "$work/cpu0" "$work/cpu1" | awk -v busy="$busy" -v tck="$(getconf CLK_TCK)" '
  { own[$1] = $5 - $2; kids[$1] = $6 - $3 }
  END {
    b = busy / tck
    printf "busy CPU %.1f s: masters %.0f%%, their merge children %.0f%%, git daemon'"'"'s git processes %.0f%%, relay %.0f%%, other %.0f%%\n",
      b, 100 * own["masters"] / b, 100 * kids["masters"] / b, 100 * (own["git-daemon"] + kids["git-daemon"]) / b,
      100 * own["relay"] / b, 100 * (b - own["masters"] - kids["masters"] - own["git-daemon"] - kids["git-daemon"] - own["relay"]) / b
  }'

echo
python3 "$fleet" check "$work/remote.git" "$work/results.jsonl" "$work/metrics"
