#!/usr/bin/env bash
set -u
export PYTHONUNBUFFERED=1
for run in 1 2; do
  timeout 120 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/s32 --also build/dev/s64 --also build/dev/s128 --shapes deepseek_v3_shared --tokens 64,256 --ours-only 2>&1 | tee -a $OUT/shared-heights.log
done
timeout 120 python3 bench/gpu_shared_expert_bench.py build/dev/new --tokens 64,256 --layers-only deepseek_v3_shared 2>&1 | tee -a $OUT/shared-heights.log
