// RUN: moe-opt %s -split-input-file -canonicalize | FileCheck %s

// Unpermuting a permute's own rows by its own source indices is a broadcast
// of the input over k: the gather and the scatter both disappear.
// CHECK-LABEL: func @unpermute_of_permute
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %{{.*}}: tensor<?x2xi32>)
// CHECK-NOT: moe.permute
// CHECK-NOT: moe.unpermute
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[M:.*]] = tensor.dim %[[X]], %[[C0]]
// CHECK: %[[INIT:.*]] = tensor.empty(%[[M]]) : tensor<?x2x64xf32>
// CHECK: %[[B:.*]] = linalg.broadcast ins(%[[X]] : tensor<?x64xf32>) outs(%[[INIT]] : tensor<?x2x64xf32>) dimensions = [1]
// CHECK: return %[[B]]
func.func @unpermute_of_permute(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) -> tensor<?x2x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %u = moe.unpermute %rows, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  return %u : tensor<?x2x64xf32>
}

// -----

// A static result type is kept: upstream cast folding makes the broadcast
// itself static.
// CHECK-LABEL: func @unpermute_of_permute_static
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>
// CHECK: %[[XS:.*]] = tensor.cast %[[X]] : tensor<?x64xf32> to tensor<3x64xf32>
// CHECK: %[[B:.*]] = linalg.broadcast ins(%[[XS]] : tensor<3x64xf32>) outs(%{{.*}} : tensor<3x2x64xf32>) dimensions = [1]
// CHECK: return %[[B]]
func.func @unpermute_of_permute_static(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) -> tensor<3x2x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %u = moe.unpermute %rows, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<3x2x64xf32>
  return %u : tensor<3x2x64xf32>
}

// -----

// Rows that went through an expert are not the permuted input: no fold.
// CHECK-LABEL: func @unpermute_of_computed_rows
// CHECK: %{{.*}}, %{{.*}}, %[[SOURCE:.*]] = moe.permute
// CHECK: %[[H:.*]] = moe.grouped_matmul
// CHECK: moe.unpermute %[[H]], %[[SOURCE]]
func.func @unpermute_of_computed_rows(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<8x64x64xf32>) -> tensor<?x2x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %h = moe.grouped_matmul %rows, %w, %offsets : tensor<?x64xf32>, tensor<8x64x64xf32>, tensor<9xi32> -> tensor<?x64xf32>
  %u = moe.unpermute %h, %source : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  return %u : tensor<?x2x64xf32>
}

// -----

// Source indices of a different permute: no fold.
// CHECK-LABEL: func @unpermute_other_source
// CHECK: moe.permute
// CHECK: moe.permute
// CHECK: moe.unpermute
func.func @unpermute_other_source(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %ids2: tensor<?x2xi32>) -> tensor<?x2x64xf32> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %rows2, %offsets2, %source2 = moe.permute %x, %ids2 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %u = moe.unpermute %rows, %source2 : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x2x64xf32>
  return %u : tensor<?x2x64xf32>
}

// -----

// CHECK-LABEL: func @combine_unit_scale
// CHECK: moe.combine %{{.*}}, %{{.*}} : tensor<?x2x64xf32>
// CHECK-NOT: routed_scaling_factor
// CHECK: moe.combine %{{.*}}, %{{.*}} {routed_scaling_factor = 2.500000e+00 : f32}
func.func @combine_unit_scale(%y: tensor<?x2x64xf32>, %w: tensor<?x2xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %0 = moe.combine %y, %w {routed_scaling_factor = 1.0 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  %1 = moe.combine %y, %w {routed_scaling_factor = 2.5 : f32} : tensor<?x2x64xf32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %0, %1 : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// Pure ops whose results are unused are erased.
// CHECK-LABEL: func @dead_routing
// CHECK-NEXT: return
func.func @dead_routing(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) {
  %logits = moe.router %x, %w : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
