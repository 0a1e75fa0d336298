#!/usr/bin/env bash
# Builds the data the GPU runtime tests need on a GPU machine, with this
# machine's moe-opt and LLVM tools (the GPU machine has no LLVM):
#   scale.ptx          buf[i] *= 2, sm_90a PTX
#   tma_wgmma.ptx      one TMA + wgmma bf16 tile, B MN-major, sm_90a PTX
#   tma_wgmma_kmajor.ptx  the same with B stored [N, K] (K-major), nvvm wgmma
#   gather_wgmma.ptx   K-major B, A rows gathered by index with cp.async
#   grouped_gemm.ptx   the prototype grouped GEMM (aligned schedule, K = 512)
#   expert_matmul.ptx  the same kernel generated from moe IR (moe-emit-gpu-kernels)
#   expert_matmul_silu.ptx  generated, with the silu_and_mul epilogue
#   libscale_layer.so  host code lowered by MLIR with the cubin embedded,
#                      calling the runtime's mgpu* entry points
# Output: ${1:-build/gpu-test-data}.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
out=${1:-$build_dir/gpu-test-data}
llvm_bin=/usr/lib/llvm-22/bin
mkdir -p "$out"
# Absolute: some steps run from runtime/test.
out=$(cd "$out" && pwd)
target="cubin-chip=sm_90a cubin-features=+ptx80"

python3 "$repo_root/runtime/test/gen_wgmma_kmajor.py" > "$out/tma_wgmma_kmajor.mlir"
python3 "$repo_root/runtime/test/gen_wgmma_kmajor.py" --gather > "$out/gather_wgmma.mlir"
python3 "$repo_root/runtime/test/gen_grouped_gemm.py" 512 256 2 > "$out/grouped_gemm.mlir"
for kernel in scale tma_wgmma "$out/tma_wgmma_kmajor" "$out/gather_wgmma" \
              "$out/grouped_gemm"; do
  source="$repo_root/runtime/test/$kernel.mlir"
  [[ "$kernel" == /* ]] && source="$kernel.mlir" && kernel=$(basename "$kernel")
  "$build_dir/bin/moe-opt" "$source" \
    --gpu-lower-to-nvvm-pipeline="$target cubin-format=isa" \
    -o "$out/$kernel.isa.mlir"
  python3 "$repo_root/scripts/extract-ptx.py" "$out/$kernel.isa.mlir" "$out/$kernel.ptx"
done
# The grouped GEMM kernels moe-emit-gpu-kernels generates from moe IR.
for program in expert_matmul expert_matmul_silu; do
  "$build_dir/bin/moe-opt" "$repo_root/runtime/test/$program.mlir" \
    --moe-gpu-configure --moe-emit-gpu-kernels -o "$out/$program.kernels.mlir"
  "$build_dir/bin/moe-opt" "$out/$program.kernels.mlir" \
    --gpu-lower-to-nvvm-pipeline="$target cubin-format=isa" \
    -o "$out/$program.isa.mlir"
  python3 "$repo_root/scripts/extract-ptx.py" "$out/$program.isa.mlir" \
    "$out/$program.ptx"
done
grep -q ".target sm_90a" "$out/scale.ptx"
grep -q "wgmma.mma_async" "$out/tma_wgmma.ptx"
grep -q "cp.async.bulk.tensor" "$out/tma_wgmma.ptx"

"$build_dir/bin/moe-opt" "$repo_root/runtime/test/scale.mlir" \
  --gpu-lower-to-nvvm-pipeline="$target cubin-format=bin" -o "$out/scale.bin.mlir"
"$llvm_bin/mlir-translate" --mlir-to-llvmir "$out/scale.bin.mlir" -o "$out/scale_layer.ll"
"$llvm_bin/llc" -O2 -filetype=obj -relocation-model=pic "$out/scale_layer.ll" \
  -o "$out/scale_layer.o"
c++ -shared "$out/scale_layer.o" -o "$out/libscale_layer.so"
echo "gpu-test-data: $out"
