// An op without a GPU kernel stops moe-compile with a located error and a
// non-zero exit (after the kernel emitter's remark says why); so does a
// missing input file.
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s
// RUN: not moe-compile %t.missing.mlir -o %t 2>&1 | FileCheck %s --check-prefix=MISSING

// The schedule's rows are a result, so it stays unaligned (moe.sort), which
// the kernels do not cover.
// CHECK: unsupported.mlir:[[# @LINE + 5]]:{{[0-9]+}}: remark: no GPU kernel yet: only the aligned schedule
// CHECK: unsupported.mlir:[[# @LINE + 3]]:{{[0-9]+}}: error: no GPU lowering for this op yet
// MISSING: moe-compile: error: cannot open input file
func.func @f32_block(%x: tensor<?x128xf32>, %ids: tensor<?x2xi32>, %w13: tensor<8x256x128xf32>) -> tensor<?x256xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xf32>, tensor<?x2xi32> -> tensor<?x128xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xf32>, tensor<8x256x128xf32>, tensor<9xi32> -> tensor<?x256xf32>
  return %h : tensor<?x256xf32>
}
