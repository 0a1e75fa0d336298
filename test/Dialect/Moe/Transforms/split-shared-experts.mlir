// RUN: moe-opt %s -split-input-file -moe-split-shared-experts=policy=split | FileCheck %s --check-prefix=SPLIT
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts=policy=fused | FileCheck %s --check-prefix=FUSED
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts=num-tokens=256 | FileCheck %s --check-prefix=COST256
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts=num-tokens=1 | FileCheck %s --check-prefix=FUSED
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts=num-tokens=4096 | FileCheck %s --check-prefix=TALL
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts="num-tokens=4096 minor-share=0.1" | FileCheck %s --check-prefix=TALL-FUSED
// Qwen1.5-MoE's four shared experts hold half the rows (top-4 + 4): with
// tall routed blocks (M = 4096) its block stays fused; at M = 256 it splits.
// RUN: moe-opt %moe_src_root/examples/qwen1_5_moe_a2_7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=4096 | FileCheck %s --check-prefix=QWEN-TALL
// RUN: moe-opt %moe_src_root/examples/qwen1_5_moe_a2_7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=256 | FileCheck %s --check-prefix=QWEN-SHORT
// QWEN-TALL: moe.add_shared_experts
// QWEN-TALL-NOT: moe.shared_expert_routing
// QWEN-SHORT: moe.shared_expert_routing {{.*}}gate(
// RUN: moe-opt %s -split-input-file -moe-split-shared-experts="num-tokens=256 min-row-blocks=32" | FileCheck %s --check-prefix=FUSED
// RUN: not moe-opt %s -split-input-file -moe-split-shared-experts=policy=sometimes 2>&1 | FileCheck %s --check-prefix=BAD-POLICY
// RUN: not moe-opt %s -split-input-file -moe-split-shared-experts=minor-share=1.5 2>&1 | FileCheck %s --check-prefix=BAD-SHARE

// DeepSeek-V3's block (256 routed experts, k = 8, one shared expert) after
// moe-fuse-experts. Split: the routed experts keep the weights whole (their
// shared expert gets no rows) and an f32 combine; the shared expert runs
// over its slices with ids of its own and accumulates into those sums.
// Each part carries moe-tile's tile for its own problem: the routed part
// the routed block's 16-row swapped tile (moe-tile would count the whole
// weights' 257 experts, and choose 8 rows), the shared part 128-row tiles.
// The policy splits at M = 256 (its 256 rows would fill 16 routed row
// blocks, each streaming the shared expert's weights again) and keeps M = 1
// fused, and so does M = 256 with min-row-blocks = 32.
// SPLIT-LABEL: func @deepseek_v3_shared_block
// SPLIT-SAME: (%[[X:.*]]: tensor<?x7168xbf16>, %[[IDS:.*]]: tensor<?x8xi32>, %[[RW:.*]]: tensor<?x8xf32>, %[[W13:.*]]: tensor<257x4096x7168xbf16>, %[[W2:.*]]: tensor<257x7168x2048xbf16>)
// SPLIT-NOT: moe.add_shared_experts
// SPLIT: %[[OFF:.*]], %[[SRC:.*]] = moe.sort %[[IDS]] : tensor<?x8xi32> -> tensor<258xi32>, tensor<?xi32>
// SPLIT: %[[H:.*]] = moe.expert_matmul %[[X]], %[[W13]] slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<258xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 8 : i64, tile = #moe.tile<block_m = 16, block_n = 256, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>} : tensor<?x7168xbf16>, tensor<257x4096x7168xbf16> -> tensor<?x2048xbf16>
// SPLIT: %[[SUMS:.*]] = moe.expert_matmul %[[H]], %[[W2]] slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<258xi32>) combine(%[[RW]] : tensor<?x8xf32>) {k = 8 : i64, routed_scaling_factor = 2.500000e+00 : f32, tile = #moe.tile<block_m = 16, {{.*}}>} : tensor<?x2048xbf16>, tensor<257x7168x2048xbf16> -> tensor<?x7168xf32>
// SPLIT: %[[SW:.*]], %[[SIDS:.*]] = moe.shared_expert_routing %[[RW]] : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
// SPLIT: %[[SOFF:.*]], %[[SSRC:.*]] = moe.sort %[[SIDS]] : tensor<?x1xi32> -> tensor<2xi32>, tensor<?xi32>
// SPLIT: %[[S13:.*]] = tensor.extract_slice %[[W13]][256, 0, 0] [1, 4096, 7168] [1, 1, 1] : tensor<257x4096x7168xbf16> to tensor<1x4096x7168xbf16>
// SPLIT: %[[SH:.*]] = moe.expert_matmul %[[X]], %[[S13]] slots(%[[SSRC]] : tensor<?xi32>) offsets(%[[SOFF]] : tensor<2xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 1 : i64, tile = #moe.tile<block_m = 128, {{.*}}>} : tensor<?x7168xbf16>, tensor<1x4096x7168xbf16> -> tensor<?x2048xbf16>
// SPLIT: %[[S2:.*]] = tensor.extract_slice %[[W2]][256, 0, 0] [1, 7168, 2048] [1, 1, 1] : tensor<257x7168x2048xbf16> to tensor<1x7168x2048xbf16>
// SPLIT: %[[OUT:.*]] = moe.expert_matmul %[[SH]], %[[S2]] slots(%[[SSRC]] : tensor<?xi32>) offsets(%[[SOFF]] : tensor<2xi32>) combine(%[[SW]] : tensor<?x1xf32>) accumulate(%[[SUMS]] : tensor<?x7168xf32>) {k = 1 : i64, routed_scaling_factor = 2.500000e+00 : f32, tile = #moe.tile<block_m = 128, {{.*}}>} : tensor<?x2048xbf16>, tensor<1x7168x2048xbf16> -> tensor<?x7168xbf16>
// SPLIT: return %[[OUT]]
// COST256-LABEL: func @deepseek_v3_shared_block
// COST256: moe.shared_expert_routing
// COST256: accumulate
// At M = 4096 the routed blocks are 128 rows tall, but the shared expert
// holds one ninth of the rows (at most minor-share): split. With a smaller
// minor-share: fused.
// TALL-LABEL: func @deepseek_v3_shared_block
// TALL: moe.shared_expert_routing
// TALL: accumulate
// TALL-FUSED-LABEL: func @deepseek_v3_shared_block
// TALL-FUSED-NOT: moe.shared_expert_routing
// TALL-FUSED: return
// FUSED-LABEL: func @deepseek_v3_shared_block
// FUSED: moe.add_shared_experts
// FUSED-NOT: moe.shared_expert_routing
// FUSED-NOT: accumulate
// BAD-POLICY: moe-split-shared-experts: policy must be cost, split or fused, got 'sometimes'
// BAD-SHARE: moe-split-shared-experts: minor-share must be in [0, 1], got 1.5
func.func @deepseek_v3_shared_block(%x: tensor<?x7168xbf16>, %ids: tensor<?x8xi32>, %rw: tensor<?x8xf32>, %w13: tensor<257x4096x7168xbf16>, %w2: tensor<257x7168x2048xbf16>) -> tensor<?x7168xbf16> {
  %weights, %all_ids = moe.add_shared_experts %rw, %ids {num_experts = 256 : i64} : tensor<?x8xf32>, tensor<?x8xi32> -> tensor<?x9xf32>, tensor<?x9xi32>
  %offsets, %source = moe.sort %all_ids : tensor<?x9xi32> -> tensor<258xi32>, tensor<?xi32>
  %0 = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<258xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 9 : i64} : tensor<?x7168xbf16>, tensor<257x4096x7168xbf16> -> tensor<?x2048xbf16>
  %1 = moe.expert_matmul %0, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<258xi32>) combine(%weights : tensor<?x9xf32>) {k = 9 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x2048xbf16>, tensor<257x7168x2048xbf16> -> tensor<?x7168xbf16>
  return %1 : tensor<?x7168xbf16>
}

// -----

// A gated shared expert split into 4 slices of the routed width
// (Qwen1.5-MoE's form): the gate goes to moe.shared_expert_routing, and the
// last 4 experts are sliced off.
// SPLIT-LABEL: func @gated_shared_slices
// SPLIT-SAME: %[[RW:[^:]*]]: tensor<?x4xf32>, %[[G:[^:]*]]: tensor<?x1xf32>
// SPLIT: moe.sort %{{.*}} : tensor<?x4xi32> -> tensor<65xi32>, tensor<?xi32>
// SPLIT: moe.shared_expert_routing %[[RW]] gate(%[[G]] : tensor<?x1xf32>) {num_shared = 4 : i64} : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
// SPLIT: moe.sort %{{.*}} : tensor<?x4xi32> -> tensor<5xi32>, tensor<?xi32>
// SPLIT: tensor.extract_slice %{{.*}}[60, 0, 0] [4, 64, 32] [1, 1, 1] : tensor<64x64x32xbf16> to tensor<4x64x32xbf16>
// SPLIT: {activation = #moe.activation<silu_and_mul>, gather, k = 4 : i64, tile = #moe.tile<{{.*}}>}
// SPLIT: tensor.extract_slice %{{.*}}[60, 0, 0] [4, 32, 32] [1, 1, 1] : tensor<64x32x32xbf16> to tensor<4x32x32xbf16>
// SPLIT: accumulate(%{{.*}} : tensor<?x32xf32>) {k = 4 : i64, tile = #moe.tile<{{.*}}>}
// FUSED-LABEL: func @gated_shared_slices
// FUSED-NOT: moe.shared_expert_routing
func.func @gated_shared_slices(%x: tensor<?x32xbf16>, %ids: tensor<?x4xi32>, %rw: tensor<?x4xf32>, %g: tensor<?x1xf32>, %w13: tensor<64x64x32xbf16>, %w2: tensor<64x32x32xbf16>) -> tensor<?x32xbf16> {
  %weights, %all_ids = moe.add_shared_experts %rw, %ids gate(%g : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 4 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
  %offsets, %source = moe.sort %all_ids : tensor<?x8xi32> -> tensor<65xi32>, tensor<?xi32>
  %0 = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<65xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 8 : i64} : tensor<?x32xbf16>, tensor<64x64x32xbf16> -> tensor<?x32xbf16>
  %1 = moe.expert_matmul %0, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<65xi32>) combine(%weights : tensor<?x8xf32>) {k = 8 : i64} : tensor<?x32xbf16>, tensor<64x32x32xbf16> -> tensor<?x32xbf16>
  return %1 : tensor<?x32xbf16>
}

// -----

// Left fused whatever the policy: quantized weights, and a GEMM1 whose rows
// have another use.
// SPLIT-LABEL: func @not_split
// SPLIT-NOT: moe.shared_expert_routing
// SPLIT: return
func.func @not_split(%x: tensor<?x32xbf16>, %ids: tensor<?x4xi32>, %rw: tensor<?x4xf32>, %w13: tensor<64x64x32xbf16>, %w2: tensor<64x32x32xbf16>) -> (tensor<?x32xbf16>, tensor<?x32xbf16>) {
  %weights, %all_ids = moe.add_shared_experts %rw, %ids {num_experts = 60 : i64, num_shared = 4 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
  %offsets, %source = moe.sort %all_ids : tensor<?x8xi32> -> tensor<65xi32>, tensor<?xi32>
  %0 = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<65xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 8 : i64} : tensor<?x32xbf16>, tensor<64x64x32xbf16> -> tensor<?x32xbf16>
  %1 = moe.expert_matmul %0, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<65xi32>) combine(%weights : tensor<?x8xf32>) {k = 8 : i64} : tensor<?x32xbf16>, tensor<64x32x32xbf16> -> tensor<?x32xbf16>
  return %1, %0 : tensor<?x32xbf16>, tensor<?x32xbf16>
}
