// RUN: moe-opt %s -split-input-file -moe-align | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-align=block-m=32 | FileCheck %s --check-prefix=OPTION

// Both matmuls move to the aligned schedule, with the tiles' block_m.
// CHECK-LABEL: func @fused_layer
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[IDS:.*]]: tensor<?x2xi32>
// CHECK-NOT: moe.sort
// CHECK: %[[SORTED:.*]], %[[BLOCKS:.*]], %[[PADDED:.*]] = moe.align %[[IDS]] {block_m = 64 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
// CHECK: %[[H:.*]] = moe.expert_matmul %[[X]], %{{.*}} slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = 64 : i64, gather, k = 2 : i64, tile = {{.*}}} {{.*}} -> tensor<?x32xbf16>
// CHECK: moe.expert_matmul %[[H]], %{{.*}} slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) combine(%{{.*}} : tensor<?x2xf32>) {block_m = 64 : i64, k = 2 : i64, tile = {{.*}}}
// OPTION-LABEL: func @fused_layer
// OPTION: moe.align %{{.*}} {block_m = 32 : i64, num_experts = 8 : i64}
func.func @fused_layer(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x64x64xbf16>, %w2: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>,
       tile = #moe.tile<block_m = 64, block_n = 64, block_k = 64, stages = 4, split_k = 1, swap_ab = false, group_m = 1>}
      : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  %out = moe.expert_matmul %h, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 64, block_n = 64, block_k = 64, stages = 4, split_k = 1, swap_ab = false, group_m = 1>}
      : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

// -----

// Without tiles the granule is 16.
// CHECK-LABEL: func @untiled
// CHECK: moe.align %{{.*}} {block_m = 16 : i64, num_experts = 8 : i64}
func.func @untiled(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<8x16x64xf32>) -> tensor<?x16xf32> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>) {gather, k = 2 : i64} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// GEMM1's rows are returned in schedule order: padding them would change
// what the caller sees, so the schedule stays unaligned.
// CHECK-LABEL: func @rows_leave
// CHECK: moe.sort
// CHECK-NOT: moe.align
func.func @rows_leave(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w1: tensor<8x16x64xf32>) -> tensor<?x16xf32> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %h = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) {gather, k = 2 : i64} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x16xf32>
  return %h : tensor<?x16xf32>
}

// -----

// The source is also read by a plain unpermute: the schedule is used outside
// fused matmuls and stays.
// CHECK-LABEL: func @schedule_used_elsewhere
// CHECK: moe.sort
// CHECK-NOT: moe.align
func.func @schedule_used_elsewhere(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %y: tensor<?x16xf32>, %w: tensor<?x2xf32>, %w1: tensor<8x16x64xf32>) -> (tensor<?x16xf32>, tensor<?x2x16xf32>) {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>) {gather, k = 2 : i64} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x16xf32>
  %u = moe.unpermute %y, %src : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x2x16xf32>
  return %out, %u : tensor<?x16xf32>, tensor<?x2x16xf32>
}

// -----

// Tiles that disagree on block_m cannot share one padded schedule.
// CHECK-LABEL: func @tiles_disagree
// CHECK: moe.sort
// CHECK-NOT: moe.align
func.func @tiles_disagree(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x64x64xbf16>, %w2: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>,
       tile = #moe.tile<block_m = 64, block_n = 64, block_k = 64, stages = 4, split_k = 1, swap_ab = false, group_m = 1>}
      : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  %out = moe.expert_matmul %h, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 128, block_n = 64, block_k = 64, stages = 4, split_k = 1, swap_ab = false, group_m = 1>}
      : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}
