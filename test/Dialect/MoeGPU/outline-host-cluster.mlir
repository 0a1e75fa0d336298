// RUN: moe-opt %s --moe-gpu-pipeline="num-tokens=4096 cluster-m=2" --moe-gpu-outline-host | FileCheck %s
// RUN: moe-opt %s --moe-gpu-pipeline="num-tokens=4096 warp-specialize cluster-m=2" --moe-gpu-outline-host | FileCheck %s --check-prefix=WS

// Pairs of slot blocks (cluster_m = 2): each GEMM's grid x, the occupied
// slot blocks, is rounded up to whole pairs, ceil(blocks / 2) · 2; the odd
// block out finds its slots past the padded count and leaves.
// CHECK-LABEL: func.func @moe_layer_layer(
// CHECK-SAME: %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// (The occupied blocks: min(all blocks, M·k div 128 + min(E, M·k)).)
// CHECK: arith.minsi %c8
// CHECK: %[[OCCUPIED1:.+]] = arith.minsi %{{.+}}, %{{.+}} : index
// CHECK-NEXT: arith.constant 2
// CHECK-NEXT: arith.constant 1
// CHECK-NEXT: arith.constant 2
// CHECK-NEXT: arith.constant 1
// CHECK-NEXT: %[[UP1:.+]] = arith.addi %[[OCCUPIED1]], %c1_{{[0-9]+}} : index
// CHECK-NEXT: %[[PAIRS1:.+]] = arith.divsi %[[UP1]], %c2_{{[0-9]+}} : index
// CHECK-NEXT: %[[TWO1:.+]] = arith.constant 2 : index
// CHECK-NEXT: %[[GRID1:.+]] = arith.muli %[[PAIRS1]], %[[TWO1]] : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul blocks in (%[[GRID1]], %c2{{[_0-9]*}}, %c1{{[_0-9]*}})
// CHECK: %[[UP2:.+]] = arith.addi %{{.+}}, %c1_{{[0-9]+}} : index
// CHECK-NEXT: %[[PAIRS2:.+]] = arith.divsi %[[UP2]], %c2_{{[0-9]+}} : index
// CHECK-NEXT: %[[TWO2:.+]] = arith.constant 2 : index
// CHECK-NEXT: %[[GRID2:.+]] = arith.muli %[[PAIRS2]], %[[TWO2]] : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 blocks in (%[[GRID2]],
// The kernels declare their cluster shape (the launch facts are consumed).
// CHECK: gpu.func @expert_matmul(
// CHECK-SAME: attributes {moe.grid_constant_args = [22], nvvm.cluster_dim = array<i32: 2, 1, 1>}
// CHECK: gpu.func @expert_matmul_0(
// CHECK-SAME: attributes {moe.grid_constant_args = [22], nvvm.cluster_dim = array<i32: 2, 1, 1>}
// The warp-specialized pairs: the same whole pairs of 384-thread blocks.
// WS-LABEL: func.func @moe_layer_layer(
// WS: %[[PAIRS1:.+]] = arith.divsi %{{.+}}, %c2_{{[0-9]+}} : index
// WS-NEXT: %[[TWO1:.+]] = arith.constant 2 : index
// WS-NEXT: %[[GRID1:.+]] = arith.muli %[[PAIRS1]], %[[TWO1]] : index
// WS: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul blocks in (%[[GRID1]], %{{.+}}, %{{.+}}) threads in (%c384,
// WS: %[[PAIRS2:.+]] = arith.divsi %{{.+}}, %c2_{{[0-9]+}} : index
// WS-NEXT: %[[TWO2:.+]] = arith.constant 2 : index
// WS-NEXT: %[[GRID2:.+]] = arith.muli %[[PAIRS2]], %[[TWO2]] : index
// WS: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 blocks in (%[[GRID2]], %{{.+}}, %{{.+}}) threads in (%c384
// WS: gpu.func @expert_matmul(
// WS-SAME: attributes {moe.grid_constant_args = [22], nvvm.cluster_dim = array<i32: 2, 1, 1>, nvvm.maxntid = array<i32: 384, 1, 1>, nvvm.minctasm = 1 : i32}
// WS: gpu.func @expert_matmul_0(
// WS-SAME: attributes {moe.grid_constant_args = [22], nvvm.cluster_dim = array<i32: 2, 1, 1>, nvvm.maxntid = array<i32: 384, 1, 1>, nvvm.minctasm = 1 : i32}
func.func @layer(%x: tensor<?x128xbf16>, %gate: tensor<8x128xbf16>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %logits = moe.router %x, %gate : tensor<?x128xbf16>, tensor<8x128xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
