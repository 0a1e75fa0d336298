// RUN: moe-opt %s -split-input-file -moe-check-alloc-sizes | FileCheck %s

// A dynamic size: the byte count 2^42 x %m is computed with checked
// multiplication; the hook is called when it reaches 2^63 and %m is not 0.
// CHECK-LABEL: module
// CHECK: func.func private @moe_report_alloc_size_overflow()
// CHECK-LABEL: func @dynamic
// CHECK-SAME: (%[[M:.*]]: index)
// CHECK-DAG: %[[BYTES:.*]] = arith.constant 4398046511104 : i64
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0 : i64
// CHECK: %[[M64:.*]] = arith.index_cast %[[M]] : index to i64
// CHECK: %[[IS_ZERO:.*]] = arith.cmpi eq, %[[M64]], %[[ZERO]] : i64
// CHECK: %[[LOW:.*]], %[[HIGH:.*]] = arith.mului_extended %[[BYTES]], %[[M64]] : i64
// CHECK: %[[HIGH_SET:.*]] = arith.cmpi ne, %[[HIGH]], %[[ZERO]] : i64
// CHECK: %[[SIGN_SET:.*]] = arith.cmpi slt, %[[LOW]], %[[ZERO]] : i64
// CHECK: %[[OVERFLOW:.*]] = arith.ori %[[HIGH_SET]], %[[SIGN_SET]] : i1
// CHECK: %[[FAILS:.*]] = arith.andi %{{.*}}, %{{.*}} : i1
// CHECK: scf.if %[[FAILS]] {
// CHECK-NEXT: func.call @moe_report_alloc_size_overflow() : () -> ()
// CHECK-NEXT: }
// CHECK-NEXT: memref.alloc(%[[M]]) : memref<?x1099511627776xf32>
// CHECK-NOT: moe_report_alloc_size_overflow
func.func @dynamic(%m: index) -> memref<?x1099511627776xf32> {
  %0 = memref.alloc(%m) : memref<?x1099511627776xf32>
  return %0 : memref<?x1099511627776xf32>
}

// -----

// Static allocations that fit, and any holding no bytes, are left alone,
// and no hook is declared for them.
// CHECK-LABEL: module
// CHECK-NOT: moe_report_alloc_size_overflow
// CHECK-LABEL: func @static
// CHECK-NEXT: memref.alloc() : memref<8x16xf32>
// CHECK-NEXT: memref.alloc(%{{.*}}) : memref<?x0xf32>
// CHECK-NEXT: return
func.func @static(%m: index) -> (memref<8x16xf32>, memref<?x0xf32>) {
  %0 = memref.alloc() : memref<8x16xf32>
  %1 = memref.alloc(%m) : memref<?x0xf32>
  return %0, %1 : memref<8x16xf32>, memref<?x0xf32>
}

// -----

// A static byte count past 2^63 - 1 (2^61 x 8 bytes) always calls the hook;
// two dynamic sizes are multiplied in turn; an existing declaration of the
// hook is used.
// CHECK-LABEL: module
// CHECK-COUNT-1: func.func private @moe_report_alloc_size_overflow()
// CHECK-LABEL: func @static_overflow
// CHECK: %[[TRUE:.*]] = arith.constant true
// CHECK: scf.if
// CHECK-NEXT: func.call @moe_report_alloc_size_overflow()
// CHECK: memref.alloc() : memref<2305843009213693952xf64>
// CHECK-LABEL: func @two_dynamic
// CHECK: arith.mului_extended
// CHECK: arith.mului_extended
// CHECK: scf.if
// CHECK: memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xi8>
func.func private @moe_report_alloc_size_overflow()

func.func @static_overflow() -> memref<2305843009213693952xf64> {
  %0 = memref.alloc() : memref<2305843009213693952xf64>
  return %0 : memref<2305843009213693952xf64>
}

func.func @two_dynamic(%a: index, %b: index) -> memref<?x?xi8> {
  %0 = memref.alloc(%a, %b) : memref<?x?xi8>
  return %0 : memref<?x?xi8>
}
