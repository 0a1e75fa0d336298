// Mixtral int4 g128 at M = 4096 (1024 rows per expert) takes 256-row slot
// blocks on the register operand: each consumer warpgroup's m64n256k16
// wgmmas hold 128 sums a thread, transposed through the 128-row table in
// two passes. Pass p stores registers 64·p.. of the accumulator (slot rows
// 128·p..) and writes the epilogue rows loaded for it before the K loop
// (fragment row + 128·p); a consumer barrier opens each pass, so that the
// second does not overwrite the table while the first is still read.
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 -moe-align -canonicalize -moe-emit-gpu-kernels | FileCheck %s

// CHECK-LABEL: gpu.func @expert_matmul(
// CHECK-SAME: block_m = 256
// The consumers: the epilogue rows of both passes (each two fragment
// halves, 8 apart).
// CHECK: nvvm.setmaxregister increase 208
// CHECK: scf.while
// CHECK: arith.muli %{{.*}}, %c28672 : index
// CHECK: %[[ROW0:.*]] = arith.addi %[[FRAGMENT_ROW:.*]], %c0{{.*}} : index
// CHECK: %[[HALF0:.*]] = arith.addi %[[ROW0]], %c0{{.*}} : index
// CHECK-NEXT: %[[SLOT0:.*]] = arith.addi %[[FIRST_SLOT:.*]], %[[HALF0]] : index
// CHECK: %[[ROW1:.*]] = arith.addi %[[FRAGMENT_ROW]], %c128{{.*}} : index
// CHECK: %[[HALF1:.*]] = arith.addi %[[ROW1]], %c0{{.*}} : index
// CHECK-NEXT: %[[SLOT1:.*]] = arith.addi %[[FIRST_SLOT]], %[[HALF1]] : index
// CHECK: wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16
// Pass 0: slot rows 0-127 from registers 0-63.
// CHECK: nvvm.barrier id
// CHECK: memref.view {{.*}} to memref<128x132xf32
// CHECK: llvm.extractvalue %[[SUMS:.*]][0] :
// CHECK-NOT: llvm.extractvalue %[[SUMS]][64] :
// CHECK: nvvm.barrier id
// CHECK: arith.muli %[[SLOT0]], %c14336
// CHECK-NOT: arith.muli %[[SLOT1]], %c14336
// Pass 1: slot rows 128-255 from registers 64-127.
// CHECK: nvvm.barrier id
// CHECK: memref.view {{.*}} to memref<128x132xf32
// CHECK-NOT: llvm.extractvalue %[[SUMS]][0] :
// CHECK: llvm.extractvalue %[[SUMS]][64] :
// CHECK: nvvm.barrier id
// CHECK-NOT: arith.muli %[[SLOT0]], %c14336
// CHECK: arith.muli %[[SLOT1]], %c14336
// CHECK-NOT: nvvm.barrier id
// CHECK-LABEL: gpu.func @expert_matmul_0(
