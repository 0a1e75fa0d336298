// RUN: moe-opt %s -split-input-file -moe-fuse-experts | FileCheck %s

// The whole chain: permute -> GEMM1 -> activation -> GEMM2 -> unpermute ->
// combine becomes sort + two expert matmuls. GEMM1 gathers x directly and
// stores I = 32 columns; GEMM2 scatters and combines in its epilogue.
// CHECK-LABEL: func @full_chain
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>, %[[W13:.*]]: tensor<8x64x64xbf16>, %[[W2:.*]]: tensor<8x64x32xbf16>)
// CHECK-NOT: moe.permute
// CHECK: %[[OFF:.*]], %[[SRC:.*]] = moe.sort %[[IDS]] : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
// CHECK: %[[H:.*]] = moe.expert_matmul %[[X]], %[[W13]] slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) {activation = #moe.activation<silu_and_mul>, gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
// CHECK: %[[OUT:.*]] = moe.expert_matmul %[[H]], %[[W2]] slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) combine(%[[W]] : tensor<?x2xf32>) {k = 2 : i64, routed_scaling_factor = 2.500000e+00 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
// CHECK-NOT: moe.grouped_matmul
// CHECK-NOT: moe.activation
// CHECK-NOT: moe.unpermute
// CHECK-NOT: moe.combine
// CHECK: return %[[OUT]]
func.func @full_chain(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x64x64xbf16>, %w2: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x64xbf16>, tensor<8x64x64xbf16>, tensor<9xi32> -> tensor<?x64xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x64xbf16> -> tensor<?x32xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x32xbf16>, tensor<8x64x32xbf16>, tensor<9xi32> -> tensor<?x64xf32>
  %y = moe.unpermute %down, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  %out = moe.combine %y, %w {routed_scaling_factor = 2.5 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

// -----

// Expert biases stay on their GEMMs through every fold: GEMM1's bias is
// added before the fused activation, GEMM2's before the routed weight.
// CHECK-LABEL: func @chain_with_expert_biases
// CHECK-SAME: %[[B13:[^:]*]]: tensor<8x64xf32>, %[[B2:[^:]*]]: tensor<8x64xf32>)
// CHECK: %[[H:.*]] = moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) bias(%[[B13]] : tensor<8x64xf32>) {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f32, gather, k = 2 : i64, limit = 7.000000e+00 : f32}
// CHECK: moe.expert_matmul %[[H]], %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) combine(%{{.*}} : tensor<?x2xf32>) bias(%[[B2]] : tensor<8x64xf32>) {k = 2 : i64}
// CHECK-NOT: moe.grouped_matmul
func.func @chain_with_expert_biases(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w13: tensor<8x64x64xbf16>, %w2: tensor<8x64x32xbf16>, %b13: tensor<8x64xf32>, %b2: tensor<8x64xf32>) -> tensor<?x64xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets bias(%b13 : tensor<8x64xf32>) : tensor<?x64xbf16>, tensor<8x64x64xbf16>, tensor<9xi32> -> tensor<?x64xbf16>
  %act = moe.activation swiglu %gate_up {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets bias(%b2 : tensor<8x64xf32>) : tensor<?x32xbf16>, tensor<8x64x32xbf16>, tensor<9xi32> -> tensor<?x64xf32>
  %y = moe.unpermute %down, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  %out = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

// -----

// An interleaved gate/up activation folds with its layout: the fused
// epilogue pairs alternating columns, as the activation did.
// CHECK-LABEL: func @interleaved_activation
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) {activation = #moe.activation<silu_and_mul>, gate_up_interleaved, gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
// CHECK-NOT: moe.activation
func.func @interleaved_activation(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w13: tensor<8x64x64xbf16>) -> tensor<?x32xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x64xbf16>, tensor<8x64x64xbf16>, tensor<9xi32> -> tensor<?x64xbf16>
  %act = moe.activation silu_and_mul interleaved %gate_up : tensor<?x64xbf16> -> tensor<?x32xbf16>
  return %act : tensor<?x32xbf16>
}

// -----

// A single grouped matmul between permute and unpermute + combine: gather
// and scatter + combine all fold into one op.
// CHECK-LABEL: func @single_matmul
// CHECK: %[[OFF:.*]], %[[SRC:.*]] = moe.sort
// CHECK-NEXT: %[[OUT:.*]] = moe.expert_matmul %{{.*}}, %{{.*}} slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) combine(%{{.*}} : tensor<?x2xf32>) {gather, k = 2 : i64}
// CHECK-NEXT: return %[[OUT]]
func.func @single_matmul(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<8x16x64xf32>) -> tensor<?x16xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w1, %offsets : tensor<?x64xf32>, tensor<8x16x64xf32>, tensor<9xi32> -> tensor<?x16xf32>
  %y = moe.unpermute %h, %source : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x2x16xf32>
  %out = moe.combine %y, %w : tensor<?x2x16xf32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// No activation, unpermute without combine: gather into GEMM1, scatter into
// GEMM2, and the [M, k, N] result stays unpermuted.
// CHECK-LABEL: func @unpermute_without_combine
// CHECK: %[[H:.*]] = moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}}) offsets(%{{.*}}) {gather, k = 2 : i64} : tensor<?x64xf32>, tensor<8x32x64xf32> -> tensor<?x32xf32>
// CHECK: moe.expert_matmul %[[H]], %{{.*}} slots(%{{.*}}) offsets(%{{.*}}) {k = 2 : i64, unpermute} : tensor<?x32xf32>, tensor<8x64x32xf32> -> tensor<?x2x64xf32>
// CHECK-NOT: moe.unpermute
func.func @unpermute_without_combine(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w13: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> tensor<?x2x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x64xf32>, tensor<8x32x64xf32>, tensor<9xi32> -> tensor<?x32xf32>
  %down = moe.grouped_matmul %h, %w2, %offsets : tensor<?x32xf32>, tensor<8x64x32xf32>, tensor<9xi32> -> tensor<?x64xf32>
  %y = moe.unpermute %down, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  return %y : tensor<?x2x64xf32>
}

// -----

// The permuted rows have a second user: they must stay materialized, so the
// gather does not fold (the activation still folds into the matmul).
// CHECK-LABEL: func @permuted_rows_used_twice
// CHECK: %[[ROWS:.*]], %[[OFF:.*]], %{{.*}} = moe.permute
// CHECK: moe.expert_matmul %[[ROWS]], %{{.*}} offsets(%[[OFF]] : tensor<9xi32>) {activation = #moe.activation<silu_and_mul>, k = 1 : i64}
// CHECK-NOT: gather
// CHECK: return
func.func @permuted_rows_used_twice(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w13: tensor<8x64x64xf32>) -> (tensor<?x32xf32>, tensor<?x64xf32>) {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x64xf32>, tensor<8x64x64xf32>, tensor<9xi32> -> tensor<?x64xf32>
  %a = moe.activation silu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  return %a, %rows : tensor<?x32xf32>, tensor<?x64xf32>
}

// -----

// GEMM1's 2I result is also returned: the activation must not fold.
// CHECK-LABEL: func @matmul_result_used_twice
// CHECK: %[[H:.*]] = moe.expert_matmul {{.*}} {gather, k = 2 : i64} : tensor<?x64xf32>, tensor<8x64x64xf32> -> tensor<?x64xf32>
// CHECK: moe.activation silu_and_mul %[[H]]
func.func @matmul_result_used_twice(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w13: tensor<8x64x64xf32>) -> (tensor<?x32xf32>, tensor<?x64xf32>) {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x64xf32>, tensor<8x64x64xf32>, tensor<9xi32> -> tensor<?x64xf32>
  %a = moe.activation silu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  return %a, %h : tensor<?x32xf32>, tensor<?x64xf32>
}

// -----

// The unpermute uses the source of a different routing: the scatter must
// not fold into the matmul.
// CHECK-LABEL: func @other_schedule
// CHECK: moe.expert_matmul
// CHECK: moe.unpermute
func.func @other_schedule(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %ids2: tensor<?x2xi32>, %w1: tensor<8x16x64xf32>) -> tensor<?x2x16xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %o2, %s2 = moe.sort %ids2 : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w1, %offsets : tensor<?x64xf32>, tensor<8x16x64xf32>, tensor<9xi32> -> tensor<?x16xf32>
  %y = moe.unpermute %h, %s2 : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x2x16xf32>
  return %y : tensor<?x2x16xf32>
}

// -----

// A matmul whose offsets belong to another permute: no gather fusion.
// CHECK-LABEL: func @offsets_of_another_permute
// CHECK: moe.permute
// CHECK: moe.grouped_matmul
// CHECK-NOT: moe.expert_matmul
func.func @offsets_of_another_permute(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %offsets: tensor<9xi32>, %w1: tensor<8x16x64xf32>) -> tensor<?x16xf32> {
  %rows, %o, %s = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w1, %offsets : tensor<?x64xf32>, tensor<8x16x64xf32>, tensor<9xi32> -> tensor<?x16xf32>
  return %h : tensor<?x16xf32>
}

// -----

// A w8a8 chain: the per-token quantization of the permuted rows moves onto
// the token rows (quantize(permute(x)) = permute(quantize(x)) row by row),
// GEMM1 gathers codes and takes per-token scales; the intermediate's
// quantization stays between the fused matmuls, and GEMM2 keeps its scales
// through the unpermute and combine.
// CHECK-LABEL: func.func @fp8_chain
// CHECK-SAME: (%[[X:.*]]: tensor<?x256xbf16>, %[[IDS:.*]]: tensor<?x2xi32>, %[[RW:.*]]: tensor<?x2xf32>, %[[W13:.*]]: tensor<8x256x256xf8E4M3FN>, %[[W13S:.*]]: tensor<8x2x2xf32>, %[[W2:.*]]: tensor<8x256x128xf8E4M3FN>, %[[W2S:.*]]: tensor<8x2x1xf32>)
// CHECK: %[[OFFSETS:.*]], %[[SOURCE:.*]] = moe.sort %[[IDS]]
// CHECK: %[[CODES:.*]], %[[SCALES:.*]] = moe.quantize %[[X]] {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
// CHECK: %[[H:.*]] = moe.expert_matmul %[[CODES]], %[[W13]] slots(%[[SOURCE]] : tensor<?xi32>) offsets(%[[OFFSETS]] : tensor<9xi32>) input_scales(%[[SCALES]] : tensor<?x2xf32>) weight_scales(%[[W13S]] : tensor<8x2x2xf32>) {activation = #moe.activation<silu_and_mul>, gather, k = 2 : i64, quantization = #moe.quant<fp8, scales = block>}
// CHECK-SAME: -> tensor<?x128xbf16>
// CHECK: %[[HC:.*]], %[[HS:.*]] = moe.quantize %[[H]]
// CHECK: moe.expert_matmul %[[HC]], %[[W2]] slots(%[[SOURCE]] : tensor<?xi32>) offsets(%[[OFFSETS]] : tensor<9xi32>) combine(%[[RW]] : tensor<?x2xf32>) input_scales(%[[HS]] : tensor<?x1xf32>) weight_scales(%[[W2S]] : tensor<8x2x1xf32>) {k = 2 : i64, quantization = #moe.quant<fp8, scales = block>}
// CHECK-NOT: moe.permute
func.func @fp8_chain(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x256xf8E4M3FN>, %w13_scales: tensor<8x2x2xf32>, %w2: tensor<8x256x128xf8E4M3FN>, %w2_scales: tensor<8x2x1xf32>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %gate_up = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<?x2xf32>) weight_scales(%w13_scales : tensor<8x2x2xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xf32> -> tensor<?x128xbf16>
  %act_codes, %act_scales = moe.quantize %act {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<?x1xf32>
  %down = moe.grouped_matmul %act_codes, %w2, %offsets input_scales(%act_scales : tensor<?x1xf32>) weight_scales(%w2_scales : tensor<8x2x1xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xf8E4M3FN>, tensor<8x256x128xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x256xf32>, tensor<?xi32> -> tensor<?x2x256xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x256xf32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}

// -----

// A per-tensor scale is the amax of the rows gathered; moe.permute gathers
// every token k times, so quantizing the token rows gives the same scale and
// codes: GEMM1 gathers codes and keeps the one scale.
// CHECK-LABEL: func.func @per_tensor_moves_before_gather
// CHECK-SAME: (%[[X:.*]]: tensor<?x256xbf16>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W13:.*]]: tensor<8x64x256xf8E4M3FN>, %[[WS:.*]]: tensor<8xf32>)
// CHECK: %[[OFFSETS:.*]], %[[SOURCE:.*]] = moe.sort %[[IDS]]
// CHECK: %[[CODES:.*]], %[[SCALES:.*]] = moe.quantize %[[X]] {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
// CHECK: moe.expert_matmul %[[CODES]], %[[W13]] slots(%[[SOURCE]] : tensor<?xi32>) offsets(%[[OFFSETS]] : tensor<9xi32>) input_scales(%[[SCALES]] : tensor<1xf32>) weight_scales(%[[WS]] : tensor<8xf32>) {gather, k = 2 : i64, quantization = #moe.quant<fp8, scales = per_tensor>}
// CHECK-NOT: moe.permute
func.func @per_tensor_moves_before_gather(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %w13: tensor<8x64x256xf8E4M3FN>, %ws: tensor<8xf32>) -> tensor<?x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  %h = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<1xf32>) weight_scales(%ws : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xf8E4M3FN>, tensor<8x64x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}
