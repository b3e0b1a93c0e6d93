#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a virtualenv in .venv with trustwatch and its
# dev extras. Re-installs only when pyproject.toml changed. Sourced by demo.sh and test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${TRUSTWATCH_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.trustwatch-installed"
want=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python >= 3.11 is required (found: $("$py" --version 2>&1))" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing trustwatch and its dev dependencies into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[dev]"
  echo "$want" > "$stamp"
fi
# Azurite (npm), the Azure Storage stand-in the tests start (tests/cloudservers.py), in
# .cache/node (git-ignored node_modules). Pinned: 3.36+ needs Node.js 21, the machines have 20.
azurite_version=3.35.0
azurite_dir="$root/.cache/node"
if ! grep -qs "\"version\": \"$azurite_version\"" "$azurite_dir/node_modules/azurite/package.json"; then
  if command -v npm >/dev/null; then
    echo "setup: installing azurite@$azurite_version into $azurite_dir" >&2
    npm install --no-save --no-audit --no-fund --silent --prefix "$azurite_dir" "azurite@$azurite_version"
  else
    echo "setup: npm not found; the Azure storage tests need Node.js and npm (apt-get install nodejs npm)" >&2
  fi
fi
# Chromium (Debian's package), the real browser that renders the sweep's HTML report in the
# tests (tests/test_report.py), with a font for its text. As root with apt-get only; elsewhere
# the test says how to install it.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "setup: chromium not found; the HTML report test needs it (apt-get install chromium, or TRUSTWATCH_NO_BROWSER=1 to skip it)" >&2
  fi
fi
export PATH="$venv/bin:$PATH"
