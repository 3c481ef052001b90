#!/usr/bin/env bash
# Installs the browser the UI test (product_attrs_tests/test_ui.py) drives: Debian's chromium and the
# chromedriver built from the same sources (so their versions always match). Idempotent and quiet: does
# nothing and exits 0 when both are there. The Python driver (selenium) comes with the dev dependencies.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
  exit 0
fi
INSTALLER="$0" "$(dirname "$0")/apt_install.sh" chromium chromium-driver

# (Debian's launcher script may print a harmless shell warning about /dev/shm: hide it.)
echo "installed: $("$CHROMIUM" --version 2>/dev/null); $("$CHROMEDRIVER" --version 2>/dev/null | cut -d' ' -f1-2)"
