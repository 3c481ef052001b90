#!/usr/bin/env bash
# Installs the PostgreSQL server the lake's team-catalog tests start (product_attrs_tests/warehouse): each
# test session runs its own throw-away cluster in a temp folder, so nothing is configured or started here.
# Idempotent: exits 0 at once when initdb, pg_ctl and postgres are on the PATH or under
# /usr/lib/postgresql/<version>/bin (Debian's layout).
set -euo pipefail

have() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have; then
  exit 0
fi
INSTALLER="$0" "$(dirname "$0")/apt_install.sh" postgresql
have && echo "installed: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
