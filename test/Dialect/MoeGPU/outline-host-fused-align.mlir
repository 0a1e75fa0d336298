// RUN: moe-opt %s -split-input-file --moe-gpu-pipeline="num-tokens=1 fused-align-assignments=64" --moe-gpu-outline-host -verify-diagnostics | FileCheck %s

// With fused-align-assignments, GEMM1 aligns its own slot blocks for calls
// of at most 64 assignments: the host launches the align kernels (one block,
// or many) only above that, and passes GEMM1 the ids and the word of
// invalid ids it writes; GEMM2 reads the schedule GEMM1 wrote. GEMM1 also
// zeroes the combine's f32 sums (every call): no memset node.
// CHECK-LABEL: func.func @moe_layer_from_logits(
// CHECK-SAME: %[[M:[a-z0-9]+]]: index, %{{[a-z0-9]+}}: memref<?xi8> {moe_gpu.workspace}, %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// CHECK: %[[IDS:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[1] {{.*}} -> memref<?x2xi32>
// CHECK: %[[SORTED:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[2]
// CHECK: %[[ERRORS:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[5] {{.*}} -> memref<1xi32>
// CHECK: %[[BOUND:.+]] = arith.constant 64 : index
// CHECK: %[[MK:.+]] = arith.muli %[[M]], %{{.*}} : index
// CHECK: %[[MANY:.+]] = arith.cmpi sgt, %[[MK]], %[[BOUND]] : index
// CHECK: scf.if %[[MANY]] {
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align_count
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align_scatter
// CHECK: } else {
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align blocks
// CHECK: }
// CHECK-NEXT: }
// CHECK-NOT: moe_gpu.zero
// CHECK: %[[SUMS:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[8] {{.*}} -> memref<?x128xf32>
// CHECK-NOT: moe_gpu.zero
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul blocks {{.*}} args(%{{.*}}, %[[SORTED]] : memref<?xi32>, {{.*}}, %[[IDS]] : memref<?x2xi32>, %[[ERRORS]] : memref<1xi32>, %[[SUMS]] : memref<?x128xf32>)
// CHECK-NOT: moe_gpu.zero
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 blocks {{.*}} args(%{{.*}}, %[[SORTED]] : memref<?xi32>, {{[^)]*}}, %[[SUMS]] : memref<?x128xf32>)
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@combine_finalize blocks {{.*}} args(%[[SUMS]] : memref<?x128xf32>
// CHECK: invalid_id_counters = array<i64: 5>, names = ["moe.topk weights", "moe.topk ids", "moe.align sorted ids", "moe.align block experts", "moe.align padded count", "moe.align ids outside [-1, E)", "moe.align counts and cursors", "moe.expert_matmul output", "f32 sums of the combine"]
func.func @from_logits(%x: tensor<?x128xbf16>, %logits: tensor<?x8xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}

// -----

// GEMM2 runs after GEMM1 has read the schedule: it cannot align it.
func.func @not_first(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %sorted, %blocks, %padded = moe.align %ids {block_m = 64 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %h = moe.expert_matmul %x, %w13 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = 64 : i64, gather, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1>} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x128xbf16>
  // expected-error @+1 {{GPU layer: fused_align_assignments needs the matmul to be the first user of its moe.align's schedule, which the ops before it would read unaligned}}
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%weights : tensor<?x2xf32>) {block_m = 64 : i64, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, fused_align_assignments = 64>} : tensor<?x128xbf16>, tensor<8x128x128xbf16> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}

// -----

// Two matmuls aligning one schedule.
func.func @two(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %sorted, %blocks, %padded = moe.align %ids {block_m = 64 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %h = moe.expert_matmul %x, %w13 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = 64 : i64, gather, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, fused_align_assignments = 64>} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x128xbf16>
  // expected-error @+1 {{GPU layer: two matmuls align the slot blocks of one moe.align (fused_align_assignments)}}
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%weights : tensor<?x2xf32>) {block_m = 64 : i64, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, fused_align_assignments = 64>} : tensor<?x128xbf16>, tensor<8x128x128xbf16> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
