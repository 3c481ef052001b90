#!/usr/bin/env bash
# Installs what the shelf app's build needs: node and npm (Debian's `nodejs npm` packages, when absent) and
# onnxruntime-web from the npm registry, exactly as product_attrs/shelf_app/package-lock.json pins it
# (`npm ci`; npm's cache makes a second install work offline). Idempotent: does nothing when the locked
# packages are already installed.
set -euo pipefail
APP="$(cd "$(dirname "$0")/.." && pwd)/product_attrs/shelf_app"

if ! command -v npm >/dev/null 2>&1; then
  INSTALLER="$0" "$(dirname "$0")/apt_install.sh" nodejs npm
fi
# npm writes node_modules/.package-lock.json after a complete install: same lockfile, nothing to do.
if [ -f "$APP/node_modules/.package-lock.json" ] && [ "$APP/node_modules/.package-lock.json" -nt "$APP/package-lock.json" ]; then
  exit 0
fi
cd "$APP"
npm ci --no-audit --no-fund --ignore-scripts --prefer-offline --loglevel=error
