#!/usr/bin/env bash
# The main job: build moe, then parse, verify and print the example layers.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/build.sh"
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
for example in "$repo_root"/examples/*.mlir; do
  echo "== $(basename "$example")"
  "$build_dir/bin/moe-opt" "$example"
done
echo "main: all $(ls "$repo_root"/examples/*.mlir | wc -l) example layers parse and verify"
