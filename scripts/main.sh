#!/usr/bin/env bash
# The main job: build moe, check that the full-size example layers parse and
# verify, then run each scaled example layer on the CPU, as written and fused,
# with random inputs, and report its error against the float64 reference and
# its median time.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo_root/scripts/build.sh" >/dev/null
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
num_tokens=${MOE_NUM_TOKENS:-64}

for example in "$repo_root"/examples/*.mlir; do
  "$build_dir/bin/moe-opt" "$example" >/dev/null
  echo "parsed and verified: examples/$(basename "$example")"
done
for example in "$repo_root"/examples/scaled/*.mlir; do
  name=$(basename "$example" .mlir)
  echo "== examples/scaled/$name.mlir, M=$num_tokens, on the CPU"
  "$build_dir/bin/moe-run" "$example" --entry="$name" --target=cpu --random \
    --seed="$RANDOM" --num-tokens="$num_tokens" --repeat=5 --check
  echo "-- the same layer fused, tiled and aligned (moe-optimize)"
  "$build_dir/bin/moe-run" "$example" --entry="$name" --target=cpu --random \
    --seed="$RANDOM" --num-tokens="$num_tokens" --repeat=5 --check --fuse
done
