#!/usr/bin/env bash
# Every test: the lit/FileCheck suite, the Python (pytest) suite, the
# installed package with the out-of-tree embedding example built and run
# against it (scripts/test-install.sh), then a short mutation fuzz of the
# tools (scripts/fuzz.py, 2000 mutants, ~2 min),
# then lit and pytest again against an AddressSanitizer/UBSan build
# (scripts/test-sanitized.sh, build-sanitized/, ~15 min from scratch).
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/build.sh" || exit 1
build_dir=${MOE_BUILD_DIR:-$repo_root/build}

status=0
/usr/lib/llvm-22/bin/lit -v "$build_dir/test" || status=1
PYTHONPATH="$repo_root/python" python3 -m pytest -v "$repo_root/python/tests" || status=1
MOE_BUILD_DIR="$build_dir" bash "$repo_root/scripts/test-install.sh" || status=1
# A short, fixed-seed mutation fuzz of the tools (no crash, abort or hang).
MOE_BUILD_DIR="$build_dir" python3 "$repo_root/scripts/fuzz.py" --mutants 2000 --seed 1 \
  --crashes "$build_dir/fuzz-crashes" || status=1
# The lit and pytest suites under ASan and UBSan, in a build of their own.
bash "$repo_root/scripts/test-sanitized.sh" || status=1
exit $status
