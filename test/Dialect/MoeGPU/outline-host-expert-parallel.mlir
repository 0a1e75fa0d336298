// RUN: moe-opt %s --moe-expert-parallel="ranks=2" --moe-gpu-pipeline="num-tokens=16" --moe-gpu-outline-host | FileCheck %s

// The program of one rank of two (allgather realization): the host function
// takes the group before the stream; it stores its rank for the kernels,
// all-gathers the token rows and ids (2·M rows), packs the assignments it
// serves (one block) and their rows (a block per received row, 2·M·k), runs
// its 4 local experts over them with the unpermuting GEMM2 into zeroed f32
// rows of assignments, then all-gathers the routing weights, adds each
// returned row into zeroed partial sums of all 2·M tokens, reduce-scatters
// them into this rank's M and converts them. The dispatch's and the
// return's error words are read back with moe.align's.
// CHECK-LABEL: func.func @moe_layer_layer(
// CHECK-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %{{.+}}: memref<8x128xbf16>, %{{.+}}: memref<4x256x128xbf16>, %{{.+}}: memref<4x128x128xbf16>,
// CHECK-SAME: %[[OUT:[a-z0-9]+]]: memref<?x128xbf16> {moe_gpu.result}, %[[M:[a-z0-9]+]]: index, %[[WS:[a-z0-9]+]]: memref<?xi8> {moe_gpu.workspace}, %[[G:[a-z0-9]+]]: !moe_gpu.group, %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// CHECK: %[[LOGITS:.+]] = moe_gpu.workspace_buffer {{.*}}[0] {{.*}} -> memref<?x8xf32>
// CHECK: @moe_kernels::@route_gate_logits
// CHECK: %[[WEIGHTS:.+]] = moe_gpu.workspace_buffer {{.*}}[1] {{.*}} -> memref<?x2xf32>
// CHECK: %[[IDS:.+]] = moe_gpu.workspace_buffer {{.*}}[2] {{.*}} -> memref<?x2xi32>
// CHECK: @moe_kernels::@route
// CHECK: %[[RANK:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<1xi32>
// CHECK: moe_gpu.store_group_rank %[[G]] into %[[RANK]] on %[[S]] {ranks = 2 : i64} : memref<1xi32>
// CHECK: %[[TWO_M:.+]] = arith.muli %[[M]], %c2
// CHECK: %[[ALL_X:.+]] = moe_gpu.workspace_buffer {{.*}} sizes(%[[TWO_M]]) : memref<?xi8> -> memref<?x128xbf16>
// CHECK: %[[ALL_IDS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x2xi32>
// CHECK: moe_gpu.all_gather %[[X]] into %[[ALL_X]] over %[[G]] on %[[S]] {ranks = 2 : i64} : memref<?x128xbf16>, memref<?x128xbf16>
// CHECK: moe_gpu.all_gather %[[IDS]] into %[[ALL_IDS]] over %[[G]] on %[[S]] {ranks = 2 : i64} : memref<?x2xi32>, memref<?x2xi32>
// CHECK: %[[ROWS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x128xbf16>
// CHECK: %[[LOCAL:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x1xi32>
// CHECK: %[[ORIGIN:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?xi32>
// CHECK: %[[COUNT:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<1xi32>
// CHECK: %[[DISPATCH_ERRORS:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[10] {{.*}} -> memref<1xi32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@ep_dispatch_ids blocks in (%c1{{.*}}, %c1{{.*}}, %c1{{.*}}) threads in (%c1024, {{.*}} args(%[[ALL_IDS]] : memref<?x2xi32>, %[[RANK]] : memref<1xi32>, %[[LOCAL]] : memref<?x1xi32>, %[[ORIGIN]] : memref<?xi32>, %[[COUNT]] : memref<1xi32>, %[[DISPATCH_ERRORS]] : memref<1xi32>)
// CHECK: %[[RECEIVED:.+]] = arith.muli %[[M]], %c4
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@ep_dispatch_rows blocks in (%[[RECEIVED]], {{.*}} args(%[[ALL_X]] : memref<?x128xbf16>, %[[ORIGIN]] : memref<?xi32>, %[[COUNT]] : memref<1xi32>, %[[ROWS]] : memref<?x128xbf16>)
// CHECK: @moe_kernels::@align {{.*}} args(%[[LOCAL]] : memref<?x1xi32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul {{.*}} args(%[[ROWS]] : memref<?x128xbf16>
// CHECK: %[[Y:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x1x128xf32>
// CHECK: moe_gpu.zero %[[Y]] on %[[S]] : memref<?x1x128xf32>
// CHECK: %[[Y2D:.+]] = memref.collapse_shape %[[Y]] {{\[}}[0, 1], [2]] : memref<?x1x128xf32> into memref<?x128xf32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 {{.*}} %[[Y2D]] : memref<?x128xf32>)
// CHECK: %[[RESULTS:.+]] = memref.collapse_shape %[[Y]]
// CHECK: %[[ALL_WEIGHTS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x2xf32>
// CHECK: moe_gpu.all_gather %[[WEIGHTS]] into %[[ALL_WEIGHTS]] over %[[G]] on %[[S]] {ranks = 2 : i64} : memref<?x2xf32>, memref<?x2xf32>
// CHECK: %[[PARTIAL:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x128xf32>
// CHECK: moe_gpu.zero %[[PARTIAL]] on %[[S]]
// CHECK: %[[RETURN_ERRORS:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[20] {{.*}} -> memref<1xi32>
// CHECK: moe_gpu.zero %[[RETURN_ERRORS]] on %[[S]]
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@ep_return {{.*}} args(%[[RESULTS]] : memref<?x128xf32>, %[[ORIGIN]] : memref<?xi32>, %[[ALL_WEIGHTS]] : memref<?x2xf32>, %[[PARTIAL]] : memref<?x128xf32>, %[[RETURN_ERRORS]] : memref<1xi32>)
// CHECK: %[[SUMS:.+]] = moe_gpu.workspace_buffer {{.*}} sizes(%[[M]]) : memref<?xi8> -> memref<?x128xf32>
// CHECK: moe_gpu.reduce_scatter %[[PARTIAL]] into %[[SUMS]] over %[[G]] on %[[S]] {ranks = 2 : i64} : memref<?x128xf32>, memref<?x128xf32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@ep_finalize blocks in (%[[M]], {{.*}} args(%[[SUMS]] : memref<?x128xf32>, %[[OUT]] : memref<?x128xbf16>)
// CHECK: moe_gpu.workspace_layout @moe_layer_layer_workspace {{{.*}}invalid_id_counters = array<i64: 10, 14, 20>
func.func @layer(%x: tensor<?x128xbf16>, %w_gate: tensor<8x128xbf16>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %logits = moe.router %x, %w_gate : tensor<?x128xbf16>, tensor<8x128xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
