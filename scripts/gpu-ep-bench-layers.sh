#!/usr/bin/env bash
# Builds, on this machine, the full-size layers that bench/gpu_ep_bench.py
# times on a GPU machine: for each example shape, rank count R and token
# count M per rank, the rank program of moe-expert-parallel (contiguous
# placement) tuned for M tokens, and the single-device layer tuned for R·M.
# Writes OUT/*.so and OUT/ep_bench.json; carry OUT to the device.
#
#   scripts/gpu-ep-bench-layers.sh OUT
#   MOE_EP_RANKS="1 2 4 8" MOE_EP_TOKENS="1 256 4096" \
#     MOE_EP_SHAPES="mixtral_8x7b qwen3_30b_a3b deepseek_v3" (the defaults)
set -euo pipefail
out=${1:?usage: gpu-ep-bench-layers.sh OUT}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
cuda=${CUDA_HOME:-/usr/local/cuda}
ranks_list=${MOE_EP_RANKS:-"1 2 4 8"}
tokens_list=${MOE_EP_TOKENS:-"1 256 4096"}
shapes=${MOE_EP_SHAPES:-"mixtral_8x7b qwen3_30b_a3b deepseek_v3"}
mkdir -p "$out/src"

build_library() { # program name num_tokens
  [[ -f "$out/$2.so" ]] && return 0
  "$build_dir/bin/moe-compile" "$1" -o "$out/src" --name "$2" --num-tokens "$3"
  c++ -O2 -std=c++17 -shared -fPIC "$out/src/$2.cpp" \
    "$repo_root/runtime/lib/Runtime.cpp" \
    "$repo_root/runtime/lib/Collectives.cpp" -I "$out/src" \
    -I "$repo_root/runtime/include" -I "$cuda/include" \
    -L "$cuda/lib64/stubs" -lcuda -o "$out/$2.so"
  strip "$out/$2.so"
}

cases=()
for shape in $shapes; do
  for r in $ranks_list; do
    "$build_dir/bin/moe-opt" "$repo_root/examples/$shape.mlir" \
      --moe-expert-parallel="ranks=$r placement=contiguous" \
      -o "$out/src/${shape}_ep$r.mlir"
    for m in $tokens_list; do
      build_library "$out/src/${shape}_ep$r.mlir" "${shape}_ep${r}_m$m" "$m" &
      build_library "$repo_root/examples/$shape.mlir" "${shape}_m$((r * m))" \
        "$((r * m))" &
      wait
      cases+=("{\"shape\": \"$shape\", \"ranks\": $r, \"tokens_per_rank\": $m, \"rank_program\": \"${shape}_ep${r}_m$m\", \"single\": \"${shape}_m$((r * m))\"}")
    done
  done
done
PYTHONPATH="$repo_root/python" python3 - "$out" "${cases[@]}" <<'EOF'
import dataclasses, json, sys
from moe_compiler import configs
out, cases = sys.argv[1], [json.loads(case) for case in sys.argv[2:]]
layers = {c.name: dataclasses.asdict(c) for c in configs.EXAMPLE_LAYERS}
with open(f"{out}/ep_bench.json", "w") as manifest:
    json.dump({"layers": layers, "cases": cases}, manifest, indent=1)
EOF
rm -rf "$out/src"
echo "gpu-ep-bench-layers: $out"
