#!/usr/bin/env bash
# Long-running daemon footprint (issue 14): WRITES write-closes through one mount, sampled
# every STEP writes for the daemon's RSS (VmRSS, VmHWM), its open file descriptors and the
# size of its state dir, then the state dir against a `git gc`'d bare clone of the same
# history (the baseline, measured in the same run).
#
# The repo: 200 plain values files and 20 SOPS files (a `.sops.yaml` creation rule for
# secrets/), in a local bare remote. The writes (seeded): 70 % rewrite a plain file, 20 %
# change one value of a SOPS file (read decrypted through the mount, one line changed,
# written back: re-encrypted by the daemon), 10 % create a new plain file. Each is one
# open/write/close, so one session commit; pushes run in the background as they would.
#
# Env: WRITES (default 10000), STEP (default 1000), NO_BUILD=1 to skip cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${WRITES:-10000}
STEP=${STEP:-1000}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin valuesfs
work=$(mktemp -d /tmp/fs_soak.XXXXXX)
vpid=""
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    "$work/valuesfs" unmount "$work/mnt" >/dev/null 2>&1 || fusermount3 -uz "$work/mnt" || true
  fi
  if [ -n "$vpid" ]; then kill "$vpid" 2>/dev/null || true; wait "$vpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp target/release/valuesfs "$work/"   # private copy: the shared target dir may be rebuilt
bin=$work/valuesfs
install -m 600 ../shared/vectors/key.txt "$work/key.txt"
R=age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql

git init -q -b main "$work/seed"
python3 - "$work/seed" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(f"{root}/apps", exist_ok=True)
os.makedirs(f"{root}/secrets", exist_ok=True)
for i in range(200):
    with open(f"{root}/apps/app{i:03}.yaml", "w") as f:
        f.write(f"# app {i}\nreplicas: {i % 5 + 1}\nimage:\n  repository: registry.example.com/app{i}\n"
                f"  tag: \"1.{i}.0\"\nresources:\n  limits: {{cpu: 500m, memory: 256Mi}}\n")
with open(f"{root}/.sops.yaml", "w") as f:
    f.write("creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n"
            "    age: age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql\n")
PY
for i in $(seq -w 0 19); do
  printf 'database:\n  user: app%s\n  password: initial-%s\napi:\n  token: tok-%s # rotated by hand\n' "$i" "$i" "$i" \
    > "$work/plain.yaml"
  SOPS_AGE_KEY_FILE=$work/key.txt "$bin" encrypt --age $R "$work/plain.yaml" > "$work/seed/secrets/s$i.yaml"
done
git -C "$work/seed" add -A
git -C "$work/seed" -c user.name=bench -c user.email=bench@example.com commit -qm seed
git clone -q --bare "$work/seed" "$work/remote.git"

mkdir "$work/mnt"
"$bin" mount "$work/remote.git" "$work/mnt" --identity "$work/key.txt" --state-dir "$work/state" \
  --foreground >>"$work/daemon.out" 2>&1 &
vpid=$!
for _ in $(seq 600); do grep -q "head:" "$work/mnt/.valuesfs/status" 2>/dev/null && break; sleep 0.1; done
pid=$(awk '/^pid:/{print $2}' "$work/mnt/.valuesfs/daemon")

python3 - "$work" "$pid" "$WRITES" "$STEP" <<'PY'
import os, random, re, subprocess, sys, time
work, pid, writes, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mnt = f"{work}/mnt"
rng = random.Random(14)

def sample():
    st = open(f"/proc/{pid}/status").read()
    kb = lambda k: int(re.search(rf"^{k}:\s+(\d+)", st, re.M).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    du = int(subprocess.run(["du", "-sk", f"{work}/state"], capture_output=True, text=True).stdout.split()[0])
    status = open(f"{mnt}/.valuesfs/status").read()
    m = re.search(r"^pending_pushes:\s*(\d+)", status, re.M)
    return (kb("VmRSS") / 1024, kb("VmHWM") / 1024, fds, du / 1024, (m.group(1) if m else "?"),
            kb("RssAnon") / 1024)

expected = {}  # path in the repo -> the last bytes written there

def put(path, data):
    expected[os.path.relpath(path, mnt)] = data.decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)

print("| writes | elapsed s | RSS MiB | anonymous MiB | peak RSS MiB | open fds | state dir MiB | pending pushes |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
r = sample()
print(f"| 0 | 0.0 | {r[0]:.1f} | {r[5]:.1f} | {r[1]:.1f} | {r[2]} | {r[3]:.1f} | {r[4]} |", flush=True)
t0 = time.monotonic()
new = 0
peak = r[1]
for n in range(1, writes + 1):
    x = rng.random()
    if x < 0.7:
        i = rng.randrange(200)
        put(f"{mnt}/apps/app{i:03}.yaml",
            f"# app {i}\nreplicas: {rng.randrange(1, 9)}\nimage:\n  repository: registry.example.com/app{i}\n"
            f"  tag: \"1.{i}.{n}\"\nresources:\n  limits: {{cpu: 500m, memory: 256Mi}}\n".encode())
    elif x < 0.9:
        p = f"{mnt}/secrets/s{rng.randrange(20):02}.yaml"
        text = open(p).read()
        text = re.sub(r"password: .*", f"password: rotated-{n}-{rng.getrandbits(32):08x}", text, count=1)
        put(p, text.encode())
    else:
        put(f"{mnt}/apps/new{new:05}.yaml", f"created: {n}\n".encode())
        new += 1
    if n % step == 0:
        r = sample()
        peak = max(peak, r[1])
        print(f"| {n} | {time.monotonic() - t0:.1f} | {r[0]:.1f} | {r[5]:.1f} | {r[1]:.1f} | {r[2]} | {r[3]:.1f} | {r[4]} |", flush=True)
# Everything pushed: wait for the status to say so.
end = time.monotonic() + 300
while time.monotonic() < end:
    r = sample()
    if r[4] == "0":
        break
    time.sleep(0.5)
print(f"| pushed | {time.monotonic() - t0:.1f} | {r[0]:.1f} | {r[5]:.1f} | {r[1]:.1f} | {r[2]} | {r[3]:.1f} | {r[4]} |")
import json
with open(f"{work}/expected.json", "w") as f:
    json.dump(expected, f)
with open(f"{work}/peak", "w") as f:
    f.write(f"{max(peak, r[1]):.1f}\n")
PY

# Idle for the background repack to finish: checkpoints happen after 100 ms idle, merges
# run on their own thread, merged packs are deleted 10 s after their merge. Settled: the
# same size for 12 s (at most 120 s).
t_idle=$SECONDS
state_kb=$(du -sk "$work/state" | cut -f1)
same=0
for _ in $(seq 120); do
  sleep 1
  now_kb=$(du -sk "$work/state" | cut -f1)
  if [ "$now_kb" = "$state_kb" ]; then same=$((same + 1)); else same=0; state_kb=$now_kb; fi
  [ "$same" -lt 12 ] || break
done
settled=$((SECONDS - t_idle))
commits=$(git --git-dir "$work/remote.git" rev-list --count main)
git clone -q --bare --no-local "$work/remote.git" "$work/gc.git"
git --git-dir "$work/gc.git" gc -q --prune=now
gc_kb=$(du -sk "$work/gc.git" | cut -f1)
peak=$(cat "$work/peak")
# Nothing lost: the remote's head holds the last bytes written to every path (SOPS files
# decrypted with the daemon's own binary, which `sops -d` agrees with in the codec tests).
git clone -q "$work/remote.git" "$work/check"
lost=$(SOPS_AGE_KEY_FILE=$work/key.txt python3 - "$work" "$bin" <<'PY'
import json, subprocess, sys
work, bin_ = sys.argv[1], sys.argv[2]
bad = 0
for path, want in json.load(open(f"{work}/expected.json")).items():
    f = f"{work}/check/{path}"
    try:
        got = (subprocess.run([bin_, "decrypt", f], capture_output=True, check=True).stdout.decode()
               if path.startswith("secrets/") else open(f).read())
    except (OSError, subprocess.CalledProcessError):
        got = None
    bad += got != want
print(bad)
PY
)
paths=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$work/expected.json")
rss_idle=$(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")
# CPU seconds of the daemon, and of its finished children (the pack merges).
cpu=$(python3 -c "
import os, sys
f = open('/proc/%s/stat' % sys.argv[1]).read().rsplit(')', 1)[1].split()
hz = os.sysconf('SC_CLK_TCK')
print('%.1f s, pack merge children %.1f s' % ((int(f[11]) + int(f[12])) / hz, (int(f[13]) + int(f[14])) / hz))
" "$pid")
echo
echo "$WRITES write-closes to $paths paths, $commits commits on the remote; paths whose last write is not on the remote: $lost;"
echo "daemon peak RSS $peak MiB (idle after: $rss_idle MiB); daemon CPU $cpu;"
mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
echo "state dir $(mib "$state_kb") against a \`git gc\`'d bare clone of the same history: $(mib "$gc_kb") ($(awk -v a=$state_kb -v b=$gc_kb 'BEGIN{printf "%.1fx", a/b}')), settled after $settled s idle."
