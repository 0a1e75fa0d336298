// RUN: moe-opt %s -split-input-file -convert-moe-to-linalg | FileCheck %s

// A w8a8 grouped_matmul dequantizes both operands (e4m3 codes through a
// 256-entry f32 table, times their scales: one per tensor for the rows, one
// per expert for the weights) and becomes an unquantized expert matmul.
// CHECK-DAG: #[[ROWS:.*]] = affine_map<(d0, d1) -> (0)>
// CHECK-DAG: #[[EXPERT:.*]] = affine_map<(d0, d1, d2) -> (d0)>
// CHECK-LABEL: func.func @fp8_per_tensor
// CHECK: %[[TABLE:.*]] = arith.constant dense<"0x000000000000003B{{.*}}> : tensor<256xf32>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[ROWS]], #{{.*}}]
// CHECK: %[[BITS:.*]] = arith.bitcast %{{.*}} : f8E4M3FN to i8
// CHECK: %[[INDEX:.*]] = arith.index_castui %[[BITS]] : i8 to index
// CHECK: tensor.extract %[[TABLE]][%[[INDEX]]]
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[EXPERT]], #{{.*}}]
// CHECK-NOT: moe.grouped_matmul
func.func @fp8_per_tensor(%a: tensor<?x256xf8E4M3FN>, %w: tensor<8x128x256xf8E4M3FN>, %o: tensor<9xi32>, %t: tensor<1xf32>, %e: tensor<8xf32>) -> tensor<?x128xbf16> {
  %0 = moe.grouped_matmul %a, %w, %o input_scales(%t : tensor<1xf32>) weight_scales(%e : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xf8E4M3FN>, tensor<8x128x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xbf16>
  return %0 : tensor<?x128xbf16>
}

// -----

// int8 codes convert with sitofp; per-token scales index by row.
// CHECK-LABEL: func.func @int8_per_token
// CHECK: arith.sitofp %{{.*}} : i8 to f32
// CHECK-NOT: moe.grouped_matmul
func.func @int8_per_token(%a: tensor<?x256xi8>, %w: tensor<8x128x256xi8>, %o: tensor<9xi32>, %t: tensor<?xf32>, %c: tensor<8x128xf32>) -> tensor<?x128xf32> {
  %0 = moe.grouped_matmul %a, %w, %o input_scales(%t : tensor<?xf32>) weight_scales(%c : tensor<8x128xf32>) {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xi8>, tensor<8x128x256xi8>, tensor<9xi32> -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}

// -----

// moe.quantize with 1x128 blocks: amax over [M, K/128, 128], the scale,
// then codes from the bits of x / scale rounded to nearest even.
// CHECK-DAG: #[[BLOCK:.*]] = affine_map<(d0, d1) -> (d0, d1 floordiv 128)>
// CHECK-LABEL: func.func @quantize_block
// CHECK: %[[GROUPED:.*]] = tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2]] output_shape [%{{.*}}, 2, 128] : tensor<?x256xbf16> into tensor<?x2x128xbf16>
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[GROUPED]]
// CHECK: arith.maximumf
// CHECK: arith.divf %{{.*}}, %cst
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[BLOCK]], #{{.*}}]
// CHECK: math.roundeven
// CHECK: arith.bitcast %{{.*}} : i8 to f8E4M3FN
func.func @quantize_block(%x: tensor<?x256xbf16>) -> (tensor<?x256xf8E4M3FN>, tensor<?x2xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  return %c, %s : tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
}

// -----

// Weight-only int4 with zero points: each weight is the nibble k mod 2 of
// byte k / 2, minus its group's zero, times its group's scale; the rows are
// converted to f32 and the matmul becomes an unquantized one.
// CHECK-DAG: #[[GROUP:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2 floordiv 128)>
// CHECK-LABEL: func.func @int4_zero_points
// CHECK: linalg.generic {indexing_maps = [#[[GROUP]], #[[GROUP]], #{{.*}}]
// CHECK: %[[K:.*]] = linalg.index 2
// CHECK: %[[BYTE:.*]] = arith.divui %[[K]], %c2
// CHECK: tensor.extract %{{.*}}[%{{.*}}, %{{.*}}, %[[BYTE]]] : tensor<8x128x128xui8>
// CHECK: arith.shrui
// CHECK: arith.andi %{{.*}}, %c15_i32
// CHECK: arith.subi
// CHECK: arith.sitofp
// CHECK: arith.mulf
// CHECK-NOT: moe.grouped_matmul
func.func @int4_zero_points(%a: tensor<?x256xbf16>, %o: tensor<9xi32>, %w: tensor<8x128x128xui8>, %s: tensor<8x128x2xf32>, %z: tensor<8x128x2xui8>) -> tensor<?x128xf32> {
  %0 = moe.grouped_matmul %a, %w, %o weight_scales(%s : tensor<8x128x2xf32>) weight_zeros(%z : tensor<8x128x2xui8>) {quantization = #moe.quant<int4_weight, group = 128, zero_point = true>} : tensor<?x256xbf16>, tensor<8x128x128xui8>, tensor<9xi32> -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}

// -----

// moe.prepack only moves bytes: a view of the codes as [E, nt, w, h, r, kt,
// s, g, q], transposed to [E, nt, kt, w, r, q, s, g, h], viewed as 2048-byte
// tiles.
// CHECK-LABEL: func.func @prepack
// CHECK: %[[VIEW:.*]] = tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2, 3, 4], [5, 6, 7, 8]] output_shape [2, 2, 4, 2, 8, 2, 4, 2, 4] : tensor<2x128x64xui8> into tensor<2x2x4x2x8x2x4x2x4xui8>
// CHECK: %[[INIT:.*]] = tensor.empty() : tensor<2x2x2x4x8x4x4x2x2xui8>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[VIEW]] : {{.*}}) outs(%[[INIT]] : {{.*}}) permutation = [0, 1, 5, 2, 4, 8, 6, 7, 3]
// CHECK: %[[TILES:.*]] = tensor.collapse_shape %[[T]] {{\[\[}}0], [1], [2], [3, 4, 5, 6, 7, 8]] : tensor<2x2x2x4x8x4x4x2x2xui8> into tensor<2x2x2x2048xui8>
// CHECK: return %[[TILES]]
// CHECK-NOT: arith.
func.func @prepack(%w: tensor<2x128x64xui8>) -> tensor<2x2x2x2048xui8> {
  %p = moe.prepack wgmma_a_4bit %w : tensor<2x128x64xui8> -> tensor<2x2x2x2048xui8>
  return %p : tensor<2x2x2x2048xui8>
}

// -----

// Codes stored packed (wgmma_a_4bit) are put back in rows before they are
// decoded: each expert's bytes viewed as [nt, kt, w, r, q, s, g, h] tiles,
// transposed to [nt, w, h, r, kt, s, g, q] (the inverse of moe.prepack's
// permutation) and viewed as [E, N, K/2] again; only then the nibbles.
// CHECK-LABEL: func.func @packed_int4
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0], [1, 2]] : tensor<2x128x64xui8> into tensor<2x8192xui8>
// CHECK: %[[TILES:.*]] = tensor.expand_shape %[[FLAT]] {{\[\[}}0], [1, 2, 3, 4, 5, 6, 7, 8]] output_shape [2, 2, 2, 4, 8, 4, 4, 2, 2] : tensor<2x8192xui8> into tensor<2x2x2x4x8x4x4x2x2xui8>
// CHECK: %[[INIT:.*]] = tensor.empty() : tensor<2x2x4x2x8x2x4x2x4xui8>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[TILES]] : {{.*}}) outs(%[[INIT]] : {{.*}}) permutation = [0, 1, 3, 8, 4, 2, 6, 7, 5]
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[T]] {{\[\[}}0], [1, 2, 3, 4], [5, 6, 7, 8]] : tensor<2x2x4x2x8x2x4x2x4xui8> into tensor<2x128x64xui8>
// CHECK: tensor.extract %[[ROWS]]{{\[}}%{{.*}}, %{{.*}}, %{{.*}}] : tensor<2x128x64xui8>
func.func @packed_int4(%a: tensor<?x128xbf16>, %w: tensor<2x128x64xui8>, %o: tensor<3xi32>, %s: tensor<2x128x1xf32>) -> tensor<?x128xf32> {
  %0 = moe.grouped_matmul %a, %w, %o weight_scales(%s : tensor<2x128x1xf32>)
      {quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>}
      : tensor<?x128xbf16>, tensor<2x128x64xui8>, tensor<3xi32> -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}
