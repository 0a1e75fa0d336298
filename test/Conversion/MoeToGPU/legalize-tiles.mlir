// RUN: moe-opt %s -split-input-file -moe-gpu-legalize-tiles | FileCheck %s

// Decode tiles (8-row blocks, swapped operands) become 64-row blocks; a
// block_n that is not a power of two rounds down, one above 256 is capped.
// CHECK-LABEL: func.func @decode
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 64, block_n = 64, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 64, block_n = 256, block_k = 64, stages = 5, split_k = 4, swap_ab = true, group_m = 1>
func.func @decode(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 8, block_n = 96, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 8, block_n = 512, block_k = 64, stages = 5, split_k = 4, swap_ab = true, group_m = 1>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Large blocks become 128 rows, but one schedule takes the smaller block_m
// of its matmuls, so that one moe.align serves both.
// CHECK-LABEL: func.func @one_schedule
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 64, block_n = 128,
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 64, block_n = 256,
// CHECK-LABEL: func.func @prefill
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 128, block_n = 256,
// CHECK: moe.expert_matmul {{.*}}tile = #moe.tile<block_m = 128, block_n = 128,
func.func @one_schedule(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 256, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 32, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}
func.func @prefill(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 256, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 128, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}
