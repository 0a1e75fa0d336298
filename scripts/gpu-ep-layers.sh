#!/usr/bin/env bash
# Builds, on this machine, the expert-parallel rank programs that
# bench/gpu_ep_check.py runs on the GPU machine: for the scaled Mixtral and
# Qwen3 layers, the single-device layer and the program of one rank of R
# (moe-opt --moe-expert-parallel, then moe-compile), with the contiguous
# placement and with a plan that replicates experts; then the cases' inputs
# and moe-run's CPU output on them (scripts/ep_cases.py). Writes OUT/*.so,
# OUT/data and OUT/ep.json; carry OUT to the device.
#
#   scripts/gpu-ep-layers.sh OUT
set -euo pipefail
out=${1:?usage: gpu-ep-layers.sh OUT}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
cuda=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$out/src"

build_library() { # program name
  "$build_dir/bin/moe-compile" "$1" -o "$out/src" --name "$2" --num-tokens 64
  c++ -O2 -std=c++17 -shared -fPIC "$out/src/$2.cpp" \
    "$repo_root/runtime/lib/Runtime.cpp" \
    "$repo_root/runtime/lib/Collectives.cpp" -I "$out/src" \
    -I "$repo_root/runtime/include" -I "$cuda/include" \
    -L "$cuda/lib64/stubs" -lcuda -o "$out/$2.so"
}

# rank_program shape ranks placement name
rank_program() {
  "$build_dir/bin/moe-opt" "$repo_root/examples/scaled/$1.mlir" \
    --moe-expert-parallel="ranks=$2 placement=$3" -o "$out/src/$4.mlir"
  build_library "$out/src/$4.mlir" "$4"
}

cat > "$out/src/mixtral_replicated.json" <<'EOF'
{"ranks": 2, "slots": [[0, 1, 2, 3, 4], [5, 6, 7, 0, 3]]}
EOF
cases=()
for shape in mixtral_8x7b qwen3_30b_a3b; do
  build_library "$repo_root/examples/scaled/$shape.mlir" "${shape}_single"
  case $shape in
    mixtral_8x7b) ranks="1 2 4" ;;
    *) ranks="1 4 8" ;;
  esac
  for r in $ranks; do
    rank_program "$shape" "$r" contiguous "${shape}_ep$r" &
  done
  wait
  for r in $ranks; do cases+=("$shape ${shape}_ep$r $r contiguous"); done
done
rank_program mixtral_8x7b 2 "$out/src/mixtral_replicated.json" mixtral_8x7b_ep2_replicated
cases+=("mixtral_8x7b mixtral_8x7b_ep2_replicated 2 $out/src/mixtral_replicated.json")

python3 "$repo_root/scripts/ep_cases.py" "$out" "$build_dir/bin/moe-run" "${cases[@]}"
rm -rf "$out/src"
echo "gpu-ep-layers: $out"
