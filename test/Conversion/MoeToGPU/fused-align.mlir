// RUN: moe-opt %s -moe-emit-gpu-kernels | FileCheck %s

// GEMM1 with fused_align_assignments aligns its own slot block: two more
// parameters (the ids, the invalid-id word), and before its tile, where
// M·k is at most 256, the counts by shared atomics, the padded starts by a
// warp scan of shuffles, the block's expert, the ranks of that expert's
// assignments by ballots and population counts, into the block's slots in
// shared memory. The blocks of the first column tile and split write the
// slots and the expert into the schedule; block 0 the padded count and the
// invalid ids. With more assignments the block reads the padded count and
// copies its slots from the schedule. The gather then reads the slots from
// shared memory. First, every block zeroes its grid-strided share of the
// combine's f32 sums, 16 bytes a store (the call has no memset node). GEMM2
// keeps its parameters and reads the schedule.
// CHECK-LABEL: gpu.func @expert_matmul(
// CHECK-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %[[SLOTS:[a-z0-9]+]]: memref<?xi32>, %[[BLOCKS:[a-z0-9]+]]: memref<?xi32>, %[[PADDED:[a-z0-9]+]]: memref<1xi32>, %{{[a-z0-9]+}}: !llvm.ptr, %{{[a-z0-9]+}}: memref<?x128xbf16>, %[[IDS:[a-z0-9]+]]: memref<?x2xi32>, %[[ERRORS:[a-z0-9]+]]: memref<1xi32>, %[[SUMS:[a-z0-9]+]]: memref<?x128xf32>)
// CHECK: %[[ZEROS:.+]] = llvm.mlir.constant(dense<0.000000e+00> : vector<4xf32>)
// CHECK: scf.for
// CHECK: memref.extract_aligned_pointer_as_index %[[SUMS]]
// CHECK: llvm.store %[[ZEROS]], %{{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: %[[COUNTS:.+]] = memref.view {{.*}} to memref<8xi32, #gpu.address_space<workgroup>>
// CHECK: %[[OWN:.+]] = memref.view {{.*}} to memref<16xi32, #gpu.address_space<workgroup>>
// CHECK: %[[WARPS:.+]] = memref.view {{.*}} to memref<32xi32, #gpu.address_space<workgroup>>
// CHECK: %[[FACTS:.+]] = memref.view {{.*}} to memref<4xi32, #gpu.address_space<workgroup>>
// CHECK: %[[M:.+]] = memref.dim %[[IDS]], %c0
// CHECK: %[[MK:.+]] = arith.muli %[[M]], %c2
// CHECK: %[[FITS:.+]] = arith.cmpi ule, %[[MK]], %c256
// CHECK: scf.if %[[FITS]] -> (i32, index) {
// CHECK: memref.load %[[IDS]]
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[COUNTS]]
// CHECK: gpu.barrier
// CHECK-COUNT-5: gpu.shuffle  up
// CHECK: memref.store %{{.*}}, %[[WARPS]]
// CHECK: gpu.barrier
// CHECK: nvvm.vote.sync  ballot
// CHECK: llvm.intr.ctpop
// CHECK: memref.store %{{.*}}, %[[OWN]]
// CHECK: memref.store %{{.*}}, %[[SLOTS]]
// CHECK: memref.store %{{.*}}, %[[BLOCKS]]
// CHECK: memref.store %{{.*}}, %[[PADDED]]
// CHECK: memref.store %{{.*}}, %[[ERRORS]]
// CHECK: } else {
// CHECK: memref.load %[[PADDED]]
// CHECK: memref.load %[[BLOCKS]]
// CHECK: memref.load %[[SLOTS]]
// CHECK: memref.store %{{.*}}, %[[OWN]]
// CHECK: }
// CHECK: gpu.barrier
// CHECK-NOT: memref.load %[[SLOTS]]
// CHECK: memref.load %[[OWN]]
// CHECK-LABEL: gpu.func @expert_matmul_0(
// CHECK-SAME: %{{[a-z0-9]+}}: memref<?x2xf32>, %{{[a-z0-9]+}}: memref<?x128xf32>) kernel
func.func @fused(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %sorted, %blocks, %padded = moe.align %ids {block_m = 16 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  %h = moe.expert_matmul %x, %w13 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = 16 : i64, gather, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, swap_ab = true, fused_align_assignments = 256>} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x128xbf16>
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%weights : tensor<?x2xf32>) {block_m = 16 : i64, k = 2 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, swap_ab = true>} : tensor<?x128xbf16>, tensor<8x128x128xbf16> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
