#!/usr/bin/env bash
# One device call: the benches of the eighth session (see docs/gpu-benchmark.md).
set -u
export PYTHONUNBUFFERED=1
L=build/dev/new P=build/dev/prev V=build/dev/var
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee $OUT/bench.log
start=$SECONDS
timeout 200 python3 bench/gpu_moe_suite.py bench $L --also $P --out $OUT/bench.json >> $OUT/bench.log 2>&1
echo "bench: $((SECONDS-start)) s rc $?" | tee -a $OUT/bench.log
timeout 60 python3 bench/gpu_moe_suite.py bench $L --also $P --shapes mixtral_8x7b --tokens 512,2048 --ours-only > $OUT/extra.log 2>&1
timeout 60 python3 bench/gpu_moe_suite.py bench $L --also $V --shapes qwen3_30b_a3b --tokens 1,16 --ours-only >> $OUT/extra.log 2>&1
timeout 60 python3 bench/gpu_moe_suite.py bench $L --also $V --shapes deepseek_v3_shared --tokens 16,64,256 --ours-only >> $OUT/extra.log 2>&1
echo "extra: $((SECONDS-start)) s" | tee -a $OUT/extra.log
timeout 150 python3 bench/gpu_shared_expert_bench.py $L --tokens 1,16,64,256,1024,4096 > $OUT/shared.log 2>&1
echo "shared: $((SECONDS-start)) s rc $?" | tee -a $OUT/shared.log
