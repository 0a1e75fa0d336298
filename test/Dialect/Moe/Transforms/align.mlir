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

// -----

// A w8a8 layer: the intermediate's moe.quantize sits between the fused
// matmuls and works row by row, so the rows may change layout with the
// schedule; both matmuls move to it, the quantize in between stays.
// CHECK-LABEL: func @quantized_layer
// CHECK: %[[SORTED:.*]], %[[BLOCKS:.*]], %[[PADDED:.*]] = moe.align
// CHECK: %[[H:.*]] = moe.expert_matmul {{.*}} slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) input_scales
// CHECK: %[[HC:.*]], %[[HS:.*]] = moe.quantize %[[H]]
// CHECK: moe.expert_matmul %[[HC]], %{{.*}} slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) combine(%{{.*}} : tensor<?x2xf32>) input_scales(%[[HS]] : tensor<?x1xf32>)
func.func @quantized_layer(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x256x256xf8E4M3FN>, %w13s: tensor<8x2x2xf32>, %w2: tensor<8x256x128xf8E4M3FN>, %w2s: tensor<8x2x1xf32>) -> tensor<?x256xbf16> {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %xc, %xs = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %h = moe.expert_matmul %xc, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) input_scales(%xs : tensor<?x2xf32>) weight_scales(%w13s : tensor<8x2x2xf32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN> -> tensor<?x128xbf16>
  %hc, %hs = moe.quantize %h {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<?x1xf32>
  %out = moe.expert_matmul %hc, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>) input_scales(%hs : tensor<?x1xf32>) weight_scales(%w2s : tensor<8x2x1xf32>)
      {k = 2 : i64, quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x128xf8E4M3FN>, tensor<8x256x128xf8E4M3FN> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}

// -----

// The intermediate's quantization is also returned: its rows would leave
// the fused matmuls in schedule order, so the schedule stays.
// CHECK-LABEL: func @quantized_rows_escape
// CHECK: moe.sort
// CHECK-NOT: moe.align
func.func @quantized_rows_escape(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x256x256xbf16>, %w2: tensor<8x256x128xi8>, %w2s: tensor<8x256xf32>) -> (tensor<?x256xbf16>, tensor<?x128xi8>) {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>}
      : tensor<?x256xbf16>, tensor<8x256x256xbf16> -> tensor<?x128xbf16>
  %hc, %hs = moe.quantize %h {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x128xbf16> -> tensor<?x128xi8>, tensor<?xf32>
  %out = moe.expert_matmul %hc, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>) input_scales(%hs : tensor<?xf32>) weight_scales(%w2s : tensor<8x256xf32>)
      {k = 2 : i64, quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x128xi8>, tensor<8x256x128xi8> -> tensor<?x256xbf16>
  return %out, %hc : tensor<?x256xbf16>, tensor<?x128xi8>
}
