// moe-cpu-pipeline leaves nothing but the LLVM dialect.
// RUN: moe-opt %moe_src_root/examples/scaled/deepseek_v3.mlir --moe-cpu-pipeline | FileCheck %s

// CHECK: llvm.func @moe_report_runtime_error(i64, i64, i64)
// CHECK: llvm.func @deepseek_v3(
// CHECK-NOT: moe.
// CHECK-NOT: linalg.
// CHECK-NOT: tensor.
// CHECK-NOT: scf.
// CHECK-NOT: memref.
// CHECK: llvm.call @moe_report_runtime_error
