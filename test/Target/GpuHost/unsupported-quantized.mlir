// A dynamic quantization of rows whose width is not a multiple of 128 has
// no GPU kernel yet (a warp takes 128 columns at a time): moe-compile says
// so at the op and exits non-zero.
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s

// CHECK: unsupported-quantized.mlir:[[# @LINE + 3]]:{{[0-9]+}}: remark: no GPU kernel yet: needs bf16 or f32 rows with a multiple of 128 columns
// CHECK: unsupported-quantized.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: no GPU lowering for this op yet
func.func @odd_width_rows(%x: tensor<?x192xbf16>) -> (tensor<?x192xf8E4M3FN>, tensor<?xf32>) {
  %codes, %scales = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>}
      : tensor<?x192xbf16> -> tensor<?x192xf8E4M3FN>, tensor<?xf32>
  return %codes, %scales : tensor<?x192xf8E4M3FN>, tensor<?xf32>
}
