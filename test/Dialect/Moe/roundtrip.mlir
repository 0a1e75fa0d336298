// RUN: moe-opt %s -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file | moe-opt -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file --mlir-print-op-generic | moe-opt -split-input-file | FileCheck %s

// CHECK-LABEL: func @router
// CHECK: moe.router %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
// CHECK: moe.router %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<8xf32>) : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>
func.func @router(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %xs: tensor<4x64xf32>,
                  %ws: tensor<8x64xf32>, %b: tensor<8xf32>) -> (tensor<?x8xf32>, tensor<4x8xf32>) {
  %0 = moe.router %x, %w : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  %1 = moe.router %xs, %ws bias(%b : tensor<8xf32>) : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>
  return %0, %1 : tensor<?x8xf32>, tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @topk_variants
// CHECK: moe.topk softmax %{{.*}} {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: moe.topk softmax %{{.*}} {k = 2 : i64, renormalize} :
// CHECK: moe.topk topk_softmax %{{.*}} {k = 4 : i64} :
// CHECK: moe.topk sigmoid %{{.*}} bias(%{{.*}} : tensor<16xf32>) {k = 4 : i64, num_groups = 4 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
// CHECK: moe.topk softmax %{{.*}} {k = 8 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
func.func @topk_variants(%l8: tensor<?x8xf32>, %l16: tensor<?x16xf32>, %b: tensor<16xf32>) {
  %w0, %i0 = moe.topk softmax %l8 {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w1, %i1 = moe.topk softmax %l8 {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w2, %i2 = moe.topk topk_softmax %l8 {k = 4 : i64} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  %w3, %i3 = moe.topk sigmoid %l16 bias(%b : tensor<16xf32>)
      {k = 4 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, renormalize,
       routed_scaling_factor = 2.5 : f32} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  %w4, %i4 = moe.topk softmax %l8 {k = 8 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
  return
}

// -----

// CHECK-LABEL: func @permute_unpermute
// CHECK: %[[ROWS:.*]], %[[OFFSETS:.*]], %[[SOURCE:.*]] = moe.permute %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
// CHECK: moe.unpermute %{{.*}}, %[[SOURCE]] : tensor<?x32xf32>, tensor<?xi32> -> tensor<?x2x32xf32>
// CHECK: moe.permute %{{.*}}, %{{.*}} : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<5xi32>, tensor<6xi32>
func.func @permute_unpermute(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %y: tensor<?x32xf32>,
                             %xs: tensor<3x16xf32>, %idss: tensor<3x2xi32>) -> tensor<?x2x32xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<9xi32>, tensor<?xi32>
  %u = moe.unpermute %y, %source : tensor<?x32xf32>, tensor<?xi32> -> tensor<?x2x32xf32>
  %r, %o, %s = moe.permute %xs, %idss : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<5xi32>, tensor<6xi32>
  return %u : tensor<?x2x32xf32>
}

// -----

// The default quantization is elided when printed.
// CHECK-LABEL: func @grouped_matmul
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
// CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xbf16>
// CHECK-NOT: quantization
func.func @grouped_matmul(%rows: tensor<?x64xbf16>, %w: tensor<8x128x64xbf16>, %off: tensor<9xi32>) {
  %0 = moe.grouped_matmul %rows, %w, %off : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %1 = moe.grouped_matmul %rows, %w, %off {quantization = #moe.quant<none>} : tensor<?x64xbf16>, tensor<8x128x64xbf16>, tensor<9xi32> -> tensor<?x128xbf16>
  return
}

// -----

// CHECK-LABEL: func @activations
// CHECK: moe.activation silu_and_mul %{{.*}} : tensor<?x64xf32> -> tensor<?x32xf32>
// CHECK: moe.activation gelu_and_mul %{{.*}} : tensor<?x64xf32> -> tensor<?x32xf32>
// CHECK: moe.activation swiglu %{{.*}} {alpha = 1.702000e+00 : f32, limit = 7.000000e+00 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
func.func @activations(%h: tensor<?x64xf32>, %hb: tensor<?x64xbf16>) {
  %0 = moe.activation silu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  %1 = moe.activation gelu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  %2 = moe.activation swiglu %hb {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
  return
}

// -----

// CHECK-LABEL: func @combine
// CHECK: moe.combine %{{.*}}, %{{.*}} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
// CHECK: moe.combine %{{.*}}, %{{.*}} {routed_scaling_factor = 2.500000e+00 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
func.func @combine(%y: tensor<?x2x64xf32>, %w: tensor<?x2xf32>) {
  %0 = moe.combine %y, %w : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  %1 = moe.combine %y, %w {routed_scaling_factor = 2.5 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

// CHECK-LABEL: func @quant_attr
// CHECK-SAME: attributes {format = #moe.quant<none>}
func.func @quant_attr() attributes {format = #moe.quant<none>} {
  return
}
