// Two warpgroups for every swapped kernel (the policy gives a gated one with
// short weight rows one; its kernel is the one-warpgroup TMA form below).
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="swapped-warpgroups=2 weight-only-registers=false" -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// The kernels lower to sm_90a PTX with the intended instructions, the TMA
// descriptors as 128-byte grid-constant parameters.
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="swapped-warpgroups=2 weight-only-registers=false" -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX

// GEMM1 without activation: gathered rows, bf16 rows out. Every stage of
// the ring is issued without branches (TMA and expect_tx predicated; cp.async
// of an invalid step copies nothing; the gathered rows bypass L1), one wgmma
// group stays in flight; the epilogue writes each thread's two adjacent
// columns as one bf16x2 word, without a branch per row, into a table over
// the ring (64 rows of 128 columns, 16 bytes of padding each), and the
// block copies its rows out in 16-byte chunks.
// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @gemm1
// CHECK: moe.expert_matmul {{.*}}moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK: gpu.module @moe_kernels
// CHECK: llvm.mlir.global external @moe_dynamic_shared_memory() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %{{.*}}: !llvm.ptr, %{{.*}}: memref<?x256xbf16>) kernel
// CHECK-SAME: moe.grid_constant_args = [22]
// CHECK-SAME: moe.launch = {block_m = 64 : i64, box_cols = 64 : i64, box_rows = 128 : i64, element_bytes = 2 : i64, shared_bytes = 123904 : i64, split_k = 1 : i64, stages = 5 : i64, threads = 128 : i64, tile_n = 128 : i64}
// CHECK: nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 5>
// CHECK: nvgpu.tma.async.load {{.*}}, predicate = %{{.*}} : <tensor = memref<128x64xbf16
// CHECK: nvgpu.mbarrier.arrive.expect_tx %{{.*}}, %c16384{{.*}}, predicate = %{{.*}}
// CHECK: nvgpu.device_async_copy %arg0[%{{.*}}, %{{.*}}], %{{.*}}[%{{.*}}, %{{.*}}], 8, %{{.*}} {bypassL1} : memref<?x512xbf16> to memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.cp.async.commit.group
// CHECK: scf.for
// CHECK: nvvm.cp.async.wait.group 2
// CHECK: nvvm.fence.proxy
// CHECK: gpu.barrier
// CHECK: nvgpu.mbarrier.try_wait.parity
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NOT: scf.if
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: llvm.bitcast %{{.*}} : vector<2xbf16> to i32
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<64x68xi32, #gpu.address_space<workgroup>>
// CHECK: gpu.barrier
// CHECK-NOT: scf.if
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<3> -> vector<4xi32>
// CHECK: llvm.store %{{.*}}, %{{.*}} {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<1>
// PTX: .entry expert_matmul(
// PTX: .param .align 64 .b8 expert_matmul_param_22[128]
// PTX: cvta.param.u64 {{.*}}%[[MAP:rd[0-9]+]], %
// PTX-DAG: cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%{{.*}}], [%[[MAP]], {
// PTX-DAG: cp.async.cg.shared.global
// PTX-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// PTX-DAG: ld.shared.v4.b32
// PTX-DAG: st.global.v4.b32
// PTX-DAG: wgmma.wait_group.sync.aligned {{.*}}1;
func.func @gemm1(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// GEMM1 with its silu_and_mul epilogue: each tile loads 64 gate rows and the
// 64 up rows N/2 further, and stores 64 activated columns (I = 128 wide).
// CHECK-LABEL: func.func @with_silu
// CHECK: moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK: gpu.func @expert_matmul({{.*}}, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK-SAME: box_rows = 64 : i64
// CHECK-SAME: tile_n = 64 : i64
// CHECK: nvgpu.tma.async.load %{{.*}}[%{{.*}}, %[[GATE:.*]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: %[[UP:.*]] = arith.addi %[[GATE]], %c128
// CHECK: nvgpu.tma.async.load %{{.*}}[%{{.*}}, %[[UP]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: math.exp
// CHECK: arith.mulf
func.func @with_silu(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Swapped operands (a 16-row slot block, decode), the one-warpgroup kernel
// written on the op (weights by TMA): one warpgroup copies the
// block's 16 gathered rows (one 16-byte chunk per thread) and multiplies each
// 64 weight rows of the 128-row tile (gate, then up) by them, m64n16k16 into
// two accumulators of 8 registers; after the K loop the sums go through
// shared memory (16 slot rows of 128 + 4 floats, once every cp.async group
// has landed) into the unswapped fragment, and the first warp, whose 16
// fragment rows are the block's, applies silu_and_mul and stores.
// CHECK-LABEL: func.func @swapped_silu
// CHECK: gpu.func @expert_matmul({{.*}}, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK-SAME: moe.launch = {block_m = 16 : i64, box_cols = 64 : i64, box_rows = 64 : i64, element_bytes = 2 : i64, shared_bytes = 93184 : i64, split_k = 1 : i64, stages = 5 : i64, threads = 128 : i64, tile_n = 64 : i64}
// CHECK: nvgpu.device_async_copy {{.*}} : memref<?x512xbf16> to memref<16x64xbf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvvm.cp.async.commit.group
// 8 K steps of a 5-stage ring: one round of 5 steps in the loop, 3 after it.
// CHECK: scf.for
// CHECK-COUNT-40: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 16, k = 16>
// CHECK: scf.yield
// CHECK-COUNT-24: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 16, k = 16>
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NEXT: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// CHECK: memref.view {{.*}} to memref<16x132xf32, #gpu.address_space<workgroup>>
// CHECK-COUNT-16: memref.store
// CHECK: gpu.barrier
// CHECK-COUNT-64: memref.load
// CHECK: %[[WARP:.*]] = arith.divui %{{.*}}, %c32
// CHECK: %[[FIRST:.*]] = arith.cmpi ult, %[[WARP]], %c1
// CHECK: scf.if %[[FIRST]]
// CHECK: math.exp
// CHECK: llvm.store %{{.*}}, %{{.*}} {alignment = 4 : i64} : vector<2xbf16>, !llvm.ptr<1>
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
func.func @swapped_silu(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Swapped operands in GEMM2 with the combine and split-K, the
// one-warpgroup kernel written on the op: 32 slot rows (two
// chunks per thread), four accumulators of 16 registers for the 256 weight
// rows; the first two warps hold the block's 32 rows and add them, times
// their routed weights, into the sums by paired reductions.
// CHECK-LABEL: func.func @swapped_combine
// CHECK: gpu.func @expert_matmul(
// CHECK-SAME: block_m = 32 : i64
// CHECK-SAME: split_k = 2 : i64
// CHECK-SAME: threads = 128 : i64, tile_n = 256 : i64
// CHECK-COUNT-2: nvgpu.device_async_copy {{.*}} to memref<32x64xbf16, #gpu.address_space<workgroup>>
// CHECK: scf.for
// CHECK-COUNT-16: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 32, k = 16>
// CHECK: memref.view {{.*}} to memref<32x260xf32, #gpu.address_space<workgroup>>
// CHECK: arith.cmpi ult, %{{.*}}, %c2
// CHECK: scf.if
// CHECK: red.global.add.v2.f32
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16
// PTX: red.global.add.v2.f32
func.func @swapped_combine(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 32 : i64, tile = #moe.tile<block_m = 32, block_n = 256, block_k = 64, stages = 4, split_k = 2, swap_ab = true, group_m = 1>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 256, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 2, group_m = 1, swap_ab = true>} : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// The swapped kernel moe-gpu-configure gives a 16-row block with two
// warpgroups: 256 bytes of K per stage, and the weights copied by cp.async.
// The weights come as memory ([E·N, K] bf16, no descriptor and so no
// grid-constant parameter, launch fact copies_weights) and no mbarrier is
// made. Each of the 256 threads copies 8 chunks of the 128-row weight tile
// (gate rows, then from row 64 the matching up rows N/2 further; rows past
// the weights zero-filled) and one of the 16 slot rows' 2 spans, in one
// commit group; the step waits for its group and the block barrier only.
// Warpgroup w's wgmmas read weight rows 64·w on (512 descriptor units of 16
// bytes), 8 per step (2 spans x 4 of k16); both write their sums into the
// transposed table, and the first warp stores.
// CHECK-LABEL: func.func @swapped_copied
// CHECK: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, swap_ab = true, weight_load = cp_async>
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %[[W:.*]]: memref<2048x512xbf16>, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK-SAME: attributes {moe.launch = {block_m = 16 : i64, box_cols = 64 : i64, box_rows = 64 : i64, copies_weights = 1 : i64, element_bytes = 2 : i64, shared_bytes = 148480 : i64, split_k = 1 : i64, stages = 4 : i64, threads = 256 : i64, tile_n = 64 : i64}}
// CHECK-NOT: nvgpu.mbarrier
// CHECK-NOT: nvgpu.tma
// CHECK: %[[WARPGROUP:.*]] = arith.divui %thread_id_x, %c128
// CHECK: %[[OFFSET:.*]] = arith.muli %[[WARPGROUP]], %c512
// CHECK-NEXT: %[[OFFSET64:.*]] = arith.index_cast %[[OFFSET]] : index to i64
// CHECK: %[[IS_UP:.*]] = arith.cmpi uge, %{{.*}}, %c64
// CHECK: %[[SOURCE:.*]] = arith.select %[[IS_UP]], %{{.*}}, %{{.*}} : index
// CHECK: %[[INSIDE:.*]] = arith.cmpi ult, %[[SOURCE]], %c2048
// CHECK: arith.select %[[INSIDE]], %c8{{.*}}, %c0{{.*}} : index
// CHECK: scf.for
// CHECK-NOT: nvgpu.mbarrier
// CHECK-NOT: nvgpu.tma
// CHECK: nvvm.cp.async.wait.group 1
// CHECK: gpu.barrier
// CHECK-COUNT-8: nvgpu.device_async_copy %[[W]][{{.*}} {bypassL1} : memref<2048x512xbf16> to memref<256x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_copy {{.*}} {bypassL1} : memref<?x512xbf16> to memref<32x64xbf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvvm.cp.async.commit.group
// CHECK-NOT: nvgpu.mbarrier
// CHECK: arith.ori %{{.*}}, %c4611686293305360384_i64
// CHECK: %[[WEIGHTS:.*]] = arith.ori %{{.*}}, %c4611686293305360384_i64
// CHECK-NEXT: arith.addi %[[WEIGHTS]], %[[OFFSET64]] : i64
// CHECK-NEXT: nvvm.wgmma.fence.aligned
// CHECK-COUNT-8: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 16, k = 16>
// CHECK: scf.yield
// CHECK: memref.view {{.*}} to memref<16x132xf32, #gpu.address_space<workgroup>>
// CHECK-COUNT-8: memref.store
// CHECK: gpu.barrier
// CHECK: %[[WARP:.*]] = arith.divui %{{.*}}, %c32
// CHECK: %[[FIRST:.*]] = arith.cmpi ult, %[[WARP]], %c1
// CHECK: scf.if %[[FIRST]]
// CHECK: math.exp
// PTX: .entry expert_matmul(
// PTX-NOT: cp.async.bulk.tensor
// PTX: cp.async.cg.shared.global [%rd{{[0-9]+}}{{(\+[0-9]+)?}}], [%rd{{[0-9]+}}], 16, %r{{[0-9]+}};
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
func.func @swapped_copied(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Two warpgroups over a 256-row weight tile (GEMM2, the combine): each
// multiplies its 128 rows in two accumulators (64 rows apart in the tile),
// and writes them into the table at rows 128·w + 16·(warp mod 4) + lane/4
// (+ 64 for the second): 32 stores a thread.
// CHECK-LABEL: func.func @swapped_copied_combine
// CHECK: gpu.func @expert_matmul(
// CHECK-SAME: copies_weights = 1 : i64
// CHECK-SAME: threads = 256 : i64, tile_n = 256 : i64
// CHECK: %[[WARPGROUP:.*]] = arith.divui %thread_id_x, %c128
// CHECK: memref.view {{.*}} to memref<32x260xf32, #gpu.address_space<workgroup>>
// CHECK: %[[GROUP_ROWS:.*]] = arith.muli %[[WARPGROUP]], %c128
// CHECK: %[[WARP_ROWS:.*]] = arith.muli %{{.*}}, %c16
// CHECK: arith.addi %[[GROUP_ROWS]], %[[WARP_ROWS]]
// CHECK-COUNT-32: memref.store {{.*}} : memref<32x260xf32, #gpu.address_space<workgroup>>
// CHECK-NOT: memref.store {{.*}} : memref<32x260xf32
// CHECK: red.global.add.v2.f32
func.func @swapped_copied_combine(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 32 : i64,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 256, block_k = 128, stages = 2, consumer_warpgroups = 2, swap_ab = true, weight_load = cp_async>} : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Expert biases: the [E, N] f32 table is the argument after the weights;
// each thread loads its gate columns' and their up columns' (N/2 = 128
// further) biases before the stores, and adds them to the products before
// swiglu's clamps; a padding slot's row is stored as 0 (the bias would
// make it nonzero).
// CHECK-LABEL: func.func @swiglu_bias
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xbf16>, {{.*}}, %{{.*}}: !llvm.ptr, %[[BIAS:.*]]: memref<8x256xf32>, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: %[[GATE_COLUMN:.*]] = arith.select %{{.*}}, %[[COLUMN:.*]], %c0{{.*}} : index
// CHECK: %[[GATE_BIAS:.*]] = memref.load %[[BIAS]][%{{.*}}, %[[GATE_COLUMN]]] : memref<8x256xf32>
// CHECK: %[[CLAMPED:.*]] = arith.select %{{.*}}, %[[COLUMN]], %c0{{.*}} : index
// CHECK: %[[UP_COLUMN:.*]] = arith.addi %[[CLAMPED]], %c128
// CHECK: %[[UP_BIAS:.*]] = memref.load %[[BIAS]][%{{.*}}, %[[UP_COLUMN]]] : memref<8x256xf32>
// CHECK: %[[G:.*]] = llvm.extractvalue %{{.*}}[0]
// CHECK: %[[GB:.*]] = arith.addf %[[G]], %[[GATE_BIAS]] : f32
// CHECK: %[[U:.*]] = llvm.extractvalue %{{.*}}[32]
// CHECK: %[[UB:.*]] = arith.addf %[[U]], %[[UP_BIAS]] : f32
// CHECK: arith.minimumf %[[GB]]
// CHECK: arith.maximumf %[[UB]]
// CHECK: math.exp
// CHECK: %[[UP1:.*]] = arith.addf %{{.*}}, %cst{{.*}} : f32
// CHECK: %[[ACT:.*]] = arith.mulf %{{.*}}, %[[UP1]] : f32
// CHECK: arith.select %[[REAL:.*]], %[[ACT]], %[[ZERO:.*]] : f32
// CHECK: arith.select %[[REAL]], %{{.*}}, %[[ZERO]] : f32
// CHECK: llvm.store
func.func @swiglu_bias(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %b: tensor<8x256xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) bias(%b : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<swiglu>, alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Interleaved gate/up rows (gate j at row 2j, up j at 2j + 1): the weights'
// descriptor is over [E·N/2, 2K] row pairs, so the tile's first row is
// expert·(N/2) + its column, the gate box loads at K offset k and the up box
// at k + K (512) of the same rows; the biases of output column c are read at
// 2c and 2c + 1.
// CHECK-LABEL: func.func @swiglu_bias_interleaved
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xbf16>, {{.*}}, %{{.*}}: !llvm.ptr, %[[BIAS:.*]]: memref<8x256xf32>, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK: %[[EXPERT_ROWS:.*]] = arith.muli %[[EXPERT:.*]], %c128{{.*}} : index
// CHECK: %[[ROW:.*]] = arith.addi %[[EXPERT_ROWS]], %{{.*}} : index
// CHECK: %[[UP_K:.*]] = arith.addi %[[K:.*]], %c512{{.*}} : index
// CHECK: nvgpu.tma.async.load %{{.*}}[%[[K]], %[[ROW]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.tma.async.load %{{.*}}[%[[UP_K]], %[[ROW]]], {{.*}} -> memref<64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: %[[CLAMPED:.*]] = arith.select %{{.*}}, %{{.*}}, %c0{{.*}} : index
// CHECK-NEXT: %[[TWO:.*]] = arith.constant 2 : index
// CHECK-NEXT: %[[GATE_COLUMN:.*]] = arith.muli %[[CLAMPED]], %[[TWO]] : index
// CHECK-NEXT: memref.load %[[BIAS]][%[[EXPERT]], %[[GATE_COLUMN]]] : memref<8x256xf32>
// CHECK: %[[PAIR:.*]] = arith.muli %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1 : index
// CHECK-NEXT: %[[UP_COLUMN:.*]] = arith.addi %[[PAIR]], %[[ONE]] : index
// CHECK-NEXT: memref.load %[[BIAS]][%[[EXPERT]], %[[UP_COLUMN]]] : memref<8x256xf32>
func.func @swiglu_bias_interleaved(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %b: tensor<8x256xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) bias(%b : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<swiglu>, gate_up_interleaved, alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// A biased combine split along K: only split 0 adds the bias, before the
// routed weight multiplies the sum.
// CHECK-LABEL: func.func @combine_bias_split_k
// CHECK: gpu.func @expert_matmul({{.*}}, %{{.*}}: !llvm.ptr, %[[BIAS:.*]]: memref<8x512xf32>, %{{.*}}: memref<?x2xf32>, %{{.*}}: memref<?x512xf32>) kernel
// CHECK-SAME: split_k = 2 : i64
// CHECK: nvvm.wgmma.mma_async
// CHECK: %[[Z:.*]] = gpu.block_id z
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[Z]], %c0
// CHECK: %[[LOADED:.*]] = memref.load %[[BIAS]]
// CHECK: %[[B0:.*]] = arith.select %[[FIRST]], %[[LOADED]], %cst{{.*}} : f32
// CHECK: %[[SUM:.*]] = arith.addf %{{.*}}, %[[B0]] : f32
// CHECK: arith.mulf %[[SUM]], %{{.*}} : f32
// CHECK: red.global.add.v2.f32
func.func @combine_bias_split_k(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>, %b: tensor<8x512xf32>) -> tensor<?x512xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) bias(%b : tensor<8x512xf32>)
      {k = 2 : i64, block_m = 128 : i64, tile = #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 4, split_k = 2, swap_ab = false, group_m = 1>} : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// GEMM2 with the combine: rows in slot order, two warpgroups for block_m
// 128, wgmma N and split-K from the tile, routed weight times the scaling
// factor added into f32 sums by paired reductions (a thread's two adjacent
// columns in one red.global.add.v2.f32); a second kernel converts them. The
// routing weights are loaded before the K loop, whose latency hides theirs.
// CHECK-LABEL: func.func @gemm2
// CHECK: moe.gpu_finalize_kernel = @moe_kernels::@combine_finalize, moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x128xbf16>, {{.*}}, %{{.*}}: !llvm.ptr, %[[WEIGHTS:.*]]: memref<?x2xf32>, %[[SUMS:.*]]: memref<?x512xf32>) kernel
// CHECK-SAME: block_m = 128 : i64
// CHECK-SAME: split_k = 2 : i64
// CHECK-SAME: threads = 256 : i64, tile_n = 256 : i64
// CHECK: gpu.block_id z
// CHECK: %[[W:.*]] = memref.load %[[WEIGHTS]]
// CHECK: %[[SCALED:.*]] = arith.mulf %[[W]], %cst
// CHECK: scf.for
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 256, k = 16>
// CHECK: memref.extract_strided_metadata %[[SUMS]]
// CHECK: arith.mulf %{{.*}}, %[[SCALED]]
// CHECK: llvm.inline_asm has_side_effects "red.global.add.v2.f32 [$0], {$1, $2};", "l,f,f"
// The finalize converts eight columns per thread: 32 bytes of sums in, 16
// of bf16 out, 2048 columns per block of 256 threads.
// CHECK: gpu.func @combine_finalize(%{{.*}}: memref<?x512xf32>, %{{.*}}: memref<?x512xbf16>) kernel attributes {moe.launch = {columns_per_block = 2048 : i64, threads = 256 : i64}}
// CHECK: %[[SUM:.*]] = llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xf32>
// CHECK: %[[NARROW:.*]] = arith.truncf %[[SUM]] : vector<8xf32> to vector<8xbf16>
// CHECK: llvm.store %[[NARROW]], %{{.*}} {alignment = 16 : i64} : vector<8xbf16>, !llvm.ptr<1>
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16
// PTX: red.global.add.v2.f32
// PTX: .entry combine_finalize(
// PTX: ld.global.v4.b32
// PTX: ld.global.v4.b32
// PTX: cvt.rn.bf16x2.f32
// PTX: st.global.v4.b32
// PTX: .entry combine_finalize(
func.func @gemm2(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 128 : i64, routed_scaling_factor = 2.5 : f32, tile = #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 4, split_k = 2, swap_ab = false, group_m = 1>} : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// A gated shared expert: the gate's router alone (the logits kernel of
// moe.route, one warp for the one expert; H = 256 leaves only the one-column
// loop) and the kernel appending the shared experts (a thread per column:
// routed columns copied, column k + s holding expert E + s and the gate's
// sigmoid).
// CHECK-LABEL: func.func @shared_gate
// CHECK: moe.router {{.*}}moe.gpu_kernel = @moe_kernels::@router, moe.gpu_many_tokens_kernel = @moe_kernels::@router_many_tokens
// CHECK: moe.add_shared_experts {{.*}}moe.gpu_kernel = @moe_kernels::@add_shared_experts
// CHECK: gpu.func @router(%[[X:.*]]: memref<?x256xbf16>, %[[W:.*]]: memref<1x256xbf16>, %[[LOGITS:.*]]: memref<?x1xf32>) kernel
// CHECK-SAME: experts_per_block = 1 : i64, min_tokens = 0 : i64, threads = 32 : i64, tokens_per_block = 8 : i64
// CHECK: scf.for %{{.*}} = %{{.*}} to %c0{{.*}} step %c1024
// CHECK: scf.for %{{.*}} = %{{.*}} to %c256{{.*}} step %c256
// CHECK-COUNT-8: llvm.intr.fma
// CHECK: scf.yield
// CHECK: memref.store %{{.*}}, %[[LOGITS]]
// The many-token tiling of one expert: one warp a block, from 528 tiles of
// 8 tokens on.
// CHECK: gpu.func @router_many_tokens(
// CHECK-SAME: experts_per_block = 4 : i64, min_tokens = 4224 : i64, threads = 32 : i64, tokens_per_block = 8 : i64
// CHECK: gpu.func @add_shared_experts(%[[RW:.*]]: memref<?x4xf32>, %[[RI:.*]]: memref<?x4xi32>, %[[G:.*]]: memref<?x1xf32>, %[[WO:.*]]: memref<?x8xf32>, %[[IO:.*]]: memref<?x8xi32>) kernel
// CHECK-SAME: threads = 32
// CHECK: %[[COL:.*]] = gpu.thread_id x
// CHECK: arith.cmpi ult, %[[COL]], %c8
// CHECK: %[[ROUTED:.*]] = arith.cmpi ult, %[[COL]], %c4
// CHECK: scf.if %[[ROUTED]]
// CHECK: memref.load %[[RW]]
// CHECK: memref.load %[[RI]]
// CHECK: } else {
// CHECK: %[[SHARED:.*]] = arith.addi %[[COL]], %c56
// CHECK: memref.load %[[G]]
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[WO]]
// CHECK: memref.store %{{.*}}, %[[IO]]
// PTX: .entry router(
// PTX: .entry add_shared_experts(
func.func @shared_gate(%x: tensor<?x256xbf16>, %wsg: tensor<1x256xbf16>, %w: tensor<?x4xf32>, %ids: tensor<?x4xi32>) -> (tensor<?x8xf32>, tensor<?x8xi32>) {
  %g = moe.router %x, %wsg : tensor<?x256xbf16>, tensor<1x256xbf16> -> tensor<?x1xf32>
  %0:2 = moe.add_shared_experts %w, %ids gate(%g : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 4 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
  return %0#0, %0#1 : tensor<?x8xf32>, tensor<?x8xi32>
}

// -----

// moe.align: one block of 1024 threads; counts, cursors and a sum per warp
// in shared memory.
// CHECK-LABEL: func.func @align
// Up to 1024 experts, also the two kernels over many blocks.
// CHECK: moe.align {{.*}}moe.gpu_count_kernel = @moe_kernels::@align_count, moe.gpu_kernel = @moe_kernels::@align, moe.gpu_scatter_kernel = @moe_kernels::@align_scatter
// CHECK: memref.global "private" @align_counts : memref<8xi32, #gpu.address_space<workgroup>>
// CHECK: memref.global "private" @align_cursors : memref<8xi32, #gpu.address_space<workgroup>>
// CHECK: memref.global "private" @align_warp_sums : memref<32xi32, #gpu.address_space<workgroup>>
// CHECK: gpu.func @align(%{{[a-z0-9]+}}: memref<?x2xi32>, %{{[a-z0-9]+}}: memref<?xi32>, %{{[a-z0-9]+}}: memref<?xi32>, %[[PADDED:[a-z0-9]+]]: memref<1xi32>, %[[ERRORS:[a-z0-9]+]]: memref<1xi32>) kernel attributes {moe.launch = {threads = 1024 : i64}}
// CHECK: %[[COUNTS:.*]] = memref.get_global @align_counts
// CHECK: %[[CURSORS:.*]] = memref.get_global @align_cursors
// CHECK: %[[WARPS:.*]] = memref.get_global @align_warp_sums
// CHECK: memref.atomic_rmw addi %c1_i32{{(_[0-9]+)?}}, %[[COUNTS]][%{{.*}}] : (i32, memref<8xi32, #gpu.address_space<workgroup>>)
// Ids outside [-1, E) are counted as runtime errors.
// CHECK: } else {
// CHECK: arith.cmpi eq, %{{.*}}, %c-1_i32
// CHECK: memref.atomic_rmw addi %c1_i32{{(_[0-9]+)?}}, %[[ERRORS]][%{{.*}}] : (i32, memref<1xi32>)
// CHECK: gpu.barrier
// The padded starts: each thread's experts summed, a scan of five
// shuffles up per warp, the warps' sums scanned by the first warp, each
// thread's cursors, the last thread's end the padded count.
// CHECK: memref.load %[[COUNTS]]
// CHECK-COUNT-5: gpu.shuffle  up
// CHECK: memref.store %{{.*}}, %[[WARPS]]
// CHECK: gpu.barrier
// CHECK: memref.load %[[WARPS]]
// CHECK-COUNT-5: gpu.shuffle  up
// CHECK: memref.store %{{.*}}, %[[WARPS]]
// CHECK: gpu.barrier
// CHECK: memref.store %{{.*}}, %[[CURSORS]]
// CHECK: arith.cmpi eq, %{{.*}}, %c1023
// CHECK: memref.store %{{.*}}, %[[PADDED]]
// CHECK: gpu.barrier
// CHECK: %[[SLOT:.*]] = memref.atomic_rmw addi %c1_i32{{(_[0-9]+)?}}, %[[CURSORS]][%{{.*}}] : (i32, memref<8xi32, #gpu.address_space<workgroup>>)
// CHECK: %[[INDEX:.*]] = arith.index_cast %[[SLOT]]
// CHECK: memref.store %{{.*}}, %arg1[%[[INDEX]]]
// The count kernel: every slot to the sentinel M·k (grid-strided), the
// chunk's experts counted in shared memory, one global atomic per expert
// present into the counts.
// CHECK: gpu.func @align_count(%[[CIDS:[a-z0-9]+]]: memref<?x2xi32>, %[[CSORTED:[a-z0-9]+]]: memref<?xi32>, %[[CSTATE:[a-z0-9]+]]: memref<16xi32>, %[[CERRORS:[a-z0-9]+]]: memref<1xi32>) kernel attributes {moe.launch = {chunk = 1024 : i64, threads = 256 : i64}}
// CHECK: %[[GRID:.*]] = gpu.grid_dim x
// CHECK: %[[SENTINEL:.*]] = arith.index_cast %{{.*}} : index to i32
// CHECK: scf.for
// CHECK: memref.store %[[SENTINEL]], %[[CSORTED]]
// CHECK: memref.atomic_rmw addi %c1_i32, %[[LOCAL:.*]][%{{.*}}] : (i32, memref<8xi32, #gpu.address_space<workgroup>>)
// CHECK: memref.atomic_rmw addi %c1_i32, %[[CERRORS]]
// CHECK: gpu.barrier
// CHECK: %[[COUNT:.*]] = memref.load %[[LOCAL]]
// CHECK: arith.cmpi sgt, %[[COUNT]], %c0_i32
// CHECK: memref.atomic_rmw addi %[[COUNT]], %[[CSTATE]]
// The scatter kernel: the padded starts by a scan of the rounded counts
// (8 Hillis-Steele steps over 256 threads' sums), then each chunk reserves
// its range of every expert's slots (a global cursor) and places its
// assignments by shared ranks.
// CHECK: gpu.func @align_scatter(%{{[a-z0-9]+}}: memref<?x2xi32>, %[[SSORTED:[a-z0-9]+]]: memref<?xi32>, %[[SBLOCKS:[a-z0-9]+]]: memref<?xi32>, %[[SPADDED:[a-z0-9]+]]: memref<1xi32>, %[[SSTATE:[a-z0-9]+]]: memref<16xi32>) kernel
// CHECK-COUNT-16: gpu.barrier
// CHECK: memref.store %{{.*}}, %[[SPADDED]]
// CHECK: memref.store %{{.*}}, %[[SBLOCKS]]
// CHECK: memref.store %c-1_i32, %[[SBLOCKS]]
// CHECK: %[[CURSOR:.*]] = arith.addi %{{.*}}, %c8{{.*}} : index
// CHECK: %[[TAKEN:.*]] = memref.atomic_rmw addi %{{.*}}, %[[SSTATE]][%[[CURSOR]]] : (i32, memref<16xi32>)
// CHECK: %[[RANK:.*]] = memref.atomic_rmw addi %c1_i32, %{{.*}} : (i32, memref<8xi32, #gpu.address_space<workgroup>>)
// CHECK: %[[SLOTS:.*]] = arith.addi %{{.*}}, %[[RANK]] : i32
// CHECK: %[[AT:.*]] = arith.index_cast %[[SLOTS]] : i32 to index
// CHECK: memref.store %{{.*}}, %[[SSORTED]][%[[AT]]]
// PTX: .entry align(
// PTX: atom.shared.add.u32
// PTX: .entry align_count(
// PTX: atom.global.add.u32
// PTX: .entry align_scatter(
// PTX: atom.global.add.u32
// PTX: atom.shared.add.u32
func.func @align(%ids: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?xi32>, tensor<1xi32>) {
  %sorted, %blocks, %padded = moe.align %ids {block_m = 64 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return %sorted, %blocks, %padded : tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
}

// -----

// moe.route (DeepSeek-style: sigmoid, gate and score biases, groups): the
// router's logits, in two tilings the host chooses between by the token
// count, then the selection. The decode tiling: a block of 4 warps per 4
// experts and 8 tokens (grid x over experts, y over token tiles), a warp
// per expert, its lanes along H with 16-byte global loads at h = 8·lane +
// 256·u (4 gate columns per step of 1024, then the last 256 columns one a
// step), one f32x8 FMA sum per token, reduced and added across the warp by
// butterfly shuffles; a warp past the last expert does nothing, tokens past
// the last are read clamped and not stored. The many-token tiling: 4
// experts per warp, 16 per block, one column a step, one f32 sum per
// (token, expert) chaining each load's 8 products, experts past the last
// read clamped too, from the token count whose grid has 4 warps per SM
// (here 132 tiles of 8 tokens).
// Then the selection on them: one warp per token; lane l scores experts l,
// l + 32, ... (sigmoid) into shared memory with their biased selection
// keys; after a barrier, lanes rank the groups (a lane per group: the sum
// of its two best keys), and each of the 2 group rounds and k = 4 expert
// rounds is a lane's own argmax (NaN ranks as -inf, strict greater-than,
// equal ranks to the lower index) then a butterfly of (index, rank) over
// the warp; lane 0 stores the renormalized, scaled weights and the ids.
// CHECK-LABEL: func.func @route
// CHECK: moe.route {{.*}}moe.gpu_kernel = @moe_kernels::@route, moe.gpu_logits_kernel = @moe_kernels::@route_gate_logits
// CHECK: memref.global "private" @route_scores : memref<16xf32, #gpu.address_space<workgroup>>
// CHECK: memref.global "private" @route_group_scores : memref<4xf32, #gpu.address_space<workgroup>>
// CHECK: gpu.func @route_gate_logits(%[[X:.*]]: memref<?x1280xbf16>, %[[GATE:.*]]: memref<16x1280xbf16>, %[[GBIAS:.*]]: memref<16xf32>, %[[OUT:.*]]: memref<?x16xf32>) kernel attributes {moe.launch = {experts_per_block = 4 : i64, min_tokens = 0 : i64, threads = 128 : i64, tokens_per_block = 8 : i64}}
// CHECK: %[[TID:.*]] = gpu.thread_id x
// CHECK: %[[WARP:.*]] = arith.divui %[[TID]], %c32
// CHECK: %[[LANE:.*]] = arith.remui %[[TID]], %c32
// CHECK: %[[CHUNK:.*]] = gpu.block_id x
// CHECK: %[[FIRST_EXPERT:.*]] = arith.muli %[[CHUNK]], %c4
// CHECK: %[[WARP_EXPERT:.*]] = arith.muli %[[WARP]], %c1
// CHECK: %[[EXPERT:.*]] = arith.addi %[[FIRST_EXPERT]], %[[WARP_EXPERT]]
// CHECK: %[[REAL:.*]] = arith.cmpi ult, %[[EXPERT]], %c16
// CHECK: scf.if %[[REAL]] {
// CHECK: %[[M:.*]] = memref.dim %[[X]], %c0
// CHECK: %[[TILE:.*]] = gpu.block_id y
// CHECK: %[[FIRST:.*]] = arith.muli %[[TILE]], %c8
// CHECK: %[[LAST:.*]] = arith.subi %[[M]], %c1
// CHECK-COUNT-8: arith.minui %{{.*}}, %[[LAST]]
// CHECK-NOT: arith.minui
// CHECK: %[[COLUMN:.*]] = arith.muli %[[LANE]], %c8
// CHECK: scf.for %[[H:.*]] = %[[COLUMN]] to %c1024{{.*}} step %c1024{{.*}} iter_args(
// CHECK-SAME: -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK: arith.addi %[[H]], %c256
// CHECK: arith.addi %[[H]], %c512
// CHECK: arith.addi %[[H]], %c768
// CHECK: arith.muli %[[EXPERT]], %c1280
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-COUNT-32: llvm.intr.fma({{.*}}) : (vector<8xf32>, vector<8xf32>, vector<8xf32>) -> vector<8xf32>
// CHECK-NOT: llvm.intr.fma
// CHECK: scf.yield
// CHECK: %[[TAIL:.*]] = arith.addi %[[COLUMN]], %c1024
// CHECK: scf.for %{{.*}} = %[[TAIL]] to %c1280 step %c256
// CHECK-COUNT-8: llvm.intr.fma
// CHECK-NOT: llvm.intr.fma
// CHECK: scf.yield
// CHECK: %[[LANE0:.*]] = arith.cmpi eq, %[[LANE]], %c0
// CHECK: %[[EXPERT0:.*]] = arith.addi %[[EXPERT]], %c0
// CHECK: %[[BIAS_E:.*]] = memref.load %[[GBIAS]][%[[EXPERT]]]
// CHECK-COUNT-8: llvm.extractelement
// CHECK: gpu.shuffle  xor %{{.*}}, %c16_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c8_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c4_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{.*}}, %c32_i32
// CHECK: %[[LOGIT:.*]] = arith.addf %{{.*}}, %[[BIAS_E]]
// CHECK: %[[TOKEN:.*]] = arith.addi %[[FIRST]], %c0
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[TOKEN]], %[[M]]
// CHECK: arith.andi %[[LANE0]], %[[IN]]
// CHECK: memref.store %[[LOGIT]], %[[OUT]][%[[TOKEN]], %[[EXPERT0]]]
// CHECK-COUNT-7: memref.store %{{.*}}, %[[OUT]]
// CHECK: gpu.func @route_gate_logits_many_tokens({{.*}}) kernel attributes {moe.launch = {experts_per_block = 16 : i64, min_tokens = 1056 : i64, threads = 128 : i64, tokens_per_block = 8 : i64}}
// CHECK: arith.muli %{{.*}}, %c4
// CHECK-COUNT-12: arith.minui
// CHECK: scf.for %{{.*}} = %{{.*}} to %c1280{{.*}} step %c256
// CHECK-SAME: -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-COUNT-256: llvm.intr.fma({{.*}}) : (f32, f32, f32) -> f32
// CHECK-NOT: llvm.intr.fma
// CHECK: scf.yield
// CHECK-COUNT-32: memref.store
// CHECK: gpu.func @route(%[[LOGITS_IN:.*]]: memref<?x16xf32>, %[[BIAS:.*]]: memref<16xf32>, %[[WEIGHTS:.*]]: memref<?x4xf32>, %[[IDS:.*]]: memref<?x4xi32>) kernel attributes {moe.launch = {threads = 32 : i64}}
// CHECK: %[[SCORES:.*]] = memref.get_global @route_scores
// CHECK: %[[KEYS:.*]] = memref.get_global @route_selection
// CHECK: %[[GROUPS:.*]] = memref.get_global @route_group_scores
// CHECK: %[[TOKEN_ID:.*]] = gpu.block_id x
// CHECK: %[[LANE_ID:.*]] = gpu.thread_id x
// CHECK: scf.for %[[E:.*]] = %[[LANE_ID]] to %c16 step %c32 {
// CHECK-NEXT: memref.load %[[LOGITS_IN]][%[[TOKEN_ID]], %[[E]]] : memref<?x16xf32>
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[SCORES]][%[[E]]]
// CHECK: memref.load %[[BIAS]][%[[E]]]
// CHECK: memref.store %{{.*}}, %[[KEYS]][%[[E]]]
// CHECK: gpu.barrier
// CHECK: scf.for %[[G:.*]] = %[[LANE_ID]] to %c4 step %c32
// CHECK: memref.store %{{.*}}, %[[GROUPS]][%[[G]]]
// CHECK: gpu.barrier
// Two group rounds, then four expert rounds, each a butterfly.
// CHECK-COUNT-2: scf.for %{{.*}} = %[[LANE_ID]] to %c4{{.*}} step %c32
// CHECK: scf.for %{{.*}} = %[[LANE_ID]] to %c16{{.*}} step %c32
// CHECK: memref.load %[[KEYS]]
// CHECK: arith.cmpf uno
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf oeq
// CHECK: arith.cmpi slt
// CHECK: gpu.shuffle  xor %{{.*}} : i32
// CHECK: gpu.shuffle  xor %{{.*}} : f32
// CHECK: memref.load %[[SCORES]]
// CHECK-COUNT-3: scf.for %{{.*}} = %[[LANE_ID]] to %c16{{.*}} step %c32
// CHECK: arith.divf
// CHECK: %[[LEADER:.*]] = arith.cmpi eq, %[[LANE_ID]], %c0
// CHECK: scf.if %[[LEADER]]
// CHECK-COUNT-4: memref.store %{{.*}}, %[[IDS]]
// PTX: .entry route_gate_logits(
// PTX-COUNT-4: ld.global.v4.b32
// PTX: fma.rn.f32
// PTX: .entry route_gate_logits_many_tokens(
// PTX-COUNT-4: ld.global.v4.b32
// PTX: fma.rn.f32
// PTX: .entry route(
func.func @route(%x: tensor<?x1280xbf16>, %w_gate: tensor<16x1280xbf16>, %gate_bias: tensor<16xf32>, %b: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %ids = moe.route sigmoid %x, %w_gate gate_bias(%gate_bias : tensor<16xf32>) score_bias(%b : tensor<16xf32>) {k = 4 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, renormalize, routed_scaling_factor = 2.5 : f32} : tensor<?x1280xbf16>, tensor<16x1280xbf16> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %ids : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// moe.topk on given logits (a layer that takes the router's output, as
// vLLM's fused_moe does): the selection kernel of moe.route on them (here
// top-k softmax, renormalized): the maximum and the denominator are each a
// lane's own over its experts, then a butterfly over the warp.
// CHECK-LABEL: func.func @topk
// CHECK: moe.topk {{.*}}moe.gpu_kernel = @moe_kernels::@topk
// CHECK: gpu.func @topk(%[[LOGITS:.*]]: memref<?x16xf32>, %[[WEIGHTS:.*]]: memref<?x4xf32>, %[[IDS:.*]]: memref<?x4xi32>) kernel attributes {moe.launch = {threads = 32 : i64}}
// CHECK: %[[TOKEN:.*]] = gpu.block_id x
// CHECK: %[[LANE:.*]] = gpu.thread_id x
// CHECK: scf.for %[[EXPERT:.*]] = %[[LANE]] to %c16 step %c32 iter_args(
// CHECK-NEXT: memref.load %[[LOGITS]][%[[TOKEN]], %[[EXPERT]]] : memref<?x16xf32>
// CHECK-NEXT: arith.maximumf
// CHECK: gpu.shuffle  xor
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: gpu.shuffle  xor
// CHECK: arith.addf
// CHECK: gpu.barrier
// CHECK-NOT: gpu.barrier
// CHECK: arith.divf
// CHECK-COUNT-4: memref.store %{{.*}}, %[[IDS]]
// PTX: .entry topk(
func.func @topk(%logits: tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %ids = moe.topk softmax %logits {k = 4 : i64, renormalize} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %ids : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// Unpermuted f32 rows: the combine's epilogue into the row of each slot's
// assignment, unweighted (no routing weights among the arguments, no load of
// a weight), into an [M·k, N] f32 buffer.
// CHECK-LABEL: func.func @unpermute_f32
// CHECK: moe.gpu_kernel = @moe_kernels::@expert_matmul
// CHECK-NOT: moe.gpu_finalize_kernel
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x128xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %{{.*}}: !llvm.ptr, %[[ROWS:.*]]: memref<?x256xf32>) kernel
// CHECK-NOT: arith.divui %{{.*}}, %c2 : index
// CHECK: nvvm.wgmma.mma_async
// CHECK: memref.extract_strided_metadata %[[ROWS]]
// CHECK: red.global.add.v2.f32
// CHECK-NOT: gpu.func @combine_finalize
// PTX: .entry expert_matmul(
// PTX: red.global.add.v2.f32
func.func @unpermute_f32(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xbf16>) -> tensor<?x2x256xf32> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {k = 2 : i64, block_m = 64 : i64, unpermute} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x2x256xf32>
  return %o : tensor<?x2x256xf32>
}

// -----

// Not covered yet: a remark, no kernel, no kernel module.
// CHECK-NOT: gpu.container_module
// CHECK-LABEL: func.func @unpermute
// CHECK-NOT: moe.gpu_kernel
// CHECK-NOT: gpu.module
func.func @unpermute(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xbf16>) -> tensor<?x2x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet: unpermuted rows must be f32}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {k = 2 : i64, block_m = 64 : i64, unpermute} : tensor<?x128xbf16>, tensor<8x256x128xbf16> -> tensor<?x2x256xbf16>
  return %o : tensor<?x2x256xbf16>
}

// -----

// CHECK-LABEL: func.func @f32_rows
func.func @f32_rows(%x: tensor<?x512xf32>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf32>) -> tensor<?x256xf32> {
  // expected-remark @+1 {{no GPU kernel yet: needs bf16 or w8a8 operands, K a multiple of 128 bytes and an output width that is a multiple of 8}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xf32>, tensor<8x256x512xf32> -> tensor<?x256xf32>
  return %h : tensor<?x256xf32>
}

// -----

// CHECK-LABEL: func.func @activation_then_combine
func.func @activation_then_combine(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x128xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for an activation before the combine or the unpermute}}
  %o = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  return %o : tensor<?x128xbf16>
}

// -----

// fp8 GEMM1 with DeepSeek block scales: e4m3 codes travel as bytes, 128 of
// K per stage (one 128-byte row), k32 e4m3 wgmma. Every stage's partial sum
// starts fresh (scale-d 0) and is added into the f32 total times the
// activation scale of its row and the weight scale of its 64-column chunk
// (loaded before the stage's waits) one step later, while the next
// step's wgmma is in flight; an iteration of the loop takes two steps, so
// that the two partial sums alternate, and the second step waits for its
// own wgmma once it promoted the first's (none in flight across the back
// edge, which ptxas would serialize); the last one is promoted after the
// loop.
// CHECK-LABEL: func.func @fp8_block_gemm1
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x512xi8>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %{{.*}}: !llvm.ptr, %[[AS:.*]]: memref<?x4xf32>, %[[WS:.*]]: memref<8x2x4xf32>, %{{.*}}: memref<?x128xbf16>) kernel
// CHECK-SAME: moe.launch = {block_m = 64 : i64, box_cols = 128 : i64, box_rows = 64 : i64, element_bytes = 1 : i64
// CHECK: nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: nvgpu.tma.async.load {{.*}} : <tensor = memref<64x128xi8
// CHECK: nvgpu.device_async_copy %arg0[%{{.*}}, %{{.*}}], %{{.*}}[%{{.*}}, %{{.*}}], 16, %{{.*}} : memref<?x512xi8> to memref<64x128xi8, #gpu.address_space<workgroup>>
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1{{.*}} iter_args(%[[TOTAL:arg[0-9]+]] = %{{[^,]*}}, %[[PARTIAL:arg[0-9]+]] = %{{[^,]*}}, %[[SCALE:arg[0-9]+]] = %{{[^,]*}},
// CHECK: memref.load %[[AS]]
// CHECK: memref.load %[[WS]]
// CHECK: nvvm.cp.async.wait.group
// CHECK: nvgpu.mbarrier.try_wait.parity
// CHECK: %[[FIRST:.*]] = nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 32>, D[<f32>, <zero>], A[<e4m3>
// CHECK-COUNT-3: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 32>, D[<f32>, <one>], A[<e4m3>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: %[[OLD:.*]] = llvm.extractvalue %[[PARTIAL]][0] :
// CHECK: %[[SUM:.*]] = llvm.extractvalue %[[TOTAL]][0] :
// CHECK: math.fma %[[OLD]], %[[SCALE]], %[[SUM]]
// CHECK: memref.load %[[AS]]
// CHECK: nvvm.wgmma.mma_async {{.*}} D[<f32>, <zero>], A[<e4m3>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: math.fma
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NEXT: scf.yield
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: math.fma
// PTX: .entry expert_matmul(
// PTX: cp.async.bulk.tensor.2d
// PTX: wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3
// PTX: fma.rn.f32
func.func @fp8_block_gemm1(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?x4xf32>, %ws: tensor<8x2x4xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      input_scales(%xs : tensor<?x4xf32>) weight_scales(%ws : tensor<8x2x4xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// int8 GEMM2 per token x per channel: s8 wgmma into s32 (integer sums are
// exact, so no promotion), the s32 sum converted and scaled in the epilogue
// before the routed weight. Both rows' input scales and every column's
// weight scale are loaded before the first atomic (behind the atomics each
// load would wait in turn).
// CHECK-LABEL: func.func @int8_channel_gemm2
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x256xi8>, {{.*}}, %[[AS:.*]]: memref<?xf32>, %[[WS:.*]]: memref<8x512xf32>, %{{.*}}: memref<?x2xf32>, %{{.*}}: memref<?x512xf32>) kernel
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = {{[0-9]+}}, k = 32>, D[<s32>, <one>], A[<s8>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: %[[ROWSCALE:.*]] = memref.load %[[AS]]
// CHECK: memref.load %[[AS]]
// CHECK: %[[COLUMNSCALE:.*]] = memref.load %[[WS]]
// CHECK-NOT: llvm.inline_asm
// CHECK: %[[SUM:.*]] = arith.sitofp %{{.*}} : i32 to f32
// CHECK: %[[SCALE:.*]] = arith.mulf %[[ROWSCALE]], %[[COLUMNSCALE]]
// CHECK: arith.mulf %[[SUM]], %[[SCALE]]
// CHECK-NOT: memref.load %[[WS]]
// CHECK: llvm.inline_asm has_side_effects "red.global.add.v2.f32
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k32.s32.s8.s8
// PTX: cvt.rn.f32.s32
// PTX: red.global.add.v2.f32
func.func @int8_channel_gemm2(%h: tensor<?x256xi8>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x256xi8>, %hs: tensor<?xf32>, %ws: tensor<8x512xf32>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      input_scales(%hs : tensor<?xf32>) weight_scales(%ws : tensor<8x512xf32>)
      {k = 2 : i64, block_m = 64 : i64, quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x256xi8>, tensor<8x512x256xi8> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Dynamic quantization: one warp per row, amax by xor shuffles, codes by
// cvt.rn.satfinite (fp8) or round/clamp/convert (int8); the loads and
// stores are checked in quantize-kernels.mlir. Rows of an
// aligned matmul are bounded by its padded count.
// CHECK-LABEL: func.func @quantize
// CHECK: gpu.func @quantize(%{{.*}}: memref<?x256xbf16>, %{{.*}}: memref<?x256xi8>, %{{.*}}: memref<?x2xf32>) kernel attributes {moe.launch = {bounded = 0 : i64, rows_per_block = 4 : i64, threads = 128 : i64}}
// CHECK: gpu.shuffle  xor
// CHECK: nvvm.convert.f32x2.to.f8x2 {{.*}}rnd = #nvvm.fp_rnd_mode<rn>, sat = #nvvm.sat_mode<satfinite>
// CHECK: gpu.func @quantize_0(%{{.*}}: memref<?x256xf32>, %{{.*}}: memref<?x256xi8>, %{{.*}}: memref<?xf32>)
// CHECK: math.roundeven
// CHECK: arith.fptosi %{{.*}} : f32 to i8
// PTX: .entry quantize(
// PTX: shfl.sync.bfly.b32
// PTX: div.rn.f32
// PTX: cvt.rn.satfinite.e4m3x2.f32
// PTX: .entry quantize_0(
// PTX: cvt.rni.f32.f32
func.func @quantize(%x: tensor<?x256xbf16>, %y: tensor<?x256xf32>) -> (tensor<?x256xf8E4M3FN>, tensor<?x2xf32>, tensor<?x256xi8>, tensor<?xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %ci, %si = moe.quantize %y {quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x256xf32> -> tensor<?x256xi8>, tensor<?xf32>
  return %c, %s, %ci, %si : tensor<?x256xf8E4M3FN>, tensor<?x2xf32>, tensor<?x256xi8>, tensor<?xf32>
}

// -----

// Weight-only int4 with zero points: no TMA descriptor (no grid constant);
// the packed codes [E·N, K/2] come by cp.async with the A rows, each
// thread's group scales and zeros are loaded at the top of the step (the
// zero as the f32 2^23 + z, bits 0x4B000000 | z). The codes are decoded
// from 32-bit words by pairs: byte j shifted to bits 15..22 (byte 0 by 15),
// each code masked (0x78000 low, 0x780000 high) and given the exponent of
// 256 (0x43800000) by one xor, so the f32 is 256 + u or 256 + 16u, then one
// fma per code by the scale (s/16 for the high one) less (256 + z)s or
// (16 + z)s; no conversion instruction. Pairs are rounded by one vector
// truncf (cvt.rn.bf16x2.f32) and stored into the swizzled B tile, which a
// proxy fence and a barrier hand to the bf16 wgmma. (A short 4-bit stream:
// the tile is 64 weight rows, moe-gpu-configure's kShortFourBitRowBytes.)
// CHECK-LABEL: func.func @int4_zero_point_gemm1
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x256xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %[[CODES:.*]]: memref<1024x128xi8>, %[[SCALES:.*]]: memref<8x128x8xf32>, %[[ZEROS:.*]]: memref<8x128x8xi8>, %{{.*}}: memref<?x64xbf16>) kernel attributes {moe.launch
// CHECK-NOT: moe.grid_constant_args
// CHECK: nvgpu.device_async_copy %[[CODES]][%{{.*}}, %{{.*}}], %{{.*}}[%{{.*}}, %{{.*}}], 16, %{{.*}} : memref<1024x128xi8> to memref<64x32xi8, #gpu.address_space<workgroup>>
// CHECK: scf.for
// CHECK: %[[SCALE:.*]] = memref.load %[[SCALES]]
// CHECK: %[[ZERO:.*]] = memref.load %[[ZEROS]]
// CHECK: %[[ZERO32:.*]] = arith.extui %[[ZERO]] : i8 to i32
// CHECK: %[[ZEROBITS:.*]] = arith.ori %[[ZERO32]], %c1258291200_i32
// CHECK: %[[ZEROBIAS:.*]] = arith.bitcast %[[ZEROBITS]] : i32 to f32
// CHECK: nvvm.cp.async.wait.group
// CHECK: %[[CODEWORD:.*]] = memref.load %{{.*}} : memref<64x8xi32, #gpu.address_space<workgroup>>
// CHECK-NOT: arith.uitofp
// CHECK: %[[ZEROF:.*]] = arith.subf %[[ZEROBIAS]], %cst
// CHECK: %[[LOWZERO:.*]] = arith.addf %[[ZEROF]], %cst
// CHECK: %[[LOWOFFSET:.*]] = arith.mulf %[[LOWZERO]], %[[SCALE]]
// CHECK: %[[NEGLOW:.*]] = arith.negf %[[LOWOFFSET]]
// CHECK: %[[NEGHIGH:.*]] = arith.negf
// CHECK: %[[HIGHSCALE:.*]] = arith.mulf %[[SCALE]], %cst
// CHECK: %[[PLACED:.*]] = arith.shli %[[CODEWORD]], %c15_i32
// CHECK: %[[LOWCODE:.*]] = arith.andi %[[PLACED]], %c491520_i32
// CHECK: %[[LOWBITS:.*]] = arith.xori %[[LOWCODE]], %c1132462080_i32
// CHECK: %[[LOWF:.*]] = arith.bitcast %[[LOWBITS]] : i32 to f32
// CHECK: math.fma %[[LOWF]], %[[SCALE]], %[[NEGLOW]] : f32
// CHECK: %[[HIGHCODE:.*]] = arith.andi %[[PLACED]], %c7864320_i32
// CHECK: %[[HIGHBITS:.*]] = arith.xori %[[HIGHCODE]], %c1132462080_i32
// CHECK: %[[HIGHF:.*]] = arith.bitcast %[[HIGHBITS]] : i32 to f32
// CHECK: math.fma %[[HIGHF]], %[[HIGHSCALE]], %[[NEGHIGH]] : f32
// CHECK: %[[PAIR:.*]] = arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: %[[WORD:.*]] = llvm.bitcast %[[PAIR]] : vector<2xbf16> to i32
// CHECK: arith.shli %[[CODEWORD]], %c7_i32
// CHECK: arith.shrui %[[CODEWORD]], %c1_i32
// CHECK: arith.shrui %[[CODEWORD]], %c9_i32
// CHECK: memref.store %[[WORD]], %{{.*}} : memref<64x32xi32, #gpu.address_space<workgroup>>
// CHECK: nvvm.fence.proxy
// CHECK: gpu.barrier
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<bf16>
// PTX: .entry expert_matmul(
// PTX-NOT: cp.async.bulk.tensor
// PTX: cp.async.ca.shared.global
// PTX-NOT: cvt.rn.f32.u32
// PTX: and.b32 {{.*}}, 491520;
// PTX-NEXT: {{x?or}}.b32 {{.*}}, 1132462080;
// PTX-NEXT: fma.rn.f32
// PTX: cvt.rn.bf16x2.f32
// PTX: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
func.func @int4_zero_point_gemm1(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x128xui8>, %ws: tensor<8x128x8xf32>, %wz: tensor<8x128x8xui8>) -> tensor<?x64xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x128x8xf32>) weight_zeros(%wz : tensor<8x128x8xui8>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true>}
      : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x64xbf16>
  return %h : tensor<?x64xbf16>
}

// -----

// Weight-only at decode: an aligned schedule of 16-row slot blocks takes
// swapped operands (the dequantized weight tile, K-major and swizzled as
// before, is the wgmma's A operand: m64, and the slot rows its N = 16) with
// one warpgroup. Two's complement int4 codes have their sign bit flipped by
// the same xor that sets the exponent: 0x43840000 low, 0x43C00000 high.
// CHECK-LABEL: func.func @int4_swapped_decode
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, {{.*}}swap_ab = true>
// CHECK: gpu.func @expert_matmul({{.*}}) kernel attributes {moe.launch = {{{.*}}threads = 128
// CHECK: arith.andi %{{.*}}, %c491520_i32
// CHECK: arith.xori %{{.*}}, %c1132724224_i32
// CHECK: math.fma
// CHECK: arith.andi %{{.*}}, %c7864320_i32
// CHECK: arith.xori %{{.*}}, %c1136656384_i32
// CHECK: math.fma
// CHECK: nvvm.fence.proxy
// CHECK: gpu.barrier
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 16, k = 16>, D[<f32>, <one>], A[<bf16>
// PTX: .entry expert_matmul(
// PTX: cvt.rn.bf16x2.f32
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
func.func @int4_swapped_decode(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x2xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x2xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 128>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// mxfp4: e8m0 scale bytes become f32 exponents (byte << 23); an e2m1 code's
// exponent and mantissa go to bits 24..22 and its sign to bit 31 of an f32,
// which is the value times 2^-126 (a denormal for exponent 0), so a product
// by 2^126 (0f7E800000, without ftz) decodes it: no table, no conversion.
// CHECK-LABEL: func.func @mxfp4_gemm2
// CHECK: gpu.func @expert_matmul(%{{.*}}: memref<?x128xbf16>, {{.*}}, %{{.*}}: memref<2048x64xi8>, %[[SCALES:.*]]: memref<8x256x4xi8>, %{{.*}}: memref<?x2xf32>, %{{.*}}: memref<?x256xf32>) kernel
// CHECK: memref.load %[[SCALES]]
// CHECK: arith.shli %{{.*}}, %c23_i32
// CHECK: arith.bitcast %{{.*}} : i32 to f32
// CHECK: %[[MAGNITUDE:.*]] = arith.andi %{{.*}}, %c7_i32
// CHECK: %[[FIELDS:.*]] = arith.shli %[[MAGNITUDE]], %c22_i32
// CHECK: %[[SIGNBIT:.*]] = arith.andi %{{.*}}, %c8_i32
// CHECK: %[[SIGN:.*]] = arith.shli %[[SIGNBIT]], %c28_i32
// CHECK: %[[BITS:.*]] = arith.ori %[[FIELDS]], %[[SIGN]]
// CHECK: %[[SMALL:.*]] = arith.bitcast %[[BITS]] : i32 to f32
// CHECK: arith.mulf %[[SMALL]], %{{.*}} : f32
// PTX: .entry expert_matmul(
// PTX: mul.rn.f32 {{.*}}, 0f7E800000;
// PTX: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k16.f32.bf16.bf16
// PTX: red.global.add.v2.f32
func.func @mxfp4_gemm2(%h: tensor<?x128xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x64xui8>, %ws: tensor<8x256x4xui8>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      weight_scales(%ws : tensor<8x256x4xui8>)
      {k = 2 : i64, block_m = 64 : i64, quantization = #moe.quant<mxfp4>}
      : tensor<?x128xbf16>, tensor<8x256x64xui8> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// Per-tensor quantization: an amax kernel (rows walked by a grid-sized
// stride, one atomic max of the f32 bits per warp into the amax word), then
// the quantization kernel, which reads that word and writes the one scale
// from its first thread.
// CHECK-LABEL: func.func @per_tensor_quantize
// CHECK: moe.quantize {{.*}}moe.gpu_amax_kernel = @moe_kernels::@quantize_amax, moe.gpu_kernel = @moe_kernels::@quantize
// CHECK: gpu.func @quantize(%{{.*}}: memref<?x256xbf16>, %{{.*}}: memref<?x256xi8>, %[[SCALE:.*]]: memref<1xf32>, %[[WORD:.*]]: memref<1xi32>) kernel attributes {moe.launch = {bounded = 0 : i64, rows_per_block = 4 : i64, threads = 128 : i64}}
// CHECK: %[[BITS:.*]] = memref.load %[[WORD]]
// CHECK: %[[AMAX:.*]] = arith.bitcast %[[BITS]] : i32 to f32
// CHECK: arith.divf %[[AMAX]], %cst
// CHECK: memref.store %{{.*}}, %[[SCALE]]
// CHECK: nvvm.convert.f32x2.to.f8x2
// CHECK: gpu.func @quantize_amax(%[[IN:.*]]: memref<?x256xbf16>, %[[AWORD:.*]]: memref<1xi32>) kernel attributes {moe.launch = {bounded = 0 : i64, max_blocks = 264 : i64, rows_per_block = 4 : i64, threads = 128 : i64}}
// CHECK: %[[GRID:.*]] = gpu.grid_dim x
// CHECK: %[[STEP:.*]] = arith.muli %[[GRID]], %c4
// CHECK: scf.for %[[ROW:.*]] = %{{.*}} to %{{.*}} step %[[STEP]]
// CHECK: memref.extract_strided_metadata %[[IN]]
// CHECK: arith.muli %[[ROW]], %c256
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: math.absf
// CHECK: gpu.shuffle xor
// CHECK: %[[ABITS:.*]] = arith.bitcast %{{.*}} : f32 to i32
// CHECK: memref.atomic_rmw maxs %[[ABITS]], %[[AWORD]]
// PTX: .entry quantize(
// PTX: cvt.rn.satfinite.e4m3x2.f32
// PTX: .entry quantize_amax(
// PTX: atom.global.max.s32
func.func @per_tensor_quantize(%x: tensor<?x256xbf16>) -> (tensor<?x256xf8E4M3FN>, tensor<1xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  return %c, %s : tensor<?x256xf8E4M3FN>, tensor<1xf32>
}

// -----

// The per-tensor amax of an aligned matmul's rows skips the slots the
// matmul never wrote: those past the padded count and those holding the
// sentinel M·k (the slots' length less E·(block_m − 1) = 8·63).
// CHECK-LABEL: func.func @per_tensor_intermediate
// CHECK: gpu.func @quantize(%{{.*}}: memref<?x128xbf16>, %{{.*}}: memref<?x128xi8>, %{{.*}}: memref<1xf32>, %{{.*}}: memref<1xi32>, %{{.*}}: memref<1xi32>) kernel attributes {moe.launch = {bounded = 1
// CHECK: gpu.func @quantize_amax(%[[IN:.*]]: memref<?x128xbf16>, %{{.*}}: memref<1xi32>, %[[PADDED:.*]]: memref<1xi32>, %[[SLOTS:.*]]: memref<?xi32>) kernel attributes {moe.launch = {bounded = 1
// CHECK: %[[LENGTH:.*]] = memref.dim %[[SLOTS]]
// CHECK: %[[ASSIGNMENTS:.*]] = arith.subi %[[LENGTH]], %c504
// CHECK: memref.load %[[PADDED]]
// CHECK: %[[END:.*]] = arith.minui
// CHECK: scf.for %[[ROW:.*]] = %{{.*}} to %[[END]]
// CHECK: %[[SLOT:.*]] = memref.load %[[SLOTS]][%[[ROW]]]
// CHECK: %[[ASSIGNMENT:.*]] = arith.index_cast %[[SLOT]]
// CHECK: %[[SCHEDULED:.*]] = arith.cmpi ult, %[[ASSIGNMENT]], %[[ASSIGNMENTS]]
// CHECK: scf.if %[[SCHEDULED]] -> (f32)
// CHECK: memref.extract_strided_metadata %[[IN]]
// CHECK: arith.muli %[[ROW]], %c128
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
func.func @per_tensor_intermediate(%codes: tensor<?x256xf8E4M3FN>, %scales: tensor<1xf32>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x256xf8E4M3FN>, %ws: tensor<8xf32>) -> (tensor<?x128xf8E4M3FN>, tensor<1xf32>) {
  %h = moe.expert_matmul %codes, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      input_scales(%scales : tensor<1xf32>) weight_scales(%ws : tensor<8xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN> -> tensor<?x128xbf16>
  %c, %s = moe.quantize %h {quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<1xf32>
  return %c, %s : tensor<?x128xf8E4M3FN>, tensor<1xf32>
}

// -----

// Not covered yet: rows whose width is not a multiple of 128.
// CHECK-LABEL: func.func @not_yet_quantized
// CHECK-NOT: moe.gpu_kernel
func.func @not_yet_quantized(%x: tensor<?x192xbf16>) -> (tensor<?x192xf8E4M3FN>, tensor<?xf32>) {
  // expected-remark @+1 {{no GPU kernel yet: needs bf16 or f32 rows with a multiple of 128 columns}}
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>}
      : tensor<?x192xbf16> -> tensor<?x192xf8E4M3FN>, tensor<?xf32>
  return %c, %s : tensor<?x192xf8E4M3FN>, tensor<?xf32>
}

// -----

// The allgather realization of the expert-parallel exchange. Dispatch: the
// placement as a constant table of rank·L + slot per (source, expert) (here
// experts 0 and 3 on both ranks: source 0's assignments to them go to rank
// 0, source 1's to rank 1's slots 3 and 4, 8 and 9), one block of 1024 threads scanning the
// served counts of its runs, and a block per received row copying its token
// row. Return: each received row's weighted result added atomically into
// its origin's token; finalize: the sums times the routed scaling factor, in
// bf16.
// CHECK-LABEL: func.func @expert_parallel
// CHECK: moe.gpu_kernel = @moe_kernels::@ep_dispatch_ids, moe.gpu_rows_kernel = @moe_kernels::@ep_dispatch_rows
// CHECK: moe.gpu_finalize_kernel = @moe_kernels::@ep_finalize, moe.gpu_kernel = @moe_kernels::@ep_return
// CHECK: memref.global "private" @ep_dispatch_ids_scan : memref<1024xi32, #gpu.address_space<workgroup>>
// CHECK: memref.global "private" constant @ep_dispatch_ids_destinations : memref<16xi32, #gpu.address_space<global>> = dense<[0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 9, 4, 5, 6, 7]>
// CHECK: gpu.func @ep_dispatch_ids(%[[IDS:.*]]: memref<?x2xi32>, %[[RANK:.*]]: memref<1xi32>, %[[LOCAL:.*]]: memref<?x1xi32>, %[[ORIGIN:.*]]: memref<?xi32>, %[[COUNT:.*]]: memref<1xi32>, %[[ERRORS:.*]]: memref<1xi32>) kernel
// CHECK-SAME: threads = 1024
// CHECK: memref.load %[[RANK]]
// CHECK: scf.for
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[ERRORS]]
// CHECK: gpu.barrier
// CHECK: memref.store %{{.*}}, %[[LOCAL]]
// CHECK: memref.store %{{.*}}, %[[ORIGIN]]
// CHECK: memref.store %{{.*}}, %[[COUNT]]
// CHECK: gpu.func @ep_dispatch_rows(%{{.*}}: memref<?x256xbf16>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<1xi32>, %{{.*}}: memref<?x256xbf16>) kernel
// CHECK: gpu.func @ep_return(%{{.*}}: memref<?x256xf32>, %{{.*}}: memref<?xi32>, %{{.*}}: memref<?x2xf32>, %[[PARTIAL:.*]]: memref<?x256xf32>, %{{.*}}: memref<1xi32>) kernel
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[PARTIAL]]
// CHECK: gpu.func @ep_finalize(%{{.*}}: memref<?x256xf32>, %{{.*}}: memref<?x256xbf16>) kernel
// CHECK: %[[SUMS:.*]] = llvm.load %{{.*}} -> vector<8xf32>
// CHECK: %[[SCALED:.*]] = arith.mulf %[[SUMS]], %cst : vector<8xf32>
// CHECK: arith.truncf %[[SCALED]] : vector<8xf32> to vector<8xbf16>
// PTX: .entry ep_dispatch_ids(
// PTX: bar.sync
// PTX: .entry ep_dispatch_rows(
// PTX: .entry ep_return(
// PTX: atom.global.add.f32
// PTX: .entry ep_finalize(
func.func @expert_parallel(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %y: tensor<?x256xf32>, %origin: tensor<?xi32>, %w: tensor<?x2xf32>) -> (tensor<?x256xbf16>, tensor<?x1xi32>, tensor<?xi32>, tensor<?x256xbf16>) {
  %rows, %local, %o = moe.ep_dispatch allgather %x, %ids {placement = #moe.placement<ranks = 2, experts = 8, slots = [[0, 1, 2, 3, 4], [5, 6, 7, 0, 3]]>} : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<?x1xi32>, tensor<?xi32>
  %out = moe.ep_combine allgather %y, %origin, %w {ranks = 2 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x256xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %rows, %local, %o, %out : tensor<?x256xbf16>, tensor<?x1xi32>, tensor<?xi32>, tensor<?x256xbf16>
}

// -----

// A width that is not a multiple of 8 (100) keeps one column per thread:
// 4-byte loads, 2-byte stores, 256 columns per block.
// CHECK-LABEL: gpu.func @ep_finalize(%{{.*}}: memref<?x100xf32>, %{{.*}}: memref<?x100xbf16>) kernel attributes {moe.launch = {columns_per_block = 256 : i64, threads = 256 : i64}}
// CHECK: %[[SUM:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> vector<1xf32>
// CHECK: %[[SCALED:.*]] = arith.mulf %[[SUM]], %cst : vector<1xf32>
// CHECK: %[[NARROW:.*]] = arith.truncf %[[SCALED]] : vector<1xf32> to vector<1xbf16>
// CHECK: llvm.store %[[NARROW]], %{{.*}} {alignment = 2 : i64} : vector<1xbf16>, !llvm.ptr<1>
func.func @narrow_combine(%y: tensor<?x100xf32>, %origin: tensor<?xi32>, %w: tensor<?x2xf32>) -> tensor<?x100xbf16> {
  %out = moe.ep_combine allgather %y, %origin, %w {ranks = 2 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x100xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x100xbf16>
  return %out : tensor<?x100xbf16>
}

// -----

// The all-to-all realization has no GPU kernels yet.
// CHECK-LABEL: func.func @all_to_all
// CHECK-NOT: moe.gpu_kernel
func.func @all_to_all(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %y: tensor<?x256xf32>, %origin: tensor<?xi32>, %w: tensor<?x2xf32>) -> (tensor<?x256xbf16>, tensor<?x256xbf16>) {
  // expected-remark @+1 {{no GPU kernel yet: only the allgather realization of the exchange is lowered}}
  %rows, %local, %o = moe.ep_dispatch all_to_all %x, %ids {placement = #moe.placement<ranks = 2, experts = 8, slots = [[0, 1, 2, 3], [4, 5, 6, 7]]>} : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<?x1xi32>, tensor<?xi32>
  // expected-remark @+1 {{no GPU kernel yet: only the allgather realization of the exchange is lowered}}
  %out = moe.ep_combine all_to_all %y, %origin, %w {ranks = 2 : i64} : tensor<?x256xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %rows, %out : tensor<?x256xbf16>, tensor<?x256xbf16>
}
