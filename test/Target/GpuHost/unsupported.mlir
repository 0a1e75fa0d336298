// An op without a GPU kernel stops moe-compile with a located error and a
// non-zero exit; so does a missing input file.
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s
// RUN: not moe-compile %t.missing.mlir -o %t 2>&1 | FileCheck %s --check-prefix=MISSING

// CHECK: unsupported.mlir:[[# @LINE + 3]]:{{[0-9]+}}: error: no GPU lowering for this op yet
// MISSING: moe-compile: error: cannot open input file
func.func @routed(%x: tensor<?x128xbf16>, %w_gate: tensor<8x128xbf16>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %logits = moe.router %x, %w_gate : tensor<?x128xbf16>, tensor<8x128xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %weights, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}
