#!/usr/bin/env bash
# The codec soak: runs bench/codec_diff.py seed after seed (500 accepted cases each) and
# appends each seed's summary line to a log, so a run can be stopped and resumed.
#   bench/codec_soak.sh FIRST_SEED LAST_SEED [STORE] [LOG]
# Failing inputs are saved under $LOG.d/seed-N/ for `codec_diff.py --replay`. At the end
# it prints the totals over the whole log. Runs at nice 19: it is meant to share a machine.
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:?first seed}
last=${2:?last seed}
store=${3:-yaml}
log=${4:-/tmp/codec-soak-$store.log}
bin=${VALUESFS:-$PWD/target/release/valuesfs}
# A copy, so a rebuild while the soak runs does not change the binary under test.
copy=$(mktemp)
trap 'rm -f "$copy"' EXIT
cp "$bin" "$copy"
chmod 755 "$copy"
for seed in $(seq "$first" "$last"); do
  line=$(nice -n 19 python3 bench/codec_diff.py --store "$store" --cases 500 --seed "$seed" \
    --jobs 1 --keep-going --shrink-each 1 --save "$log.d/seed-$seed" --valuesfs "$copy" \
    | tail -1)
  echo "seed $seed: $line" | tee -a "$log"
done
awk '/codec_diff:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^cases/) c += $i; if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "codec_soak: %d seeds logged, %d cases, %d passed, %d failed\n", NR, c, p, f }' "$log"
