// A swapped matmul on the register operand splits K where its expected grid
// is under two blocks per SM (Qwen3-30B-A3B in int4 groups of 32 with zero
// points at M = 1: ~8 slot blocks of 16 rows x 24 (GEMM1) or 32 (GEMM2)
// column tiles), not at M = 2 (~16 slot blocks) or M = 16, in pieces of
// at least 4 K steps:
// - GEMM2, a combine too short for the decode split (K = 768, 12 steps of
//   64), in 3;
// - GEMM1, without a combine (32 steps), in 2 at most: its splits reduce
//   in a cluster.
// `short-split-k` bounds both (2: GEMM2 in 2 as well; 1: no split).
// RUN: moe-opt %s -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=M1
// RUN: moe-opt %s -moe-fuse-experts -moe-tile=num-tokens=2 -moe-gpu-configure=num-tokens=2 | FileCheck %s --check-prefix=UNSPLIT
// RUN: moe-opt %s -moe-fuse-experts -moe-tile=num-tokens=16 -moe-gpu-configure=num-tokens=16 | FileCheck %s --check-prefix=UNSPLIT
// RUN: moe-opt %s -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 short-split-k=2" | FileCheck %s --check-prefix=LIMIT2
// RUN: moe-opt %s -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 short-split-k=1" | FileCheck %s --check-prefix=UNSPLIT
// RUN: not moe-opt %s -moe-gpu-configure=short-split-k=0 2>&1 | FileCheck %s --check-prefix=INVALID
// RUN: not moe-opt %s -moe-gpu-configure=short-split-k=9 2>&1 | FileCheck %s --check-prefix=INVALID9
// M1: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 2, group_m = 1, swap_ab = true, weight_load = registers>
// M1: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 3, group_m = 1, swap_ab = true, weight_load = registers>
// LIMIT2: moe.expert_matmul {{.*}}gather{{.*}}split_k = 2,
// LIMIT2: moe.expert_matmul {{.*}}combine{{.*}}split_k = 2,
// UNSPLIT: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, weight_load = registers>
// UNSPLIT: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, weight_load = registers>
// INVALID: error: moe-gpu-configure: short-split-k must be between 1 (off) and 8, got 0
// INVALID9: error: moe-gpu-configure: short-split-k must be between 1 (off) and 8, got 9

func.func @qwen3_int4_g32_zp_block(%x: tensor<?x2048xbf16>, %ids: tensor<?x8xi32>, %weights: tensor<?x8xf32>, %w13: tensor<128x1536x1024xui8>, %w13_scales: tensor<128x1536x64xf32>, %w13_zeros: tensor<128x1536x64xui8>, %w2: tensor<128x2048x384xui8>, %w2_scales: tensor<128x2048x24xf32>, %w2_zeros: tensor<128x2048x24xui8>) -> tensor<?x2048xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x2048xbf16>, tensor<?x8xi32> -> tensor<?x2048xbf16>, tensor<129xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets weight_scales(%w13_scales : tensor<128x1536x64xf32>) weight_zeros(%w13_zeros : tensor<128x1536x64xui8>) {quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>} : tensor<?x2048xbf16>, tensor<128x1536x1024xui8>, tensor<129xi32> -> tensor<?x1536xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x1536xf32> -> tensor<?x768xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets weight_scales(%w2_scales : tensor<128x2048x24xf32>) weight_zeros(%w2_zeros : tensor<128x2048x24xui8>) {quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>} : tensor<?x768xbf16>, tensor<128x2048x384xui8>, tensor<129xi32> -> tensor<?x2048xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x2048xf32>, tensor<?xi32> -> tensor<?x8x2048xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x8x2048xf32>, tensor<?x8xf32> -> tensor<?x2048xbf16>
  return %out : tensor<?x2048xbf16>
}

// bf16 GEMM1s stream their weights without a decode's latency: no split
// at M = 1 (measured slower split in 2, 4 or 8).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=BF16
// BF16: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>
