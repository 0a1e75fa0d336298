// RUN: moe-opt %s -split-input-file -verify-diagnostics -allow-unregistered-dialect

//===----------------------------------------------------------------------===//
// moe.router
//===----------------------------------------------------------------------===//

func.func @router_rank(%x: tensor<?x8x64xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{operand #0 must be 2D tensor of bfloat16 type or 16-bit float or 32-bit float values}}
  %0 = moe.router %x, %w : tensor<?x8x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  return
}

// -----

func.func @router_logits_type(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{result #0 must be 2D tensor of 32-bit float values}}
  %0 = moe.router %x, %w : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xbf16>
  return
}

// -----

func.func @router_dynamic_gate(%x: tensor<?x64xbf16>, %w: tensor<?x64xbf16>) {
  // expected-error @+1 {{expects a static gate_weight shape [E, H]}}
  %0 = moe.router %x, %w : tensor<?x64xbf16>, tensor<?x64xbf16> -> tensor<?x8xf32>
  return
}

// -----

func.func @router_element_types(%x: tensor<?x64xf32>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects input and gate_weight to share an element type, got 'f32' and 'bf16'}}
  %0 = moe.router %x, %w : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x8xf32>
  return
}

// -----

func.func @router_hidden(%x: tensor<?x32xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects input hidden size 32 to match gate_weight hidden size 64}}
  %0 = moe.router %x, %w : tensor<?x32xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  return
}

// -----

func.func @router_bias(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %b: tensor<4xf32>) {
  // expected-error @+1 {{expects bias of size 8 (one per expert)}}
  %0 = moe.router %x, %w bias(%b : tensor<4xf32>) : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  return
}

// -----

func.func @router_logits_shape(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects logits of shape [?, 8], got 'tensor<?x4xf32>'}}
  %0 = moe.router %x, %w : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.topk
//===----------------------------------------------------------------------===//

func.func @topk_unknown_scoring(%l: tensor<?x8xf32>) {
  // expected-error @+2 {{expected one of [softmax, sigmoid, topk_softmax] for expert scoring function, got: relu}}
  // expected-error @+1 {{invalid value for property scoring}}
  %w, %i = moe.topk relu %l {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_zero_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i = moe.topk softmax %l {k = 0 : i64} : tensor<?x8xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}

// -----

func.func @topk_negative_scale(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{attribute 'routed_scaling_factor' failed to satisfy constraint: 32-bit float attribute whose value is positive}}
  %w, %i = moe.topk softmax %l {k = 2 : i64, routed_scaling_factor = -1.0 : f32} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_dynamic_experts(%l: tensor<?x?xf32>) {
  // expected-error @+1 {{expects dimension 1 of logits to be static, got 'tensor<?x?xf32>'}}
  %w, %i = moe.topk softmax %l {k = 2 : i64} : tensor<?x?xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_k_too_large(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects k (9) to be at most the number of experts (8)}}
  %w, %i = moe.topk softmax %l {k = 9 : i64} : tensor<?x8xf32> -> tensor<?x9xf32>, tensor<?x9xi32>
  return
}

// -----

func.func @topk_bias(%l: tensor<?x8xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{expects bias of size 8 (one per expert), got 'tensor<16xf32>'}}
  %w, %i = moe.topk sigmoid %l bias(%b : tensor<16xf32>) {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_groups_alone(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects num_groups and topk_groups to be given together}}
  %w, %i = moe.topk sigmoid %l {k = 2 : i64, num_groups = 4 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_groups_divide(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects num_groups (3) to divide the number of experts (8)}}
  %w, %i = moe.topk sigmoid %l {k = 2 : i64, num_groups = 3 : i64, topk_groups = 1 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_groups_too_many(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects topk_groups (5) to be at most num_groups (4)}}
  %w, %i = moe.topk sigmoid %l {k = 2 : i64, num_groups = 4 : i64, topk_groups = 5 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_groups_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects k (3) to be at most the experts in the selected groups (2)}}
  %w, %i = moe.topk sigmoid %l {k = 3 : i64, num_groups = 4 : i64, topk_groups = 1 : i64} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @topk_result_shape(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects results of shape [?, 2], got 'tensor<?x3xi32>'}}
  %w, %i = moe.topk softmax %l {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x3xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.permute
//===----------------------------------------------------------------------===//

func.func @permute_ids_type(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi64>) {
  // expected-error @+1 {{operand #1 must be 2D tensor of 32-bit signless integer values}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi64> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_dynamic_hidden(%x: tensor<?x?xbf16>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects dimension 1 of input to be static}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x?xbf16>, tensor<?x2xi32> -> tensor<?x?xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_dynamic_k(%x: tensor<?x64xbf16>, %ids: tensor<?x?xi32>) {
  // expected-error @+1 {{expects dimension 1 of ids to be static}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x?xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_dynamic_offsets(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects dimension 0 of offsets to be static}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_no_expert(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects offsets of size E + 1 with 1 <= E <= 65536 experts, got 'tensor<1xi32>'}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<1xi32>, tensor<?xi32>
  return
}

// -----

// A static size the lowerings would allocate from (2^40 + 1 offsets).
func.func @permute_too_many_experts(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects offsets of size E + 1 with 1 <= E <= 65536 experts, got 'tensor<1099511627777xi32>'}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<1099511627777xi32>, tensor<?xi32>
  return
}

// -----

// No experts per token: the schedule has no rows.
func.func @permute_no_choices(%x: tensor<?x256xbf16>, %ids: tensor<?x0xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of ids), got 'tensor<?x0xi32>'}}
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x0xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_token_count(%x: tensor<4x64xbf16>, %ids: tensor<3x2xi32>) {
  // expected-error @+1 {{expects one row of ids per input row}}
  %r, %o, %s = moe.permute %x, %ids : tensor<4x64xbf16>, tensor<3x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_rows_type(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects rows with the element type and hidden size of input}}
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @permute_row_count(%x: tensor<4x64xbf16>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{expects rows and source to have M * k = 8 rows, got 'tensor<4x64xbf16>' and 'tensor<?xi32>'}}
  %r, %o, %s = moe.permute %x, %ids : tensor<4x64xbf16>, tensor<4x2xi32> -> tensor<4x64xbf16>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.grouped_matmul
//===----------------------------------------------------------------------===//

func.func @gmm_unknown_quant(%r: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+2 {{expected ::mlir::moe::QuantFormat to be one of: none, fp8, int8, int4_weight, int8_weight, mxfp4}}
  // expected-error @+1 {{failed to parse Moe_QuantizationAttr parameter 'format'}}
  %0 = moe.grouped_matmul %r, %w, %o {quantization = #moe.quant<nvfp4>} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_fp8_of_bf16(%r: tensor<?x128xbf16>, %w: tensor<8x128x128xbf16>, %o: tensor<9xi32>, %rs: tensor<1xf32>, %ws: tensor<8xf32>) {
  // expected-error @+1 {{expects rows and weights of 'f8E4M3FN' for #moe.quant<fp8, scales = per_tensor>, got 'bf16' and 'bf16'}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<1xf32>) weight_scales(%ws : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_fp8_without_scales(%r: tensor<?x128xf8E4M3FN>, %w: tensor<8x128x128xf8E4M3FN>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects input and weight scales for #moe.quant<fp8, scales = per_tensor>}}
  %0 = moe.grouped_matmul %r, %w, %o {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x128xf8E4M3FN>, tensor<8x128x128xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_per_token_scales_shape(%r: tensor<4x128xi8>, %w: tensor<8x256x128xi8>, %o: tensor<9xi32>, %rs: tensor<1xf32>, %ws: tensor<8x256xf32>) {
  // expected-error @+1 {{expects input scales of shape [4] for #moe.quant<int8, scales = per_token_channel>, got 'tensor<1xf32>'}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<1xf32>) weight_scales(%ws : tensor<8x256xf32>) {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<4x128xi8>, tensor<8x256x128xi8>, tensor<9xi32> -> tensor<4x256xbf16>
  return
}

// -----

func.func @gmm_block_weight_scales_shape(%r: tensor<?x256xf8E4M3FN>, %w: tensor<8x128x256xf8E4M3FN>, %o: tensor<9xi32>, %rs: tensor<?x2xf32>, %ws: tensor<8x2x2xf32>) {
  // expected-error @+1 {{expects weight scales of shape [8, 1, 2] for #moe.quant<fp8, scales = block>, got 'tensor<8x2x2xf32>'}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<?x2xf32>) weight_scales(%ws : tensor<8x2x2xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

func.func @gmm_block_not_dividing(%r: tensor<?x192xf8E4M3FN>, %w: tensor<8x128x192xf8E4M3FN>, %o: tensor<9xi32>, %rs: tensor<?x1xf32>, %ws: tensor<8x1x1xf32>) {
  // expected-error @+1 {{expects K and N to be multiples of 128 for block scales, got K = 192 and N = 128}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<?x1xf32>) weight_scales(%ws : tensor<8x1x1xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x192xf8E4M3FN>, tensor<8x128x192xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

func.func @gmm_scales_without_quantization(%r: tensor<?x128xbf16>, %w: tensor<8x128x128xbf16>, %o: tensor<9xi32>, %rs: tensor<1xf32>, %ws: tensor<8xf32>) {
  // expected-error @+1 {{takes scales and zeros only with a quantization, not #moe.quant<none>}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<1xf32>) weight_scales(%ws : tensor<8xf32>) : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_weight_only_without_scales(%r: tensor<?x128xbf16>, %w: tensor<8x128x64xui8>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects weight scales for #moe.quant<int4_weight, group = 128>}}
  %0 = moe.grouped_matmul %r, %w, %o {quantization = #moe.quant<int4_weight, group = 128>} : tensor<?x128xbf16>, tensor<8x128x64xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_weight_only_fp8_rows(%r: tensor<?x128xf8E4M3FN>, %w: tensor<8x128x64xui8>, %o: tensor<9xi32>, %s: tensor<8x128x1xf32>) {
  // expected-error @+1 {{expects floating-point rows for #moe.quant<int4_weight, group = 128>}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x1xf32>) {quantization = #moe.quant<int4_weight, group = 128>} : tensor<?x128xf8E4M3FN>, tensor<8x128x64xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_weight_only_input_scales(%r: tensor<?x128xbf16>, %w: tensor<8x128x64xui8>, %o: tensor<9xi32>, %a: tensor<1xf32>, %s: tensor<8x128x1xf32>) {
  // expected-error @+1 {{takes no input scales for #moe.quant<int4_weight, group = 128>}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%a : tensor<1xf32>) weight_scales(%s : tensor<8x128x1xf32>) {quantization = #moe.quant<int4_weight, group = 128>} : tensor<?x128xbf16>, tensor<8x128x64xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_weight_only_missing_zeros(%r: tensor<?x128xbf16>, %w: tensor<8x128x64xui8>, %o: tensor<9xi32>, %s: tensor<8x128x1xf32>) {
  // expected-error @+1 {{expects weight zeros for #moe.quant<int4_weight, group = 128, zero_point = true>}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x1xf32>) {quantization = #moe.quant<int4_weight, group = 128, zero_point = true>} : tensor<?x128xbf16>, tensor<8x128x64xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_int8_weight_signed_with_zeros(%r: tensor<?x128xbf16>, %w: tensor<8x128x128xi8>, %o: tensor<9xi32>, %s: tensor<8x128x2xf32>, %z: tensor<8x128x2xui8>) {
  // expected-error @+1 {{expects weights stored as 'ui8' for #moe.quant<int8_weight, group = 64, zero_point = true>, got 'tensor<8x128x128xi8>'}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x2xf32>) weight_zeros(%z : tensor<8x128x2xui8>) {quantization = #moe.quant<int8_weight, group = 64, zero_point = true>} : tensor<?x128xbf16>, tensor<8x128x128xi8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_int4_group_not_dividing(%r: tensor<?x96xbf16>, %w: tensor<8x128x48xui8>, %o: tensor<9xi32>, %s: tensor<8x128x1xf32>) {
  // expected-error @+1 {{expects K = 96 to be a multiple of the group 64}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x1xf32>) {quantization = #moe.quant<int4_weight, group = 64>} : tensor<?x96xbf16>, tensor<8x128x48xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_mxfp4_f32_scales(%r: tensor<?x64xbf16>, %w: tensor<8x128x32xui8>, %o: tensor<9xi32>, %s: tensor<8x128x2xf32>) {
  // expected-error @+1 {{expects weight scales of 'ui8' and shape [8, 128, 2] for #moe.quant<mxfp4>, got 'tensor<8x128x2xf32>'}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x2xf32>) {quantization = #moe.quant<mxfp4>} : tensor<?x64xbf16>, tensor<8x128x32xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_zeros_shape(%r: tensor<?x128xbf16>, %w: tensor<8x128x64xui8>, %o: tensor<9xi32>, %s: tensor<8x128x4xf32>, %z: tensor<8x128x2xui8>) {
  // expected-error @+1 {{expects weight zeros of the scales' shape, got 'tensor<8x128x2xui8>'}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x4xf32>) weight_zeros(%z : tensor<8x128x2xui8>) {quantization = #moe.quant<int4_weight, group = 32, zero_point = true>} : tensor<?x128xbf16>, tensor<8x128x64xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_w8a8_with_zeros(%r: tensor<?x128xi8>, %w: tensor<8x128x128xi8>, %o: tensor<9xi32>, %a: tensor<?xf32>, %s: tensor<8x128xf32>, %z: tensor<8x128x1xui8>) {
  // expected-error @+1 {{takes no weight zeros for #moe.quant<int8, scales = per_token_channel>}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%a : tensor<?xf32>) weight_scales(%s : tensor<8x128xf32>) weight_zeros(%z : tensor<8x128x1xui8>) {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x128xi8>, tensor<8x128x128xi8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

// expected-error @+1 {{'fp8' needs a scale layout (scales = ...)}}
func.func @quant_fp8_without_scales() attributes {q = #moe.quant<fp8>} {
  return
}

// -----

// expected-error @+1 {{'mxfp4' takes no scale layout}}
func.func @quant_scales_on_weight_only() attributes {q = #moe.quant<mxfp4, scales = per_tensor>} {
  return
}

// -----

// expected-error @+1 {{'int8' supports only scales = per_token_channel, got block}}
func.func @quant_int8_block() attributes {q = #moe.quant<int8, scales = block>} {
  return
}

// -----

// expected-error @+1 {{'int4_weight' needs a group size (group = ...)}}
func.func @quant_int4_without_group() attributes {q = #moe.quant<int4_weight>} {
  return
}

// -----

// expected-error @+1 {{'fp8' takes no group size}}
func.func @quant_group_on_fp8() attributes {q = #moe.quant<fp8, scales = per_tensor, group = 128>} {
  return
}

// -----

// expected-error @+1 {{group size must be 32, 64 or 128, got 100}}
func.func @quant_group_size() attributes {q = #moe.quant<int8_weight, group = 100>} {
  return
}

// -----

// expected-error @+1 {{packed = wgmma_a_4bit orders 4-bit codes (int4_weight, mxfp4), not 'int8_weight'}}
func.func @quant_packed_int8() attributes {q = #moe.quant<int8_weight, group = 64, packed = wgmma_a_4bit>} {
  return
}

// -----

func.func @gmm_packed_rows_not_tiled(%r: tensor<?x128xbf16>, %w: tensor<8x96x64xui8>, %o: tensor<9xi32>, %s: tensor<8x96x1xf32>) {
  // expected-error @+1 {{expects N and K to be multiples of 64 for codes packed as wgmma_a_4bit, got N = 96 and K = 128}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x96x1xf32>) {quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>} : tensor<?x128xbf16>, tensor<8x96x64xui8>, tensor<9xi32> -> tensor<?x96xf32>
  return
}

// -----

func.func @gmm_packed_k_not_tiled(%r: tensor<?x96xbf16>, %w: tensor<8x128x48xui8>, %o: tensor<9xi32>, %s: tensor<8x128x3xf32>) {
  // expected-error @+1 {{expects N and K to be multiples of 64 for codes packed as wgmma_a_4bit, got N = 128 and K = 96}}
  %0 = moe.grouped_matmul %r, %w, %o weight_scales(%s : tensor<8x128x3xf32>) {quantization = #moe.quant<int4_weight, group = 32, packed = wgmma_a_4bit>} : tensor<?x96xbf16>, tensor<8x128x48xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

// expected-error @+1 {{zero points apply to the weight-only integer formats, not 'mxfp4'}}
func.func @quant_zero_point_on_mxfp4() attributes {q = #moe.quant<mxfp4, zero_point = true>} {
  return
}

// -----

func.func @prepack_signed_codes(%w: tensor<8x256x64xi8>) {
  // expected-error @+1 {{operand #0 must be 3D tensor of 8-bit unsigned integer values}}
  %p = moe.prepack wgmma_a_4bit %w : tensor<8x256x64xi8> -> tensor<8x4x2x2048xui8>
  return
}

// -----

func.func @prepack_rows(%w: tensor<8x96x64xui8>) {
  // expected-error @+1 {{expects static codes [E, N, K/2] with N a multiple of 64 and K of 64 for wgmma_a_4bit, got 'tensor<8x96x64xui8>'}}
  %p = moe.prepack wgmma_a_4bit %w : tensor<8x96x64xui8> -> tensor<8x1x2x2048xui8>
  return
}

// -----

func.func @prepack_dynamic_k(%w: tensor<8x128x?xui8>) {
  // expected-error @+1 {{expects static codes [E, N, K/2] with N a multiple of 64 and K of 64 for wgmma_a_4bit, got 'tensor<8x128x?xui8>'}}
  %p = moe.prepack wgmma_a_4bit %w : tensor<8x128x?xui8> -> tensor<8x2x?x2048xui8>
  return
}

// -----

func.func @prepack_dynamic_experts(%w: tensor<?x128x64xui8>) {
  // expected-error @+1 {{expects static codes [E, N, K/2] with N a multiple of 64 and K of 64 for wgmma_a_4bit, got 'tensor<?x128x64xui8>'}}
  %p = moe.prepack wgmma_a_4bit %w : tensor<?x128x64xui8> -> tensor<?x2x2x2048xui8>
  return
}

// -----

func.func @prepack_result_shape(%w: tensor<8x128x64xui8>) {
  // expected-error @+1 {{expects packed codes of shape [8, 2, 2, 2048], got 'tensor<8x2x2x1024xui8>'}}
  %p = moe.prepack wgmma_a_4bit %w : tensor<8x128x64xui8> -> tensor<8x2x2x1024xui8>
  return
}

// -----

func.func @quantize_weight_only(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{quantizes activations for a w8a8 format, not #moe.quant<mxfp4>}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<mxfp4>} : tensor<?x256xbf16> -> tensor<?x256xi8>, tensor<?xf32>
  return
}

// -----

func.func @quantize_codes_type(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{expects codes of the input's shape in 'f8E4M3FN', got 'tensor<?x256xi8>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<?x256xi8>, tensor<?xf32>
  return
}

// -----

func.func @quantize_block_not_dividing(%x: tensor<?x200xbf16>) {
  // expected-error @+1 {{expects a static K that is a multiple of 128 for block scales, got 'tensor<?x200xbf16>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>} : tensor<?x200xbf16> -> tensor<?x200xf8E4M3FN>, tensor<?x1xf32>
  return
}

// -----

func.func @quantize_scales_shape(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{expects scales of shape [?, 2] for #moe.quant<fp8, scales = block>, got 'tensor<?xf32>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?xf32>
  return
}

// -----

// A static 1 never stands for a dynamic row count (issue 13, crash class 4:
// the per-token scales were written past a one-element buffer).
func.func @quantize_static_one_for_rows(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{expects scales of shape [?] for #moe.quant<fp8, scales = per_token_channel>, got 'tensor<1xf32>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  return
}

// -----

// Crash class 5: a per-tensor scale typed as a row count.
func.func @quantize_per_tensor_rows(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{expects scales of shape [1] for #moe.quant<fp8, scales = per_tensor>, got 'tensor<?xf32>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?xf32>
  return
}

// -----

func.func @quantize_codes_static_rows(%x: tensor<?x256xbf16>) {
  // expected-error @+1 {{expects codes of the input's shape in 'f8E4M3FN', got 'tensor<4x256xf8E4M3FN>'}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<4x256xf8E4M3FN>, tensor<?xf32>
  return
}

// -----

func.func @gmm_scales_static_one_for_rows(%r: tensor<?x64xf8E4M3FN>, %w: tensor<8x128x64xf8E4M3FN>, %o: tensor<9xi32>, %rs: tensor<1xf32>, %ws: tensor<8x128xf32>) {
  // expected-error @+1 {{expects input scales of shape [?] for #moe.quant<fp8, scales = per_token_channel>, got 'tensor<1xf32>'}}
  %0 = moe.grouped_matmul %r, %w, %o input_scales(%rs : tensor<1xf32>) weight_scales(%ws : tensor<8x128xf32>) {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x64xf8E4M3FN>, tensor<8x128x64xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

// The producer's scale layout must be the consumer's, even where the shapes
// agree (one row: per tensor and per token are both [1]).
func.func @gmm_scales_of_another_layout(%x: tensor<1x64xbf16>, %w: tensor<8x128x64xf8E4M3FN>, %o: tensor<9xi32>, %ws: tensor<8x128xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<1x64xbf16> -> tensor<1x64xf8E4M3FN>, tensor<1xf32>
  // expected-error @+1 {{expects input scales quantized as #moe.quant<fp8, scales = per_token_channel>, got scales of #moe.quant<fp8, scales = per_tensor>}}
  %0 = moe.grouped_matmul %c, %w, %o input_scales(%s : tensor<1xf32>) weight_scales(%ws : tensor<8x128xf32>) {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<1x64xf8E4M3FN>, tensor<8x128x64xf8E4M3FN>, tensor<9xi32> -> tensor<1x128xf32>
  return
}

// -----

func.func @gmm_dynamic_weights(%r: tensor<?x64xbf16>, %w: tensor<?x128x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects a static weights shape [E, N, K]}}
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x64xbf16>, tensor<?x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_offsets(%r: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %o: tensor<8xi32>) {
  // expected-error @+1 {{expects offsets of size E + 1 = 9, got 'tensor<8xi32>'}}
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<8xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_inner(%r: tensor<?x32xbf16>, %w: tensor<8x128x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects rows with K = 64 columns to match weights}}
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x32xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_element_types(%r: tensor<?x64xf32>, %w: tensor<8x128x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects rows and weights to share an element type without quantization, got 'f32' and 'bf16'}}
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x64xf32>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @gmm_result(%r: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects result of shape [?, 128], got 'tensor<?x64xf32>'}}
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.activation
//===----------------------------------------------------------------------===//

func.func @activation_unknown(%h: tensor<?x64xf32>) {
  // expected-error @+2 {{expected one of [silu_and_mul, gelu_and_mul, swiglu] for gated activation, got: relu}}
  // expected-error @+1 {{invalid value for property kind}}
  %0 = moe.activation relu %h : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @activation_dynamic(%h: tensor<?x?xf32>) {
  // expected-error @+1 {{expects dimension 1 of input to be static}}
  %0 = moe.activation silu_and_mul %h : tensor<?x?xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @activation_odd(%h: tensor<?x63xf32>) {
  // expected-error @+1 {{expects an even last dimension holding [gate | up], got 63}}
  %0 = moe.activation silu_and_mul %h : tensor<?x63xf32> -> tensor<?x31xf32>
  return
}

// -----

func.func @activation_result(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{expects result of shape [?, 32], got 'tensor<?x64xf32>'}}
  %0 = moe.activation silu_and_mul %h : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @activation_swiglu_params(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{expects swiglu to carry both alpha and limit}}
  %0 = moe.activation swiglu %h {alpha = 1.702 : f32} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @activation_stray_params(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{expects alpha and limit only with swiglu, not silu_and_mul}}
  %0 = moe.activation silu_and_mul %h {limit = 7.0 : f32} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @activation_negative_limit(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{attribute 'limit' failed to satisfy constraint: 32-bit float attribute whose value is positive}}
  %0 = moe.activation swiglu %h {alpha = 1.702 : f32, limit = -7.0 : f32} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.unpermute
//===----------------------------------------------------------------------===//

func.func @unpermute_dynamic_k(%y: tensor<?x64xf32>, %s: tensor<?xi32>) {
  // expected-error @+1 {{expects dimension 1 of result to be static}}
  %0 = moe.unpermute %y, %s : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @unpermute_width(%y: tensor<?x64xf32>, %s: tensor<?xi32>) {
  // expected-error @+1 {{expects result [M, k, N] with the static N and element type of rows}}
  %0 = moe.unpermute %y, %s : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x32xf32>
  return
}

// -----

func.func @unpermute_source(%y: tensor<8x64xf32>, %s: tensor<6xi32>) {
  // expected-error @+1 {{expects one source index per row, got 'tensor<6xi32>' for 'tensor<8x64xf32>'}}
  %0 = moe.unpermute %y, %s : tensor<8x64xf32>, tensor<6xi32> -> tensor<4x2x64xf32>
  return
}

// -----

func.func @unpermute_count(%y: tensor<8x64xf32>, %s: tensor<8xi32>) {
  // expected-error @+1 {{expects M * k = 6 rows, got 'tensor<8x64xf32>'}}
  %0 = moe.unpermute %y, %s : tensor<8x64xf32>, tensor<8xi32> -> tensor<3x2x64xf32>
  return
}

// -----

func.func @unpermute_no_choices(%y: tensor<?x64xf32>, %s: tensor<?xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of result), got 'tensor<?x0x64xf32>'}}
  %0 = moe.unpermute %y, %s : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x0x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

func.func @combine_no_choices(%y: tensor<?x0x64xf32>, %w: tensor<?x0xf32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of input), got 'tensor<?x0x64xf32>'}}
  %0 = moe.combine %y, %w : tensor<?x0x64xf32>, tensor<?x0xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_dynamic_k(%y: tensor<?x?x64xf32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects dimension 1 of input to be static}}
  %0 = moe.combine %y, %w : tensor<?x?x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_dynamic_hidden(%y: tensor<?x2x?xf32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects dimension 2 of input to be static}}
  %0 = moe.combine %y, %w : tensor<?x2x?xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_weights(%y: tensor<?x2x64xf32>, %w: tensor<?x4xf32>) {
  // expected-error @+1 {{expects weights of shape [?, 2], got 'tensor<?x4xf32>'}}
  %0 = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x4xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_result(%y: tensor<?x2x64xf32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects result of shape [?, 64], got 'tensor<?x32xf32>'}}
  %0 = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x32xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Fused and scheduled forms
//===----------------------------------------------------------------------===//

func.func @route_dynamic_gate(%x: tensor<?x64xbf16>, %w: tensor<?x64xbf16>) {
  // expected-error @+1 {{expects a static gate_weight shape [E, H]}}
  %a, %b = moe.route softmax %x, %w {k = 2 : i64} : tensor<?x64xbf16>, tensor<?x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_element_types(%x: tensor<?x64xf32>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects input and gate_weight to share an element type}}
  %a, %b = moe.route softmax %x, %w {k = 2 : i64} : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_hidden(%x: tensor<?x32xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects input hidden size 32 to match gate_weight hidden size 64}}
  %a, %b = moe.route softmax %x, %w {k = 2 : i64} : tensor<?x32xbf16>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_gate_bias(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %b: tensor<4xf32>) {
  // expected-error @+1 {{expects gate_bias of size 8 (one per expert)}}
  %a, %i = moe.route softmax %x, %w gate_bias(%b : tensor<4xf32>) {k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_topk_semantics(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) {
  // expected-error @+1 {{expects k (9) to be at most the number of experts (8)}}
  %a, %b = moe.route softmax %x, %w {k = 9 : i64} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x9xf32>, tensor<?x9xi32>
  return
}

// -----

func.func @sort_dynamic_k(%ids: tensor<?x?xi32>) {
  // expected-error @+1 {{expects dimension 1 of ids to be static}}
  %o, %s = moe.sort %ids : tensor<?x?xi32> -> tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @sort_dynamic_offsets(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects dimension 0 of offsets to be static}}
  %o, %s = moe.sort %ids : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>
  return
}

// -----

func.func @sort_no_expert(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects offsets of size E + 1 with 1 <= E <= 65536 experts}}
  %o, %s = moe.sort %ids : tensor<?x2xi32> -> tensor<1xi32>, tensor<?xi32>
  return
}

// -----

func.func @sort_no_choices(%ids: tensor<?x0xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of ids), got 'tensor<?x0xi32>'}}
  %o, %s = moe.sort %ids : tensor<?x0xi32> -> tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @sort_source(%ids: tensor<3x2xi32>) {
  // expected-error @+1 {{expects source of M * k = 6 entries, got 'tensor<5xi32>'}}
  %o, %s = moe.sort %ids : tensor<3x2xi32> -> tensor<9xi32>, tensor<5xi32>
  return
}

// -----

func.func @align_dynamic_k(%ids: tensor<?x?xi32>) {
  // expected-error @+1 {{expects dimension 1 of ids to be static}}
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<?x?xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

func.func @align_sorted(%ids: tensor<3x2xi32>) {
  // expected-error @+1 {{expects sorted_ids of M * k + E * (block_m - 1) = 30 entries, got 'tensor<6xi32>'}}
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<3x2xi32> -> tensor<6xi32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

func.func @align_blocks(%ids: tensor<3x2xi32>) {
  // expected-error @+1 {{expects block_experts of ceil(slots / block_m) = 8 entries, got 'tensor<7xi32>'}}
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<3x2xi32> -> tensor<30xi32>, tensor<7xi32>, tensor<1xi32>
  return
}

// -----

func.func @align_padded(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects num_padded of type tensor<1xi32>, got 'tensor<2xi32>'}}
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<2xi32>
  return
}

// -----

func.func @align_block_m(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'block_m' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %s, %b, %p = moe.align %ids {block_m = 0 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

// Sizes whose padding E · (block_m − 1) would not fit the i32 slots (and
// whose static result sizes could not be allocated).
func.func @align_huge_block_m(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects num_experts <= 65536 and block_m <= 4096, got 8 and 9223372036854775807}}
  %s, %b, %p = moe.align %ids {block_m = 9223372036854775807 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

func.func @align_no_choices(%ids: tensor<?x0xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of ids), got 'tensor<?x0xi32>'}}
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<?x0xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

func.func @em_dynamic_weights(%x: tensor<?x64xbf16>, %w: tensor<?x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects a static weights shape [E, N, K]}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64} : tensor<?x64xbf16>, tensor<?x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @shared_routing_too_many(%w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects at most 65536 shared experts, got 65537}}
  %0:2 = moe.shared_expert_routing %w {num_shared = 65537 : i64} : tensor<?x2xf32> -> tensor<?x65537xf32>, tensor<?x65537xi32>
  return
}

// -----

func.func @shared_routing_gate(%w: tensor<4x2xf32>, %g: tensor<5x1xf32>) {
  // expected-error @+1 {{expects gate logits of shape [4, 1], got 'tensor<5x1xf32>'}}
  %0:2 = moe.shared_expert_routing %w gate(%g : tensor<5x1xf32>) : tensor<4x2xf32> -> tensor<4x1xf32>, tensor<4x1xi32>
  return
}

// -----

func.func @shared_routing_results(%w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects results of shape [?, 2] (one column per shared expert), got 'tensor<?x1xi32>'}}
  %0:2 = moe.shared_expert_routing %w {num_shared = 2 : i64} : tensor<?x2xf32> -> tensor<?x2xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @shared_routing_zero(%w: tensor<?x2xf32>) {
  // expected-error @+1 {{attribute 'num_shared' failed to satisfy constraint}}
  %0:2 = moe.shared_expert_routing %w {num_shared = 0 : i64} : tensor<?x2xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}

// -----

func.func @shared_no_choices(%w: tensor<?x0xf32>, %ids: tensor<?x0xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of routed_ids), got 'tensor<?x0xi32>'}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 8 : i64} : tensor<?x0xf32>, tensor<?x0xi32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @shared_weights_shape(%w: tensor<?x3xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects routed weights of the routed ids' shape [?, 2], got 'tensor<?x3xf32>'}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 8 : i64} : tensor<?x3xf32>, tensor<?x2xi32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @shared_too_many_experts(%w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects at most 65536 routed and shared experts, got 65536 + 1}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 65536 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @shared_huge_count(%w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects at most 65536 routed and shared experts, got 1 + 9223372036854775807}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 1 : i64, num_shared = 9223372036854775807 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x?xf32>, tensor<?x?xi32>
  return
}

// -----

func.func @shared_width_overflow(%w: tensor<?x9223372036854775807xf32>, %ids: tensor<?x9223372036854775807xi32>) {
  // expected-error @+1 {{expects k + num_shared to fit in int64_t, got 9223372036854775807 + 1}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 8 : i64} : tensor<?x9223372036854775807xf32>, tensor<?x9223372036854775807xi32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @shared_gate_shape(%w: tensor<?x2xf32>, %ids: tensor<?x2xi32>, %g: tensor<?x2xf32>) {
  // expected-error @+1 {{expects gate logits of shape [?, 1], got 'tensor<?x2xf32>'}}
  %0:2 = moe.add_shared_experts %w, %ids gate(%g : tensor<?x2xf32>) {num_experts = 8 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @shared_result_shape(%w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects results of shape [?, 4] (k routed, then the shared experts), got 'tensor<?x3xi32>'}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 8 : i64, num_shared = 2 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x4xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @shared_zero_count(%w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'num_shared' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0:2 = moe.add_shared_experts %w, %ids {num_experts = 8 : i64, num_shared = 0 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @gm_bias_shape(%rows: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %off: tensor<9xi32>, %b: tensor<8x64xf32>) {
  // expected-error @+1 {{expects a bias of shape [8, 128] (experts, product columns), got 'tensor<8x64xf32>'}}
  %0 = moe.grouped_matmul %rows, %w, %off bias(%b : tensor<8x64xf32>) : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  return
}

// -----

func.func @em_bias_shape(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %b: tensor<?x64xf32>) {
  // expected-error @+1 {{expects a bias of shape [8, 64] (experts, product columns), got 'tensor<?x64xf32>'}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) bias(%b : tensor<?x64xf32>) {k = 1 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_bias_element_type(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %b: tensor<8x64xbf16>) {
  // expected-error @+1 {{operand #3 must be 2D tensor of 32-bit float values}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) bias(%b : tensor<8x64xbf16>) {k = 1 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_inner(%x: tensor<?x32xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects input with K = 64 columns to match weights}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64} : tensor<?x32xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_element_types(%x: tensor<?x64xf32>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects input and weights to share an element type without quantization}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64} : tensor<?x64xf32>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_no_schedule(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>) {
  // expected-error @+1 {{expects exactly one schedule: offsets(...) or blocks(...)}}
  %0 = moe.expert_matmul %x, %w  {k = 1 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_block_m_without_blocks(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects block_m exactly with blocks(...)}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, block_m = 16 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

// Found by scripts/fuzz.py (seed 11): a block of 2^63 - 1 rows made
// moe-run loop for minutes.
func.func @em_huge_block_m(%h: tensor<?x32xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %rw: tensor<?x2xf32>, %w2: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{expects block_m <= 4096, the limit of moe.align, got 9223372036854775807}}
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) {k = 2 : i64, block_m = 9223372036854775807 : i64} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_offsets_size(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<8xi32>) {
  // expected-error @+1 {{expects offsets of size E + 1 = 9, got 'tensor<8xi32>'}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<8xi32>) {k = 1 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_num_padded(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %s: tensor<?xi32>, %b: tensor<?xi32>, %p: tensor<2xi32>) {
  // expected-error @+1 {{expects num_padded of type tensor<1xi32>}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) blocks(%b, %p : tensor<?xi32>, tensor<2xi32>) {gather, k = 2 : i64, block_m = 16 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_needs_slots(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects slots(...) with gather, unpermute, combine or an aligned schedule}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_unpermute_and_combine(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %s: tensor<?xi32>, %r: tensor<?x2xf32>) {
  // expected-error @+1 {{expects at most one of unpermute and combine}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) combine(%r : tensor<?x2xf32>) {gather, k = 2 : i64, unpermute} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_odd_activation(%x: tensor<?x64xbf16>, %w: tensor<8x63x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects an even N holding [gate | up] for the activation, got 63}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x64xbf16>, tensor<8x63x64xbf16> -> tensor<?x31xbf16>
  return
}

// -----

func.func @em_swiglu_params(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects swiglu to carry both alpha and limit}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, activation = #moe.activation<swiglu>, alpha = 1.0 : f32} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  return
}

// -----

func.func @em_stray_params(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects alpha and limit only with swiglu}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, activation = #moe.activation<silu_and_mul>, alpha = 1.0 : f32} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  return
}

// -----

func.func @em_params_without_activation(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects alpha and limit only with swiglu}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, limit = 7.0 : f32} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_interleaved_without_activation(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects gate_up_interleaved only with an activation, which pairs the columns}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, gate_up_interleaved} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_accumulate_without_combine(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %p: tensor<?x64xf32>) {
  // expected-error @+1 {{expects accumulate(...) only with combine}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) accumulate(%p : tensor<?x64xf32>) {k = 1 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_accumulate_shape(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %s: tensor<?xi32>, %o: tensor<9xi32>, %rw: tensor<?x2xf32>, %p: tensor<?x32xf32>) {
  // expected-error @+1 {{expects partial sums [M, 64] matching the result, got 'tensor<?x32xf32>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) combine(%rw : tensor<?x2xf32>) accumulate(%p : tensor<?x32xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_accumulate_rows(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %s: tensor<?xi32>, %o: tensor<9xi32>, %rw: tensor<4x2xf32>, %p: tensor<5x64xf32>) {
  // expected-error @+1 {{expects partial sums [M, 64] matching the result, got 'tensor<5x64xf32>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) combine(%rw : tensor<4x2xf32>) accumulate(%p : tensor<5x64xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<4x64xbf16>
  return
}

// -----

func.func @em_accumulate_type(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %s: tensor<?xi32>, %o: tensor<9xi32>, %rw: tensor<?x2xf32>, %p: tensor<?x64xbf16>) {
  // expected-error @+1 {{operand #5 must be 2D tensor of 32-bit float values, but got 'tensor<?x64xbf16>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) combine(%rw : tensor<?x2xf32>) accumulate(%p : tensor<?x64xbf16>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_scale_without_combine(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects routed_scaling_factor only with combine}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, routed_scaling_factor = 2.0 : f32} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_rows_per_slot(%x: tensor<5x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %s: tensor<6xi32>) {
  // expected-error @+1 {{expects one input row per slot without gather, got 'tensor<5x64xbf16>' for 6 slots}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<6xi32>) offsets(%o : tensor<9xi32>) {k = 2 : i64, unpermute} : tensor<5x64xbf16>, tensor<8x64x64xbf16> -> tensor<3x2x64xbf16>
  return
}

// -----

func.func @em_unpermute_result(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %s: tensor<?xi32>) {
  // expected-error @+1 {{expects an unpermuted result [M, 2, 64], got 'tensor<?x3x64xbf16>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) {gather, k = 2 : i64, unpermute} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x3x64xbf16>
  return
}

// -----

func.func @em_result_width(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects a result [S, 32], got 'tensor<?x64xbf16>'}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_combine_weights(%x: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>, %s: tensor<?xi32>, %r: tensor<?x3xf32>) {
  // expected-error @+1 {{expects routing weights [M, 2] matching the result, got 'tensor<?x3xf32>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) combine(%r : tensor<?x3xf32>) {gather, k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @em_rows_count(%x: tensor<6x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) {
  // expected-error @+1 {{expects one result row per slot, got 'tensor<5x64xbf16>'}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64} : tensor<6x64xbf16>, tensor<8x64x64xbf16> -> tensor<5x64xbf16>
  return
}

// -----

func.func @tile_sizes() {
  // expected-error @+1 {{tile sizes must be positive, got 0x64x64}}
  "test.op"() {tile = #moe.tile<block_m = 0, block_n = 64, block_k = 64, stages = 2, split_k = 1, swap_ab = false, group_m = 1>} : () -> ()
  return
}

// -----

func.func @tile_stages() {
  // expected-error @+1 {{stages, split_k and group_m must be positive, got 0, 1 and 1}}
  "test.op"() {tile = #moe.tile<block_m = 16, block_n = 64, block_k = 64, stages = 0, split_k = 1, swap_ab = false, group_m = 1>} : () -> ()
  return
}

// -----

func.func @expert_matmul_w8a8_without_scales(%x: tensor<?x256xf8E4M3FN>, %w: tensor<8x128x256xf8E4M3FN>, %o: tensor<9xi32>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{expects input and weight scales for #moe.quant<fp8, scales = per_token_channel>}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) {k = 1 : i64, quantization = #moe.quant<fp8, scales = per_token_channel>}
      : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN> -> tensor<?x128xbf16>
  return %0 : tensor<?x128xbf16>
}

// -----

func.func @expert_matmul_gathered_scales_of_slots(%x: tensor<?x256xi8>, %w: tensor<8x128x256xi8>, %s: tensor<?xi32>, %o: tensor<9xi32>, %xs: tensor<?x2xf32>, %ws: tensor<8x128xf32>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{expects input scales of shape [?] for #moe.quant<int8, scales = per_token_channel>, got 'tensor<?x2xf32>'}}
  %0 = moe.expert_matmul %x, %w slots(%s : tensor<?xi32>) offsets(%o : tensor<9xi32>) input_scales(%xs : tensor<?x2xf32>) weight_scales(%ws : tensor<8x128xf32>)
      {gather, k = 2 : i64, quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x256xi8>, tensor<8x128x256xi8> -> tensor<?x128xbf16>
  return %0 : tensor<?x128xbf16>
}

// -----

func.func @expert_matmul_scales_without_quantization(%x: tensor<?x256xbf16>, %w: tensor<8x128x256xbf16>, %o: tensor<9xi32>, %ws: tensor<8x128xf32>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{takes scales and zeros only with a quantization, not #moe.quant<none>}}
  %0 = moe.expert_matmul %x, %w offsets(%o : tensor<9xi32>) weight_scales(%ws : tensor<8x128xf32>) {k = 1 : i64}
      : tensor<?x256xbf16>, tensor<8x128x256xbf16> -> tensor<?x128xbf16>
  return %0 : tensor<?x128xbf16>
}

// -----

//===----------------------------------------------------------------------===//
// #moe.placement, moe.ep_dispatch, moe.ep_combine
//===----------------------------------------------------------------------===//

func.func @placement_no_ranks(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects at least one rank and one expert, got 0 ranks and 2 experts}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 0, experts = 2, slots = []>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_rank_count(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects the slots of 2 ranks, got 1}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 2, slots = [[0, 1]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_empty_rank(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects at least one slot per rank, rank 0 has none}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 2, slots = [[], [0, 1]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_uneven(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects 2 slots on every rank (as on rank 0), rank 1 has 1}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 3, slots = [[0, 1], [2]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_expert_range(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects experts in [0, 2), rank 1 holds 2}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 2, slots = [[0], [2]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_twice_on_rank(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects an expert at most once per rank, rank 0 holds expert 0 twice}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 3, slots = [[0, 0], [1, 2]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @placement_unplaced(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+2 {{expects every expert on some rank, expert 2 is on none}}
  %r, %l, %o = moe.ep_dispatch allgather %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [1, 3]]>}
      : tensor<?x16xf32>, tensor<?x1xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_dynamic_hidden(%x: tensor<?x?xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects dimension 1 of input to be static, got 'tensor<?x?xf32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x?xf32>, tensor<?x2xi32> -> tensor<?x?xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_dynamic_k(%x: tensor<?x16xf32>, %ids: tensor<?x?xi32>) {
  // expected-error @+1 {{expects dimension 1 of ids to be static, got 'tensor<?x?xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x?xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_zero_k(%x: tensor<?x16xf32>, %ids: tensor<?x0xi32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of ids), got 'tensor<?x0xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x0xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_ids_rows(%x: tensor<3x16xf32>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{expects one row of ids per input row, got 'tensor<4x2xi32>' for 'tensor<3x16xf32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<3x16xf32>, tensor<4x2xi32> -> tensor<12x16xf32>, tensor<12x1xi32>, tensor<12xi32>
  return
}

// -----

func.func @dispatch_rows_type(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects rows with the element type and hidden size of input, got 'tensor<?x16xbf16>' for 'tensor<?x16xf32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xbf16>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_local_ids(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects local_ids of shape [?, 1] (one local slot per row), got 'tensor<?x2xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?x2xi32>, tensor<?xi32>
  return
}

// -----

// A static 1 never stands for the dynamic rows' count (found by the fuzzer:
// the CPU lowering wrote every row's slot into one).
func.func @dispatch_local_ids_static_one(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects local_ids of shape [?, 1] (one local slot per row), got 'tensor<1x1xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<1x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_static_rows_dynamic_tokens(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expects rows and origin sized for the worst case, R * M * k = 2 * ? * 2 = ? rows, got 'tensor<12x16xf32>' and 'tensor<?xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<12x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_bound(%x: tensor<3x16xf32>, %ids: tensor<3x2xi32>) {
  // expected-error @+1 {{expects rows and origin sized for the worst case, R * M * k = 2 * 3 * 2 = 12 rows, got 'tensor<6x16xf32>' and 'tensor<6xi32>'}}
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<6x1xi32>, tensor<6xi32>
  return
}

// -----

func.func @combine_dynamic_width(%y: tensor<?x?xf32>, %o: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects dimension 1 of rows to be static, got 'tensor<?x?xf32>'}}
  %0 = moe.ep_combine allgather %y, %o, %w {ranks = 2 : i64}
      : tensor<?x?xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_dynamic_k(%y: tensor<?x16xf32>, %o: tensor<?xi32>, %w: tensor<?x?xf32>) {
  // expected-error @+1 {{expects dimension 1 of weights to be static, got 'tensor<?x?xf32>'}}
  %0 = moe.ep_combine allgather %y, %o, %w {ranks = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?x?xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_zero_k(%y: tensor<?x16xf32>, %o: tensor<?xi32>, %w: tensor<?x0xf32>) {
  // expected-error @+1 {{expects k >= 1 experts per token (dimension 1 of weights), got 'tensor<?x0xf32>'}}
  %0 = moe.ep_combine allgather %y, %o, %w {ranks = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?x0xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_result(%y: tensor<?x16xf32>, %o: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects result of shape [?, 16] (the weights' tokens, the rows' width), got 'tensor<?x8xf32>'}}
  %0 = moe.ep_combine allgather %y, %o, %w {ranks = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @combine_bound(%y: tensor<8x16xf32>, %o: tensor<8xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{expects rows and origin sized for the worst case, R * M * k = 2 * 3 * 2 = 12 rows, got 'tensor<8x16xf32>' and 'tensor<8xi32>'}}
  %0 = moe.ep_combine allgather %y, %o, %w {ranks = 2 : i64}
      : tensor<8x16xf32>, tensor<8xi32>, tensor<3x2xf32> -> tensor<3x16xf32>
  return
}

// -----

func.func @combine_realization(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  // expected-error @+1 {{expects the realization and ranks of its dispatch, 'all_to_all' on 2 ranks, got 'allgather' on 2}}
  %0 = moe.ep_combine allgather %r, %o, %w {ranks = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_dispatch_k(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x1xf32>) {
  %r, %l, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 4, slots = [[0, 1], [2, 3]]>}
      : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<?xi32>
  // expected-error @+1 {{expects weights with the dispatch's k = 2 experts per token, got 'tensor<?x1xf32>'}}
  %0 = moe.ep_combine all_to_all %r, %o, %w {ranks = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}
