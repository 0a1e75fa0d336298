#!/usr/bin/env bash
# Configures and builds moe into ${MOE_BUILD_DIR:-build}. Calls setup first.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/setup.sh"
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
llvm_prefix=/usr/lib/llvm-22
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S "$repo_root" -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR="$llvm_prefix/lib/cmake/mlir" \
    -DLLVM_EXTERNAL_LIT="$llvm_prefix/bin/lit" \
    -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null
fi
cmake --build "$build_dir"
