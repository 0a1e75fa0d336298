// RUN: moe-opt %s -split-input-file -convert-moe-to-linalg | FileCheck %s

// moe.route lowers as router then top-k: the logits are a temporary.
// CHECK-LABEL: func @route
// CHECK: %[[LOGITS:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x64xbf16>) outs(%{{.*}} : tensor<?x8xf32>)
// CHECK: math.exp
// CHECK: scf.for
// CHECK-NOT: moe.
func.func @route(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %0, %1 = moe.route softmax %x, %w {k = 2 : i64} : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %0, %1 : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// The aligned schedule: local counts (id -1 skipped), padded prefix sums,
// sorted ids initialized to the sentinel M·k, a stable scatter, and block
// experts initialized to -1.
// CHECK-LABEL: func @align
// CHECK-SAME: (%[[IDS:.*]]: tensor<?x2xi32>)
// CHECK: %[[A:.*]] = arith.muli %{{.*}}, %c2 : index
// CHECK: %[[COUNTS:.*]] = scf.for {{.*}} -> (tensor<8xi32>)
// CHECK: func.call @moe_report_runtime_error
// CHECK: arith.cmpi sge
// CHECK: scf.if %{{.*}} -> (tensor<8xi32>)
// CHECK: %[[STARTS:.*]] = scf.for {{.*}} -> (tensor<9xi32>)
// CHECK: arith.divui
// CHECK: arith.muli
// CHECK: %[[SENTINEL:.*]] = arith.index_cast %[[A]] : index to i32
// CHECK: %[[SORTED_INIT:.*]] = linalg.fill ins(%[[SENTINEL]] : i32) outs(%{{.*}} : tensor<?xi32>)
// CHECK: %[[SCATTER:.*]]:2 = scf.for {{.*}} iter_args(%{{.*}} = %[[STARTS]], %{{.*}} = %[[SORTED_INIT]])
// CHECK: %[[NONE:.*]] = arith.constant -1 : i32
// CHECK: linalg.fill ins(%[[NONE]] : i32) outs(%{{.*}} : tensor<?xi32>)
// CHECK: %[[BLOCKS:.*]] = scf.for
// CHECK: %[[PADDED:.*]] = tensor.from_elements %{{.*}} : tensor<1xi32>
// CHECK: return %[[SCATTER]]#1, %[[BLOCKS]], %[[PADDED]]
func.func @align(%ids: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?xi32>, tensor<1xi32>) {
  %s, %b, %p = moe.align %ids {block_m = 4 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return %s, %b, %p : tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
}

// -----

// GEMM1 of a fused layer: A rows are gathered per block from x through the
// slots (no permuted copy of x), and the activation epilogue leaves 32 of
// the 64 product columns.
// CHECK-LABEL: func @gather_activation
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[SRC:.*]]: tensor<?xi32>
// CHECK: scf.for {{.*}} -> (tensor<?x32xbf16>)
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<8x64xbf16>)
// CHECK: tensor.extract %[[SRC]]
// CHECK: arith.divui
// CHECK: tensor.extract %[[X]]
// CHECK: arith.select
// CHECK: linalg.matmul {{.*}} -> tensor<8x64xf32>
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<8x32xf32>)
// CHECK: math.exp
// CHECK: tensor.insert_slice %{{.*}} [8, 32] [1, 1] : tensor<8x32xbf16> into tensor<?x32xbf16>
// CHECK-NOT: tensor<?x64xbf16> into
func.func @gather_activation(%x: tensor<?x64xbf16>, %src: tensor<?xi32>, %off: tensor<9xi32>, %w13: tensor<8x64x64xbf16>) -> tensor<?x32xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>) {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>} : tensor<?x64xbf16>, tensor<8x64x64xbf16> -> tensor<?x32xbf16>
  return %h : tensor<?x32xbf16>
}

// -----

// GEMM2 of a fused layer on the aligned schedule: blocks of 16 slots, the
// expert from block_experts (-1 skipped), and the weighted rows added into
// their token's f32 row.
// CHECK-LABEL: func @aligned_combine
// CHECK-SAME: (%[[H:.*]]: tensor<?x32xbf16>, %[[SORTED:.*]]: tensor<?xi32>, %[[BLOCKS:.*]]: tensor<?xi32>, %[[PADDED:.*]]: tensor<1xi32>, %[[RW:.*]]: tensor<?x2xf32>
// CHECK: %[[ACC:.*]] = linalg.fill {{.*}} -> tensor<?x64xf32>
// CHECK: scf.for %[[B:.*]] = {{.*}} iter_args(%{{.*}} = %[[ACC]])
// CHECK: tensor.extract %[[BLOCKS]][%[[B]]]
// CHECK: arith.muli %[[B]], %c16
// CHECK: arith.select
// CHECK: linalg.matmul {{.*}} -> tensor<8x64xf32>
// CHECK: scf.if %{{.*}} -> (tensor<?x64xf32>)
// CHECK: tensor.extract %[[RW]]
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: tensor.insert_slice {{.*}} : tensor<64xf32> into tensor<?x64xf32>
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @aligned_combine(%h: tensor<?x32xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %rw: tensor<?x2xf32>, %w2: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) {k = 2 : i64, block_m = 16 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

// -----

// accumulate(%partial) without a scaling factor: the sums start from the
// partial ones instead of a zero fill, after the row count is checked.
// CHECK-LABEL: func @combine_accumulate
// CHECK-SAME: %[[RW:[^:]*]]: tensor<?x2xf32>, %[[W2:[^:]*]]: tensor<8x64x32xbf16>, %[[P:[^:]*]]: tensor<?x64xf32>)
// CHECK: %[[PROWS:.*]] = tensor.dim %[[P]], %c0
// CHECK: %[[BAD:.*]] = arith.cmpi ne, %[[PROWS]]
// CHECK: scf.if %[[BAD]]
// CHECK: func.call @moe_report_runtime_error
// CHECK-NOT: linalg.fill
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %[[P]])
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @combine_accumulate(%h: tensor<?x32xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %rw: tensor<?x2xf32>, %w2: tensor<8x64x32xbf16>, %p: tensor<?x64xf32>) -> tensor<?x64xbf16> {
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) accumulate(%p : tensor<?x64xf32>) {k = 2 : i64, block_m = 16 : i64} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}

// -----

// With a scaling factor the partial sums are added after the scaling.
// CHECK-LABEL: func @combine_accumulate_scaled
// CHECK-SAME: %[[P:[^:]*]]: tensor<?x64xf32>)
// CHECK: linalg.fill
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK: linalg.generic {{.*}} ins(%[[P]] : tensor<?x64xf32>)
// CHECK: arith.addf
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @combine_accumulate_scaled(%h: tensor<?x32xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %rw: tensor<?x2xf32>, %w2: tensor<8x64x32xbf16>, %p: tensor<?x64xf32>) -> tensor<?x64xbf16> {
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) accumulate(%p : tensor<?x64xf32>) {k = 2 : i64, block_m = 16 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}
