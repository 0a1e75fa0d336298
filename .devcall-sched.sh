#!/usr/bin/env bash
set -u
export PYTHONUNBUFFERED=1
for run in 1 2; do
  timeout 200 python3 bench/gpu_moe_suite.py bench build/dev/new --also build/dev/pers --also build/dev/ws --tokens 1024,4096 --ours-only 2>&1 | tee -a $OUT/sched.log
done
