#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool) with build/gpu-layers
# carried (scripts/gpu-layers.sh): builds the runtime's tests, runs the
# compiled small layers (bf16 and quantized) under compute-sanitizer, the
# correctness suite on the full-size layers (bf16, w8a8, weight-only), then
# (with "bench") the benchmarks.
#   bash scripts/device-gpu-suite.sh [check|bench|all] [LAYERS_DIR]
set -uo pipefail
mode=${1:-all}
layers=${2:-build/gpu-layers}
out=${OUT:-/tmp}
status=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
if [[ "$mode" == check || "$mode" == all ]]; then
  work=$(mktemp -d)
  cmake -S runtime -B "$work" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$work" -j 8 >/dev/null || exit 1
  smoke() { # layer E k M
    "$work/moe-layer-smoke" "$layers/$1.so" "$1" "$2" "$3" 256 128 "$4"
  }
  smoke mixtral_8x7b_small_block 8 2 100 || status=1
  smoke qwen3_30b_a3b_small_block 128 8 37 || status=1
  smoke gpt_oss_120b_small_block 128 4 1 || status=1
  "$work/moe-layer-smoke" "$layers/mixtral_8x7b_small.so" mixtral_8x7b_small \
    8 2 256 128 77 routed || status=1
  for tool in memcheck racecheck; do {
    compute-sanitizer --tool $tool "$work/moe-layer-smoke" \
      "$layers/mixtral_8x7b_small_block.so" mixtral_8x7b_small_block 8 2 256 128 100 \
      2>&1 | grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY"
    compute-sanitizer --tool $tool "$work/moe-layer-smoke" \
      "$layers/deepseek_v3_small_block.so" deepseek_v3_small_block 256 8 256 128 33 \
      2>&1 | grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY"
    compute-sanitizer --tool $tool "$work/moe-layer-smoke" \
      "$layers/mixtral_8x7b_small.so" mixtral_8x7b_small 8 2 256 128 77 routed \
      2>&1 | grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY"
  } | tee -a "$out/sanitizer.log"; done
  # The scaled quantized blocks (w8a8 and weight-only) under both tools.
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool python3 bench/gpu_moe_suite.py smoke-quantized "$layers" \
      2>&1 | grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY" |
      tee -a "$out/sanitizer.log"
  done
  python3 bench/gpu_moe_suite.py check "$layers" 2>&1 | tee "$out/check.log" || status=1
fi
if [[ "$mode" == bench || "$mode" == all ]]; then
  python3 bench/gpu_moe_suite.py bench "$layers" --out "$out/bench.json" \
    2>&1 | tee "$out/bench.log" || status=1
  python3 bench/gpu_moe_suite.py bench-quantized "$layers" --out "$out/bench-quantized.json" \
    2>&1 | tee "$out/bench-quantized.log" || status=1
fi
exit $status
