#!/usr/bin/env bash
# valuesfs demo: build, then encrypt, decrypt and edit example values files with the codec.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/valuesfs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/values/* "$work/"
cd "$work"

if command -v age-keygen >/dev/null; then
  age-keygen -o key.txt 2>/dev/null
else
  cp "$OLDPWD/../shared/vectors/key.txt" key.txt
fi
chmod 600 key.txt
export SOPS_AGE_KEY_FILE=$PWD/key.txt
recipient=$(grep -o 'age1[0-9a-z]*' key.txt | head -1)
printf 'creation_rules:\n  - path_regex: \\.(yaml|env)$\n    age: %s\n' "$recipient" > .sops.yaml

echo "== encrypt values.yaml (recipient from .sops.yaml)"
"$bin" encrypt --in-place values.yaml
"$bin" encrypt --in-place app.env
sed -n '1,6p' values.yaml | cut -c1-100
echo "== decrypt: exactly the bytes that were written"
"$bin" decrypt values.yaml
echo "== edit one value with \$EDITOR (here: sed)"
cp values.yaml before.yaml
printf '#!/bin/sh\nsed -i "s/replicas: 2/replicas: 3/" "$1"\n' > editor.sh && chmod +x editor.sh
sleep 1
EDITOR=$PWD/editor.sh "$bin" edit values.yaml
echo "== the encrypted diff: the edited value, lastmodified, mac, and the source copy"
diff before.yaml values.yaml | grep '^[<>]' | cut -c1-90 || true
if command -v sops >/dev/null; then
  echo "== sops -d reads it"
  sops -d values.yaml | head -5
fi

echo
echo "== the mount: a values repo on a bare remote, SOPS files shown decrypted"
git init -q --bare remote.git
git clone -q remote.git seed 2>/dev/null
cp .sops.yaml values.yaml app.env seed/
git -C seed add -A
git -C seed -c user.name=demo -c user.email=demo@example.com commit -qm "values"
git -C seed push -q origin HEAD:main
mkdir mnt
"$bin" mount "$PWD/remote.git" "$PWD/mnt" --identity key.txt --state-dir "$PWD/state"
trap '"$bin" unmount "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
ls -la mnt
echo "-- mnt/values.yaml (decrypted in memory):"
cat mnt/values.yaml
echo "== sed -i on the mount: one commit, pushed, only the changed value's ciphertext moves"
sed -i 's/replicas: 3/replicas: 4/' mnt/values.yaml
echo "new: plaintext-in, ciphertext-in-git" > mnt/new.yaml
"$bin" status --mount mnt | grep -E 'head|pending'
sleep 1
git -C remote.git log --oneline main
git -C remote.git show --stat main~1 | tail -2
echo "-- what git stores for new.yaml (matched the .sops.yaml rule):"
git -C remote.git show main:new.yaml | head -2 | cut -c1-90
"$bin" unmount mnt
echo "== unmounted"
