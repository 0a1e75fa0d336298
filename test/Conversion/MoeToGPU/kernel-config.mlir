// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX
// The emitter takes every decision from the op's #moe_gpu.kernel_config.

// block_n 64 and a 3-stage ring, as the configuration says (the configure
// pass would choose 128 and 5 here).
// CHECK-LABEL: func.func @follows_config
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: moe.launch = {block_m = 64 : i64, box_cols = 64 : i64, box_rows = 64 : i64, element_bytes = 2 : i64, shared_bytes = 50176 : i64, split_k = 1 : i64, stages = 3 : i64, threads = 128 : i64, tile_n = 64 : i64}
// CHECK: nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 3>
// The K loop runs over rounds of the 3-stage ring (8 steps: two rounds in
// the loop, two steps after it), each step's stage a constant.
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c2{{.*}} step %c1
// CHECK-COUNT-12: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>
// CHECK: scf.yield
// CHECK-COUNT-8: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>
// CHECK-NOT: nvvm.wgmma.mma_async
func.func @follows_config(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// block_k = 128: a stage holds two 128-byte spans of K, each its own
// swizzled block (the A tile's 64 rows, 8 KB apart; the B tile's 128 rows,
// 16 KB apart). The leader loads the second span's box 64 columns further
// on the same barrier, which expects both (2 x 128 rows x 128 bytes); a
// step multiplies 8 k16 slices, the second span's descriptors 512 (A) and
// 1024 (B) units on. K = 512 is 4 steps: one round of the 3-stage ring in
// the loop, one step after it.
// CHECK-LABEL: func.func @two_spans
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: box_cols = 64 : i64, box_rows = 128 : i64, {{.*}}shared_bytes = 148480 : i64
// CHECK: nvgpu.tma.async.load %{{.*}}[%[[K:[0-9]+]], %[[ROW:[0-9]+]]]
// CHECK: %[[K2:.*]] = arith.addi %[[K]], %c64
// CHECK: nvgpu.tma.async.load %{{.*}}[%[[K2]], %[[ROW]]]
// CHECK: nvgpu.mbarrier.arrive.expect_tx %{{.*}}, %c32768
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c1{{.*}} step %c1
// CHECK: nvvm.wgmma.fence.aligned
// CHECK: arith.addi %[[DA:[0-9]+]], %c0_i64
// CHECK: arith.addi %[[DB:[0-9]+]], %c0_i64
// CHECK: arith.addi %[[DA]], %c6_i64
// CHECK: arith.addi %[[DB]], %c6_i64
// CHECK: arith.addi %[[DA]], %c512_i64
// CHECK: arith.addi %[[DB]], %c1024_i64
// CHECK: arith.addi %[[DA]], %c518_i64
// CHECK: arith.addi %[[DB]], %c1030_i64
// CHECK-NOT: arith.addi %[[DA]], %c520_i64
// CHECK: scf.yield
// CHECK-COUNT-8: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// CHECK-NOT: nvvm.wgmma.mma_async
func.func @two_spans(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Two spans are built for the multistage schedule only.
// CHECK-LABEL: func.func @two_spans_warp_specialized
// CHECK-NOT: gpu.module
func.func @two_spans_warp_specialized(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 128, stages = 2, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>: the emitter builds the multistage schedule, the warp-specialized one for bf16, w8a8 and the register operand, the persistent one for bf16 and the register operand and the pingpong one for bf16, each with one producer warpgroup, with 128 bytes of K per stage (256 for the bf16 multistage schedule without a cluster), block_n 64, 128 or 256, 2 to 16 stages and no cluster but pairs along M (cluster_m = 2) of the bf16 multistage and warp-specialized schedules without split-K}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 128, stages = 2, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// group_m = 4: grid block (x, y) of an X x Y grid is issued at x + X·y and
// takes slot block 4·g + (that mod 4Y) mod R and column tile (that mod 4Y)
// div R, g = (x + X·y) div 4Y, R = min(X − 4g, 4).
// CHECK-LABEL: func.func @raster
// CHECK: gpu.func @expert_matmul
// CHECK: %[[X:.*]] = gpu.block_id  x
// CHECK: %[[Y:.*]] = gpu.block_id  y
// CHECK: %[[NX:.*]] = gpu.grid_dim  x
// CHECK: %[[NY:.*]] = gpu.grid_dim  y
// CHECK: %[[XY:.*]] = arith.muli %[[NX]], %[[Y]]
// CHECK: %[[LINEAR:.*]] = arith.addi %[[X]], %[[XY]]
// CHECK: %[[GROUP_SIZE:.*]] = arith.muli %[[NY]], %c4
// CHECK: %[[GROUP:.*]] = arith.divui %[[LINEAR]], %[[GROUP_SIZE]]
// CHECK: %[[FIRST:.*]] = arith.muli %[[GROUP]], %c4
// CHECK: %[[LEFT:.*]] = arith.subi %[[NX]], %[[FIRST]]
// CHECK: %[[ROWS:.*]] = arith.minui %[[LEFT]], %c4
// CHECK: %[[WITHIN:.*]] = arith.remui %[[LINEAR]], %[[GROUP_SIZE]]
// CHECK: %[[ROW:.*]] = arith.remui %[[WITHIN]], %[[ROWS]]
// CHECK: %[[BLOCK:.*]] = arith.addi %[[FIRST]], %[[ROW]]
// CHECK: %[[TILE:.*]] = arith.divui %[[WITHIN]], %[[ROWS]]
// CHECK: arith.muli %[[BLOCK]], %c64
// CHECK: arith.muli %[[TILE]], %c128
func.func @raster(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 3, consumer_warpgroups = 1, group_m = 4>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// The combine splits K as the configuration says: grid z of 4.
// CHECK-LABEL: func.func @split_k
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: split_k = 4 : i64, stages = 2 : i64
func.func @split_k(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 4>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// 192-row slot blocks over three consumer warpgroups (bf16, multistage): 384
// threads, capped at them so that ptxas keeps to 65536 / 384 registers a
// thread; each warpgroup multiplies its own 64 rows by the 128 columns: its
// A descriptor starts 64 rows of 128 bytes (512 units of 16 bytes) after the
// previous warpgroup's, and its epilogue rows 64 slots after.
// CHECK-LABEL: func.func @three_warpgroups
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: block_m = 192 : i64
// CHECK-SAME: threads = 384 : i64
// CHECK-SAME: nvvm.maxntid = array<i32: 384, 1, 1>
// CHECK: %[[WG:.+]] = arith.divui %thread_id_x, %c128 : index
// CHECK: %[[WG_UNITS:.+]] = arith.muli %[[WG]], %c512 : index
// CHECK: %[[WG_DESC:.+]] = arith.index_cast %[[WG_UNITS]] : index to i64
// CHECK: arith.muli %block_id_x, %c192 : index
// CHECK: %[[WG_ROWS:.+]] = arith.muli %[[WG]], %c64 : index
// CHECK: arith.addi %{{.+}}, %[[WG_ROWS]] : index
// CHECK: arith.addi %{{.+}}, %[[WG_DESC]] : i64
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// PTX: .maxntid 384, 1, 1
// PTX-NOT: setmaxnreg
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @three_warpgroups(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 192 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 192, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 3>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Three consumer warpgroups beside a producer are not built.
// CHECK-LABEL: func.func @three_warpgroups_specialized
// CHECK-NOT: gpu.module
func.func @three_warpgroups_specialized(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{: slot blocks of 64 or 128 rows (192 for bf16 on the multistage schedule without a cluster)}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 192 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 192, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 3, producer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// CHECK-LABEL: func.func @unconfigured
// CHECK-NOT: gpu.module
func.func @unconfigured(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel: the op has no kernel configuration (moe_gpu.config); run moe-gpu-configure first}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// The warp-specialized schedule: a producer warpgroup after two consumers,
// the registers rebalanced, full and empty rings. The producer waits for a
// released stage, issues its TMA and cp.async, and has the copies arrive on
// the stage's full barrier as they land (no wait of its own); the consumers
// wait for a full stage, fence the async proxy, multiply it, and release the
// previous stage once its wgmma is done (one stays in flight).
// CHECK-LABEL: func.func @warp_specialized
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: threads = 384 : i64
// CHECK-SAME: nvvm.maxntid = array<i32: 384, 1, 1>, nvvm.minctasm = 1 : i32
// CHECK: %[[FULL:.*]] = nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: %[[EMPTY:.*]] = nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: nvgpu.mbarrier.init %[[FULL]][%{{.*}}], %c129
// CHECK: nvgpu.mbarrier.init %[[EMPTY]][%{{.*}}], %c256
// CHECK: gpu.barrier
// CHECK: nvvm.setmaxregister  decrease 40
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: scf.for
// CHECK: nvgpu.mbarrier.try_wait.parity %[[EMPTY]]
// CHECK: nvgpu.tma.async.load {{.*}}, %[[FULL]][%[[STAGE:.+]]] to
// CHECK: nvgpu.mbarrier.arrive.expect_tx %[[FULL]][%[[STAGE]]]
// CHECK: nvgpu.device_async_copy
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: %[[ROWS_ARRIVE:.+]] = nvgpu.mbarrier.get %[[FULL]][%[[STAGE]]]
// CHECK-NEXT: %[[ROWS_BARRIER:.+]] = llvm.inttoptr %[[ROWS_ARRIVE]] : i64 to !llvm.ptr<3>
// CHECK-NEXT: nvvm.cp.async.mbarrier.arrive %[[ROWS_BARRIER]] {noinc = true}
// CHECK-NOT: nvvm.cp.async.wait.group
// CHECK-NOT: nvgpu.mbarrier.arrive %[[FULL]]
// CHECK: } else {
// CHECK: nvvm.setmaxregister  increase 232
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 256, k = 16>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: scf.for
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 256, k = 16>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: %[[PREVIOUS:.*]] = arith.subi %{{.*}}, %c1
// CHECK: %[[STAGE:.*]] = arith.remui %[[PREVIOUS]]
// CHECK: nvgpu.mbarrier.arrive %[[EMPTY]][%[[STAGE]]]
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: arith.truncf
// PTX: .entry expert_matmul(
// PTX: .maxntid 384, 1, 1
// PTX: .minnctapersm 1
// PTX: setmaxnreg.dec.sync.aligned.u32 {{.*}}40;
// PTX-NOT: cp.async.wait_group
// PTX: cp.async.commit_group;
// PTX-NEXT: cp.async.mbarrier.arrive.noinc.shared.b64
// PTX-NOT: cp.async.wait_group
// PTX: setmaxnreg.inc.sync.aligned.u32 {{.*}}232;
// PTX: mbarrier.try_wait.parity.shared.b64
// PTX: fence.proxy.async.shared::cta;
// PTX: wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16
func.func @warp_specialized(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Persistent: the warp-specialized roles, each walking the block's tiles
// with the counts of tiles received and done (whose K steps continue the
// ring's phases). The block's first tile is its id; the producer's leader
// takes each next one from the counter (the last argument), one ahead, and
// publishes it through a ring of two i32 slots after the stages, with full
// (1 arrival) and empty (all 384 threads) barriers. The launch facts say
// so, for a grid of at most one block per SM.
// CHECK-LABEL: func.func @persistent
// CHECK: gpu.func @expert_matmul({{.*}}, %[[COUNTER:.+]]: memref<1xi32>)
// CHECK-SAME: moe.launch = {{{.*}}persistent = 1 : i64, shared_bytes = 197640 : i64{{.*}}threads = 384 : i64
// CHECK: %[[SLOTS:.+]] = memref.view {{.*}} to memref<2xi32, #gpu.address_space<workgroup>>
// CHECK: nvgpu.mbarrier.init %[[FULL:.+]][%{{.+}}], %c1{{.*}} : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 2>
// CHECK-NEXT: %{{.+}} = arith.constant 0 : index
// CHECK-NEXT: %[[THREADS:.+]] = arith.constant 384 : index
// CHECK-NEXT: nvgpu.mbarrier.init %[[EMPTY:.+]][%{{.+}}], %[[THREADS]] : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 2>
// The whole producer warpgroup waits (a wait spins with bra.uni: not in a
// diverged warp); then only the leader stores and arrives.
// CHECK: nvvm.setmaxregister decrease 88
// CHECK: nvgpu.mbarrier.try_wait.parity %[[EMPTY]]
// CHECK: scf.if
// CHECK-NEXT: %[[FIRST:.+]] = gpu.block_id x
// CHECK-NEXT: %[[FIRST32:.+]] = arith.index_cast %[[FIRST]] : index to i32
// CHECK-NEXT: memref.store %[[FIRST32]], %[[SLOTS]]
// CHECK-NEXT: nvgpu.mbarrier.arrive %[[FULL]]
// CHECK: scf.while
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK: %{{.+}} = memref.load %[[SLOTS]]
// CHECK-NEXT: nvgpu.mbarrier.arrive %[[EMPTY]]
// CHECK: scf.condition
// CHECK: memref.atomic_rmw addi %c1_i32{{.*}}, %[[COUNTER]][%{{.+}}] : (i32, memref<1xi32>) -> i32
// CHECK: gpu.grid_dim x
// CHECK: nvgpu.tma.async.load
// CHECK: nvvm.setmaxregister increase 208
// CHECK: scf.while
// The consumers release the tile's last stage too: the producer refills it
// with the next tile's rows.
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NEXT: %[[LAST:.+]] = arith.constant 7 : index
// CHECK-NEXT: arith.addi %{{.+}}, %[[LAST]] : index
// CHECK: nvgpu.mbarrier.arrive
// PTX: .entry expert_matmul(
// PTX: setmaxnreg.dec.sync.aligned.u32 {{.*}}88;
// PTX: atom.global.add.u32
// PTX: setmaxnreg.inc.sync.aligned.u32 {{.*}}208;
// PTX: wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16
func.func @persistent(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Persistent with staged_epilogue: the consumer warpgroups take turns with
// one table of 64 rows (132 words a row: 256 bf16 and 16 bytes) after the
// tile slots (196608 + 8 bytes, rounded up to 16 for the 16-byte chunks),
// which the producer leaves alone. Warpgroup 1
// waits at barrier 4 for warpgroup 0's copies of this tile, warpgroup 0
// from its second tile on at barrier 5 for warpgroup 1's copies of the
// previous one, and once more after its last tile. Each copies its own 64
// rows in 16-byte chunks once its 128 threads (barrier 2 + warpgroup) wrote
// them, then arrives at its barrier.
// CHECK-LABEL: func.func @persistent_staged
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: shared_bytes = 231696 : i64
// CHECK: %[[WG:.+]] = arith.divui %thread_id_x, %c128 : index
// CHECK: nvvm.setmaxregister increase 208
// CHECK: %[[WALK:.+]]:3 = scf.while
// CHECK: %[[SECOND:.+]] = arith.cmpi eq, %[[WG]], %c1{{.*}} : index
// CHECK-NEXT: scf.if %[[SECOND]] {
// CHECK: nvvm.barrier id = %c4_i32{{.*}} number_of_threads = %c256_i32
// CHECK-NEXT: } else {
// CHECK: %[[LATER:.+]] = arith.cmpi ugt, %{{.+}}, %c0{{.*}} : index
// CHECK-NEXT: scf.if %[[LATER]] {
// CHECK: nvvm.barrier id = %c5_i32{{.*}} number_of_threads = %c256_i32
// CHECK: %[[START:.+]] = arith.addi %{{.+}}, %c196624 : index
// CHECK-NEXT: %[[TABLE:.+]] = memref.view %{{.+}}[%[[START]]][] : {{.*}} to memref<64x132xi32, #gpu.address_space<workgroup>>
// CHECK: %[[OWN_ROWS:.+]] = arith.muli %[[WG]], %c64{{.*}} : index
// CHECK-NEXT: %[[TABLE_ROW:.+]] = arith.subi %{{.+}}, %[[OWN_ROWS]] : index
// CHECK: %[[HALF_ROW:.+]] = arith.addi %[[TABLE_ROW]], %c0{{.*}} : index
// CHECK: memref.store %{{.+}}, %[[TABLE]][%[[HALF_ROW]], %{{.+}}]
// CHECK: nvvm.bar.warp.sync
// CHECK-NEXT: %{{.+}} = arith.constant 128 : i32
// CHECK: %[[OWN:.+]] = arith.addi %[[WG]], %c2{{.*}} : index
// CHECK-NEXT: %[[OWN32:.+]] = arith.index_cast %[[OWN]] : index to i32
// CHECK-NEXT: nvvm.barrier id = %[[OWN32]] number_of_threads = %c128_i32
// CHECK: llvm.load %{{.+}} {alignment = 16 : i64} : !llvm.ptr<3> -> vector<4xi32>
// CHECK: llvm.store %{{.+}} {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<1>
// CHECK: %[[DONE:.+]] = arith.select %[[SECOND]], %c5_i32, %c4_i32 : i32
// CHECK: nvvm.bar.warp.sync
// CHECK: nvvm.barrier.arrive id = %[[DONE]] number_of_threads = %c256_i32
// CHECK: scf.yield
// CHECK: %[[FIRST_WG:.+]] = arith.cmpi eq, %[[WG]], %c0{{.*}} : index
// CHECK-NEXT: %{{.+}} = arith.constant 0 : index
// CHECK-NEXT: %[[ANY:.+]] = arith.cmpi ugt, %[[WALK]]#1, %c0{{.*}} : index
// CHECK-NEXT: %[[LAST_TURN:.+]] = arith.andi %[[FIRST_WG]], %[[ANY]] : i1
// CHECK-NEXT: scf.if %[[LAST_TURN]] {
// CHECK: nvvm.barrier id = %c5_i32 number_of_threads = %c256_i32
// PTX: .entry expert_matmul(
// PTX: bar.sync {{.*}}4, 256;
// PTX: bar.sync {{.*}}%r{{[0-9]+}}, 128;
// PTX: st.global.v4.b32
// PTX: bar.arrive %r{{[0-9]+}}, 256;
// PTX: bar.sync {{.*}}5, 256;
func.func @persistent_staged(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, staged_epilogue = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// input_tma: the A rows (GEMM2's, in slot order) by a TMA box of the slot
// block's 128 rows at (K column, first slot), on the stage's full barrier
// beside the weights' box: 16 + 32 KB expected. The input travels as a
// descriptor (a grid constant, like the weights'), and no thread copies,
// waits for or fences cp.async rows in the K loop.
// CHECK-LABEL: func.func @input_tma
// CHECK: gpu.func @expert_matmul(%[[INPUT_MAP:.+]]: !llvm.ptr, %{{.+}}: memref<?xi32>, %{{.+}}: memref<?xi32>, %{{.+}}: memref<1xi32>, %{{.+}}: !llvm.ptr,
// CHECK-SAME: moe.grid_constant_args = [0, 16]
// CHECK-SAME: input_box_rows = 128 : i64
// CHECK: %[[INPUT:.+]] = builtin.unrealized_conversion_cast %[[INPUT_MAP]] : !llvm.ptr to !nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b
// CHECK: %[[FIRST_SLOT:.+]] = arith.muli %block_id_x, %c128{{.*}} : index
// CHECK-NOT: nvvm.cp.async
// CHECK: nvgpu.tma.async.load %{{.+}}[%[[COLUMN:.+]], %{{.+}}], %[[FULL:.+]][%[[STAGE:.+]]] to %{{.+}}, predicate = %[[LEADER:[^ ]+]] : <tensor = memref<256x64xbf16
// CHECK-NOT: nvvm.cp.async
// CHECK: nvgpu.tma.async.load %[[INPUT]][%[[COLUMN]], %[[FIRST_SLOT]]], %[[FULL]][%[[STAGE]]] to %{{.+}}, predicate = %[[LEADER]] : <tensor = memref<128x64xbf16
// CHECK-NEXT: %[[BYTES:.+]] = arith.constant 49152 : index
// CHECK-NEXT: nvgpu.mbarrier.arrive.expect_tx %[[FULL]][%[[STAGE]]], %[[BYTES]], predicate = %[[LEADER]]
// CHECK-NOT: nvvm.cp.async
// CHECK-NOT: nvvm.fence.proxy
// CHECK: nvvm.wgmma.mma_async
// CHECK-NOT: nvvm.cp.async
// CHECK: gpu.func @combine_rows
// PTX: .entry expert_matmul(
// PTX-NOT: cp.async.cg
// PTX-NOT: cp.async.wait_group 2
// PTX: cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes
// PTX-NOT: cp.async.cg
// PTX: wgmma.mma_async
// PTX-NOT: cp.async.cg
// PTX: .entry combine_rows(
func.func @input_tma(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, combine_rows = true, input_tma = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// input_tma with rows out: a padding slot's input row is not zero-filled
// (the box reads whatever the row holds), so the epilogue selects zero for
// its outputs, as the op states them, the way a bias is kept out of them.
// CHECK-LABEL: func.func @input_tma_rows
// CHECK: %[[HOLDS:.+]] = arith.cmpi ult, %{{.+}}, %{{.+}} : index
// CHECK-NEXT: %[[IN_SCHEDULE:.+]] = arith.cmpi slt, %{{.+}}, %{{.+}} : index
// CHECK-NEXT: %[[SCHEDULED:.+]] = arith.andi %[[IN_SCHEDULE]], %[[HOLDS]] : i1
// CHECK: %[[ZERO:cst_[0-9]+]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %{{.+}} = arith.constant 0 : index
// CHECK-NEXT: %{{.+}} = arith.addi
// CHECK-NEXT: %[[SUM:.+]] = llvm.extractvalue
// CHECK-NEXT: %{{.+}} = arith.select %[[SCHEDULED]], %[[SUM]], %[[ZERO]] : f32
func.func @input_tma_rows(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, input_tma = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// A combine's rows staged in turn (combine_rows): after the 64 rows of pairs
// (64 x 528 bytes), a destination word per row, which each row's lanes write
// (its assignment, or -1) and the copy reads to skip rows of no assignment.
// CHECK-LABEL: func.func @persistent_staged_rows
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: shared_bytes = 231696 : i64
// CHECK: %[[START:.+]] = arith.addi %{{.+}}, %c196624 : index
// CHECK-NEXT: %[[PAIRS:.+]] = memref.view %{{.+}}[%[[START]]][] : {{.*}} to memref<64x132xi32, #gpu.address_space<workgroup>>
// CHECK-NEXT: %{{.+}} = arith.constant 33792 : index
// CHECK-NEXT: %[[AFTER:.+]] = arith.addi %[[START]], %{{.+}} : index
// CHECK-NEXT: %[[DESTINATIONS:.+]] = memref.view %{{.+}}[%[[AFTER]]][] : {{.*}} to memref<64xi32, #gpu.address_space<workgroup>>
// CHECK: memref.store %{{.+}}, %[[DESTINATIONS]][%[[ROW:.+]]] : memref<64xi32
// CHECK: memref.store %{{.+}}, %[[PAIRS]][%[[ROW]], %{{.+}}] : memref<64x132xi32
// CHECK: %[[DESTINATION:.+]] = memref.load %[[DESTINATIONS]][%{{.+}}] : memref<64xi32
// CHECK-NEXT: %{{.+}} = arith.constant 0 : i32
// CHECK-NEXT: %[[STORED:.+]] = arith.cmpi sge, %[[DESTINATION]], %{{.+}} : i32
// CHECK: scf.if %[[STORED]] {
// CHECK: llvm.store %{{.+}} {alignment = 16 : i64} : vector<4xi32>, !llvm.ptr<1>
func.func @persistent_staged_rows(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, combine_rows = true, staged_epilogue = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// Staged in turn, the table is two consumer warpgroups'; a combine's
// products are staged only as combine_rows' rows.
// CHECK-LABEL: func.func @persistent_staged_one_warpgroup
// CHECK-NOT: gpu.module
func.func @persistent_staged_one_warpgroup(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{: staged_epilogue is built for two consumer warpgroups storing bf16 rows (a matmul without a combine, or combine_rows)}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 64, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, producer_warpgroups = 1, staged_epilogue = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Two consumer warpgroups of 64 rows: an expert's padding follows its
// assignments, so a warpgroup whose first slot (block · 128 + 64 · warpgroup)
// is past the padded count or holds the sentinel (≥ M·k, the schedule's
// length less E · 127 = 1016) has only padding rows and skips its wgmmas: its
// sums stay as they were (zero), as its zero-filled A rows would leave them.
// (The first multiple of 64 rows places the fragment rows.)
// CHECK-LABEL: func.func @padding_halves
// CHECK: %[[THREAD:.+]] = gpu.thread_id x
// CHECK: %[[WARPGROUP:.+]] = arith.divui %[[THREAD]], %c128
// CHECK: %[[FIRST_SLOT:.+]] = arith.muli %block_id_x, %c128
// CHECK: %[[PADDED_I32:.+]] = memref.load %arg3[%{{.+}}] : memref<1xi32>
// CHECK-NEXT: %[[PADDED:.+]] = arith.index_cast %[[PADDED_I32]] : i32 to index
// CHECK: %[[LENGTH:.+]] = memref.dim %arg1, %{{.+}} : memref<?xi32>
// CHECK-NEXT: %[[ASSIGNMENTS:.+]] = arith.subi %[[LENGTH]], %c1016 : index
// CHECK: arith.muli %[[WARPGROUP]], %c64 : index
// CHECK: %[[OFFSET:.+]] = arith.muli %[[WARPGROUP]], %c64{{.*}} : index
// CHECK-NEXT: %[[OWN_FIRST:.+]] = arith.addi %[[FIRST_SLOT]], %[[OFFSET]] : index
// CHECK-NEXT: %[[IN_SCHEDULE:.+]] = arith.cmpi ult, %[[OWN_FIRST]], %[[PADDED]] : index
// CHECK: %[[SAFE:.+]] = arith.select %[[IN_SCHEDULE]], %[[OWN_FIRST]], %{{.+}} : index
// CHECK-NEXT: %[[ASSIGNMENT_I32:.+]] = memref.load %arg1[%[[SAFE]]] : memref<?xi32>
// CHECK-NEXT: %[[ASSIGNMENT:.+]] = arith.index_cast %[[ASSIGNMENT_I32]] : i32 to index
// CHECK-NEXT: %[[REAL:.+]] = arith.cmpi ult, %[[ASSIGNMENT]], %[[ASSIGNMENTS]] : index
// CHECK-NEXT: %[[OWNS_ROWS:.+]] = arith.andi %[[IN_SCHEDULE]], %[[REAL]] : i1
// CHECK: scf.for {{.*}} iter_args(%[[SUM:.+]] = %{{.+}})
// CHECK: %{{.+}} = scf.if %[[OWNS_ROWS]] -> (!llvm.struct<{{.*}}>) {
// CHECK-COUNT-4: nvvm.wgmma.mma_async
// CHECK: } else {
// CHECK-NEXT: scf.yield %[[SUM]]
func.func @padding_halves(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 3, consumer_warpgroups = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Pingpong: the persistent roles, and each consumer warpgroup multiplies all
// 128 rows of every other tile (tiles done mod 2 = its warpgroup), in two
// m64n128 accumulators (the second's A rows 64 x 128 bytes further, 512
// descriptor units), so one warpgroup's epilogue runs beside the other's K
// loop; a stage is released by the 128 threads that consumed it. A parity
// wait tells apart only rounds at most one apart, so a warpgroup's K loop
// starts once the other's, on the tile before, is done: the math-order
// barrier (128 arrivals) completes its phase d when tile d's K loop is done,
// and tile d waits for phase d − 1 (parity of d div 1 = 0, a fresh barrier's
// phase −1 counting as complete).
// CHECK-LABEL: func.func @pingpong
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: persistent = 1 : i64
// CHECK: %[[THREAD:.+]] = gpu.thread_id x
// CHECK-NEXT: %{{.+}} = arith.constant 128 : index
// CHECK-NEXT: %[[WARPGROUP:.+]] = arith.divui %[[THREAD]], %{{.+}} : index
// CHECK: %[[RELEASERS:.+]] = arith.constant 128 : index
// CHECK-NEXT: nvgpu.mbarrier.init %{{.+}}[%{{.+}}], %[[RELEASERS]] : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK: nvgpu.mbarrier.init %{{.+}}[%{{.+}}], %c384{{.*}} : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 2>
// CHECK: nvgpu.mbarrier.init %{{.+}}[%{{.+}}], %c384{{.*}} : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 2>
// CHECK: %[[ORDER_THREADS:.+]] = arith.constant 128 : index
// CHECK-NEXT: nvgpu.mbarrier.init %[[ORDER:.+]][%{{.+}}], %[[ORDER_THREADS]] : <memorySpace = #gpu.address_space<workgroup>>
// CHECK: nvvm.setmaxregister increase 208
// CHECK: scf.while
// CHECK: ^bb0(%{{[a-z0-9]+}}: index, %[[DONE:[a-z0-9]+]]: index, %{{[a-z0-9]+}}: index):
// CHECK: %[[PARITY:.+]] = arith.remui %[[DONE]], %c2{{.*}} : index
// CHECK-NEXT: %[[MINE:.+]] = arith.cmpi eq, %[[PARITY]], %[[WARPGROUP]] : index
// CHECK-NEXT: scf.if %[[MINE]] {
// CHECK: %[[ROUND:.+]] = arith.divui %[[DONE]], %c1{{.*}} : index
// CHECK: %[[ROUND_PARITY:.+]] = arith.remui %[[ROUND]], %c2{{.*}} : index
// CHECK-NEXT: %[[PREVIOUS:.+]] = arith.cmpi eq, %[[ROUND_PARITY]], %c0{{.*}} : index
// CHECK: nvgpu.mbarrier.try_wait.parity %[[ORDER]][%{{.+}}], %[[PREVIOUS]]
// CHECK-NOT: nvgpu.mbarrier.try_wait.parity %[[ORDER]]
// CHECK: %[[SECOND:.+]] = arith.addi %[[DESCA:.+]], %c512_i64 : i64
// CHECK: nvvm.wgmma.mma_async %{{.+}}, %{{.+}}, <m = 64, n = 128, k = 16>, D[<f32>, <zero>]
// CHECK-NEXT: nvvm.wgmma.mma_async %[[SECOND]], %{{.+}}, <m = 64, n = 128, k = 16>, D[<f32>, <zero>]
// CHECK: scf.for {{.*}} iter_args(%{{.+}} = %{{.+}}, %{{.+}} = %{{.+}}) -> (!llvm.struct<{{.*}}>, !llvm.struct<{{.*}}>)
// CHECK-COUNT-8: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: nvgpu.mbarrier.arrive %{{.+}}[%{{.+}}] : <memorySpace = #gpu.address_space<workgroup>, num_barriers = 4>
// CHECK-NEXT: %{{.+}} = arith.constant 0 : index
// CHECK-NEXT: nvgpu.mbarrier.arrive %[[ORDER]][%{{.+}}] : <memorySpace = #gpu.address_space<workgroup>>
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: llvm.store
// PTX: .entry expert_matmul(
// PTX: setmaxnreg.inc.sync.aligned.u32 {{.*}}208;
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @pingpong(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Pingpong keeps two 64-row accumulators of block_n / 2 registers each:
// this emitter builds it up to block_n 128.
// CHECK-LABEL: func.func @pingpong_wide
// CHECK-NOT: gpu.module
func.func @pingpong_wide(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 192, block_k = 64, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1>: pingpong is built for block_n up to 128}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 192, block_k = 64, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// cluster_m = 2: pairs of consecutive slot blocks of one column tile (the
// raster orders pairs). Every block initializes its barriers, fences them
// for the cluster and synchronizes with its pair before any block leaves or
// multicasts. A pair shares the weights when both its slot blocks are in the
// schedule and of one local expert; then block r loads box r of each B tile
// (here the tile's two 128-row halves) for both blocks (mask 3), else each
// block loads both boxes for itself (mask 1 << r). After its block barrier
// at each K step, a block's first thread frees the step's `next` stage on
// the freeing block's barrier (the other block's, shared; its own, unshared)
// and every thread waits for its own barrier of that stage; a shared pair
// synchronizes once more before the epilogue.
// CHECK-LABEL: func.func @cluster
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: box_rows = 128 : i64, cluster_m = 2 : i64
// CHECK-SAME: nvvm.cluster_dim = array<i32: 2, 1, 1>
// CHECK: nvvm.mbarrier.init %{{.+}}, %c1_i32{{.*}} : !llvm.ptr<3>, i32
// CHECK: nvvm.fence.mbarrier.init
// CHECK: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// CHECK-NEXT: %[[X:.+]] = gpu.block_id x
// CHECK: %[[RANK:.+]] = arith.remui %[[X]], %c2
// CHECK: %[[PAIR:.+]] = arith.divui %[[X]], %c2
// CHECK: %[[TWICE:.+]] = arith.muli %[[PAIR]], %c2
// CHECK-NEXT: %[[BLOCK:.+]] = arith.addi %[[TWICE]], %[[RANK]] : index
// CHECK: %[[PARTNER:.+]] = arith.xori %[[BLOCK]], %c1
// CHECK: %[[OWN_EXPERT:.+]] = memref.load %arg2[%{{.+}}] : memref<?xi32>
// CHECK: %[[PARTNER_EXPERT:.+]] = memref.load %arg2[%{{.+}}] : memref<?xi32>
// CHECK-NEXT: %[[SAME:.+]] = arith.cmpi eq, %[[OWN_EXPERT]], %[[PARTNER_EXPERT]] : i32
// CHECK: %[[LOCAL:.+]] = arith.cmpi sge, %[[OWN_EXPERT]], %c0_i32 : i32
// CHECK-NEXT: %[[ONE_EXPERT:.+]] = arith.andi %[[SAME]], %[[LOCAL]] : i1
// CHECK-NEXT: %[[BOTH:.+]] = arith.andi %{{.+}}, %{{.+}} : i1
// CHECK-NEXT: %[[SHARES:.+]] = arith.andi %[[BOTH]], %[[ONE_EXPERT]] : i1
// CHECK-NEXT: %[[RANK32:.+]] = arith.index_cast %[[RANK]] : index to i32
// CHECK: %[[OTHER:.+]] = arith.xori %[[RANK32]], %c1_i32
// CHECK-NEXT: %[[FREEING:.+]] = arith.select %[[SHARES]], %[[OTHER]], %[[RANK32]] : i32
// CHECK: %[[MASK:.+]] = arith.select %[[SHARES]], %c3_i16, %{{.+}} : i16
// CHECK: %[[UNSHARED:.+]] = arith.xori %[[SHARES]], %true
// CHECK: %[[FIRST_BOX:.+]] = arith.cmpi eq, %[[RANK]], %c0
// CHECK-NEXT: %[[LOADS_FIRST:.+]] = arith.ori %[[UNSHARED]], %[[FIRST_BOX]] : i1
// CHECK: nvgpu.tma.async.load {{.*}} multicast_mask = %[[MASK]], predicate = %{{.+}} : <tensor = memref<128x64xbf16
// CHECK: %[[SECOND_BOX:.+]] = arith.cmpi eq, %[[RANK]], %c1
// CHECK: nvgpu.tma.async.load {{.*}} multicast_mask = %[[MASK]], predicate = %{{.+}} : <tensor = memref<128x64xbf16
// CHECK: nvgpu.mbarrier.arrive.expect_tx %{{.+}}[%{{.+}}], %c32768
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK: %[[REMOTE:.+]] = nvvm.mapa %{{.+}}, %[[FREEING]] : !llvm.ptr<3> -> !llvm.ptr<7>
// CHECK-NEXT: scf.if %{{.+}} {
// CHECK-NEXT: nvvm.mbarrier.arrive %[[REMOTE]] : !llvm.ptr<7>
// CHECK: nvvm.mbarrier.try_wait.parity %{{.+}}, %{{.+}}, %{{.+}} : !llvm.ptr<3>, i32, i32
// CHECK: arith.select %[[SHARES]], %c3_i16
// CHECK: nvgpu.tma.async.load {{.*}} multicast_mask
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: scf.if %[[SHARES]] {
// CHECK-NEXT: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// PTX: .reqnctapercluster 2, 1, 1
// PTX: cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster
// PTX: mapa.shared::cluster.u64
// PTX: mbarrier.arrive.shared::cluster.b64 _, [%rd{{[0-9]+}}], %r{{[0-9]+}};
func.func @cluster(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_m = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// cluster_m = 2 of the warp-specialized schedule: the pairing, sharing
// decision and multicast boxes of the multistage pairs, but only the
// producer meets the other block. Thread 0 initializes the full ring (129
// arrivals) and the empty ring, which lives in dynamic shared memory (the
// stage-free barriers, reachable through mapa) and takes 256 + 2 arrivals:
// every consumer thread, and one release per consumer warpgroup of the
// block whose multicast refills the stage (the other one, shared; this one,
// unshared), at CTA scope (a cluster-scope release cost 25-35%). No block
// barrier: the pair's first cluster synchronization publishes the rings. The producer waits on its own empty
// barrier and issues both boxes with the pair's mask and the whole tile's
// bytes on its full barrier; the consumers release a stage on their own
// empty barrier and, predicated (a wgmma is in flight), on the freeing
// block's. A shared pair synchronizes once more after the epilogue.
// CHECK-LABEL: func.func @cluster_of_warp_specialized
// CHECK: gpu.func @expert_matmul
// CHECK-SAME: box_rows = 128 : i64, cluster_m = 2 : i64
// CHECK-SAME: threads = 384 : i64
// CHECK-SAME: nvvm.cluster_dim = array<i32: 2, 1, 1>
// CHECK-NOT: gpu.barrier
// CHECK: nvgpu.mbarrier.init %[[FULL:[0-9]+]][%{{.+}}], %c129
// CHECK: %[[EMPTY0:.+]] = llvm.getelementptr
// CHECK-NEXT: nvvm.mbarrier.init %[[EMPTY0]], %c258_i32 : !llvm.ptr<3>, i32
// CHECK-COUNT-3: nvvm.mbarrier.init %{{.+}}, %c258_i32
// CHECK-NEXT: nvvm.fence.mbarrier.init
// CHECK-NOT: gpu.barrier
// CHECK: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// CHECK-NOT: gpu.barrier
// CHECK: %[[SAME:.+]] = arith.cmpi eq, %{{.+}}, %{{.+}} : i32
// CHECK: %[[LOCAL:.+]] = arith.cmpi sge, %{{.+}}, %c0_i32 : i32
// CHECK-NEXT: %[[ONE_EXPERT:.+]] = arith.andi %[[SAME]], %[[LOCAL]] : i1
// CHECK-NEXT: %[[BOTH:.+]] = arith.andi %{{.+}}, %{{.+}} : i1
// CHECK-NEXT: %[[SHARES:.+]] = arith.andi %[[BOTH]], %[[ONE_EXPERT]] : i1
// CHECK: %[[FREEING:.+]] = arith.select %[[SHARES]], %{{.+}}, %{{.+}} : i32
// CHECK-NOT: gpu.barrier
// CHECK: nvvm.setmaxregister  decrease 88
// CHECK: scf.for
// Round r of a stage waits for the empty phase r - 1: parity (r + 1) mod 2.
// CHECK: %[[ROUND:.+]] = arith.divui %{{.+}}, %c4 : index
// CHECK: %[[NEXT_ROUND:.+]] = arith.addi %[[ROUND]], %c1
// CHECK-NEXT: %[[PARITY:.+]] = arith.remui %[[NEXT_ROUND]], %c2
// CHECK-NEXT: %[[PARITY32:.+]] = arith.index_cast %[[PARITY]] : index to i32
// CHECK: nvvm.mbarrier.try_wait.parity %{{.+}}, %[[PARITY32]], %{{.+}} : !llvm.ptr<3>, i32, i32
// CHECK: %[[MASK:.+]] = arith.select %[[SHARES]], %c3_i16, %{{.+}} : i16
// CHECK: nvgpu.tma.async.load {{.*}}, %[[FULL]][%{{.+}}] to %{{.+}} multicast_mask = %[[MASK]], predicate
// CHECK: nvgpu.tma.async.load {{.*}}, %[[FULL]][%{{.+}}] to %{{.+}} multicast_mask = %[[MASK]], predicate
// CHECK: nvgpu.mbarrier.arrive.expect_tx %[[FULL]][%{{.+}}], %c32768
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: nvgpu.mbarrier.get %[[FULL]]
// CHECK: nvvm.cp.async.mbarrier.arrive %{{.+}} {noinc = true}
// CHECK: } else {
// CHECK-NEXT: nvvm.setmaxregister  increase 208
// CHECK: scf.for
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: %[[OWN:.+]] = llvm.getelementptr
// CHECK-NEXT: nvvm.mbarrier.arrive %[[OWN]] : !llvm.ptr<3> -> i64
// CHECK: %[[LANE:.+]] = arith.remui %thread_id_x, %c128
// CHECK-NEXT: %[[ELECTED:.+]] = arith.cmpi eq, %[[LANE]], %c0
// CHECK-NEXT: %[[REMOTE:.+]] = nvvm.mapa %[[OWN]], %[[FREEING]] : !llvm.ptr<3> -> !llvm.ptr<7>
// CHECK-NEXT: nvvm.inline_ptx "mbarrier.arrive.release.cta.shared::cluster.b64 _, [$0];" ro(%[[REMOTE]] : !llvm.ptr<7>), predicate = %[[ELECTED]]
// CHECK-NEXT: scf.yield
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: scf.if %[[SHARES]] {
// CHECK-NEXT: nvvm.cluster.arrive
// CHECK-NEXT: nvvm.cluster.wait
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: gpu.return
// PTX: .entry expert_matmul(
// PTX: .maxntid 384, 1, 1
// PTX: .reqnctapercluster 2, 1, 1
// PTX: mov.b32 {{.*}}[[RELEASES:%r[0-9]+]], 258;
// PTX-NEXT: mbarrier.init.shared.b64 {{.*}}[moe_dynamic_shared_memory+{{[0-9]+}}], [[RELEASES]];
// PTX: fence.mbarrier_init.release.cluster
// PTX-NEXT: $L__BB
// PTX-NEXT: barrier.cluster.arrive
// PTX-NEXT: barrier.cluster.wait
// PTX: setmaxnreg.dec.sync.aligned.u32 {{.*}}88;
// PTX: cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster
// PTX: setmaxnreg.inc.sync.aligned.u32 {{.*}}208;
// PTX: mapa.shared::cluster.u64
// PTX-NEXT: // begin inline asm
// PTX-NEXT: @%p{{[0-9]+}} mbarrier.arrive.release.cta.shared::cluster.b64 _, [%rd{{[0-9]+}}];
// PTX: barrier.cluster.arrive
// PTX-NEXT: barrier.cluster.wait
func.func @cluster_of_warp_specialized(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, cluster_m = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// The persistent schedules are built for bf16 operands only.
// CHECK-LABEL: func.func @persistent_fp8
// CHECK-NOT: gpu.module
func.func @persistent_fp8(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = persistent, block_m = 128, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1>: the emitter builds the multistage schedule, the warp-specialized one for bf16, w8a8 and the register operand}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 128 : i64, quantization = #moe.quant<fp8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = persistent, block_m = 128, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// A warp-specialized fp8 consumer holds two accumulators: N up to 128.
// CHECK-LABEL: func.func @warp_specialized_fp8_too_wide
// CHECK-NOT: gpu.module
func.func @warp_specialized_fp8_too_wide(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 128, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>: warp-specialized fp8 is built for block_n up to 128}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 128 : i64, quantization = #moe.quant<fp8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 128, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Pairs are built for one tile per block: not for the persistent schedules.
// CHECK-LABEL: func.func @cluster_of_persistent
// CHECK-NOT: gpu.module
func.func @cluster_of_persistent(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, cluster_m = 2>: the emitter builds the multistage schedule, the warp-specialized one for bf16, w8a8 and the register operand, the persistent one for bf16 and the register operand and the pingpong one for bf16, each with one producer warpgroup, with 128 bytes of K per stage (256 for the bf16 multistage schedule without a cluster), block_n 64, 128 or 256, 2 to 16 stages and no cluster but pairs along M (cluster_m = 2) of the bf16 multistage and warp-specialized schedules without split-K}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, cluster_m = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// CHECK-LABEL: func.func @cluster_with_split_k
// CHECK-NOT: gpu.module
func.func @cluster_with_split_k(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 2, cluster_m = 2>}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 2, cluster_m = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// CHECK-LABEL: func.func @cluster_along_n
// CHECK-NOT: gpu.module
func.func @cluster_along_n(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_n = 2>}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_n = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// split_k must divide the K steps (512 / 64 = 8).
// CHECK-LABEL: func.func @split_k_of_steps
func.func @split_k_of_steps(%h: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel: split_k = 3 does not divide the K steps}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 3>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %o : tensor<?x256xbf16>
}

// -----

// 24 slot rows are an N of the wgmma, but the swapped gather copies 16 or 32
// rows (one or two chunks per thread).
// CHECK-LABEL: func.func @swapped_24_rows
// CHECK-NOT: gpu.module
func.func @swapped_24_rows(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 24, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>: slot blocks of 64 or 128 rows (192 for bf16 on the multistage schedule without a cluster), or with swapped operands of 16 or 32 rows over one or two warpgroups}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 24 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 24, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Promoting fp8 partial sums (an odd, 3-stage ring), the K loop takes two
// steps per iteration, the stage computed per step (a round's unrolled
// steps with their scales spilled), so that the partial sum in flight at the
// back edge alternates without a copy; 12 K steps of 128: six iterations.
// (Unpromoted formats loop over rounds of the ring: see follows_config.)
// CHECK-LABEL: func.func @promoting_two_steps
// CHECK: nvgpu.mbarrier.create -> <memorySpace = #gpu.address_space<workgroup>, num_barriers = 3>
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c6{{.*}} step %c1
// CHECK-COUNT-2: nvvm.wgmma.mma_async {{.*}} D[<f32>, <zero>], A[<e4m3>
// CHECK: scf.yield
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
func.func @promoting_two_steps(%x: tensor<?x1536xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x1536xf8E4M3FN>, %xs: tensor<?x12xf32>, %ws: tensor<8x2x12xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      input_scales(%xs : tensor<?x12xf32>) weight_scales(%ws : tensor<8x2x12xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<fp8, scales = block>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x1536xf8E4M3FN>, tensor<8x256x1536xf8E4M3FN> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// 11 K steps: five two-step iterations, then the last step after the loop
// (its refill known to lie past the end: only the commit is issued).
// CHECK-LABEL: func.func @promoting_odd_steps
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c5{{.*}} step %c1
// CHECK-COUNT-2: nvvm.wgmma.mma_async {{.*}} D[<f32>, <zero>], A[<e4m3>
// CHECK: scf.yield
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: gpu.barrier
// CHECK-NOT: nvgpu.tma.async.load
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.wgmma.mma_async {{.*}} D[<f32>, <zero>], A[<e4m3>
// CHECK-COUNT-3: nvvm.wgmma.mma_async {{.*}} D[<f32>, <one>], A[<e4m3>
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
func.func @promoting_odd_steps(%x: tensor<?x1408xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x1408xf8E4M3FN>, %xs: tensor<?x11xf32>, %ws: tensor<8x2x11xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      input_scales(%xs : tensor<?x11xf32>) weight_scales(%ws : tensor<8x2x11xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<fp8, scales = block>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x1408xf8E4M3FN>, tensor<8x256x1408xf8E4M3FN> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// fast_accumulation: per-channel fp8 sums stay in the wgmma's accumulator
// over all of K, in one accumulator as wide as int8's (block_n = 256):
// every wgmma adds into it, none starts a partial to promote, and the
// scales wait for the epilogue.
// CHECK-LABEL: func.func @fast_accumulation
// CHECK: scf.for
// CHECK-NOT: D[<f32>, <zero>]
// CHECK: nvvm.wgmma.mma_async {{.*}}<m = 64, n = 256, k = 32>, D[<f32>, <one>], A[<e4m3>
// CHECK-NOT: D[<f32>, <zero>]
// CHECK-NOT: arith.addf
// CHECK: scf.yield
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3
func.func @fast_accumulation(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 128 : i64, quantization = #moe.quant<fp8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, fast_accumulation = true>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Warp-specialized and fast: the consumers run the bf16 loop, and with no
// partial beside the sums a 256-wide tile is built (as for int8).
// CHECK-LABEL: func.func @fast_accumulation_warp_specialized
// CHECK: gpu.module
// CHECK: nvvm.setmaxregister  increase 208
// CHECK-NOT: D[<f32>, <zero>]
// CHECK: nvvm.wgmma.mma_async {{.*}}<m = 64, n = 256, k = 32>, D[<f32>, <one>], A[<e4m3>
// CHECK-NOT: arith.addf
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
func.func @fast_accumulation_warp_specialized(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 128 : i64, quantization = #moe.quant<fp8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 128, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, fast_accumulation = true>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Swapped int8 at decode: the tile's 128 weight rows are the wgmma's A
// operand, two m64n16 fragments of s32 sums against the 16 slot rows; after
// the K loop the sums are transposed once through shared memory (i32) into
// the fragment the per-token x per-channel epilogue reads.
// CHECK-LABEL: func.func @swapped_int8
// CHECK: gpu.func @expert_matmul
// CHECK: nvvm.wgmma.mma_async {{.*}}<m = 64, n = 16, k = 32>, D[<s32>, <one>], A[<s8>, <one>, <row>], B[<s8>, <one>, <col>]
// CHECK: memref.view {{.*}} to memref<16x132xi32, #gpu.address_space<workgroup>>
// CHECK: arith.sitofp
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n16k32.s32.s8.s8
func.func @swapped_int8(%x: tensor<?x512xi8>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xi8>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<int8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1, swap_ab = true>}
      : tensor<?x512xi8>, tensor<8x256x512xi8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// fp8 sums promoted every stage keep their unswapped kernels: a swapped
// one would promote the transposed fragments.
func.func @swapped_promoting(%x: tensor<?x512xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xf8E4M3FN>, %xs: tensor<?xf32>, %ws: tensor<8x256xf32>) -> tensor<?x128xbf16> {
  // expected-remark @+1 {{or w8a8 sums without promotion: int8, or fp8 with fast_accumulation)}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<fp8, scales = per_token_channel>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1, swap_ab = true>}
      : tensor<?x512xf8E4M3FN>, tensor<8x256x512xf8E4M3FN> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}
