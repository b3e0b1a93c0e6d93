#!/usr/bin/env bash
# The whole test suite, set-up included: `bash scripts/test.sh` (extra args go to pytest;
# `bash scripts/test.sh -m slow` runs the slow set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$root"
ruff check .
ruff format --check --quiet shared functions tests benchmarks || {
  echo "test: code is not ruff-formatted (run: ruff format shared functions tests benchmarks)" >&2
  exit 1
}
exec python -m pytest "$@"
