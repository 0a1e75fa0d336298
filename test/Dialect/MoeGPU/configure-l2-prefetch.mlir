// `l2-prefetch-steps` gives `l2_prefetch_steps` to the matmuls whose kernel
// runs a swapped multistage ring of weight tiles from global memory: bf16
// and w8a8 at decode, by TMA or cp.async; not the 128 x 256 prefill tiles,
// nor weight-only codes decoded into registers.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 l2-prefetch-steps=16" | FileCheck %s --check-prefix=DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 l2-prefetch-steps=8" | FileCheck %s --check-prefix=FP8
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 l2-prefetch-steps=16" | FileCheck %s --check-prefix=PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 l2-prefetch-steps=16" | FileCheck %s --check-prefix=WEIGHT-ONLY
// By default nothing is prefetched.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=DEFAULT
// RUN: not moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-gpu-configure="num-tokens=1 l2-prefetch-steps=33" 2>&1 | FileCheck %s --check-prefix=RANGE

// DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128, l2_prefetch_steps = 16>
// DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async, l2_prefetch_steps = 16>

// FP8: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, {{.*}}swap_ab = true, fast_accumulation = true, fused_align_assignments = 64, l2_prefetch_steps = 8>
// FP8: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, {{.*}}swap_ab = true, fast_accumulation = true, l2_prefetch_steps = 8>

// PREFILL-NOT: l2_prefetch_steps
// PREFILL: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256
// PREFILL-NOT: l2_prefetch_steps

// WEIGHT-ONLY-NOT: l2_prefetch_steps
// WEIGHT-ONLY: weight_load = registers>
// WEIGHT-ONLY-NOT: l2_prefetch_steps

// DEFAULT-NOT: l2_prefetch_steps
// DEFAULT: swap_ab = true
// DEFAULT-NOT: l2_prefetch_steps

// RANGE: error: moe-gpu-configure: l2-prefetch-steps must be in [0, 32], got 33
