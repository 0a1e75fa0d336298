#!/usr/bin/env bash
# The lit suite and the CPU pytest suite against moe built with
# AddressSanitizer and UndefinedBehaviorSanitizer (MOE_ENABLE_SANITIZERS=ON).
# The build goes to ${MOE_SANITIZED_BUILD_DIR:-build-sanitized}, never to the
# normal build directory. libMLIR.so from the distribution, and the code
# moe-run compiles and runs with its JIT, are not instrumented.
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/setup.sh" || exit 1
build_dir=${MOE_SANITIZED_BUILD_DIR:-$repo_root/build-sanitized}
build_dir=$(realpath -m "$build_dir")
if [ "$build_dir" = "$(realpath -m "${MOE_BUILD_DIR:-$repo_root/build}")" ]; then
  echo "test-sanitized: error: $build_dir is the normal build directory;" \
    "set MOE_SANITIZED_BUILD_DIR to another one" >&2
  exit 1
fi
llvm_prefix=/usr/lib/llvm-22

# Configured every time, so that a directory configured otherwise is
# switched to the sanitized flags. -O2 with debug info: reports name lines.
cmake -S "$repo_root" -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_ENABLE_SANITIZERS=ON \
  -DMLIR_DIR="$llvm_prefix/lib/cmake/mlir" \
  -DLLVM_EXTERNAL_LIT="$llvm_prefix/bin/lit" \
  -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null || exit 1
cmake --build "$build_dir" || exit 1

# abort_on_error: a report ends the process with SIGABRT, which lit's `not`
#   and the pytest helpers count as a crash; the default exit status 1 would
#   pass every test that expects moe-run to fail.
# allocator_may_return_null: tests ask for more memory than any machine has
#   on purpose (huge-input.mlir, alloc-failure.mlir) and check moe-run's
#   error; by default ASan ends the process instead of returning null from
#   malloc as the C library does.
# allow_user_poisoning=0: LLVM's BumpPtrAllocator (llvm/Support/Allocator.h,
#   inlined into our code) poisons each new slab when the including code is
#   instrumented and unpoisons what it hands out; libMLIR.so, not
#   instrumented, hands out memory from the same slabs (attribute storage)
#   without unpoisoning it, so reading it is a false use-after-poison. This
#   only turns off the allocator's manual poisoning; heap, stack and global
#   checks stay on.
export ASAN_OPTIONS=abort_on_error=1:allocator_may_return_null=1:allow_user_poisoning=0:${ASAN_OPTIONS:-}
# -fno-sanitize-recover=undefined already stops at the first report.
export UBSAN_OPTIONS=print_stacktrace=1:abort_on_error=1:${UBSAN_OPTIONS:-}

status=0
"$llvm_prefix/bin/lit" -v "$build_dir/test" || status=1
MOE_BUILD_DIR="$build_dir" PYTHONPATH="$repo_root/python" \
  python3 -m pytest -v "$repo_root/python/tests" || status=1
exit $status
