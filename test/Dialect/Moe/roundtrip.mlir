// RUN: moe-opt %s -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file | moe-opt -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file --mlir-print-op-generic | moe-opt -split-input-file | FileCheck %s

// CHECK-LABEL: func @router
// CHECK: moe.router %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
// CHECK: moe.router %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<8xf32>) : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>
func.func @router(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %xs: tensor<4x64xf32>,
                  %ws: tensor<8x64xf32>, %b: tensor<8xf32>) -> (tensor<?x8xf32>, tensor<4x8xf32>) {
  %0 = moe.router %x, %w : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  %1 = moe.router %xs, %ws bias(%b : tensor<8xf32>) : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>
  return %0, %1 : tensor<?x8xf32>, tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @topk_variants
// CHECK: moe.topk softmax %{{.*}} {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: moe.topk softmax %{{.*}} {k = 2 : i64, renormalize} :
// CHECK: moe.topk topk_softmax %{{.*}} {k = 4 : i64} :
// CHECK: moe.topk sigmoid %{{.*}} bias(%{{.*}} : tensor<16xf32>) {k = 4 : i64, num_groups = 4 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
// CHECK: moe.topk softmax %{{.*}} {k = 8 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
func.func @topk_variants(%l8: tensor<?x8xf32>, %l16: tensor<?x16xf32>, %b: tensor<16xf32>) {
  %w0, %i0 = moe.topk softmax %l8 {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w1, %i1 = moe.topk softmax %l8 {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w2, %i2 = moe.topk topk_softmax %l8 {k = 4 : i64} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  %w3, %i3 = moe.topk sigmoid %l16 bias(%b : tensor<16xf32>)
      {k = 4 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, renormalize,
       routed_scaling_factor = 2.5 : f32} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  %w4, %i4 = moe.topk softmax %l8 {k = 8 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
  return
}

// -----

// CHECK-LABEL: func @permute_unpermute
// CHECK: %[[ROWS:.*]], %[[OFFSETS:.*]], %[[SOURCE:.*]] = moe.permute %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
// CHECK: moe.unpermute %{{.*}}, %[[SOURCE]] : tensor<?x32xf32>, tensor<?xi32> -> tensor<?x2x32xf32>
// CHECK: moe.permute %{{.*}}, %{{.*}} : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<5xi32>, tensor<6xi32>
func.func @permute_unpermute(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %y: tensor<?x32xf32>,
                             %xs: tensor<3x16xf32>, %idss: tensor<3x2xi32>) -> tensor<?x2x32xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  %u = moe.unpermute %y, %source : tensor<?x32xf32>, tensor<?xi32> -> tensor<?x2x32xf32>
  %r, %o, %s = moe.permute %xs, %idss : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<5xi32>, tensor<6xi32>
  return %u : tensor<?x2x32xf32>
}

// -----

// The default quantization is elided when printed.
// CHECK-LABEL: func @grouped_matmul
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xbf16>
// CHECK-NOT: quantization
func.func @grouped_matmul(%rows: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %off: tensor<9xi32>) {
  %0 = moe.grouped_matmul %rows, %w, %off : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %1 = moe.grouped_matmul %rows, %w, %off {quantization = #moe.quant<none>} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

// Per-expert biases print after the scales, on both matmul forms.
// CHECK-LABEL: func @expert_biases
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<8x128xf32>) : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} weight_scales(%{{.*}} : tensor<8x128x1xf32>) bias(%{{.*}} : tensor<8x128xf32>) {quantization = #moe.quant<int8_weight, group = 64>} : tensor<?x64xbf16>, tensor<8x128x64xi8>, tensor<9xi32> -> tensor<?x128xf32>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) combine(%{{.*}} : tensor<?x2xf32>) bias(%{{.*}} : tensor<8x128xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x128x64xbf16> -> tensor<?x128xbf16>
func.func @expert_biases(%rows: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %off: tensor<9xi32>,
                         %codes: tensor<8x128x64xi8>, %scales: tensor<8x128x1xf32>, %b: tensor<8x128xf32>,
                         %src: tensor<?xi32>, %rw: tensor<?x2xf32>) {
  %0 = moe.grouped_matmul %rows, %w, %off bias(%b : tensor<8x128xf32>) : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %1 = moe.grouped_matmul %rows, %codes, %off weight_scales(%scales : tensor<8x128x1xf32>) bias(%b : tensor<8x128xf32>) {quantization = #moe.quant<int8_weight, group = 64>} : tensor<?x64xbf16>, tensor<8x128x64xi8>, tensor<9xi32> -> tensor<?x128xf32>
  %2 = moe.expert_matmul %rows, %w slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%rw : tensor<?x2xf32>) bias(%b : tensor<8x128xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x128x64xbf16> -> tensor<?x128xbf16>
  return
}

// -----

// num_shared = 1 is the default and is elided.
// CHECK-LABEL: func @shared_expert_routing
// CHECK: moe.shared_expert_routing %{{.*}} : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
// CHECK: moe.shared_expert_routing %{{.*}} gate(%{{.*}} : tensor<?x1xf32>) {num_shared = 4 : i64} : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
func.func @shared_expert_routing(%w: tensor<?x8xf32>, %w4: tensor<?x4xf32>, %g: tensor<?x1xf32>) {
  %0:2 = moe.shared_expert_routing %w : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  %1:2 = moe.shared_expert_routing %w4 gate(%g : tensor<?x1xf32>) {num_shared = 4 : i64} : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return
}

// CHECK-LABEL: func @expert_matmul_accumulate
// CHECK: %[[SUMS:.*]] = moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) combine(%{{.*}} : tensor<?x2xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x128x64xbf16> -> tensor<?x128xf32>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<2xi32>) combine(%{{.*}} : tensor<?x1xf32>) accumulate(%[[SUMS]] : tensor<?x128xf32>) {gather, k = 1 : i64} : tensor<?x64xbf16>, tensor<1x128x64xbf16> -> tensor<?x128xbf16>
func.func @expert_matmul_accumulate(%x: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %ws: tensor<1x128x64xbf16>, %src: tensor<?xi32>, %off: tensor<9xi32>, %rw: tensor<?x2xf32>, %ssrc: tensor<?xi32>, %soff: tensor<2xi32>, %sw: tensor<?x1xf32>) -> tensor<?x128xbf16> {
  %0 = moe.expert_matmul %x, %w slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%rw : tensor<?x2xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x128x64xbf16> -> tensor<?x128xf32>
  %1 = moe.expert_matmul %x, %ws slots(%ssrc : tensor<?xi32>) offsets(%soff : tensor<2xi32>) combine(%sw : tensor<?x1xf32>) accumulate(%0 : tensor<?x128xf32>) {gather, k = 1 : i64} : tensor<?x64xbf16>, tensor<1x128x64xbf16> -> tensor<?x128xbf16>
  return %1 : tensor<?x128xbf16>
}

// CHECK-LABEL: func @add_shared_experts
// CHECK: moe.add_shared_experts %{{.*}}, %{{.*}} {num_experts = 256 : i64} : tensor<?x8xf32>, tensor<?x8xi32> -> tensor<?x9xf32>, tensor<?x9xi32>
// CHECK: moe.add_shared_experts %{{.*}}, %{{.*}} gate(%{{.*}} : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 4 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
func.func @add_shared_experts(%w: tensor<?x8xf32>, %ids: tensor<?x8xi32>, %w4: tensor<?x4xf32>, %ids4: tensor<?x4xi32>, %g: tensor<?x1xf32>) {
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 256 : i64, num_shared = 1 : i64} : tensor<?x8xf32>, tensor<?x8xi32> -> tensor<?x9xf32>, tensor<?x9xi32>
  %1:2 = moe.add_shared_experts %w4, %ids4 gate(%g : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 4 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
  return
}

// -----

// CHECK-LABEL: func @activations
// CHECK: moe.activation silu_and_mul %{{.*}} : tensor<?x64xf32> -> tensor<?x32xf32>
// CHECK: moe.activation gelu_and_mul %{{.*}} : tensor<?x64xf32> -> tensor<?x32xf32>
// CHECK: moe.activation swiglu %{{.*}} {alpha = 1.702000e+00 : f32, limit = 7.000000e+00 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
// CHECK: moe.activation swiglu interleaved %{{.*}} {alpha = 1.702000e+00 : f32, limit = 7.000000e+00 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
// CHECK: moe.activation silu_and_mul interleaved %{{.*}} : tensor<?x64xf32> -> tensor<?x32xf32>
func.func @activations(%h: tensor<?x64xf32>, %hb: tensor<?x64xbf16>) {
  %0 = moe.activation silu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  %1 = moe.activation gelu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  %2 = moe.activation swiglu %hb {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
  %3 = moe.activation swiglu interleaved %hb {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
  %4 = moe.activation silu_and_mul interleaved %h : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

// CHECK-LABEL: func @combine
// CHECK: moe.combine %{{.*}}, %{{.*}} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
// CHECK: moe.combine %{{.*}}, %{{.*}} {routed_scaling_factor = 2.500000e+00 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
func.func @combine(%y: tensor<?x2x64xf32>, %w: tensor<?x2xf32>) {
  %0 = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  %1 = moe.combine %y, %w {routed_scaling_factor = 2.5 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

// The w8a8 grouped matmuls, with the scale shapes of each layout.
// CHECK-LABEL: func @w8a8_grouped_matmul
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} input_scales(%{{.*}} : tensor<1xf32>) weight_scales(%{{.*}} : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xf8E4M3FN>
// CHECK: input_scales(%{{.*}} : tensor<?xf32>) weight_scales(%{{.*}} : tensor<8x128xf32>) {quantization = #moe.quant<fp8, scales = per_token_channel>}
// CHECK: input_scales(%{{.*}} : tensor<?x2xf32>) weight_scales(%{{.*}} : tensor<8x1x2xf32>) {quantization = #moe.quant<fp8, scales = block>}
// CHECK: input_scales(%{{.*}} : tensor<?xf32>) weight_scales(%{{.*}} : tensor<8x128xf32>) {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xi8>, tensor<8x128x256xi8>
func.func @w8a8_grouped_matmul(%a: tensor<?x256xf8E4M3FN>, %w: tensor<8x128x256xf8E4M3FN>, %o: tensor<9xi32>,
    %t: tensor<1xf32>, %e: tensor<8xf32>, %tok: tensor<?xf32>, %ch: tensor<8x128xf32>, %ab: tensor<?x2xf32>, %wb: tensor<8x1x2xf32>,
    %ai: tensor<?x256xi8>, %wi: tensor<8x128x256xi8>) {
  %0 = moe.grouped_matmul %a, %w, %o input_scales(%t : tensor<1xf32>) weight_scales(%e : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xbf16>
  %1 = moe.grouped_matmul %a, %w, %o input_scales(%tok : tensor<?xf32>) weight_scales(%ch : tensor<8x128xf32>) {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xbf16>
  %2 = moe.grouped_matmul %a, %w, %o input_scales(%ab : tensor<?x2xf32>) weight_scales(%wb : tensor<8x1x2xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xf32>
  %3 = moe.grouped_matmul %ai, %wi, %o input_scales(%tok : tensor<?xf32>) weight_scales(%ch : tensor<8x128xf32>) {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xi8>, tensor<8x128x256xi8>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

// Weight-only grouped matmuls: packed int4 with zero points, int8, mxfp4;
// int4 and mxfp4 codes in moe.prepack's wgmma_a_4bit order.
// CHECK-LABEL: func @weight_only_grouped_matmul
// CHECK: weight_scales(%{{.*}} : tensor<8x128x2xf32>) weight_zeros(%{{.*}} : tensor<8x128x2xui8>) {quantization = #moe.quant<int4_weight, group = 128, zero_point = true>} : tensor<?x256xbf16>, tensor<8x128x128xui8>
// CHECK: weight_scales(%{{.*}} : tensor<8x128x8xf32>) {quantization = #moe.quant<int8_weight, group = 32>} : tensor<?x256xbf16>, tensor<8x128x256xi8>
// CHECK: weight_scales(%{{.*}} : tensor<8x128x8xui8>) {quantization = #moe.quant<mxfp4>} : tensor<?x256xbf16>, tensor<8x128x128xui8>
// CHECK: weight_scales(%{{.*}} : tensor<8x128x2xf32>) {quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>} : tensor<?x256xbf16>, tensor<8x128x128xui8>
// CHECK: weight_scales(%{{.*}} : tensor<8x128x8xui8>) {quantization = #moe.quant<mxfp4, packed = wgmma_a_4bit>} : tensor<?x256xbf16>, tensor<8x128x128xui8>
func.func @weight_only_grouped_matmul(%a: tensor<?x256xbf16>, %o: tensor<9xi32>, %w4: tensor<8x128x128xui8>, %s4: tensor<8x128x2xf32>, %z4: tensor<8x128x2xui8>,
    %w8: tensor<8x128x256xi8>, %s8: tensor<8x128x8xf32>, %sx: tensor<8x128x8xui8>) {
  %0 = moe.grouped_matmul %a, %w4, %o weight_scales(%s4 : tensor<8x128x2xf32>) weight_zeros(%z4 : tensor<8x128x2xui8>) {quantization = #moe.quant<int4_weight, group = 128, zero_point = true>} : tensor<?x256xbf16>, tensor<8x128x128xui8>, tensor<9xi32> -> tensor<?x128xbf16>
  %1 = moe.grouped_matmul %a, %w8, %o weight_scales(%s8 : tensor<8x128x8xf32>) {quantization = #moe.quant<int8_weight, group = 32>} : tensor<?x256xbf16>, tensor<8x128x256xi8>, tensor<9xi32> -> tensor<?x128xbf16>
  %2 = moe.grouped_matmul %a, %w4, %o weight_scales(%sx : tensor<8x128x8xui8>) {quantization = #moe.quant<mxfp4>} : tensor<?x256xbf16>, tensor<8x128x128xui8>, tensor<9xi32> -> tensor<?x128xbf16>
  %3 = moe.grouped_matmul %a, %w4, %o weight_scales(%s4 : tensor<8x128x2xf32>) {quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>} : tensor<?x256xbf16>, tensor<8x128x128xui8>, tensor<9xi32> -> tensor<?x128xbf16>
  %4 = moe.grouped_matmul %a, %w4, %o weight_scales(%sx : tensor<8x128x8xui8>) {quantization = #moe.quant<mxfp4, packed = wgmma_a_4bit>} : tensor<?x256xbf16>, tensor<8x128x128xui8>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

// Dynamic activation quantization, every w8a8 layout.
// CHECK-LABEL: func @quantize
// CHECK: moe.quantize %{{.*}} {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
// CHECK: moe.quantize %{{.*}} {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
// CHECK: moe.quantize %{{.*}} {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<?x256xi8>, tensor<?xf32>
func.func @quantize(%x: tensor<?x256xbf16>) {
  %c0, %s0 = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  %c1, %s1 = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %c2, %s2 = moe.quantize %x {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<?x256xi8>, tensor<?xf32>
  return
}

// -----

// 4-bit weight-only codes reordered into the wgmma A fragment order.
// CHECK-LABEL: func @prepack
// CHECK: moe.prepack wgmma_a_4bit %{{.*}} : tensor<8x256x64xui8> -> tensor<8x4x2x2048xui8>
func.func @prepack(%w: tensor<8x256x64xui8>) -> tensor<8x4x2x2048xui8> {
  %p = moe.prepack wgmma_a_4bit %w : tensor<8x256x64xui8> -> tensor<8x4x2x2048xui8>
  return %p : tensor<8x4x2x2048xui8>
}

// -----

// Every quantization format; defaulted parameters are elided.
// CHECK-LABEL: func @quant_attr
// CHECK-SAME: attributes {format = #moe.quant<none>}
func.func @quant_attr() attributes {format = #moe.quant<none>} {
  return
}
// CHECK-LABEL: func @quant_formats
// CHECK-SAME: a = #moe.quant<fp8, scales = per_tensor>
// CHECK-SAME: b = #moe.quant<fp8, scales = per_token_channel>
// CHECK-SAME: c = #moe.quant<fp8, scales = block>
// CHECK-SAME: d = #moe.quant<int8, scales = per_token_channel>
// CHECK-SAME: e = #moe.quant<int4_weight, group = 128, zero_point = true>
// CHECK-SAME: f = #moe.quant<int8_weight, group = 32>
// CHECK-SAME: g = #moe.quant<mxfp4>
func.func @quant_formats() attributes {
    a = #moe.quant<fp8, scales = per_tensor>,
    b = #moe.quant<fp8, scales = per_token_channel>,
    c = #moe.quant<fp8, scales = block>,
    d = #moe.quant<int8, scales = per_token_channel>,
    e = #moe.quant<int4_weight, group = 128, zero_point = true>,
    f = #moe.quant<int8_weight, group = 32, zero_point = false>,
    g = #moe.quant<mxfp4>} {
  return
}

// -----

// CHECK-LABEL: func @fused_forms
// CHECK: %[[W:.*]], %[[IDS:.*]] = moe.route sigmoid %{{.*}}, %{{.*}} gate_bias(%{{.*}} : tensor<8xf32>) score_bias(%{{.*}} : tensor<8xf32>) {k = 2 : i64, num_groups = 4 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: %[[OFF:.*]], %[[SRC:.*]] = moe.sort %[[IDS]] : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
// CHECK: %[[SORTED:.*]], %[[BLOCKS:.*]], %[[PADDED:.*]] = moe.align %[[IDS]] {block_m = 16 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
// CHECK: %[[H:.*]] = moe.expert_matmul %{{.*}}, %{{.*}} slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f32, gather, k = 2 : i64, limit = 7.000000e+00 : f32} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) {activation = #moe.activation<silu_and_mul>, gate_up_interleaved, gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
// CHECK: moe.expert_matmul %[[H]], %{{.*}} slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) combine(%[[W]] : tensor<?x2xf32>) {k = 2 : i64, routed_scaling_factor = 2.000000e+00 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%[[SORTED]] : tensor<?xi32>) blocks(%[[BLOCKS]], %[[PADDED]] : tensor<?xi32>, tensor<1xi32>) {block_m = 16 : i64, gather, k = 2 : i64, tile = #moe.tile<block_m = 16, block_n = 64, block_k = 64, stages = 4, split_k = 2, swap_ab = true, group_m = 1>} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xf32>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%[[SRC]] : tensor<?xi32>) offsets(%[[OFF]] : tensor<9xi32>) {k = 2 : i64, unpermute} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x2x16xf32>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} offsets(%[[OFF]] : tensor<9xi32>) {k = 1 : i64} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x16xf32>
func.func @fused_forms(%x: tensor<?x64xbf16>, %wg: tensor<8x64xbf16>, %gb: tensor<8xf32>, %sb: tensor<8xf32>,
                       %w13: tensor<8x64x64xbf16>, %w2: tensor<8x64x32xbf16>, %rows: tensor<?x64xf32>,
                       %wf: tensor<8x16x64xf32>) {
  %w, %ids = moe.route sigmoid %x, %wg gate_bias(%gb : tensor<8xf32>) score_bias(%sb : tensor<8xf32>)
      {k = 2 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, renormalize, routed_scaling_factor = 2.5 : f32}
      : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
  %sorted, %blocks, %padded = moe.align %ids {block_m = 16 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<swiglu>, alpha = 1.702 : f32, limit = 7.0 : f32}
      : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  %hi = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, gate_up_interleaved}
      : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) combine(%w : tensor<?x2xf32>)
      {k = 2 : i64, routed_scaling_factor = 2.0 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  %a = moe.expert_matmul %x, %w13 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64,
       tile = #moe.tile<block_m = 16, block_n = 64, block_k = 64, stages = 4, split_k = 2, swap_ab = true, group_m = 1>}
      : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xf32>
  %u = moe.expert_matmul %rows, %wf slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) {k = 2 : i64, unpermute}
      : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x2x16xf32>
  %p = moe.expert_matmul %rows, %wf offsets(%off : tensor<9xi32>) {k = 1 : i64} : tensor<?x64xf32>, tensor<8x16x64xf32> -> tensor<?x16xf32>
  return
}

// -----

// CHECK-LABEL: func @grouped_matmul_tile
// CHECK: moe.grouped_matmul {{.*}} {tile = #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
func.func @grouped_matmul_tile(%rows: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %off: tensor<9xi32>) -> tensor<?x128xf32> {
  %0 = moe.grouped_matmul %rows, %w, %off {tile = #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}

// -----

// CHECK-LABEL: func @quantized_expert_matmul
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} slots(%{{.*}} : tensor<?xi32>) offsets(%{{.*}} : tensor<9xi32>) input_scales(%{{.*}} : tensor<?x2xf32>) weight_scales(%{{.*}} : tensor<8x1x2xf32>) {gather, k = 2 : i64, quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN> -> tensor<?x128xbf16>
// CHECK: moe.expert_matmul %{{.*}}, %{{.*}} offsets(%{{.*}} : tensor<9xi32>) weight_scales(%{{.*}} : tensor<8x128x2xf32>) weight_zeros(%{{.*}} : tensor<8x128x2xui8>) {k = 1 : i64, quantization = #moe.quant<int4_weight, group = 128, zero_point = true>} : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x128xf32>
func.func @quantized_expert_matmul(%codes: tensor<?x256xf8E4M3FN>, %w: tensor<8x128x256xf8E4M3FN>, %source: tensor<?xi32>, %offsets: tensor<9xi32>,
                                   %xs: tensor<?x2xf32>, %ws: tensor<8x1x2xf32>, %x: tensor<?x256xbf16>, %w4: tensor<8x128x128xui8>,
                                   %w4s: tensor<8x128x2xf32>, %w4z: tensor<8x128x2xui8>) -> (tensor<?x128xbf16>, tensor<?x128xf32>) {
  %0 = moe.expert_matmul %codes, %w slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      input_scales(%xs : tensor<?x2xf32>) weight_scales(%ws : tensor<8x1x2xf32>)
      {gather, k = 2 : i64, quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN> -> tensor<?x128xbf16>
  %1 = moe.expert_matmul %x, %w4 offsets(%offsets : tensor<9xi32>) weight_scales(%w4s : tensor<8x128x2xf32>) weight_zeros(%w4z : tensor<8x128x2xui8>)
      {k = 1 : i64, quantization = #moe.quant<int4_weight, group = 128, zero_point = true>}
      : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x128xf32>
  return %0, %1 : tensor<?x128xbf16>, tensor<?x128xf32>
}

// -----

// CHECK-LABEL: func @ep_exchange
// CHECK: %[[ROWS:.*]], %[[LOCAL:.*]], %[[ORIGIN:.*]] = moe.ep_dispatch all_to_all %{{.*}}, %{{.*}} {placement = #moe.placement<ranks = 2, experts = 8, slots = {{\[\[}}0, 1, 2, 3, 4], [5, 6, 7, 0, 3]]>} : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?xi32>
// CHECK: moe.ep_combine all_to_all %{{.*}}, %[[ORIGIN]], %{{.*}} {ranks = 2 : i64, routed_scaling_factor = 2.500000e+00 : f32} : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xbf16>
// CHECK: moe.ep_dispatch allgather %{{.*}}, %{{.*}} {placement = #moe.placement<ranks = 4, experts = 4, slots = {{\[\[}}0], [1], [2], [3]]>} : tensor<3x16xf32>, tensor<3x1xi32> -> tensor<12x16xf32>, tensor<12x1xi32>, tensor<12xi32>
// CHECK: moe.ep_combine allgather %{{.*}}, %{{.*}}, %{{.*}} {ranks = 4 : i64} : tensor<12x16xf32>, tensor<12xi32>, tensor<3x1xf32> -> tensor<3x16xf32>
func.func @ep_exchange(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %y: tensor<?x64xf32>,
                       %xs: tensor<3x16xf32>, %idss: tensor<3x1xi32>, %ws: tensor<3x1xf32>) -> (tensor<?x64xbf16>, tensor<3x16xf32>) {
  %rows, %local, %origin = moe.ep_dispatch all_to_all %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 8, slots = [[0, 1, 2, 3, 4], [5, 6, 7, 0, 3]]>}
      : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?xi32>
  %out = moe.ep_combine all_to_all %y, %origin, %w {ranks = 2 : i64, routed_scaling_factor = 2.5 : f32}
      : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  %rs, %ls, %os = moe.ep_dispatch allgather %xs, %idss
      {placement = #moe.placement<ranks = 4, experts = 4, slots = [[0], [1], [2], [3]]>}
      : tensor<3x16xf32>, tensor<3x1xi32> -> tensor<12x16xf32>, tensor<12x1xi32>, tensor<12xi32>
  %outs = moe.ep_combine allgather %rs, %os, %ws {ranks = 4 : i64}
      : tensor<12x16xf32>, tensor<12xi32>, tensor<3x1xf32> -> tensor<3x16xf32>
  return %out, %outs : tensor<?x64xbf16>, tensor<3x16xf32>
}
