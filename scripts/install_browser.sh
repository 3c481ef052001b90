#!/usr/bin/env bash
# Installs the browser the UI test (product_attrs_tests/test_ui.py) drives: Debian's chromium and the
# chromedriver built from the same sources (so their versions always match). Idempotent and quiet: does
# nothing and exits 0 when both are there; runs `apt-get update` only when apt does not know the packages
# or the install fails on a stale package list. Needs apt and root (or sudo). The Python driver (selenium)
# comes with the project's dev dependencies.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
PACKAGES=(chromium chromium-driver)

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no apt-get here: install Chromium and the matching chromedriver as $CHROMIUM and $CHROMEDRIVER" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install_browser.sh: needs root (or sudo) to apt-get install ${PACKAGES[*]}" >&2
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

# (Debian's launcher script may print a harmless shell warning about /dev/shm: hide it.)
echo "installed: $("$CHROMIUM" --version 2>/dev/null); $("$CHROMEDRIVER" --version 2>/dev/null | cut -d' ' -f1-2)"
