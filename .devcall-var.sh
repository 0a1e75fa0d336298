#!/usr/bin/env bash
set -u
export PYTHONUNBUFFERED=1
for run in 1 2; do
  timeout 120 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/var2 --also build/dev/var3 --shapes mixtral_8x7b,deepseek_v3 --tokens 1,16,64,256 --ours-only 2>&1 | tee -a $OUT/var.log
  timeout 60 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/var4 --shapes qwen3_30b_a3b --tokens 1024 --ours-only 2>&1 | tee -a $OUT/var.log
done
