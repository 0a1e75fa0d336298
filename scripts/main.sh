#!/usr/bin/env bash
# The main job: build moe, check that the full-size example layers (bf16 and
# quantized) parse and verify, compile each for Hopper (moe-compile: sm_90a cubin + host source,
# with ptxas from the CUDA toolkit when it is there), then run each scaled
# example layer on the CPU, as written and fused, with random inputs, and
# report its error against the float64 reference and its median time.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/build.sh" >/dev/null
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
num_tokens=${MOE_NUM_TOKENS:-64}

for example in "$repo_root"/examples/*.mlir "$repo_root"/examples/quantized/*.mlir; do
  "$build_dir/bin/moe-opt" "$example" >/dev/null
  echo "parsed and verified: ${example#"$repo_root"/}"
done
cuda=${CUDA_HOME:-/usr/local/cuda}
if [[ -x "$cuda/bin/ptxas" ]]; then
  gpu_out="$build_dir/main-gpu"
  for example in "$repo_root"/examples/*.mlir "$repo_root"/examples/quantized/*.mlir; do
    name=$(basename "$example" .mlir)
    CUDA_HOME="$cuda" "$build_dir/bin/moe-compile" "$example" -o "$gpu_out" \
      --num-tokens 256 --ptx "$gpu_out/$name.ptx"
    echo "compiled for sm_90a: ${example#"$repo_root"/} -> $(grep -c '^.visible .entry' \
      "$gpu_out/$name.ptx") kernels, $(grep -o 'wgmma.mma_async[a-z0-9._]*' \
      "$gpu_out/$name.ptx" | sort -u | tr '\n' ' ')host code $gpu_out/$name.cpp"
  done
else
  echo "no ptxas under $cuda: skipping the GPU compilation"
fi
for example in "$repo_root"/examples/scaled/*.mlir "$repo_root"/examples/quantized/scaled/*.mlir; do
  name=$(basename "$example" .mlir)
  echo "== ${example#"$repo_root"/}, M=$num_tokens, on the CPU"
  "$build_dir/bin/moe-run" "$example" --entry="$name" --target=cpu --random \
    --seed="$RANDOM" --num-tokens="$num_tokens" --repeat=5 --check
  echo "-- the same layer fused, tiled and aligned (moe-optimize)"
  "$build_dir/bin/moe-run" "$example" --entry="$name" --target=cpu --random \
    --seed="$RANDOM" --num-tokens="$num_tokens" --repeat=5 --check --fuse
done
