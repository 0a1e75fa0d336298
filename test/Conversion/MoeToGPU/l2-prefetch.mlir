// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX
// `l2_prefetch_steps`: a swapped multistage kernel prefetches the weight
// tile of the step that many steps past the one whose stage it issues into
// L2. With 4 stages the ring's loads run 2 steps ahead, so the prologue
// prefetches steps 2..5 (gate and up boxes each, by the leader thread) and
// K step s of the loop prefetches step s + 2 + 4, predicated on that being
// one of the tile's 2048 / 64 = 32 steps; no branch, as a wgmma is in
// flight.

// CHECK-LABEL: func.func @gated_tma
// CHECK: gpu.func @expert_matmul
// CHECK: %[[LEADER:.*]] = arith.cmpi eq, %{{.*}}, %c0{{.*}} : index
// CHECK: nvgpu.tma.async.load
// CHECK-NOT: cp.async.bulk.prefetch.tensor
// CHECK: nvvm.cp.async.commit.group
// CHECK: %[[STEP2:.*]] = arith.muli %c2{{.*}}, %c64{{.*}} : index
// CHECK-NEXT: %[[K2:.*]] = arith.addi %[[KBASE:.*]], %[[STEP2]] : index
// CHECK-NEXT: %[[ISSUER:.*]] = arith.andi %[[LEADER]], %true : i1
// CHECK-NEXT: %[[COLUMN2:.*]] = arith.index_cast %[[K2]] : index to i32
// CHECK-NEXT: %[[GATE_ROW:.*]] = arith.index_cast %[[ROW:.*]] : index to i32
// CHECK-NEXT: nvvm.inline_ptx "cp.async.bulk.prefetch.tensor.2d.L2.global.tile [$0, {$1, $2}];" ro(%arg4, %[[COLUMN2]], %[[GATE_ROW]] : !llvm.ptr, i32, i32), predicate = %[[ISSUER]]
// CHECK-NEXT: %[[HALF:.*]] = arith.constant 128 : index
// CHECK-NEXT: %[[UP:.*]] = arith.addi %[[ROW]], %[[HALF]] : index
// CHECK: nvvm.inline_ptx "cp.async.bulk.prefetch.tensor.2d.L2.global.tile [$0, {$1, $2}];" ro(%arg4, %{{.*}}, %{{.*}} : !llvm.ptr, i32, i32), predicate = %[[ISSUER]]
// CHECK-COUNT-6: nvvm.inline_ptx "cp.async.bulk.prefetch.tensor.2d.L2.global.tile
// CHECK-NOT: cp.async.bulk.prefetch.tensor
// CHECK: scf.for
// CHECK: nvgpu.tma.async.load
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: %[[DISTANCE:.*]] = arith.constant 4 : index
// CHECK-NEXT: %[[AHEAD:.*]] = arith.addi %[[NEXT:.*]], %[[DISTANCE]] : index
// CHECK-NEXT: %[[STEPS:.*]] = arith.constant 32 : index
// CHECK-NEXT: %[[IN_RANGE:.*]] = arith.cmpi slt, %[[AHEAD]], %[[STEPS]] : index
// CHECK-NEXT: arith.constant 64 : index
// CHECK-NEXT: %[[K:.*]] = arith.muli %[[AHEAD]], %{{.*}} : index
// CHECK-NEXT: arith.addi %[[KBASE]], %[[K]] : index
// CHECK-NEXT: %[[LOOP_ISSUER:.*]] = arith.andi %[[LEADER]], %[[IN_RANGE]] : i1
// CHECK-COUNT-2: predicate = %[[LOOP_ISSUER]]
// PTX-LABEL: .entry expert_matmul(
// PTX-COUNT-8: @%p{{[0-9]+}} cp.async.bulk.prefetch.tensor.2d.L2.global.tile
// PTX: wgmma.mma_async
func.func @gated_tma(%x: tensor<?x2048xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x2048xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, l2_prefetch_steps = 4>}
      : tensor<?x2048xbf16>, tensor<8x256x2048xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Weights copied by cp.async: each thread prefetches the 128-byte lines
// its 16-byte chunks start (columns 0 mod 64 of bf16), at the address the
// step's copy will read, where the step is one of the tile's.

// CHECK-LABEL: func.func @copied_weights
// CHECK: gpu.func @expert_matmul
// CHECK: scf.for
// CHECK: nvgpu.device_async_copy %arg4[%[[ROW:[^,]+]], %{{[^]]+}}]
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: %[[DISTANCE:.*]] = arith.constant 2 : index
// CHECK-NEXT: %[[AHEAD:.*]] = arith.addi %{{.*}}, %[[DISTANCE]] : index
// CHECK-NEXT: %[[STEPS:.*]] = arith.constant 8 : index
// CHECK-NEXT: %[[IN_RANGE:.*]] = arith.cmpi slt, %[[AHEAD]], %[[STEPS]] : index
// CHECK-NEXT: %[[BLOCK_K:.*]] = arith.constant 128 : index
// CHECK-NEXT: %[[K:.*]] = arith.muli %[[AHEAD]], %[[BLOCK_K]] : index
// CHECK-NEXT: %[[K_OFFSET:.*]] = arith.addi %{{.*}}, %[[K]] : index
// CHECK-NEXT: %[[BASE:.*]] = memref.extract_aligned_pointer_as_index %arg4 : memref<1024x1024xbf16> -> index
// CHECK-NEXT: %[[LINE:.*]] = arith.constant 64 : index
// CHECK-NEXT: %[[LINE_OFFSET:.*]] = arith.remui %[[CHUNK:.*]], %[[LINE]] : index
// CHECK-NEXT: %[[ZERO:.*]] = arith.constant 0 : index
// CHECK-NEXT: %[[STARTS:.*]] = arith.cmpi eq, %[[LINE_OFFSET]], %[[ZERO]] : index
// CHECK-NEXT: %[[COLUMN:.*]] = arith.addi %[[K_OFFSET]], %[[CHUNK]] : index
// CHECK-NEXT: %[[ROW_LENGTH:.*]] = arith.constant 1024 : index
// CHECK-NEXT: %[[ROW_START:.*]] = arith.muli %[[ROW]], %[[ROW_LENGTH]] : index
// CHECK-NEXT: %[[ELEMENT:.*]] = arith.addi %[[ROW_START]], %[[COLUMN]] : index
// CHECK-NEXT: %[[ELEMENT_BYTES:.*]] = arith.constant 2 : index
// CHECK-NEXT: %[[BYTES:.*]] = arith.muli %[[ELEMENT]], %[[ELEMENT_BYTES]] : index
// CHECK-NEXT: %[[ADDRESS:.*]] = arith.addi %[[BASE]], %[[BYTES]] : index
// CHECK-NEXT: %[[ADDRESS64:.*]] = arith.index_cast %[[ADDRESS]] : index to i64
// CHECK-NEXT: %[[POINTER:.*]] = llvm.inttoptr %[[ADDRESS64]] : i64 to !llvm.ptr<1>
// CHECK-NEXT: %[[PREDICATE:.*]] = arith.andi %[[IN_RANGE]], %[[STARTS]] : i1
// CHECK-NEXT: nvvm.inline_ptx "prefetch.global.L2 [$0];" ro(%[[POINTER]] : !llvm.ptr<1>), predicate = %[[PREDICATE]]
// CHECK-COUNT-7: nvvm.inline_ptx "prefetch.global.L2 [$0];"
// CHECK-NOT: prefetch.global.L2
// CHECK: nvvm.wgmma.mma_async
// PTX-LABEL: .entry expert_matmul(
// PTX: @%p{{[0-9]+}} prefetch.global.L2 [%rd{{[0-9]+}}];
func.func @copied_weights(%x: tensor<?x1024xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x1024xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, swap_ab = true, weight_load = cp_async, l2_prefetch_steps = 2>}
      : tensor<?x1024xbf16>, tensor<8x128x1024xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Weight-only codes are not prefetched (their scales would need it too).
func.func @weight_only(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x128xui8>, %ws: tensor<8x128x8xf32>, %wz: tensor<8x128x8xui8>) -> tensor<?x64xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, l2_prefetch_steps = 4>: l2_prefetch_steps is built for bf16 and w8a8 weight tiles, not weight-only codes}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x128x8xf32>) weight_zeros(%wz : tensor<8x128x8xui8>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, l2_prefetch_steps = 4>}
      : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x64xbf16>
  return %h : tensor<?x64xbf16>
}
