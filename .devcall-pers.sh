#!/usr/bin/env bash
set -u
export PYTHONUNBUFFERED=1
for run in 1 2; do
  timeout 100 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/pers --also build/dev/p1 --also build/dev/p2 --shapes qwen3_30b_a3b --tokens 1024 --ours-only 2>&1 | tee -a $OUT/pers.log
  timeout 150 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/pers --shapes qwen3_30b_a3b,deepseek_v3 --tokens 2048 --ours-only 2>&1 | tee -a $OUT/pers.log
done
