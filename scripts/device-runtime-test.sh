#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool), which has CMake, a C++
# compiler and the CUDA toolkit but no LLVM/MLIR: builds the MLIR-free
# runtime from source and runs its test, plain and under compute-sanitizer.
# Needs build/gpu-test-data from scripts/gpu-test-data.sh (carry it).
set -uo pipefail
data=${1:-build/gpu-test-data}
work=$(mktemp -d)
cmake -S runtime -B "$work" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work" -j 8 >/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$work/moe-runtime-test" "$data/scale.ptx" "$data/libscale_layer.so"
"$work/moe-wgmma-test" "$data/tma_wgmma.ptx" mn-major
"$work/moe-wgmma-test" "$data/tma_wgmma_kmajor.ptx" k-major
"$work/moe-wgmma-test" "$data/gather_wgmma.ptx" gather
"$work/moe-grouped-gemm-test" "$data/grouped_gemm.ptx"
"$work/moe-grouped-gemm-test" "$data/expert_matmul.ptx" expert_matmul
"$work/moe-grouped-gemm-test" "$data/expert_matmul_silu.ptx" expert_matmul silu
# The three API errors the test provokes on purpose (junk image, missing
# kernel, oversized shared memory) are expected in the sanitizer's count.
compute-sanitizer --tool memcheck "$work/moe-runtime-test" "$data/scale.ptx" \
  "$data/libscale_layer.so" 2>&1 | grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-wgmma-test" "$data/tma_wgmma.ptx" 2>&1 |
  grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool racecheck "$work/moe-wgmma-test" "$data/tma_wgmma.ptx" 2>&1 |
  grep -E "hazard|RACECHECK SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-wgmma-test" "$data/tma_wgmma_kmajor.ptx" \
  k-major 2>&1 | grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool racecheck "$work/moe-wgmma-test" "$data/tma_wgmma_kmajor.ptx" \
  k-major 2>&1 | grep -E "hazard|RACECHECK SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-wgmma-test" "$data/gather_wgmma.ptx" \
  gather 2>&1 | grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool racecheck "$work/moe-wgmma-test" "$data/gather_wgmma.ptx" \
  gather 2>&1 | grep -E "hazard|RACECHECK SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-grouped-gemm-test" \
  "$data/grouped_gemm.ptx" 2>&1 | grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool racecheck "$work/moe-grouped-gemm-test" \
  "$data/grouped_gemm.ptx" 2>&1 | grep -E "hazard|RACECHECK SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-grouped-gemm-test" \
  "$data/expert_matmul.ptx" expert_matmul 2>&1 | grep -E "Invalid|ERROR SUMMARY"
compute-sanitizer --tool racecheck "$work/moe-grouped-gemm-test" \
  "$data/expert_matmul.ptx" expert_matmul 2>&1 | grep -E "hazard|RACECHECK SUMMARY"
compute-sanitizer --tool memcheck "$work/moe-grouped-gemm-test" \
  "$data/expert_matmul_silu.ptx" expert_matmul silu 2>&1 | grep -E "Invalid|ERROR SUMMARY"
