#!/usr/bin/env bash
# Compiles the example layers' expert blocks (routing given: align, GEMM1,
# activation, GEMM2, combine) for the GPU with this machine's moe-compile,
# and the whole example layers (routing included), and builds each into a
# shared library with the runtime, for the GPU machine (which has no LLVM):
#   <layer>_m<M>.so         the example layer, M in 1 256 4096
#   <layer>_block_m<M>.so   full size, tiles chosen for M tokens
#   <layer>_routed_block_m<M>.so  the routed experts alone of a layer with
#                           shared experts (bench/gpu_shared_expert_bench.py)
#   <layer>_small_block.so  scaled (H=256, I=128), for the sanitizer
#   mixtral_8x7b_small.so   the scaled Mixtral and Qwen3 layers, routing
#   qwen3_30b_a3b_small.so  included, for the sanitizer
#   layers.json             the configurations
#   package/                fused_moe's libraries through the Python
#                           package, for bench/gpu_package_check.py
# Output: ${1:-build/gpu-layers}.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
out=${1:-$build_dir/gpu-layers}
cuda=${CUDA_HOME:-/usr/local/cuda}
token_counts=${MOE_TOKEN_COUNTS:-"1 16 64 256 1024 4096"}
# Extra moe-compile flags, e.g. "--block-n=128 --stages=4" for a variant.
compile_flags=${MOE_COMPILE_FLAGS:-}
# MOE_BLOCK_SHAPES="mixtral_8x7b qwen3_30b_a3b": only these full-size expert
# blocks (a variant for gpu_moe_suite.py bench --also), no whole layers,
# scaled layers or package.
block_shapes=${MOE_BLOCK_SHAPES:-}
mkdir -p "$out/src"
PYTHONPATH="$repo_root/python" python3 -m moe_compiler.configs \
  --write-gpu-blocks "$out/src"
cp "$out/src/layers.json" "$out/"

build_layer() { # program name num_tokens
  "$build_dir/bin/moe-compile" "$1" -o "$out/src" --name "$2" \
    --num-tokens "$3" --ptx "$out/src/$2.ptx" \
    --cubin "$out/$2.cubin" $compile_flags
  c++ -O2 -std=c++17 -shared -fPIC "$out/src/$2.cpp" \
    "$repo_root/runtime/lib/Runtime.cpp" \
    "$repo_root/runtime/lib/Collectives.cpp" -I "$out/src" \
    -I "$repo_root/runtime/include" -I "$cuda/include" \
    -L "$cuda/lib64/stubs" -lcuda -o "$out/$2.so"
}
if [[ -n "$block_shapes" ]]; then
  for shape in $block_shapes; do
    for m in $token_counts; do
      build_layer "$out/src/${shape}_block.mlir" "${shape}_block_m$m" "$m" &
    done
    wait
  done
  echo "gpu-layers: $out (blocks of $block_shapes)"
  exit 0
fi
for program in "$out"/src/*.mlir; do
  layer=$(basename "$program" .mlir)
  [[ "$layer" == *_block ]] && continue
  for m in 1 256 4096; do
    build_layer "$program" "${layer}_m$m" "$m" &
  done
  wait
done
build_layer "$repo_root/examples/scaled/mixtral_8x7b.mlir" mixtral_8x7b_small 64
build_layer "$repo_root/examples/scaled/qwen3_30b_a3b.mlir" qwen3_30b_a3b_small 64
for program in "$out"/src/*_block.mlir; do
  layer=$(basename "$program" .mlir)
  if [[ "$layer" == *_small_block ]]; then
    build_layer "$program" "$layer" 64
    continue
  fi
  for m in $token_counts; do
    build_layer "$program" "${layer}_m$m" "$m" &
  done
  wait
done
MOE_RUNTIME_INCLUDE="$repo_root/runtime/include" MOE_RUNTIME_LIB="$build_dir/runtime" \
  python3 "$repo_root/bench/gpu_package_check.py" prepare "$out/package" \
  --moe-compile "$build_dir/bin/moe-compile" >/dev/null
echo "gpu-layers: $out"
