#!/usr/bin/env bash
# The kernel experiments that are built but not yet measured, each as
# moe-compile flags, and the device calls that measure them. One list, read
# by both sides:
#
#   bash scripts/gpu-experiments.sh build [DIR]   here (needs moe-compile):
#       DIR/base and one folder per experiment, of .so files only (carry
#       DIR to the GPU machine); DIR defaults to build/gpu-experiments
#   bash scripts/gpu-experiments.sh PART [DIR]    on the GPU machine
#
# part        what it runs                                          expected
# bench-NAME  gpu_moe_suite.py bench DIR/base --also DIR/NAME at the  1-2 min
#             experiment's shapes and token counts (graph replays of
#             the builds in turn, the variant's output compared with
#             the default's), JSON to $OUT/NAME.json
# bench       every bench-NAME in turn                               4-6 min
# sanitize    compute-sanitizer memcheck and racecheck of each       1-2 min
#             experiment's scaled block (H = 256, I = 128), built at
#             a token count where its flags change the configuration,
#             run on fewer tokens than that so that blocks hold
#             padding rows
#
# The predictions are in docs/gpu-benchmark.md (thirty-third to
# thirty-fifth sessions), written before any run.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# name | moe-compile flags | full-size shapes | token counts
experiments=(
  "tall|--tall-blocks|mixtral_8x7b qwen3_30b_a3b deepseek_v3|512 2048 4096"
  "staged|--staged-epilogue|qwen3_30b_a3b|1024"
  "persistent|--persistent-max-rows=100000|qwen3_30b_a3b|2048 4096"
  "persistent_staged|--persistent-max-rows=100000 --staged-epilogue|qwen3_30b_a3b|2048 4096"
  "input_tma|--input-tma|mixtral_8x7b qwen3_30b_a3b deepseek_v3|1024 4096"
)
# name | moe-compile flags | scaled block | built for M | E k H I | run at M
sanitized_blocks=(
  "tall|--tall-blocks|deepseek_v3|4096|256 8 256 128|1000"
  "tall|--tall-blocks|mixtral_8x7b|512|8 2 256 128|300"
  "staged|--staged-epilogue|qwen3_30b_a3b|1024|128 8 256 128|1000"
  "persistent_staged|--persistent-max-rows=100000 --staged-epilogue|qwen3_30b_a3b|4096|128 8 256 128|1000"
  "input_tma|--input-tma|qwen3_30b_a3b|4096|128 8 256 128|1000"
  "input_tma|--input-tma|mixtral_8x7b|1024|8 2 256 128|300"
)
base_shapes="mixtral_8x7b qwen3_30b_a3b deepseek_v3"
base_tokens="512 1024 2048 4096"

field() { # record index
  local -a parts
  IFS='|' read -r -a parts <<<"$1"
  echo "${parts[$2]}"
}

build_all() {
  local dir=$1 cuda=${CUDA_HOME:-/usr/local/cuda}
  local build_dir=${MOE_BUILD_DIR:-$repo_root/build}
  MOE_BLOCK_SHAPES="$base_shapes" MOE_TOKEN_COUNTS="$base_tokens" \
    MOE_COMPILE_FLAGS="" bash "$repo_root/scripts/gpu-layers.sh" "$dir/base"
  local record
  for record in "${experiments[@]}"; do
    MOE_BLOCK_SHAPES="$(field "$record" 2)" \
      MOE_TOKEN_COUNTS="$(field "$record" 3)" \
      MOE_COMPILE_FLAGS="$(field "$record" 1)" \
      bash "$repo_root/scripts/gpu-layers.sh" "$dir/$(field "$record" 0)"
  done
  mkdir -p "$dir/sanitize/src"
  PYTHONPATH="$repo_root/python" python3 -m moe_compiler.configs \
    --write-gpu-blocks "$dir/sanitize/src" >/dev/null
  for record in "${sanitized_blocks[@]}"; do
    local shape name
    shape=$(field "$record" 2)
    name="${shape}_small_block_$(field "$record" 0)"
    # shellcheck disable=SC2046
    "$build_dir/bin/moe-compile" "$dir/sanitize/src/${shape}_small_block.mlir" \
      -o "$dir/sanitize/src" --name "$name" --num-tokens "$(field "$record" 3)" \
      $(field "$record" 1)
    c++ -O2 -std=c++17 -shared -fPIC "$dir/sanitize/src/$name.cpp" \
      "$repo_root/runtime/lib/Runtime.cpp" \
      "$repo_root/runtime/lib/Collectives.cpp" -I "$dir/sanitize/src" \
      -I "$repo_root/runtime/include" -I "$cuda/include" \
      -L "$cuda/lib64/stubs" -lcuda -o "$dir/sanitize/$name.so"
  done
  # Only what runs on the GPU machine travels: the libraries and layers.json.
  find "$dir" -name src -type d -prune -exec rm -rf {} +
  find "$dir" -name '*.cubin' -delete
  du -sh "$dir"
}

bench_one() { # record dir out
  local name shapes tokens
  name=$(field "$1" 0)
  shapes=$(field "$1" 2)
  tokens=$(field "$1" 3)
  python3 "$repo_root/bench/gpu_moe_suite.py" bench "$2/base" --also "$2/$name" \
    --shapes "${shapes// /,}" --tokens "${tokens// /,}" --ours-only \
    --out "$3/$name.json"
}

sanitize_all() { # dir out
  local work failed=0 record
  work=$(mktemp -d)
  cmake -S "$repo_root/runtime" -B "$work" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$work" -j 8 >/dev/null || return 1
  for record in "${sanitized_blocks[@]}"; do
    local name tool log
    name="$(field "$record" 2)_small_block_$(field "$record" 0)"
    for tool in memcheck racecheck; do
      # shellcheck disable=SC2046
      log=$(compute-sanitizer --tool $tool "$work/moe-layer-smoke" \
        "$1/sanitize/$name.so" "$name" $(field "$record" 4) \
        "$(field "$record" 5)" 2>&1 |
        grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY")
      echo "$name $tool: $log" | tee -a "$2/sanitizer.log"
      if echo "$log" | grep -qE "FAIL|(ERROR|RACECHECK) SUMMARY: [1-9]" ||
        ! echo "$log" | grep -q "SUMMARY: 0"; then
        failed=1
      fi
    done
  done
  return $failed
}

mode=${1:-}
dir=${2:-${MOE_BUILD_DIR:-$repo_root/build}/gpu-experiments}
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1
case "$mode" in
  build) build_all "$dir" ;;
  bench)
    status=0
    for record in "${experiments[@]}"; do
      bench_one "$record" "$dir" "$out" || status=1
    done
    exit $status ;;
  bench-*)
    for record in "${experiments[@]}"; do
      if [[ "bench-$(field "$record" 0)" == "$mode" ]]; then
        bench_one "$record" "$dir" "$out"
        exit
      fi
    done
    echo "gpu-experiments: no experiment named '${mode#bench-}'" >&2
    exit 2 ;;
  sanitize) sanitize_all "$dir" "$out" ;;
  *)
    echo "usage: gpu-experiments.sh build|bench|bench-NAME|sanitize [DIR]" >&2
    exit 2 ;;
esac
