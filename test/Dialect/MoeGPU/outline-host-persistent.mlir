// The combine keeps its f32 sums (combine-rows-max-k=0; the rows combine
// is outline-host-combine-rows.mlir).
// RUN: moe-opt %s --moe-gpu-pipeline="num-tokens=4096 persistent=true combine-rows-max-k=0" --moe-gpu-outline-host | FileCheck %s

// Persistent GEMMs: a grid of min(tiles, SMs) blocks of a producer and two
// consumer warpgroups, where tiles = occupied slot blocks x column tiles
// (both GEMMs: 128 output columns in tiles of 64); each launch gets a
// zeroed workspace counter its blocks take their next tiles from.
// CHECK-LABEL: func.func @moe_layer_layer(
// CHECK-SAME: %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// CHECK: %[[COUNTER1:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[9] {{.*}} -> memref<1xi32>
// CHECK-NEXT: moe_gpu.zero %[[COUNTER1]] on %[[S]] : memref<1xi32>
// CHECK-NEXT: %[[TILES1:.+]] = arith.muli %{{[0-9]+}}, %c2_{{[0-9]+}} : index
// CHECK-NEXT: %[[SMS1:.+]] = moe_gpu.multiprocessor_count on %[[S]]
// CHECK-NEXT: %[[GRID1:.+]] = arith.minsi %[[TILES1]], %[[SMS1]] : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul blocks in (%[[GRID1]], %c1{{.*}}, %c1{{.*}}) threads in (%c384{{[_0-9]*}}, {{.*}}, %[[COUNTER1]] : memref<1xi32>)
// CHECK: %[[COUNTER2:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[11] {{.*}} -> memref<1xi32>
// CHECK-NEXT: moe_gpu.zero %[[COUNTER2]] on %[[S]] : memref<1xi32>
// CHECK-NEXT: %[[TILES2:.+]] = arith.muli %{{[0-9]+}}, %c2_{{[0-9]+}} : index
// CHECK-NEXT: %[[SMS2:.+]] = moe_gpu.multiprocessor_count on %[[S]]
// CHECK-NEXT: %[[GRID2:.+]] = arith.minsi %[[TILES2]], %[[SMS2]] : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 blocks in (%[[GRID2]], %c1{{.*}}, %c1{{.*}}) threads in (%c384{{[_0-9]*}}, {{.*}}, %[[COUNTER2]] : memref<1xi32>)
// Buffers 8 and 10 of the layout:
// CHECK: moe_gpu.workspace_layout @moe_layer_layer_workspace {{.*}}names = ["moe.route logits", "moe.route weights", "moe.route ids", "moe.align sorted ids", "moe.align block experts", "moe.align padded count", "moe.align ids outside [-1, E)", "moe.align counts and cursors", "moe.expert_matmul output", "persistent tile counter", "f32 sums of the combine", "persistent tile counter"]
// The kernels: each role walks its block's tiles in a loop that receives
// them from the producer's leader, which takes them from the counter.
// CHECK: gpu.func @expert_matmul(
// CHECK: nvvm.setmaxregister decrease 88
// CHECK: scf.while
// CHECK: memref.atomic_rmw addi
// CHECK: nvvm.setmaxregister increase 208
// CHECK: scf.while
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
