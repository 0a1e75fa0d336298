// moe-cpu-pipeline leaves nothing but the LLVM dialect.
// RUN: moe-opt %moe_src_root/examples/scaled/deepseek_v3.mlir --moe-cpu-pipeline | FileCheck %s
// RUN: moe-opt %moe_src_root/examples/scaled/deepseek_v3.mlir --moe-cpu-pipeline | FileCheck %s --check-prefix=ALLOC --implicit-check-not=@malloc --implicit-check-not=@aligned_alloc --implicit-check-not=@free

// CHECK: llvm.func @moe_report_runtime_error(i64, i64, i64)
// CHECK: llvm.func @deepseek_v3(
// CHECK-NOT: moe.
// CHECK-NOT: linalg.
// CHECK-NOT: tensor.
// CHECK-NOT: scf.
// CHECK-NOT: memref.
// CHECK: llvm.call @moe_report_runtime_error

// Heap buffers come from the host's allocation functions (moe-run checks
// them), never from malloc, and each buffer of dynamic size is guarded
// against a byte count that wraps (moe-check-alloc-sizes).
// ALLOC-DAG: llvm.func @_mlir_memref_to_llvm_free(!llvm.ptr)
// ALLOC-DAG: llvm.func @_mlir_memref_to_llvm_alloc(i64) -> !llvm.ptr
// ALLOC-DAG: llvm.func @moe_report_alloc_size_overflow()
// ALLOC: llvm.func @deepseek_v3(
// ALLOC: llvm.call @moe_report_alloc_size_overflow()
// ALLOC-NEXT: llvm.br
// ALLOC: llvm.call @_mlir_memref_to_llvm_alloc
// ALLOC: llvm.call @_mlir_memref_to_llvm_free
