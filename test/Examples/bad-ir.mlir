// Malformed or invalid IR gets a located diagnostic and a non-zero exit,
// never a crash.
// RUN: not moe-opt %s -split-input-file 2>&1 | FileCheck %s

// CHECK: bad-ir.mlir:[[# @LINE + 2]]:8: error: 'moe.combine' op expects weights of shape [?, 2]
func.func @wrong_shape(%y: tensor<?x2x64xf32>, %w: tensor<?x3xf32>) -> tensor<?x64xf32> {
  %0 = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x3xf32> -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// CHECK: bad-ir.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: expected ':'
func.func @truncated(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) {
  %0 = moe.router %x, %w
}

// -----

// CHECK: bad-ir.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: use of undeclared SSA value name
func.func @undeclared(%x: tensor<?x64xf32>) {
  %0 = moe.router %x, %nope : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  return
}
