// Swapped 4-bit weight-only GEMMs (int4, mxfp4) with weight-only-registers:
// each thread decodes its elements of the wgmma's A fragment from the stored
// codes into registers (weight_load = registers), and no bf16 tile goes
// through shared memory.
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="weight-only-registers block-n=128" -moe-emit-gpu-kernels -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="weight-only-registers block-n=128" -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX
// By default a block multiplies one 64-row fragment (block_n = 64).
// RUN: moe-opt %s -split-input-file -moe-gpu-configure=weight-only-registers -moe-emit-gpu-kernels 2>/dev/null | FileCheck %s --check-prefix=DEFAULT

// Two's complement codes in groups of 128: one scale per row and stage. A
// stage holds the 16 slot rows (2048 bytes) and the codes of 128 weight rows
// (4096 bytes), five stages deep; the sums' transpose table (16 x 132 f32)
// fits in the ring. A thread reads its two rows' 32 bytes of codes per
// 64-row fragment as two 16-byte chunks each. One prmt of a word and the
// word shifted by a nibble puts the two codes of byte t%4 at bits 0..3 and
// 16..19; masked and with the exponent of 128 and flipped sign bits
// (0x43084308) they are two bf16 of 128 + c + 8, less 136 (the same
// constant) exact, times the bf16 scale pair. The four wgmmas of a stage
// take A from registers and the slot rows by descriptor, 2 units (32 bytes)
// apart.
// CHECK-LABEL: func.func @int4_registers
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, {{.*}}swap_ab = true, weight_load = registers>
// CHECK: gpu.func @expert_matmul({{.*}}) kernel attributes {{{.*}}moe.launch = {{{.*}}shared_bytes = 31744 : i64, {{.*}}stages = 5 : i64, threads = 128
// CHECK-NOT: memref.store %{{.*}} : memref<{{[0-9]+}}x32xi32, #gpu.address_space<workgroup>>
// Thread t's rows: 16·(t/32) + (t%32)/4 (+8, +64, +72 for the second
// row half and fragment); its byte q = t%4 of every word: prmt selector
// q·0x101 + 0x400 (byte q of the word to byte 0, of the shifted word to 2).
// CHECK: %[[LANE:.*]] = arith.remui %thread_id_x, %c32{{.*}} : index
// CHECK-NEXT: %c32{{.*}} = arith.constant 32 : index
// CHECK-NEXT: %[[WARP:.*]] = arith.divui %thread_id_x, %c32{{.*}} : index
// CHECK-NEXT: %c4 = arith.constant 4 : index
// CHECK-NEXT: %[[R:.*]] = arith.divui %[[LANE]], %c4 : index
// CHECK-NEXT: %c16{{.*}} = arith.constant 16 : index
// CHECK-NEXT: %[[WARPROW:.*]] = arith.muli %[[WARP]], %c16{{.*}} : index
// CHECK-NEXT: %[[FIRSTROW:.*]] = arith.addi %[[WARPROW]], %[[R]] : index
// CHECK-NEXT: %c4{{.*}} = arith.constant 4 : index
// CHECK-NEXT: %[[Q:.*]] = arith.remui %[[LANE]], %c4{{.*}} : index
// CHECK-NEXT: %[[QI32:.*]] = arith.index_cast %[[Q]] : index to i32
// CHECK: %[[QBYTES:.*]] = arith.muli %[[QI32]], %c257_i32 : i32
// CHECK-NEXT: %[[SELECTOR:.*]] = arith.addi %[[QBYTES]], %c1024_i32 : i32
// CHECK: arith.addi %[[FIRSTROW]], %c0{{.*}} : index
// CHECK: arith.addi %[[FIRSTROW]], %c8{{.*}} : index
// CHECK: arith.addi %[[FIRSTROW]], %c64{{.*}} : index
// CHECK: arith.addi %[[FIRSTROW]], %c72{{.*}} : index
// CHECK: scf.for
// CHECK: nvvm.cp.async.wait.group
// CHECK: nvvm.fence.proxy
// CHECK: gpu.barrier
// CHECK: %[[FLIP:.*]] = arith.constant 1124614920 : i32
// CHECK-NEXT: %[[BIAS:.*]] = llvm.bitcast %[[FLIP]] : i32 to vector<2xbf16>
// CHECK: %[[SCALE:.*]] = arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: %[[CHUNK:.*]] = memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK: %[[WORD:.*]] = llvm.extractelement %[[CHUNK]]
// CHECK: %[[SHIFTED:.*]] = arith.shrui %[[WORD]], %c4_i32
// CHECK-NEXT: %[[PAIR:.*]] = nvvm.prmt <default> %[[SELECTOR]], %[[WORD]], %[[SHIFTED]] : i32
// CHECK: %[[CODES:.*]] = arith.andi %[[PAIR]], %c983055_i32
// CHECK-NEXT: %[[BITS:.*]] = arith.xori %[[CODES]], %[[FLIP]] : i32
// CHECK-NEXT: %[[BIASED:.*]] = llvm.bitcast %[[BITS]] : i32 to vector<2xbf16>
// CHECK-NEXT: %[[CENTERED:.*]] = arith.subf %[[BIASED]], %[[BIAS]] : vector<2xbf16>
// CHECK-NEXT: arith.mulf %[[CENTERED]], %[[SCALE]] : vector<2xbf16>
// CHECK-NOT: gpu.barrier
// CHECK: nvvm.wgmma.fence.aligned
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {$0, $1, $2, $3, $4, $5, $6, $7}, {$16, $17, $18, $19}, $20, 1, 1, 1, 0;", "=f,=f,=f,=f,=f,=f,=f,=f,0,1,2,3,4,5,6,7,r,r,r,r,l"
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK: nvvm.wgmma.wait.group.sync.aligned 1
// PTX: .entry expert_matmul(
// PTX-NOT: st.shared
// PTX: ld.shared.v4.{{[ub]}}32
// PTX: prmt.b32
// PTX: {{add|sub}}.rn.bf16x2
// PTX: mul.rn.bf16x2
// PTX: wgmma.fence.sync.aligned
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%r{{[0-9]+}}, {{.*}}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
// The default block: 64 weight rows, one fragment (rows +0 and +8 only).
// DEFAULT-LABEL: func.func @int4_registers
// DEFAULT: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, {{.*}}swap_ab = true, weight_load = registers>
// DEFAULT: gpu.func @expert_matmul
// DEFAULT: scf.for
// DEFAULT: memref.load %{{.*}} : memref<64x2xvector<4xi32>, #gpu.address_space<workgroup>>
// DEFAULT-COUNT-16: nvvm.prmt
// DEFAULT-NOT: nvvm.prmt
// DEFAULT: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16
func.func @int4_registers(%x: tensor<?x8192xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x4096xui8>, %ws: tensor<8x256x64xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x64xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 128>}
      : tensor<?x8192xbf16>, tensor<8x256x4096xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// Unsigned codes with zero points in groups of 32: per row and stage two
// scales and zero points, the first for k16 steps 0 and 1, the second for 2
// and 3 (scale columns (k + 0) / 32 and (k + 32) / 32). No sign flip
// (0x43004300); the pair of 128 + z is subtracted: z (the low byte of the
// f32 2^23 + z the zero loads as) times 0x10001, plus 0x43004300.
// CHECK-LABEL: func.func @int4_zero_point_registers
// CHECK: weight_load = registers
// CHECK: gpu.func @expert_matmul
// CHECK: scf.for
// CHECK-COUNT-4: memref.load %{{.*}} : memref<8x128x8xf32>
// CHECK: %[[ZEROBITS:.*]] = arith.bitcast %{{.*}} : f32 to i32
// CHECK-NEXT: %[[ZERO:.*]] = arith.andi %[[ZEROBITS]], %c255_i32
// CHECK: %[[ZEROS:.*]] = arith.muli %[[ZERO]], %c65537_i32
// CHECK: %[[BIAS:.*]] = arith.addi %c1124090624_i32{{.*}}, %[[ZEROS]]
// CHECK-NEXT: %[[BIASPAIR:.*]] = llvm.bitcast %[[BIAS]] : i32 to vector<2xbf16>
// CHECK: memref.load %{{.*}} : memref<128x2xvector<4xi32>, #gpu.address_space<workgroup>>
// CHECK: nvvm.prmt
// CHECK: %[[BITS:.*]] = arith.xori %{{.*}}, %c1124090624_i32{{.*}} : i32
// CHECK-NEXT: %[[BIASED:.*]] = llvm.bitcast %[[BITS]] : i32 to vector<2xbf16>
// CHECK-NEXT: arith.subf %[[BIASED]], %[[BIASPAIR]] : vector<2xbf16>
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
func.func @int4_zero_point_registers(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x128xui8>, %ws: tensor<8x128x8xf32>, %wz: tensor<8x128x8xui8>) -> tensor<?x64xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x128x8xf32>) weight_zeros(%wz : tensor<8x128x8xui8>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int4_weight, group = 32, zero_point = true>}
      : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x64xbf16>
  return %h : tensor<?x64xbf16>
}

// -----

// mxfp4 codes in rows take the register operand as int4's do (byte t%4 of
// each word by prmt), decoded as e2m1 bf16 pairs times 2^126 and the e8m0
// scale; no bf16 tile.
// CHECK-LABEL: func.func @mxfp4_registers
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, {{.*}}consumer_warpgroups = 1, {{.*}}swap_ab = true, weight_load = registers>
// CHECK: gpu.func @expert_matmul
// CHECK-NOT: memref.store %{{.*}} : memref<{{[0-9]+}}x32xi32, #gpu.address_space<workgroup>>
// CHECK: nvvm.prmt
// CHECK: arith.andi %{{.*}}, %c29360576_i32
// CHECK: arith.mulf %{{.*}}, %{{.*}} : vector<2xbf16>
// CHECK: llvm.inline_asm has_side_effects "wgmma.mma_async.sync.aligned.m64n16k16
// PTX: .entry expert_matmul(
// PTX-NOT: st.shared
// PTX: mul.rn.bf16x2
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
func.func @mxfp4_registers(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x128xui8>, %ws: tensor<8x256x8xui8>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x256x8xui8>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<mxfp4>}
      : tensor<?x256xbf16>, tensor<8x256x128xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// A configuration written by hand that asks for register operands on int8
// codes is kept, and the emitter says it has no kernel for it.
func.func @int8_registers_unbuilt(%x: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x256xi8>, %ws: tensor<8x128x4xf32>) -> tensor<?x64xbf16> {
  // expected-remark @+1 {{no GPU kernel yet for #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>: weight_load = registers is built for int4_weight and mxfp4 codes in groups of a multiple of 32}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x128x4xf32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<int8_weight, group = 64>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>}
      : tensor<?x256xbf16>, tensor<8x128x256xi8> -> tensor<?x64xbf16>
  return %h : tensor<?x64xbf16>
}
