#!/usr/bin/env bash
# Debian packages the test suite needs: promtool (package prometheus) to check
# metric expositions, PostgreSQL server binaries for the drain test against a
# real database. Installed only when missing; needs root (CI runs as root).
set -euo pipefail

missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing ${missing[*]}; install them with apt-get (needs root)" >&2
    exit 1
  fi
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "system-deps: promtool $(promtool --version 2>&1 | head -1 | awk '{print $3}'), postgresql $(ls /usr/lib/postgresql/)" >&2
