// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX
// Split-K of a matmul without a combine (a gated GEMM1 has no sums to add
// into: its activation needs the whole of K): the K splits of a tile are
// a cluster along the grid's z. After its K loop every split writes its
// sums to the swapped epilogue's shared table; past a cluster barrier,
// split 0 alone adds the other splits' tables through distributed shared
// memory (mapa to ranks 1..S-1, loads from the cluster window) and runs
// the epilogue; a second cluster barrier keeps every table alive until it
// has read them.

// CHECK-LABEL: func.func @gated_split
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: split_k = 4 : i64
// CHECK-SAME: nvvm.cluster_dim = array<i32: 1, 1, 4>
// CHECK: memref.store {{.*}} : memref<16x68xf32, #gpu.address_space<workgroup>>
// CHECK: gpu.barrier
// CHECK-NEXT: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// CHECK: %[[Z:.*]] = gpu.block_id  z
// CHECK-NEXT: %[[FIRST:.*]] = arith.cmpi eq, %[[Z]], %c0
// CHECK-NEXT: scf.if %[[FIRST]] {
// CHECK: %[[TABLE:.*]] = llvm.getelementptr {{.*}} : (!llvm.ptr<3>, i64) -> !llvm.ptr<3>, i8
// CHECK: %[[RANK1:.*]] = nvvm.mapa %[[TABLE]], %c1_i32 : !llvm.ptr<3> -> !llvm.ptr<7>
// CHECK: %[[RANK2:.*]] = nvvm.mapa %[[TABLE]], %c2_i32 : !llvm.ptr<3> -> !llvm.ptr<7>
// CHECK: %[[RANK3:.*]] = nvvm.mapa %[[TABLE]], %c3_i32 : !llvm.ptr<3> -> !llvm.ptr<7>
// CHECK-NOT: nvvm.mapa
// CHECK: %[[OWN:.*]] = memref.load {{.*}} : memref<16x68xf32, #gpu.address_space<workgroup>>
// CHECK: %[[AT1:.*]] = llvm.getelementptr %[[RANK1]][%[[ELEMENT:.*]]] : (!llvm.ptr<7>, i64) -> !llvm.ptr<7>, f32
// CHECK-NEXT: %[[SUM1:.*]] = llvm.load %[[AT1]] : !llvm.ptr<7> -> f32
// CHECK-NEXT: %[[ADD1:.*]] = arith.addf %[[OWN]], %[[SUM1]] : f32
// CHECK-NEXT: %[[AT2:.*]] = llvm.getelementptr %[[RANK2]][%[[ELEMENT]]]
// CHECK-NEXT: %[[SUM2:.*]] = llvm.load %[[AT2]]
// CHECK-NEXT: %[[ADD2:.*]] = arith.addf %[[ADD1]], %[[SUM2]] : f32
// CHECK-NEXT: %[[AT3:.*]] = llvm.getelementptr %[[RANK3]][%[[ELEMENT]]]
// CHECK-NEXT: %[[SUM3:.*]] = llvm.load %[[AT3]]
// CHECK-NEXT: %[[ADD3:.*]] = arith.addf %[[ADD2]], %[[SUM3]] : f32
// CHECK-NEXT: llvm.insertvalue %[[ADD3]]
// CHECK: llvm.store {{.*}} : vector<2xbf16>, !llvm.ptr<1>
// CHECK: {{^ *}}}{{$}}
// CHECK-NEXT: {{^ *}}}{{$}}
// CHECK-NEXT: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// PTX-LABEL: .entry expert_matmul(
// PTX: .explicitcluster
// PTX-NEXT: .reqnctapercluster 1, 1, 4
// PTX: barrier.cluster.arrive
// PTX: barrier.cluster.wait
// PTX-COUNT-3: mapa.shared::cluster.u64
// PTX: ld.shared::cluster.b32
// PTX: barrier.cluster.arrive
// PTX: barrier.cluster.wait
func.func @gated_split(%x: tensor<?x2048xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x2048xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 4, swap_ab = true>}
      : tensor<?x2048xbf16>, tensor<8x256x2048xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Unsplit, the same kernel has no cluster.
// CHECK-LABEL: func.func @gated_unsplit
// CHECK: gpu.func @expert_matmul
// CHECK-NOT: nvvm.cluster_dim
// CHECK-NOT: nvvm.cluster.arrive
// CHECK-NOT: nvvm.mapa
// CHECK: gpu.return
// PTX-LABEL: .entry expert_matmul(
// PTX-NOT: .reqnctapercluster
// PTX-NOT: ld.shared::cluster
// PTX: ret;
func.func @gated_unsplit(%x: tensor<?x2048xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x2048xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>}
      : tensor<?x2048xbf16>, tensor<8x256x2048xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// int8 sums are s32: the splits add as integers before the scales.
// CHECK-LABEL: func.func @swapped_int8_split
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: nvvm.cluster_dim = array<i32: 1, 1, 2>
// CHECK: nvvm.mapa %{{.*}}, %c1_i32
// CHECK: %[[SUM:.*]] = llvm.load %{{.*}} : !llvm.ptr<7> -> i32
// CHECK-NEXT: arith.addi %{{.*}}, %[[SUM]] : i32
// CHECK: arith.sitofp
// PTX-LABEL: .entry expert_matmul(
// PTX: .reqnctapercluster 1, 1, 2
// PTX: ld.shared::cluster.b32
func.func @swapped_int8_split(%x: tensor<?x512xi8>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xi8>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<int8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 2, consumer_warpgroups = 1, split_k = 2, swap_ab = true>}
      : tensor<?x512xi8>, tensor<8x256x512xi8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Unswapped kernels keep their sums in registers to the end: no split.
func.func @unswapped_split(%x: tensor<?x2048xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x2048xbf16>) -> tensor<?x128xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 2>: split-K of a matmul without a combine is built for the swapped multistage schedule}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 2>}
      : tensor<?x2048xbf16>, tensor<8x256x2048xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Unpermuted f32 rows add their splits atomically, as a combine does: no
// cluster, and no bound of 8.
// CHECK-LABEL: func.func @unpermute_split
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: split_k = 16 : i64
// CHECK-NOT: nvvm.cluster_dim
// CHECK-NOT: nvvm.cluster.arrive
// CHECK: red.global.add.v2.f32
// PTX-LABEL: .entry expert_matmul(
// PTX-NOT: .reqnctapercluster
// PTX: red.global.add.v2.f32
func.func @unpermute_split(%h: tensor<?x2048xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x2048xbf16>) -> tensor<?x2x256xf32> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {k = 2 : i64, block_m = 64 : i64, unpermute, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 16>}
      : tensor<?x2048xbf16>, tensor<8x256x2048xbf16> -> tensor<?x2x256xf32>
  return %o : tensor<?x2x256xf32>
}
