#!/usr/bin/env bash
# The main job, end to end on embedded stand-ins: `bash scripts/demo.sh`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$root"
exec trustwatch demo "$@"
