#!/usr/bin/env bash
# Scale benchmark for the mount (issue 4).
#
# A 100 000-file values repo (10 top-level dirs x 100 app dirs x 100 files of ~40 B, 1 010
# directories; generated with `git fast-import` straight into a local bare remote), then:
#   * first mount: `valuesfs mount --foreground` started in the background; time from start
#     until MNT/.valuesfs/status is readable (includes the initial clone into the state dir);
#   * daemon RSS (VmRSS and VmHWM from /proc/PID/status; PID from MNT/.valuesfs/daemon) right
#     after the mount and after `ls -R MNT | wc -l` over the whole mount (also timed);
#   * the same after unmounting and remounting on the existing state dir (REMOUNTS times,
#     default 3; the table shows the median mount time and the last run's RSS);
#   * a first mount from the same remote served by `git daemon` on 127.0.0.1 (a network
#     transport: the server sends its pack, the client indexes it), with git's own clone
#     over git:// as its reference, then RSS after `find` over the tree and reading 10 000
#     files.
# Env: NO_BUILD=1 to skip cargo, REMOUNTS.
set -euo pipefail
cd "$(dirname "$0")/.."
REMOUNTS=${REMOUNTS:-3}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
work=$(mktemp -d /tmp/fs_scale.XXXXXX)
vpid=""
dpid=""
cleanup() {
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    "$work/valuesfs" unmount "$work/mnt" >/dev/null 2>&1 || fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -uz "$work/mnt" || true
  fi
  if [ -n "$vpid" ]; then kill "$vpid" 2>/dev/null || true; wait "$vpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp target/release/valuesfs "$work/"   # private copy: the shared target dir may be rebuilt
bin=$work/valuesfs
install -m 600 ../shared/vectors/key.txt "$work/key.txt"

ms() { date +%s%N; }
t0=$(ms)
git init -q --bare -b main "$work/remote.git"
python3 - <<'PY' | git --git-dir "$work/remote.git" fast-import --quiet
import sys
out = sys.stdout.buffer
msg = b"100k values files"
out.write(b"commit refs/heads/main\ncommitter bench <bench@example.com> 1700000000 +0000\n")
out.write(b"data %d\n%s\n" % (len(msg), msg))
for e in range(10):
    for a in range(100):
        for f in range(100):
            data = b"replicas: %d\nimage: app%03d:%d.%d\n" % (f % 5 + 1, a, e, f)
            out.write(b"M 100644 inline env%d/app%03d/values%03d.yaml\ndata %d\n%s\n"
                      % (e, a, f, len(data), data))
out.write(b"\n")
PY
t1=$(ms)
files=$(git --git-dir "$work/remote.git" ls-tree -r main | wc -l)
packsize=$(du -sk "$work/remote.git/objects" | cut -f1)
gen_ms=$(( (t1 - t0) / 1000000 ))
# Reference for the clone part of the first mount: git's own clone of the same remote over
# file:// (pack-objects + index-pack, no hardlinks).
t0=$(ms); git clone -q --bare --no-local "file://$work/remote.git" "$work/ref-clone.git"; t1=$(ms)
gitclone_ms=$(( (t1 - t0) / 1000000 )); rm -rf "$work/ref-clone.git"

mkdir "$work/mnt"
# start_mount [URL STATE]: sets mount_ms (start until .valuesfs/status is readable) and vpid
start_mount() {
  local s e
  s=$(ms)
  "$bin" mount "${1:-$work/remote.git}" "$work/mnt" --identity "$work/key.txt" --state-dir "${2:-$work/state}" \
    --foreground >>"$work/daemon.out" 2>&1 &
  vpid=$!
  python3 - "$work/mnt/.valuesfs/status" <<'PY'
import sys, time
end = time.monotonic() + 120
while time.monotonic() < end:
    try:
        with open(sys.argv[1]) as f:
            if "head:" in f.read():
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.001)
sys.exit("status not readable after 120 s")
PY
  e=$(ms)
  mount_ms=$(( (e - s) / 1000000 ))
}
stop_mount() {
  "$bin" unmount "$work/mnt" >/dev/null
  wait "$vpid" 2>/dev/null || true
  vpid=""
}
rss() {  # VmRSS and VmHWM in MiB of the daemon serving the mount
  local p
  p=$(awk '/^pid:/{print $2}' "$work/mnt/.valuesfs/daemon")
  awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} /^RssAnon/{a=$2} END {printf "%.1f MiB (peak %.1f MiB; anonymous %.1f MiB)", r/1024, h/1024, a/1024}' "/proc/$p/status"
}
ls_r() {  # -> "ms entries"
  local s e n
  s=$(ms); n=$(ls -R "$work/mnt" | wc -l); e=$(ms)
  echo "$(( (e - s) / 1000000 )) $n"
}

start_mount
first_ms=$mount_ms
[ "$(awk '/^pid:/{print $2}' "$work/mnt/.valuesfs/daemon")" = "$vpid" ] || echo "warning: daemon pid differs from the started process" >&2
first_rss=$(rss)
read -r first_ls first_n < <(ls_r)
first_rss_ls=$(rss)
read -r first_ls2 _ < <(ls_r)
statedir_kb=$(du -sk "$work/state" | cut -f1)
stop_mount

re_all=()
for i in $(seq "$REMOUNTS"); do
  start_mount
  re_all+=("$mount_ms")
  re_rss=$(rss)
  read -r re_ls re_n < <(ls_r)
  re_rss_ls=$(rss)
  stop_mount
done
re_ms=$(printf '%s\n' "${re_all[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

# Over git daemon.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
git daemon --verbose --export-all --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$work" "$work" 2>"$work/git-daemon.log" &
dpid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
t0=$(ms); git clone -q --bare "git://127.0.0.1:$port/remote.git" "$work/ref-clone.git" || { cat "$work/git-daemon.log" >&2; exit 1; }; t1=$(ms)
gd_clone_ms=$(( (t1 - t0) / 1000000 )); rm -rf "$work/ref-clone.git"
start_mount "git://127.0.0.1:$port/remote.git" "$work/state-gd"
gd_ms=$mount_ms
gd_rss=$(rss)
s=$(ms); find "$work/mnt" -type f | awk "NR <= 10000" | xargs cat > /dev/null; e=$(ms)
gd_read_ms=$(( (e - s) / 1000000 ))
gd_rss_read=$(rss)
stop_mount

echo "Repo: $files files in 1 010 directories, generated with git fast-import in ${gen_ms} ms (objects: $((packsize / 1024)) MiB; state dir after the first mount: $((statedir_kb / 1024)) MiB)."
echo
echo "| | mount until .valuesfs/status readable | daemon RSS after mount | \`ls -R \| wc -l\` (lines) | RSS after \`ls -R\` |"
echo "|---|---:|---:|---:|---:|"
echo "| first mount (clone of the remote included) | $first_ms ms | $first_rss | $first_ls ms ($first_n); again: $first_ls2 ms | $first_rss_ls |"
echo "| reference: \`git clone --bare --no-local file://REMOTE\` (CLI) | $gitclone_ms ms | | | |"
echo "| remount on the existing state dir (median of $REMOUNTS: ${re_all[*]} ms) | $re_ms ms | $re_rss | $re_ls ms ($re_n) | $re_rss_ls |"
echo "| first mount over \`git daemon\` | $gd_ms ms | $gd_rss | \`find\` + reading 10 000 files: $gd_read_ms ms | $gd_rss_read |"
echo "| reference: \`git clone --bare git://...\` (CLI) | $gd_clone_ms ms | | | |"
