// RUN: moe-opt %s -split-input-file -moe-cpu-tile-and-vectorize | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-cpu-tile-and-vectorize="tile-m=4 tile-n=8 tile-k=4" | FileCheck %s --check-prefix=SMALL

// A static matmul is tiled 8 x 32 x 16 and each tile becomes one
// vector.contract with the matmul's maps (outer-product friendly).
// CHECK-LABEL: func @matmul
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c32
// CHECK: scf.for %{{.*}} = %c0 to %c48 step %c16
// CHECK: vector.transfer_read {{.*}} : tensor<8x16xbf16>, vector<8x16xbf16>
// CHECK: vector.transfer_read {{.*}} : tensor<16x32xbf16>, vector<16x32xbf16>
// CHECK: vector.contract {{.*}}iterator_types = ["parallel", "parallel", "reduction"]{{.*}} : vector<8x16xbf16>, vector<16x32xbf16> into vector<8x32xf32>
// CHECK-NOT: linalg.matmul
// SMALL-LABEL: func @matmul
// SMALL: vector.contract {{.*}} : vector<4x4xf32>, vector<4x8xf32> into vector<4x8xf32>
func.func @matmul(%a: tensor<8x48xbf16>, %b: tensor<48x64xbf16>) -> tensor<8x64xf32> {
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<8x64xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<8x64xf32>) -> tensor<8x64xf32>
  %0 = linalg.matmul ins(%a, %b : tensor<8x48xbf16>, tensor<48x64xbf16>) outs(%init : tensor<8x64xf32>) -> tensor<8x64xf32>
  return %0 : tensor<8x64xf32>
}

// -----

// N = 40 is not a multiple of 32: the tile shrinks to 20 so that both tiles
// are static and vectorized.
// CHECK-LABEL: func @ragged
// CHECK: scf.for %{{.*}} = %c0 to %c40 step %c20
// CHECK: vector.contract {{.*}} : vector<8x16xf32>, vector<16x20xf32> into vector<8x20xf32>
// CHECK-NOT: linalg.matmul
func.func @ragged(%a: tensor<8x16xf32>, %b: tensor<16x40xf32>, %c: tensor<8x40xf32>) -> tensor<8x40xf32> {
  %0 = linalg.matmul ins(%a, %b : tensor<8x16xf32>, tensor<16x40xf32>) outs(%c : tensor<8x40xf32>) -> tensor<8x40xf32>
  return %0 : tensor<8x40xf32>
}

// -----

// Dynamic shapes and integer fills are left alone.
// CHECK-LABEL: func @untouched
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<16x32xf32>)
// CHECK: linalg.fill ins(%{{.*}} : i1) outs(%{{.*}} : tensor<64xi1>)
// CHECK-NOT: vector.
func.func @untouched(%a: tensor<?x16xf32>, %b: tensor<16x32xf32>, %c: tensor<?x32xf32>, %flag: i1) -> (tensor<?x32xf32>, tensor<64xi1>) {
  %0 = linalg.matmul ins(%a, %b : tensor<?x16xf32>, tensor<16x32xf32>) outs(%c : tensor<?x32xf32>) -> tensor<?x32xf32>
  %empty = tensor.empty() : tensor<64xi1>
  %1 = linalg.fill ins(%flag : i1) outs(%empty : tensor<64xi1>) -> tensor<64xi1>
  return %0, %1 : tensor<?x32xf32>, tensor<64xi1>
}

// -----

// 16-bit floats keep whole multiples of 8 lanes: K = 24 tiles by 8, and a
// transpose with an 18-wide dimension stays scalar.
// CHECK-LABEL: func @half_precision_lanes
// CHECK: vector.contract {{.*}} : vector<8x8xbf16>, vector<8x32xbf16> into vector<8x32xf32>
// CHECK: linalg.transpose ins(%{{.*}} : tensor<18x32xbf16>)
func.func @half_precision_lanes(%a: tensor<8x24xbf16>, %b: tensor<24x32xbf16>, %c: tensor<8x32xf32>, %t: tensor<18x32xbf16>) -> (tensor<8x32xf32>, tensor<32x18xbf16>) {
  %0 = linalg.matmul ins(%a, %b : tensor<8x24xbf16>, tensor<24x32xbf16>) outs(%c : tensor<8x32xf32>) -> tensor<8x32xf32>
  %empty = tensor.empty() : tensor<32x18xbf16>
  %1 = linalg.transpose ins(%t : tensor<18x32xbf16>) outs(%empty : tensor<32x18xbf16>) permutation = [1, 0]
  return %0, %1 : tensor<8x32xf32>, tensor<32x18xbf16>
}
