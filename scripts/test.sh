#!/usr/bin/env bash
# Every test: the lit/FileCheck suite, then the Python (pytest) suite.
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/build.sh" || exit 1
build_dir=${MOE_BUILD_DIR:-$repo_root/build}

status=0
/usr/lib/llvm-22/bin/lit -v "$build_dir/test" || status=1
PYTHONPATH="$repo_root/python" python3 -m pytest -v "$repo_root/python/tests" || status=1
exit $status
