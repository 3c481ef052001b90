#!/usr/bin/env bash
# apt-get install the named Debian packages, quietly: runs `apt-get update` only when apt does not know a
# package or the install fails on a stale package list. Needs apt and root (or sudo); says so and exits 1
# otherwise. Used by install_browser.sh and install_postgres.sh.
set -euo pipefail
PACKAGES=("$@")
NAME=$(basename "${INSTALLER:-$0}")

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$NAME: no apt-get here: install ${PACKAGES[*]} by hand" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "$NAME: needs root (or sudo) to apt-get install ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

known() {  # apt has an installation candidate for every package
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]' || return 1
  done
}

install() {
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOG" 2>&1
}

if ! known; then
  "${SUDO[@]}" apt-get update -qq >"$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
fi
if ! install; then
  # A stale package list names a version the mirror no longer has: refresh it once and retry.
  "${SUDO[@]}" apt-get update -qq >"$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
  install || { cat "$LOG" >&2; exit 1; }
fi
