#!/usr/bin/env bash
# The whole test suite, set-up included: `bash scripts/test.sh` (extra args go to pytest;
# `bash scripts/test.sh -m slow` runs the slow set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$root"
ruff check .
python_dirs=$(for d in shared functions tests benchmarks; do if [ -d "$d" ]; then echo "$d"; fi; done)
# shellcheck disable=SC2086  # word splitting of the folder list is intended
ruff format --check --quiet $python_dirs || {
  echo "test: code is not ruff-formatted (run: ruff format $(echo $python_dirs))" >&2
  exit 1
}
# Types: strict for the core and the modules listed in pyproject.toml, checked everywhere.
mypy shared/trustwatch || {
  echo "test: mypy found type errors in shared/trustwatch" >&2
  exit 1
}
exec python -m pytest "$@"
