// A per-tensor dynamic quantization has no GPU kernel (its scale needs a
// grid-wide amax), and it keeps the permute before it (the gather does not
// commute with it), which has none either: moe-compile says so at the ops
// and exits non-zero.
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s

// CHECK: unsupported-quantized.mlir:[[# @LINE + 5]]:{{[0-9]+}}: remark: no GPU kernel yet for per-tensor dynamic quantization (a grid-wide amax)
// CHECK: unsupported-quantized.mlir:[[# @LINE + 3]]:{{[0-9]+}}: error: no GPU lowering for this op yet
func.func @per_tensor_block(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>,
                            %w13: tensor<8x256x256xf8E4M3FN>, %w13_scales: tensor<8xf32>) -> tensor<?x256xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  %h = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<1xf32>) weight_scales(%w13_scales : tensor<8xf32>)
      {quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  return %h : tensor<?x256xf32>
}
