#!/usr/bin/env bash
# Builds the data moe-runtime-test needs on a GPU machine, with this
# machine's moe-opt and LLVM tools: scale.ptx (the kernel, sm_90a PTX) and
# libscale_layer.so (host code lowered by MLIR, cubin embedded, calling the
# runtime's mgpu* entry points). Output: ${1:-build/gpu-test-data}.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
out=${1:-$build_dir/gpu-test-data}
llvm_bin=/usr/lib/llvm-22/bin
mkdir -p "$out"
source_file="$repo_root/runtime/test/scale.mlir"
target="cubin-chip=sm_90a cubin-features=+ptx80"

"$build_dir/bin/moe-opt" "$source_file" \
  --gpu-lower-to-nvvm-pipeline="$target cubin-format=isa" -o "$out/scale.isa.mlir"
python3 - "$out/scale.isa.mlir" "$out/scale.ptx" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
match = re.search(r'gpu\.binary @kernels.*?assembly = "((?:[^"\\]|\\.)*)"', text)
if not match:
    sys.exit("gpu-test-data: no PTX in the lowered module")
raw = match.group(1)
ptx = re.sub(r'\\([0-9A-Fa-f]{2})', lambda m: chr(int(m.group(1), 16)), raw).replace('\\\\', '\\').replace('\\"', '"')
open(sys.argv[2], 'w').write(ptx)
PY
"$build_dir/bin/moe-opt" "$source_file" \
  --gpu-lower-to-nvvm-pipeline="$target cubin-format=bin" -o "$out/scale.bin.mlir"
"$llvm_bin/mlir-translate" --mlir-to-llvmir "$out/scale.bin.mlir" -o "$out/scale_layer.ll"
"$llvm_bin/llc" -O2 -filetype=obj -relocation-model=pic "$out/scale_layer.ll" -o "$out/scale_layer.o"
c++ -shared "$out/scale_layer.o" -o "$out/libscale_layer.so"
grep -q ".target sm_90a" "$out/scale.ptx"
echo "gpu-test-data: $out/scale.ptx $out/libscale_layer.so"
