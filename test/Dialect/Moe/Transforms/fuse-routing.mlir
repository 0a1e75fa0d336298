// RUN: moe-opt %s -split-input-file -moe-fuse-routing | FileCheck %s

// CHECK-LABEL: func @fuse
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<8x64xbf16>, %[[GB:.*]]: tensor<8xf32>, %[[SB:.*]]: tensor<8xf32>)
// CHECK-NOT: moe.router
// CHECK-NOT: moe.topk
// CHECK: %[[WEIGHTS:.*]], %[[IDS:.*]] = moe.route sigmoid %[[X]], %[[W]] gate_bias(%[[GB]] : tensor<8xf32>) score_bias(%[[SB]] : tensor<8xf32>) {k = 2 : i64, num_groups = 4 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64}
// CHECK: return %[[WEIGHTS]], %[[IDS]]
func.func @fuse(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %gb: tensor<8xf32>, %sb: tensor<8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %logits = moe.router %x, %w bias(%gb : tensor<8xf32>) : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk sigmoid %logits bias(%sb : tensor<8xf32>) {k = 2 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, renormalize, routed_scaling_factor = 2.5 : f32} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %weights, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// The logits are also returned: they must stay, so nothing fuses.
// CHECK-LABEL: func @logits_used_twice
// CHECK: moe.router
// CHECK: moe.topk
// CHECK-NOT: moe.route
func.func @logits_used_twice(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) -> (tensor<?x8xf32>, tensor<?x2xi32>) {
  %logits = moe.router %x, %w : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %logits, %ids : tensor<?x8xf32>, tensor<?x2xi32>
}

// -----

// Logits that do not come from a router: nothing to fuse.
// CHECK-LABEL: func @no_router
// CHECK: moe.topk
// CHECK-NOT: moe.route
func.func @no_router(%logits: tensor<?x8xf32>) -> tensor<?x2xi32> {
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %ids : tensor<?x2xi32>
}
