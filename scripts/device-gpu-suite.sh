#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool) with build/gpu-layers
# carried (scripts/gpu-layers.sh). One part per device call: each part is
# meant to end inside one 10-minute call; check, bench and all run the
# parts in sequence for a machine with more time.
#   bash scripts/device-gpu-suite.sh PART|check|bench|all [LAYERS_DIR]
#
# part                what it runs                                          expected
# sanitize            builds runtime/'s tests (cmake), smoke runs of the     2-4 min (est.)
#                     small bf16 blocks and the small Mixtral layer, and
#                     compute-sanitizer memcheck + racecheck over five
# sanitize-quantized  compute-sanitizer memcheck + racecheck over the        2-5 min (est.)
#                     scaled w8a8 and weight-only blocks
#                     (gpu_moe_suite.py smoke-quantized)
# check-bf16          the bf16 expert blocks (7 layers x 8 routings, and     10-20 s
#                     the blocks built for M = 16/64/1024 at their M) and
#                     the whole layers with routing (7 x M = 1/256/4096)
#                     against the float64 reference
# check-w8a8          the w8a8 blocks (4 x 6 cases) against the oracle      < 4.5 min
# check-weight-only   the weight-only blocks (7 x 6 cases, two of them with  6 min (est.)
#                     prepacked int4 codes) against the oracle
# check-package       the Python front end (bench/gpu_package_check.py):     8 s
#                     gpu.fused_moe on Mixtral and Qwen3 at M = 1/7/256/4096
#                     against float64, CUDA-graph replay, two threads on
#                     two streams (LAYERS_DIR/package, from gpu-layers.sh)
# check-ep            expert-parallel rank programs (bench/gpu_ep_check.py   ~1 min
#                     over EP_LAYERS, default build/gpu-ep-layers, from
#                     scripts/gpu-ep-layers.sh): R = 1 through NCCL with a
#                     graph replay, R = 2/4/8 over an emulated group, against
#                     moe-run's CPU output, the single-device layer and
#                     float64; memcheck over all, racecheck over R = 1, 2
# bench-bf16          gpu_moe_suite.py bench, the three shapes x 6 M in one  65 s
#                     process: ours, Triton fused_moe (48-config sweep per
#                     row), torch._grouped_mm, dense, naive, floor
# bench-quantized     gpu_moe_suite.py bench-quantized (w8a8 and weight-only 2-4 min (est.)
#                     blocks against the bf16 layer)
# check = sanitize sanitize-quantized check-bf16 check-w8a8 check-weight-only
#         check-package check-ep
# bench-fp8-triton    the w8a8 blocks (bench-quantized --kinds w8a8) with     ~7 min
#                     the fp8 Triton fused_moe baseline
#                     (bench/triton_fused_moe_fp8.py, 48-config sweep) beside
#                     the fp8 blocks with block and per-token x per-channel
#                     scales; its ~190 kernels compile on first use
# bench = bench-bf16 bench-quantized;  all = check bench
# bench-fp8-triton: ~7 min on an H200 (2026-12-05, one device call, the
# Triton kernels compiled on first use in it).
# bench-bf16: measured on an H200 (2026-12-01) without our layers
# (--baselines-only): 51 s, 42 s of it the Triton sweeps, their kernels
# from Triton's cache; compiling them (in parallel, on a fresh machine)
# took 7 s more. Measured on an H200 (2026-12-01) with our layers: bench-bf16
# 61-65 s (one extra build with --also: +6 s); check-bf16 6-8 s;
# check-weight-only 245 s (five blocks then); the bf16 blocks, the w8a8 blocks and part of the
# weight-only ones took 300 s together (so check-w8a8 < 4.5 min); memcheck +
# racecheck of four scaled bf16 blocks and memcheck of the eight scaled
# quantized ones, runtime build included, 35 s. (est.): estimated from the
# work the part does, not yet timed on its own; each part prints its wall
# time at its end.
# Logs and JSON go to $OUT (or /tmp): <part>.log, sanitizer.log,
# bench.json, bench-quantized.json.
set -uo pipefail
mode=${1:-all}
layers=${2:-build/gpu-layers}
out=${OUT:-/tmp}
status=0
export PYTHONUNBUFFERED=1

case "$mode" in
  check) parts="sanitize sanitize-quantized check-bf16 check-w8a8 check-weight-only check-package check-ep" ;;
  bench) parts="bench-bf16 bench-quantized" ;;
  all) parts="sanitize sanitize-quantized check-bf16 check-w8a8 check-weight-only check-package check-ep bench-bf16 bench-quantized" ;;
  sanitize|sanitize-quantized|check-bf16|check-w8a8|check-weight-only|check-package|check-ep|bench-bf16|bench-quantized|bench-fp8-triton)
    parts=$mode ;;
  *) echo "device-gpu-suite: unknown part '$mode'" >&2; exit 2 ;;
esac

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader

# Runs a command under both compute-sanitizer tools, keeps the summary lines
# in sanitizer.log, and fails on an error, a hazard or a FAIL.
sanitized() {
  local tool log
  for tool in memcheck racecheck; do
    log=$(compute-sanitizer --tool $tool "$@" 2>&1 |
      grep -E "FAIL|ok:|Invalid|hazard|ERROR SUMMARY|RACECHECK SUMMARY")
    echo "$log" | tee -a "$out/sanitizer.log"
    if echo "$log" | grep -qE "FAIL|(ERROR|RACECHECK) SUMMARY: [1-9]"; then
      return 1
    fi
  done
}

# compute-sanitizer TOOL over bench/gpu_ep_check.py DIR [ARGS]; NCCL's own
# initialization probes report API errors, so only memory errors count.
sanitized_ep() {
  local tool=$1 log
  shift
  log=$(compute-sanitizer --tool "$tool" --report-api-errors no \
    python3 bench/gpu_ep_check.py "$@" 2>&1 |
    grep -E "FAIL|passed|ERROR SUMMARY|RACECHECK SUMMARY")
  echo "$log" | tee -a "$out/sanitizer.log"
  ! echo "$log" | grep -qE "FAIL|(ERROR|RACECHECK) SUMMARY: [1-9]"
}

run_part() {
  local part=$1 work
  echo "== $part"
  case "$part" in
    sanitize)
      work=$(mktemp -d)
      cmake -S runtime -B "$work" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$work" -j 8 >/dev/null || return 1
      local smoke="$work/moe-layer-smoke" failed=0
      "$smoke" "$layers/mixtral_8x7b_small_block.so" mixtral_8x7b_small_block 8 2 256 128 100 || failed=1
      "$smoke" "$layers/qwen3_30b_a3b_small_block.so" qwen3_30b_a3b_small_block 128 8 256 128 37 || failed=1
      "$smoke" "$layers/gpt_oss_120b_small_block.so" gpt_oss_120b_small_block 128 4 256 128 1 || failed=1
      "$smoke" "$layers/mixtral_8x7b_small.so" mixtral_8x7b_small 8 2 256 128 77 routed || failed=1
      sanitized "$smoke" "$layers/mixtral_8x7b_small_block.so" mixtral_8x7b_small_block \
        8 2 256 128 100 || failed=1
      sanitized "$smoke" "$layers/deepseek_v3_small_block.so" deepseek_v3_small_block \
        256 8 256 128 33 || failed=1
      sanitized "$smoke" "$layers/mixtral_8x7b_small.so" mixtral_8x7b_small \
        8 2 256 128 77 routed || failed=1
      sanitized "$smoke" "$layers/qwen3_30b_a3b_small.so" qwen3_30b_a3b_small \
        128 8 256 128 77 routed || failed=1
      # 300 tokens take the router's many-token tiling (from 136 on).
      sanitized "$smoke" "$layers/qwen3_30b_a3b_small.so" qwen3_30b_a3b_small \
        128 8 256 128 300 routed || failed=1
      return $failed ;;
    sanitize-quantized)
      sanitized python3 bench/gpu_moe_suite.py smoke-quantized "$layers" ;;
    check-bf16)
      python3 bench/gpu_moe_suite.py check "$layers" --kinds none ;;
    check-w8a8)
      python3 bench/gpu_moe_suite.py check-quantized "$layers" --kinds w8a8 ;;
    check-weight-only)
      python3 bench/gpu_moe_suite.py check-quantized "$layers" --kinds weight_only ;;
    check-package)
      python3 bench/gpu_package_check.py check "$layers/package" ;;
    check-ep)
      local ep=${EP_LAYERS:-build/gpu-ep-layers}
      python3 bench/gpu_ep_check.py "$ep" &&
        sanitized_ep memcheck "$ep" && sanitized_ep racecheck "$ep" --ranks 1,2 ;;
    bench-bf16)
      python3 bench/gpu_moe_suite.py bench "$layers" --out "$out/bench.json" ;;
    bench-quantized)
      python3 bench/gpu_moe_suite.py bench-quantized "$layers" --out "$out/bench-quantized.json" ;;
    bench-fp8-triton)
      python3 bench/gpu_moe_suite.py bench-quantized "$layers" --kinds w8a8 --triton-fp8 \
        --out "$out/bench-fp8-triton.json" ;;
  esac
}

for part in $parts; do
  start=$SECONDS
  run_part "$part" 2>&1 | tee "$out/$part.log"
  result=${PIPESTATUS[0]}
  echo "== $part: $([[ $result == 0 ]] && echo ok || echo FAILED) in $((SECONDS - start)) s" |
    tee -a "$out/$part.log"
  [[ $result == 0 ]] || status=1
done
exit $status
