#!/usr/bin/env bash
# Write benchmark for the mount (issue 4).
#
# 100 one-file writes (open O_TRUNC, write "value: ...", close -- what `echo value > FILE` does),
# timed from the first open until the local bare remote's `main` holds all 100 new values, for:
#   * valuesfs mount --push async (close returns once the commit is durable locally)
#   * valuesfs mount --push sync  (close returns once the commit is on the remote)
#   * valuesfs mount --push async, 100 writes to SOPS-encrypted files (re-encrypted on close)
#   * git CLI loop in a clone: write; git add; git commit; git push   (the baseline)
#   * presslabs gitfs 0.5.1 with merge_timeout=0.1 (if installed: ../shared/peers/install_gitfs.sh)
# Each method runs REPS times (default 3) on the same mount/clone, rounds interleaved; the table
# shows the median run. Every valuesfs run ends by checking all 100 values on the remote.
#
# Env: REPS (default 3), NO_BUILD=1 to skip cargo, PEERS_DIR (default /tmp/peers).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
work=$(mktemp -d /tmp/fs_writes.XXXXXX)
gitfs_pid=""
cleanup() {
  for m in "$work"/mnt-*; do
    if mountpoint -q "$m" 2>/dev/null; then
      case "$m" in
        */mnt-gitfs) fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" || true ;;
        *) "$work/valuesfs" unmount "$m" >/dev/null 2>&1 || fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" || true ;;
      esac
    fi
  done
  if [ -n "$gitfs_pid" ]; then kill "$gitfs_pid" 2>/dev/null || true; wait "$gitfs_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp target/release/valuesfs "$work/"   # private copy: the shared target dir may be rebuilt
bin=$work/valuesfs
install -m 600 ../shared/vectors/key.txt "$work/key.txt"
R=age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql

# A values repo: f000..f099.yaml (plain), s000..s099.yaml (SOPS), .sops.yaml; one bare remote
# per method so runs do not interfere.
mkdir "$work/src"
for i in $(seq -w 0 99); do
  printf 'replicas: 1\nvalue: "initial-%s"\n' "$i" > "$work/src/f0$i.yaml"
  printf 'password: "initial-%s"\nuser: app\n' "$i" > "$work/src/s0$i.yaml"
  "$bin" encrypt --age $R --in-place "$work/src/s0$i.yaml"
done
printf 'creation_rules:\n  - age: %s\n' $R > "$work/src/.sops.yaml"
git -C "$work/src" init -q -b main
git -C "$work/src" add -A
git -C "$work/src" -c user.name=bench -c user.email=bench@example.com commit -qm values
for m in async sync sops cli gitfs; do git clone -q --bare "$work/src" "$work/remote-$m.git"; done

mount_valuesfs() {  # NAME PUSHMODE
  mkdir "$work/mnt-$1"
  "$bin" mount "$work/remote-$1.git" "$work/mnt-$1" --identity "$work/key.txt" \
    --state-dir "$work/state-$1" --push "$2" >/dev/null
}
mount_valuesfs async async
mount_valuesfs sync sync
mount_valuesfs sops async
git clone -q "$work/remote-cli.git" "$work/clone-cli"
git -C "$work/clone-cli" config user.name bench
git -C "$work/clone-cli" config user.email bench@example.com

gitfs_status="not installed (run ../shared/peers/install_gitfs.sh)"
if [ -x "$PEERS_DIR/venv/bin/python" ]; then
  mkdir "$work/mnt-gitfs"
  if [ -x "$PEERS_DIR/venv/bin/gitfs" ] && "$PEERS_DIR/venv/bin/python" -c 'import sys; sys.exit(sys.version_info >= (3, 10))'; then
    gitfs_cmd=("$PEERS_DIR/venv/bin/gitfs")
  else
    gitfs_cmd=("$PEERS_DIR/venv/bin/python" "$(cd ../shared/peers && pwd)/gitfs-py311-launch.py")
  fi
  "${gitfs_cmd[@]}" "$work/remote-gitfs.git" "$work/mnt-gitfs" \
    -o "repo_path=$work/clone-gitfs,branch=main,foreground=true,merge_timeout=0.1,log=$work/gitfs.log" \
    >"$work/gitfs.out" 2>&1 &
  gitfs_pid=$!
  for _ in $(seq 300); do [ -e "$work/mnt-gitfs/current/f000.yaml" ] && break; sleep 0.1; done
  if [ -e "$work/mnt-gitfs/current/f000.yaml" ]; then
    gitfs_status=ok
  else
    gitfs_status="did not mount within 30 s: $(tail -1 "$work/gitfs.out")"
  fi
fi

# The timed runs. For each method and rep: 100 writes, then wait until the remote has them all.
python3 - "$work" "$REPS" "$gitfs_status" <<'PY'
import os, statistics, subprocess, sys, time
work, reps, gitfs_status = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def remote_head(remote):
    try:
        with open(f"{remote}/refs/heads/main") as f:
            return f.read().strip()
    except FileNotFoundError:
        return subprocess.run(["git", "--git-dir", remote, "rev-parse", "main"],
                              capture_output=True, text=True).stdout.strip()

def show(remote, rev, path):
    return subprocess.run(["git", "--git-dir", remote, "show", f"{rev}:{path}"],
                          capture_output=True).stdout

def wait_remote(remote, path, content, timeout=60):
    """Poll until the remote's main has `content` at `path`; returns the head."""
    end = time.monotonic() + timeout
    seen = None
    while time.monotonic() < end:
        h = remote_head(remote)
        if h != seen:
            seen = h
            if show(remote, h, path) == content:
                return h
        time.sleep(0.001)
    raise SystemExit(f"timeout waiting for {path} on {remote}")

def wait_head(remote, head, timeout=60):
    end = time.monotonic() + timeout
    while remote_head(remote) != head:
        if time.monotonic() > end:
            raise SystemExit(f"timeout waiting for {head} on {remote}")
        time.sleep(0.001)

def status(mnt):
    with open(f"{mnt}/.valuesfs/status") as f:
        return dict(l.split(": ", 1) for l in f.read().splitlines() if ": " in l)

def commits(remote, since):
    out = subprocess.run(["git", "--git-dir", remote, "rev-list", "--count", f"{since}..main"],
                         capture_output=True, text=True).stdout.strip()
    return int(out or 0)

def write(path, data):
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
    return time.perf_counter() - t

def run_valuesfs(name, prefix, rep):
    mnt, remote = f"{work}/mnt-{name}", f"{work}/remote-{name}.git"
    before = remote_head(remote)
    vals = {f"{prefix}{i:03}.yaml": (f'password: "rep{rep}-{i}"\nuser: app\n' if prefix == "s"
                                      else f'replicas: 1\nvalue: "rep{rep}-{i}"\n').encode()
            for i in range(100)}
    t0 = time.perf_counter()
    lat = [write(f"{mnt}/{p}", d) for p, d in vals.items()]
    t_closed = time.perf_counter() - t0
    head = status(mnt)["head"].strip().strip('"')
    wait_head(remote, head)
    t_remote = time.perf_counter() - t0
    # Verify (untimed): every value is on the remote, decrypted through the mount too.
    if prefix == "f":
        for p, d in vals.items():
            assert show(remote, "main", p) == d, p
    else:
        for p, d in vals.items():
            assert open(f"{mnt}/{p}", "rb").read() == d, p
            assert b"ENC[AES256_GCM" in show(remote, "main", p), p
    return t_closed, t_remote, commits(remote, before), lat

def run_cli(rep):
    clone, remote = f"{work}/clone-cli", f"{work}/remote-cli.git"
    before = remote_head(remote)
    t0 = time.perf_counter()
    lat = []
    for i in range(100):
        t = time.perf_counter()
        p = f"f{i:03}.yaml"
        with open(f"{clone}/{p}", "w") as f:
            f.write(f'replicas: 1\nvalue: "rep{rep}-{i}"\n')
        subprocess.run(["git", "-C", clone, "add", p], check=True)
        subprocess.run(["git", "-C", clone, "commit", "-q", "-m", f"update {p}"], check=True)
        subprocess.run(["git", "-C", clone, "push", "-q", "origin", "main"], check=True,
                       stderr=subprocess.DEVNULL)
        lat.append(time.perf_counter() - t)
    t = time.perf_counter() - t0
    return t, t, commits(remote, before), lat

def run_gitfs(rep):
    mnt, remote = f"{work}/mnt-gitfs/current", f"{work}/remote-gitfs.git"
    before = remote_head(remote)
    vals = {f"f{i:03}.yaml": f'replicas: 1\nvalue: "rep{rep}-{i}"\n'.encode() for i in range(100)}
    t0 = time.perf_counter()
    lat = [write(f"{mnt}/{p}", d) for p, d in vals.items()]
    t_closed = time.perf_counter() - t0
    wait_remote(remote, "f099.yaml", vals["f099.yaml"])
    t_remote = time.perf_counter() - t0
    missing = [p for p, d in vals.items() if show(remote, "main", p) != d]
    assert not missing, f"gitfs: {len(missing)} values not on the remote"
    return t_closed, t_remote, commits(remote, before), lat

methods = [
    ("valuesfs mount, `--push async`", "async", lambda r: run_valuesfs("async", "f", r)),
    ("valuesfs mount, `--push sync`", "sync", lambda r: run_valuesfs("sync", "f", r)),
    ("valuesfs mount, `--push async`, SOPS files (re-encrypted on close)", "async SOPS",
     lambda r: run_valuesfs("sops", "s", r)),
    ("git CLI loop: write; add; commit; push", "git CLI", run_cli),
]
if gitfs_status == "ok":
    methods.append(("gitfs 0.5.1, merge_timeout=0.1 s", "gitfs", run_gitfs))
short = {name: sh for name, sh, _ in methods}
res = {name: [] for name, _, _ in methods}
for rep in range(reps):
    for name, _, fn in methods:
        res[name].append(fn(rep))
        time.sleep(0.5)  # let the previous method's background pushes settle
cli = sorted(r[1] for r in res["git CLI loop: write; add; commit; push"])[reps // 2]
print("| method (100 one-file writes) | writes done (last close) | all 100 on the remote | vs git CLI loop | commits on remote | write+close p50 | p99 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, runs in res.items():
    runs = sorted(runs, key=lambda r: r[1])
    closed, remote, ncommits, lat = runs[len(runs) // 2]
    lat = sorted(lat)
    print(f"| {name} | {closed * 1e3:.0f} ms | {remote * 1e3:.0f} ms | {cli / remote:.1f}x | {ncommits} "
          f"| {lat[49] * 1e3:.2f} ms | {lat[98] * 1e3:.2f} ms |")
print()
print(f"Median run of {reps} per method, by time until all 100 are on the remote (all runs, ms: " + "; ".join(
    f"{short[n]} " + ", ".join(f"{r[1] * 1e3:.0f}" for r in runs) for n, runs in res.items()) + ").")
if gitfs_status != "ok":
    print(f"\ngitfs: {gitfs_status}")
PY
