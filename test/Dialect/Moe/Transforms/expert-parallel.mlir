// RUN: moe-opt %s -split-input-file -moe-expert-parallel=ranks=2 | FileCheck %s
// RUN: moe-opt %s -split-input-file '-moe-expert-parallel=ranks=2 realization=all_to_all placement=%S/Inputs/plan-2x3.json' | FileCheck %s --check-prefix=PLAN

// The layer becomes rank r's program: routing as before, the token rows
// dispatched to the ranks of their experts, the fused expert chain over the
// received rows with the rank's local weights (one expert per row, each
// row's result in its received place, in f32), and the weighted sum back on
// the source rank. Contiguous: rank 0 holds experts 0, 1 and rank 1 2, 3.
// CHECK-LABEL: func @layer
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xf32>, %[[GATE:[^:]*]]: tensor<4x16xf32>, %[[W13:[^:]*]]: tensor<2x16x16xf32> {moe.local_experts}, %[[W2:[^:]*]]: tensor<2x16x8xf32> {moe.local_experts}) -> tensor<?x16xbf16>
// CHECK: %[[LOGITS:.*]] = moe.router %[[X]], %[[GATE]]
// CHECK: %[[W:.*]], %[[IDS:.*]] = moe.topk softmax %[[LOGITS]]
// CHECK-NOT: moe.sort
// CHECK-NOT: moe.permute
// CHECK: %[[ROWS:.*]], %[[LOCAL:.*]], %[[ORIGIN:.*]] = moe.ep_dispatch allgather %[[X]], %[[IDS]] {placement = #moe.placement<ranks = 2, experts = 4, slots = {{\[\[}}0, 1], [2, 3]]>} : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
// CHECK: %[[SORTED:.*]], %[[BLOCKS:.*]], %[[PADDED:.*]] = moe.align %[[LOCAL]] {block_m = 16 : i64, num_experts = 2 : i64} : tensor<?x1xi32>
// CHECK: %[[H:.*]] = moe.expert_matmul %[[ROWS]], %[[W13]] slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = 16 : i64, gather, k = 1 : i64} : tensor<?x16xf32>, tensor<2x16x16xf32> -> tensor<?x8xf32>
// CHECK: %[[Y:.*]] = moe.expert_matmul %[[H]], %[[W2]] slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) {block_m = 16 : i64, k = 1 : i64, unpermute} : tensor<?x8xf32>, tensor<2x16x8xf32> -> tensor<?x1x16xf32>
// CHECK: %[[PER_ROW:.*]] = tensor.collapse_shape %[[Y]] {{\[\[}}0, 1], [2]] : tensor<?x1x16xf32> into tensor<?x16xf32>
// CHECK: %[[OUT:.*]] = moe.ep_combine allgather %[[PER_ROW]], %[[ORIGIN]], %[[W]] {ranks = 2 : i64} : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xbf16>
// CHECK: return %[[OUT]]

// A plan replicates experts 0 and 3: three slots per rank, in its order.
// PLAN-LABEL: func @layer
// PLAN-SAME: %{{.*}}: tensor<3x16x16xf32> {moe.local_experts}, %{{.*}}: tensor<3x16x8xf32> {moe.local_experts})
// PLAN: moe.ep_dispatch all_to_all %{{.*}}, %{{.*}} {placement = #moe.placement<ranks = 2, experts = 4, slots = {{\[\[}}0, 1, 3], [2, 3, 0]]>}
// PLAN: moe.align %{{.*}} {block_m = 16 : i64, num_experts = 3 : i64}
// PLAN: moe.ep_combine all_to_all
func.func @layer(%x: tensor<?x16xf32>, %w_gate: tensor<4x16xf32>, %w13: tensor<4x16x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x16xbf16> {
  %logits = moe.router %x, %w_gate : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x16xf32>, tensor<4x16x16xf32>, tensor<5xi32> -> tensor<?x16xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x16xf32> -> tensor<?x8xf32>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<5xi32> -> tensor<?x16xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x2x16xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x16xf32>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %out : tensor<?x16xbf16>
}

// -----

// Expert biases are sliced with their weights (argument attributes kept,
// the local ones marked),
// the routed scaling factor moves to the return, and the block_m of a tile
// schedules the local experts. The scores' bias is not per expert weight and
// stays global.
// CHECK-LABEL: func @biased_scaled
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xbf16>, %[[IDS:[^:]*]]: tensor<?x2xi32>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[W1:[^:]*]]: tensor<2x16x16xbf16> {moe.local_experts, test.kept}, %[[B1:[^:]*]]: tensor<2x16xf32> {moe.local_experts}, %[[SCORE_BIAS:[^:]*]]: tensor<4xf32>)
// CHECK: %[[ROWS:.*]], %[[LOCAL:.*]], %[[ORIGIN:.*]] = moe.ep_dispatch allgather %[[X]], %[[IDS]]
// CHECK: moe.align %[[LOCAL]] {block_m = 32 : i64, num_experts = 2 : i64}
// CHECK: %[[Y:.*]] = moe.expert_matmul %[[ROWS]], %[[W1]] slots(%{{.*}}) blocks(%{{.*}}) bias(%[[B1]] : tensor<2x16xf32>) {block_m = 32 : i64, gather, k = 1 : i64, tile = #moe.tile<block_m = 32, {{.*}}>, unpermute} : tensor<?x16xbf16>, tensor<2x16x16xbf16> -> tensor<?x1x16xf32>
// CHECK: %[[PER_ROW:.*]] = tensor.collapse_shape %[[Y]]
// CHECK: moe.ep_combine allgather %[[PER_ROW]], %[[ORIGIN]], %[[W]] {ranks = 2 : i64, routed_scaling_factor = 2.500000e+00 : f32} : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xbf16>
// PLAN-LABEL: func @biased_scaled
// PLAN-SAME: tensor<3x16x16xbf16> {moe.local_experts, test.kept}, %{{.*}}: tensor<3x16xf32> {moe.local_experts}, %{{.*}}: tensor<4xf32>)
func.func @biased_scaled(%x: tensor<?x16xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x16x16xbf16> {test.kept}, %b1: tensor<4x16xf32>, %score_bias: tensor<4xf32>) -> tensor<?x16xbf16> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<5xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<5xi32>) combine(%w : tensor<?x2xf32>) bias(%b1 : tensor<4x16xf32>)
      {gather, k = 2 : i64, routed_scaling_factor = 2.5 : f32,
       tile = #moe.tile<block_m = 32, block_n = 16, block_k = 16, stages = 2, split_k = 1, swap_ab = false, group_m = 1>}
      : tensor<?x16xbf16>, tensor<4x16x16xbf16> -> tensor<?x16xbf16>
  return %out : tensor<?x16xbf16>
}

// -----

// A static token count: the received rows and the local schedule are still
// counted at run time (R·M·k is the bound, not the count), and the combine
// returns the static tokens.
// CHECK-LABEL: func @static_tokens
// CHECK: moe.ep_dispatch allgather %{{.*}}, %{{.*}} {{.*}} : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
// CHECK: moe.expert_matmul {{.*}} -> tensor<?x8xf32>
// CHECK: moe.expert_matmul {{.*}} -> tensor<?x1x16xf32>
// CHECK: moe.ep_combine allgather {{.*}} : tensor<?x16xf32>, tensor<?xi32>, tensor<3x2xf32> -> tensor<3x16xf32>
func.func @static_tokens(%x: tensor<3x16xf32>, %ids: tensor<3x2xi32>, %w: tensor<3x2xf32>, %w13: tensor<4x16x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<3x16xf32> {
  %off, %src = moe.sort %ids : tensor<3x2xi32> -> tensor<5xi32>, tensor<6xi32>
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<6xi32>) offsets(%off : tensor<5xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>}
      : tensor<3x16xf32>, tensor<4x16x16xf32> -> tensor<6x8xf32>
  %out = moe.expert_matmul %h, %w2 slots(%src : tensor<6xi32>) offsets(%off : tensor<5xi32>) combine(%w : tensor<3x2xf32>) {k = 2 : i64}
      : tensor<6x8xf32>, tensor<4x16x8xf32> -> tensor<3x16xf32>
  return %out : tensor<3x16xf32>
}
