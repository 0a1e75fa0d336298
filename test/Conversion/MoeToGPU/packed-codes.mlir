// int4 and mxfp4 codes stored in moe.prepack's wgmma_a_4bit order
// (#moe.quant<..., packed = wgmma_a_4bit>): each thread copies, and reads
// back, the 16-byte chunk of a 64-row group's 2048-byte tile that holds its
// own elements of the wgmma's A fragment.
// Blocks of 128 weight rows (two fragments of the register operand; the
// policy's default is one):
// RUN: moe-opt %s -split-input-file -moe-gpu-configure=block-n=128 -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-gpu-configure=block-n=128 -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX
// A deeper ring where `stages` asks for one (up to 16): 12 stages, 10 of
// them loading ahead of the step's wgmma (one stays in flight), so each
// step waits until at most 9 younger cp.async groups are pending.
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="block-n=128 stages=12" -moe-emit-gpu-kernels 2>/dev/null | FileCheck %s --check-prefix=DEEP
// DEEP-LABEL: func.func @int4_packed_registers
// DEEP: stages = 12, consumer_warpgroups = 1, swap_ab = true, weight_load = registers
// DEEP: gpu.func @expert_matmul
// Two chunks of codes (two 64-row fragments) and one of slot rows per
// thread and stage, for the 10 stages ahead:
// DEEP-COUNT-30: nvgpu.device_async_copy
// The loop also carries the next step's group scales (4 per thread: two
// fragments, two row halves): each step loads step + 1's, clamped to the
// last of the 128 steps, before its own wait.
// DEEP: scf.for {{.*}} -> (!llvm.struct<{{.*}}>, !llvm.struct<{{.*}}>, f32, f32, f32, f32)
// DEEP: arith.minui %{{.*}}, %c127
// DEEP-NOT: nvvm.cp.async.wait.group
// DEEP: memref.load %arg5
// DEEP: nvvm.cp.async.wait.group 9

// Swapped int4 codes packed for the register operand take it without
// weight-only-registers. A chunk's source is the flat byte of its 64-row
// group's tile at the step's K/64, as a row and column of the [E·N, K/2]
// code matrix (K/2 = 4096 bytes a row). Per 64 weight rows (two fragments
// here) and stage one 16-byte load, whose word s, byte 2g + h is the A
// register of k16 step s, column half g and row half h: one prmt of the
// word and the word shifted by a nibble, its selector a constant (byte
// 2g + h to byte 0, and of the shifted word to byte 2: 0x400, 0x501, 0x602,
// 0x703).
// CHECK-LABEL: func.func @int4_packed_registers
// CHECK: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>
// CHECK: gpu.func @expert_matmul
// Thread t's chunk c = t (+ 128 per 64-row group): its slab (c % 128) / 32
// of 16 tile rows is 16 weight rows r; their 64-row group's tiles start at
// (expert · N/64 + r / 64) · (K/64 · 2048 = 262144), the slab's chunk at
// 32 · ((r % 64) / 16) + c % 32, 16 bytes each; the stage lands at 2048 ·
// group + 16 · (c % 128), as [128, 32] bytes.
// CHECK-NOT: llvm.intr.fshl
// CHECK: %[[GROUP:.*]] = arith.divui %[[C:[0-9]+]], %c128{{.*}} : index
// CHECK: %[[INTILE:.*]] = arith.remui %[[C]], %c128{{.*}} : index
// CHECK: arith.divui %[[INTILE]], %c32 : index
// CHECK: %[[WROW:.*]] = arith.select %{{.*}}, %{{.*}}, %c0{{.*}} : index
// CHECK: %[[WGROUP:.*]] = arith.divui %[[WROW]], %c64{{.*}} : index
// CHECK: %[[TILE:.*]] = arith.addi %{{.*}}, %[[WGROUP]] : index
// CHECK: %[[INGROUP:.*]] = arith.remui %[[WROW]], %c64{{.*}} : index
// CHECK: %[[SLAB:.*]] = arith.divui %[[INGROUP]], %c16{{.*}} : index
// CHECK: %[[LANE:.*]] = arith.remui %[[INTILE]], %c32{{.*}} : index
// CHECK: %[[SLABCHUNK:.*]] = arith.muli %[[SLAB]], %c32{{.*}} : index
// CHECK: %[[CHUNK:.*]] = arith.addi %[[SLABCHUNK]], %[[LANE]] : index
// CHECK: %[[CHUNKBYTE:.*]] = arith.muli %[[CHUNK]], %c16{{.*}} : index
// CHECK: %[[TILEBYTE:.*]] = arith.muli %[[TILE]], %c262144 : index
// CHECK: %[[FLAT:.*]] = arith.addi %[[TILEBYTE]], %[[CHUNKBYTE]] : index
// CHECK: arith.muli %[[INTILE]], %c16{{.*}} : index
// CHECK: arith.muli %[[GROUP]], %c2048 : index
// At a step, the group's (K offset / 64)-th tile: 2048 bytes on per step.
// CHECK: %[[SOURCE:.*]] = arith.addi %[[FLAT]], %{{[0-9]+}} : index
// CHECK: %[[ROW:.*]] = arith.divui %[[SOURCE]], %c4096{{.*}} : index
// CHECK: %[[COLUMN:.*]] = arith.remui %[[SOURCE]], %c4096{{.*}} : index
// CHECK: nvgpu.device_async_copy %{{.*}}{{\[}}%[[ROW]], %[[COLUMN]]], %{{.*}}, 16, %{{.*}} : memref<2048x4096xi8> to memref<128x32xi8, #gpu.address_space<workgroup>>
// CHECK: scf.for
// CHECK: %[[CHUNK:.*]] = memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK: %[[WORD:.*]] = llvm.extractelement %[[CHUNK]]
// CHECK: %[[SHIFTED:.*]] = arith.shrui %[[WORD]], %c4_i32
// CHECK: nvvm.prmt <default> %c1024_i32{{.*}}, %[[WORD]], %[[SHIFTED]]
// CHECK: nvvm.prmt <default> %c1281_i32{{.*}}, %[[WORD]], %[[SHIFTED]]
// CHECK: nvvm.prmt <default> %c1538_i32{{.*}}, %[[WORD]], %[[SHIFTED]]
// CHECK: nvvm.prmt <default> %c1795_i32{{.*}}, %[[WORD]], %[[SHIFTED]]
// CHECK: memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK-NOT: memref.load %{{.*}} : memref<128x2xvector<4xi32>
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
// PTX: .entry expert_matmul(
// PTX-NOT: st.shared
// PTX-NOT: shf.l.wrap
// PTX: ld.shared.v4.b32
// PTX: ld.shared.v4.b32
// PTX-NOT: ld.shared.v4.b32
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
func.func @int4_packed_registers(%x: tensor<?x8192xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x4096xui8>, %ws: tensor<8x256x64xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x64xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>}
      : tensor<?x8192xbf16>, tensor<8x256x4096xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// The unswapped tile kernel (64-row slot blocks; the policy's prefill takes
// the register operand below, so the configuration is written here): the
// same chunks are copied and dequantized into the bf16 B tile, each pair
// stored at its row (+0, +8) and its swizzled column, chunk (2s + g) xor
// (row mod 8), word t%4.
// CHECK-LABEL: func.func @int4_packed_tile
// CHECK: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1>
// CHECK: gpu.func @expert_matmul
// CHECK: scf.for
// CHECK: memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK: %[[SWIZZLE:.*]] = arith.remui %{{.*}}, %c8{{.*}} : index
// CHECK: arith.xori %c0{{.*}}, %[[SWIZZLE]] : index
// CHECK: memref.store %{{.*}} : memref<128x32xi32, #gpu.address_space<workgroup>>
// CHECK: nvvm.wgmma.mma_async
// PTX: .entry expert_matmul(
// PTX: ld.shared.v4.b32
// PTX: st.shared.b32
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @int4_packed_tile(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xf32>, %wz: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xf32>) weight_zeros(%wz : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Prefill's 128-row slot blocks take the register operand over two
// warpgroups, 64 weight rows each, the slot rows as the wgmma's N. In the
// multistage schedule (written on the op here), thread t of warpgroup w
// copies chunk t mod 128 of its own 64-row group (w · 1 + i for its i-th
// fragment, here the one), and decodes rows 64 w + 16·(t/32 mod 4) +
// (t%32)/4 (+8): the group's chunk it copied. After the K loop each
// warpgroup stores 64 of the 128 transposed slot rows.
// CHECK-LABEL: func.func @int4_packed_prefill_registers
// CHECK: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, swap_ab = true, weight_load = registers>
// CHECK: gpu.func @expert_matmul
// CHECK: %[[T:.*]] = arith.remui %thread_id_x, %c128{{.*}} : index
// CHECK: %[[WGF:.*]] = arith.muli %{{.*}}, %c1 : index
// CHECK: %[[GROUPF:.*]] = arith.addi %[[WGF]], %c0{{.*}} : index
// CHECK: %[[BASE:.*]] = arith.muli %[[GROUPF]], %c128{{.*}} : index
// CHECK: %[[C:.*]] = arith.addi %[[BASE]], %[[T]] : index
// CHECK: arith.divui %[[C]], %c128{{.*}} : index
// CHECK: %[[LANE:.*]] = arith.remui %thread_id_x, %c32{{.*}} : index
// CHECK: %[[WARPS:.*]] = arith.divui %thread_id_x, %c32{{.*}} : index
// CHECK: %[[WARP:.*]] = arith.remui %[[WARPS]], %c4{{.*}} : index
// CHECK: %[[WG2:.*]] = arith.divui %thread_id_x, %c128{{.*}} : index
// CHECK: %[[WGROWS:.*]] = arith.muli %[[WG2]], %c64{{.*}} : index
// CHECK: %[[QUAD:.*]] = arith.divui %[[LANE]], %c4{{.*}} : index
// CHECK: %[[WARPROW:.*]] = arith.muli %[[WARP]], %c16{{.*}} : index
// CHECK: %[[INWG:.*]] = arith.addi %[[WARPROW]], %[[QUAD]] : index
// CHECK: arith.addi %[[WGROWS]], %[[INWG]] : index
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// PTX: .entry expert_matmul(
// PTX-NOT: st.shared.b32
// PTX: ld.shared.v4.b32
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
func.func @int4_packed_prefill_registers(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xf32>, %wz: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xf32>) weight_zeros(%wz : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 128 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, swap_ab = true, weight_load = registers>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// With a producer warpgroup (warp_specialized written on the op here;
// moe-gpu-configure gives 128-row blocks the persistent schedule on it)
// the 128-row blocks get a producer warpgroup (threads 256 and up): it copies chunks t' and t' + 128 (t' = t − 256) of the stage's two
// 64-row groups and the slot rows, and has them arrive on the full
// barrier as they land (cp.async.mbarrier.arrive.noinc: the barrier counts
// its 128 arrivals; no TMA, no expect_tx). The
// consumers copy nothing: thread t of warpgroup w decodes chunk t mod 128
// of group w, at byte 2048 w + 16·(t mod 128) of the stage's codes. The
// transposition after the K loop waits on the consumers' named barrier
// (bar.sync 1, 256), not the block's.
// CHECK-LABEL: func.func @int4_packed_prefill_warp_specialized
// CHECK: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>
// CHECK: gpu.func @expert_matmul
// CHECK: nvgpu.mbarrier.init %[[FULL:.*]][%c0{{.*}}], %c128{{.*}} :
// CHECK: nvgpu.mbarrier.init %[[EMPTY:.*]][%c0{{.*}}], %c256{{.*}} :
// CHECK: nvgpu.mbarrier.init %[[FULL]][%c1], %c128{{.*}} :
// CHECK: nvvm.setmaxregister  decrease 88
// CHECK: %[[P:.*]] = arith.subi %thread_id_x, %c256{{.*}} : index
// CHECK: arith.addi %[[P]], %c896 : index
// CHECK: %[[CODE0:.*]] = arith.addi %[[P]], %c0{{.*}} : index
// CHECK-NEXT: arith.constant 128 : index
// CHECK-NEXT: arith.divui %[[CODE0]], %{{.*}} : index
// CHECK: %[[CODE1:.*]] = arith.addi %[[P]], %c128{{.*}} : index
// CHECK-NEXT: arith.constant 128 : index
// CHECK-NEXT: arith.divui %[[CODE1]], %{{.*}} : index
// CHECK: nvgpu.device_async_copy %arg4
// CHECK-NOT: nvgpu.device_async_copy %arg0
// CHECK: nvgpu.device_async_copy %arg4
// CHECK: nvgpu.device_async_copy %arg0
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: nvgpu.mbarrier.get %[[FULL]]
// CHECK: nvvm.cp.async.mbarrier.arrive %{{.+}} {noinc = true}
// CHECK-NOT: nvgpu.mbarrier.arrive
// CHECK: } else {
// CHECK-NEXT: nvvm.setmaxregister  increase 208
// CHECK-NEXT: arith.constant 128 : index
// CHECK-NEXT: %[[WG:.*]] = arith.divui %thread_id_x, %{{.*}} : index
// CHECK-NEXT: arith.constant 128 : index
// CHECK-NEXT: %[[T:.*]] = arith.remui %thread_id_x, %{{.*}} : index
// CHECK: %[[OWN:.*]] = arith.muli %[[WG]], %c1{{.*}} : index
// CHECK-NEXT: %[[GROUP:.*]] = arith.addi %[[OWN]], %c0{{.*}} : index
// CHECK-NEXT: arith.constant 16 : index
// CHECK-NEXT: %[[AT:.*]] = arith.muli %[[T]], %{{.*}} : index
// CHECK-NEXT: arith.constant 2048 : index
// CHECK-NEXT: %[[GROUPAT:.*]] = arith.muli %[[GROUP]], %{{.*}} : index
// CHECK-NEXT: arith.addi %[[GROUPAT]], %[[AT]] : index
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// After the peeled first step, the consumers' loop takes four K steps per
// iteration, so that no step's decode rewrites the A registers of the
// previous step's wgmma, still in flight (K = 256: four steps, the loop is
// empty and three follow it). It carries the next step's group scales
// and zero points (two rows of two groups of 32: eight values), loaded a
// step ahead; the last step loads its own again (K step min(t + 1, 3)).
// Each step waits for its stage, decodes its codes from shared memory,
// fences the async proxy for the slot rows (the producer's cp.async
// arrived without a fence), issues its wgmmas, and only then loads the next
// step's scales (which the fence would otherwise wait for).
// CHECK: scf.for %[[STEP:.*]] = %c1{{.*}} to %c1{{.*}} step %c4{{.*}} iter_args
// CHECK-SAME: -> (!llvm.struct<{{.*}}>, f32, f32, f32, f32, f32, f32, f32, f32) {
// CHECK: nvgpu.mbarrier.try_wait.parity %[[FULL]]
// CHECK-NOT: memref.load %arg5
// CHECK: memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK-NOT: memref.load %arg5
// CHECK: nvvm.fence.proxy
// CHECK-NOT: memref.load %arg5
// CHECK-COUNT-4: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: %[[NEXT:.*]] = arith.addi %[[STEP]], %c1{{.*}} : index
// CHECK-NEXT: %[[LAST:.*]] = arith.constant 3 : index
// CHECK-NEXT: arith.minui %[[NEXT]], %[[LAST]] : index
// CHECK: memref.load %arg5
// CHECK: memref.load %arg6
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: nvvm.barrier id = %{{.*}} number_of_threads = %{{.*}}
// PTX: .entry expert_matmul(
// PTX: setmaxnreg.dec.sync.aligned.u32 {{.*}}88;
// PTX: cp.async.cg.shared.global
// PTX: setmaxnreg.inc.sync.aligned.u32 {{.*}}208;
// PTX-NOT: cp.async
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
// PTX: bar.sync {{.*}}1, 256;
func.func @int4_packed_prefill_warp_specialized(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xf32>, %wz: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xf32>) weight_zeros(%wz : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 128 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Persistent (written on the op): the producer fills the next tile's
// stages while the consumers transpose this tile's sums, so the table
// (128 slot rows × 132 floats) lies after the 4-stage ring (81920 bytes)
// and the tile slots (8), not over the ring.
// CHECK-LABEL: func.func @int4_packed_prefill_persistent
// CHECK: gpu.func @expert_matmul({{.*}}) kernel attributes {moe.launch = {{{.*}}persistent = 1 : i64, shared_bytes = 150536 : i64
// CHECK: %[[TABLE:.*]] = arith.constant 81928 : index
// CHECK-NEXT: %[[AT:.*]] = arith.addi %{{.*}}, %[[TABLE]] : index
// CHECK-NEXT: memref.view %{{.*}}[%[[AT]]][] : memref<150536xi8, #gpu.address_space<workgroup>> to memref<128x132xf32, #gpu.address_space<workgroup>>
// The producer's leader publishes tiles in the slots after the ring.
// PTX: .entry expert_matmul(
// PTX: st.shared.b32 {{.*}}[moe_dynamic_shared_memory+81920]
// PTX: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
func.func @int4_packed_prefill_persistent(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xf32>, %wz: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xf32>) weight_zeros(%wz : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 128 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true, packed = wgmma_a_4bit>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Packed mxfp4 takes the register operand too: the pair's e2m1 codes, from
// the same prmt as int4's, get their magnitude bits at 6..8 and their sign
// at 15 of each bf16 half (the value times 2^-126, a subnormal for exponent
// 0), then are multiplied by 2^126 (the pair 0x7E807E80) and by the e8m0 scale (byte << 23, as
// f32) rounded to bf16: exact.
// CHECK-LABEL: func.func @mxfp4_packed
// CHECK: weight_load = registers
// CHECK: gpu.func @expert_matmul
// CHECK: scf.for
// CHECK: arith.shli %{{.*}}, %c23_i32
// CHECK: %[[SCALE:.*]] = arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK: %[[PAIR:.*]] = nvvm.prmt <default> %c1024_i32{{.*}}, %{{.*}}, %{{.*}} : i32
// CHECK: %[[MOVED:.*]] = arith.shli %[[PAIR]], %c6_i32
// CHECK-NEXT: %[[MAGNITUDES:.*]] = arith.andi %[[MOVED]], %c29360576_i32
// CHECK: %[[SIGNSMOVED:.*]] = arith.shli %[[PAIR]], %c12_i32
// CHECK-NEXT: %[[SIGNS:.*]] = arith.andi %[[SIGNSMOVED]], %c-2147450880_i32
// CHECK-NEXT: %[[BITS:.*]] = arith.ori %[[MAGNITUDES]], %[[SIGNS]]
// CHECK-NEXT: %[[SMALL:.*]] = llvm.bitcast %[[BITS]] : i32 to vector<2xbf16>
// CHECK-NEXT: %[[TWO126:.*]] = arith.constant dense<8.507050e+37> : vector<2xbf16>
// CHECK-NEXT: %[[CODES:.*]] = arith.mulf %[[SMALL]], %[[TWO126]] : vector<2xbf16>
// CHECK-NEXT: arith.mulf %[[CODES]], %[[SCALE]] : vector<2xbf16>
// CHECK-NOT: memref.store %{{.*}} : memref<{{[0-9]+}}x32xi32, #gpu.address_space<workgroup>>
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16
// PTX: .entry expert_matmul(
// PTX-NOT: st.shared
// PTX: mov.b32 {{.*}}, 2122350208;
// PTX: mul.rn.bf16x2
func.func @mxfp4_packed(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<mxfp4, packed = wgmma_a_4bit>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Interleaved gate and up rows do not form 16-row slabs of one 64-row group.
func.func @int4_packed_interleaved(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x2xf32>) -> tensor<?x128xbf16> {
  // expected-remark @+1 {{codes packed as wgmma_a_4bit are read with gate and up rows in halves, by threads that share each 64-row group's 128 chunks evenly}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x2xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<swiglu>, alpha = 1.702 : f32, limit = 7.0 : f32, gate_up_interleaved,
       quantization = #moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}
