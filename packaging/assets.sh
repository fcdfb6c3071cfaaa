#!/usr/bin/env bash
# Generate the package's completions and man pages with BINARY into DIR.
set -euo pipefail
bin=$1
out=$2
rm -rf "$out"
mkdir -p "$out/man"
"$bin" completions bash >"$out/valuesfs.bash"
"$bin" completions zsh >"$out/_valuesfs"
"$bin" completions fish >"$out/valuesfs.fish"
"$bin" man --dir "$out/man"
# Debian policy: man pages compressed, reproducibly.
gzip -9n "$out"/man/*.1
