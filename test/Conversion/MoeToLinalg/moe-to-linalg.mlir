// RUN: moe-opt %s -split-input-file -convert-moe-to-linalg | FileCheck %s
// RUN: moe-opt %s -split-input-file -convert-moe-to-linalg="row-block=4" | FileCheck %s --check-prefix=BLOCK4

// The per-expert row range [offsets[e], offsets[e+1]) bounds the row loops.
// An expert with rows transposes its weights once to [K, N]; full blocks of 8
// rows and then single rows go through static matmuls accumulating in f32.
// CHECK-LABEL: func @grouped_matmul
// CHECK-SAME: (%[[ROWS:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<4x32x64xbf16>, %[[OFF:.*]]: tensor<5xi32>)
// grouped_matmul goes through moe.expert_matmul's lowering: rows of no
// expert are zero.
// CHECK: %[[INIT:.*]] = linalg.fill {{.*}} -> tensor<?x32xf32>
// CHECK: %[[C4:.*]] = arith.constant 4 : index
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %[[C4]] {{.*}} iter_args(%{{.*}} = %[[INIT]])
// CHECK: tensor.extract %[[OFF]][%[[E]]]
// CHECK: tensor.extract %[[OFF]][%{{.*}}]
// CHECK: func.call @moe_report_runtime_error
// CHECK: %[[BEGIN:.*]] = arith.minsi
// CHECK: %[[END:.*]] = arith.minsi
// CHECK: %[[COUNT:.*]] = arith.subi %[[END]], %[[BEGIN]]
// CHECK: %[[HAS_ROWS:.*]] = arith.cmpi sgt, %[[COUNT]]
// CHECK: scf.if %[[HAS_ROWS]] -> (tensor<?x32xf32>)
// CHECK: %[[WE:.*]] = tensor.extract_slice %[[W]][%[[E]], 0, 0] [1, 32, 64] [1, 1, 1] : tensor<4x32x64xbf16> to tensor<32x64xbf16>
// CHECK: %[[WT:.*]] = linalg.transpose ins(%[[WE]] : tensor<32x64xbf16>) outs(%{{.*}} : tensor<64x32xbf16>) permutation = [1, 0]
// CHECK: scf.for %[[R:.*]] = %[[BEGIN]] to %{{.*}} step %{{.*}}
// CHECK: %[[BLOCK:.*]] = tensor.extract_slice %[[ROWS]][%[[R]], 0] [8, 64] [1, 1] : tensor<?x64xbf16> to tensor<8x64xbf16>
// CHECK: %[[ZERO:.*]] = linalg.fill {{.*}} -> tensor<8x32xf32>
// CHECK: linalg.matmul ins(%[[BLOCK]], %[[WT]] : tensor<8x64xbf16>, tensor<64x32xbf16>) outs(%[[ZERO]] : tensor<8x32xf32>)
// CHECK: tensor.insert_slice %{{.*}} into %{{.*}}[%[[R]], 0] [8, 32] [1, 1]
// CHECK: scf.for %[[R1:.*]] = %{{.*}} to %[[END]] step %{{.*}}
// CHECK: tensor.extract_slice %[[ROWS]][%[[R1]], 0] [1, 64] [1, 1] : tensor<?x64xbf16> to tensor<1x64xbf16>
// CHECK: linalg.matmul {{.*}} -> tensor<1x32xf32>
// CHECK: } else {
// CHECK: scf.yield %{{.*}} : tensor<?x32xf32>
// CHECK-NOT: moe.
// BLOCK4-LABEL: func @grouped_matmul
// BLOCK4: tensor.extract_slice %{{.*}}[%{{.*}}, 0] [4, 64] [1, 1] : tensor<?x64xbf16> to tensor<4x64xbf16>
func.func @grouped_matmul(%rows: tensor<?x64xbf16>, %w: tensor<4x32x64xbf16>, %o: tensor<5xi32>) -> tensor<?x32xf32> {
  %0 = moe.grouped_matmul %rows, %w, %o : tensor<?x64xbf16>, tensor<4x32x64xbf16>, tensor<5xi32> -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// With a bias, each matmul starts from the expert's bias row broadcast over
// its rows instead of zeros.
// CHECK-LABEL: func @grouped_matmul_bias
// CHECK-SAME: %[[B:[^:]*]]: tensor<4x32xf32>)
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %{{.*}} {{.*}} iter_args
// CHECK: %[[BE:.*]] = tensor.extract_slice %[[B]][%[[E]], 0] [1, 32] [1, 1] : tensor<4x32xf32> to tensor<32xf32>
// CHECK: scf.for
// CHECK: %[[BIAS8:.*]] = linalg.broadcast ins(%[[BE]] : tensor<32xf32>) outs(%{{.*}} : tensor<8x32xf32>) dimensions = [0]
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<8x64xbf16>, tensor<64x32xbf16>) outs(%[[BIAS8]] : tensor<8x32xf32>)
// CHECK: scf.for
// CHECK: %[[BIAS1:.*]] = linalg.broadcast ins(%[[BE]] : tensor<32xf32>) outs(%{{.*}} : tensor<1x32xf32>) dimensions = [0]
// CHECK: linalg.matmul {{.*}} outs(%[[BIAS1]] : tensor<1x32xf32>)
func.func @grouped_matmul_bias(%rows: tensor<?x64xbf16>, %w: tensor<4x32x64xbf16>, %o: tensor<5xi32>, %b: tensor<4x32xf32>) -> tensor<?x32xf32> {
  %0 = moe.grouped_matmul %rows, %w, %o bias(%b : tensor<4x32xf32>) : tensor<?x64xbf16>, tensor<4x32x64xbf16>, tensor<5xi32> -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// A bf16 result is converted from the f32 accumulator after the contraction.
// CHECK-LABEL: func @grouped_matmul_bf16_result
// CHECK: linalg.matmul {{.*}} outs(%{{.*}} : tensor<8x32xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : tensor<8x32xf32>) outs(%{{.*}} : tensor<8x32xbf16>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @grouped_matmul_bf16_result(%rows: tensor<?x64xbf16>, %w: tensor<4x32x64xbf16>, %o: tensor<5xi32>) -> tensor<?x32xbf16> {
  %0 = moe.grouped_matmul %rows, %w, %o : tensor<?x64xbf16>, tensor<4x32x64xbf16>, tensor<5xi32> -> tensor<?x32xbf16>
  return %0 : tensor<?x32xbf16>
}

// -----

// CHECK-LABEL: func @router
// CHECK: %[[ZERO:.*]] = linalg.fill {{.*}} -> tensor<?x8xf32>
// CHECK: %[[LOGITS:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<?x64xbf16>, tensor<8x64xbf16>) outs(%[[ZERO]] : tensor<?x8xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[LOGITS]], %{{.*}} : tensor<?x8xf32>, tensor<8xf32>)
// CHECK: arith.addf
func.func @router(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %0 = moe.router %x, %w bias(%b : tensor<8xf32>) : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// Softmax scores for all tokens, NaN-free keys, then k rounds of an argmax
// per token in which an expert wins only by a strictly greater key.
// CHECK-LABEL: func @topk_softmax_renormalize
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: arith.cmpf uno
// CHECK: arith.select
// CHECK: scf.for %[[TOKEN:[a-z0-9_]+]] =
// CHECK: scf.for %[[SLOT:[a-z0-9_]+]] =
// CHECK: scf.for %[[EXPERT:[a-z0-9_]+]] =
// CHECK: arith.cmpf ogt
// CHECK: tensor.insert %{{.*}} into %{{.*}}[%[[TOKEN]], %[[SLOT]]] : tensor<?x2xi32>
// Renormalization divides by the row sum after selection.
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]}
// CHECK: arith.divf
func.func @topk_softmax_renormalize(%l: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %i = moe.topk softmax %l {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %i : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Grouped selection picks topk_groups groups by their best two keys, then
// restricts the expert argmax to them; the scale multiplies the weights.
// CHECK-LABEL: func @topk_grouped
// CHECK: math.exp
// CHECK: arith.addf
// CHECK: scf.for
// Group scores: 4 groups, each the best two of its 2 members.
// CHECK: scf.for %{{.*}} = %{{.*}} to %c4 {{.*}} -> (tensor<4xf32>)
// CHECK: scf.for %{{.*}} = %{{.*}} to %c2 {{.*}} -> (f32, f32)
// Two rounds pick the best 2 groups.
// CHECK: %[[PICKED:.*]] = scf.for %{{.*}} = %{{.*}} to %c2{{.*}} -> (tensor<4xi1>)
// CHECK: scf.for %{{.*}} = %{{.*}} to %c4 {{.*}} -> (index, f32)
// CHECK: tensor.insert %true into
// CHECK: arith.divui
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK: arith.mulf
func.func @topk_grouped(%l: tensor<?x8xf32>, %b: tensor<8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
  %w, %i = moe.topk sigmoid %l bias(%b : tensor<8xf32>) {k = 3 : i64, num_groups = 4 : i64, topk_groups = 2 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %w, %i : tensor<?x3xf32>, tensor<?x3xi32>
}

// -----

// Counting, prefix sum and a stable scatter of assignment indices; ids
// outside [0, E) are reported and clamped. Rows are gathered, not copied
// by expert.
// CHECK-LABEL: func @permute
// CHECK-DAG: %[[E:.*]] = arith.constant 8 : index
// CHECK: scf.for
// CHECK: arith.cmpi slt
// CHECK: arith.cmpi sge, %{{.*}}, %[[E]]
// CHECK: scf.if
// CHECK: arith.constant 1 : i64
// CHECK: func.call @moe_report_runtime_error
// CHECK: arith.maxsi
// CHECK: arith.minsi
// CHECK: scf.for
// CHECK: scf.for
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : tensor<?xi32>) outs(%{{.*}} : tensor<?x64xf32>)
// CHECK: arith.divui
// CHECK: tensor.extract %{{.*}}[%{{.*}}, %{{.*}}] : tensor<?x64xf32>
func.func @permute(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) -> (tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>) {
  %r, %o, %s = moe.permute %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  return %r, %o, %s : tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
}

// -----

// CHECK-LABEL: func @activation_swiglu
// CHECK: linalg.generic
// CHECK: arith.minimumf
// CHECK: arith.maximumf
// CHECK: arith.minimumf
// CHECK: arith.constant 1.702000e+00 : f32
// CHECK: math.exp
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @activation_swiglu(%h: tensor<?x64xbf16>) -> tensor<?x32xbf16> {
  %0 = moe.activation swiglu %h {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x64xbf16> -> tensor<?x32xbf16>
  return %0 : tensor<?x32xbf16>
}

// -----

// gelu's normal CDF as erfc(-x/√2)/2 (1 + erf(x/√2) cancels in f32 for
// strongly negative x).
// CHECK-LABEL: func @activation_gelu
// CHECK: %[[GATE:.*]] = tensor.extract
// CHECK: %[[SCALE:.*]] = arith.constant -0.707106{{[0-9]*}} : f32
// CHECK: %[[NEG:.*]] = arith.mulf %[[GATE]], %[[SCALE]] : f32
// CHECK: %[[TAIL:.*]] = math.erfc %[[NEG]] : f32
// CHECK: %[[CDF:.*]] = arith.mulf %{{.*}}, %[[TAIL]] : f32
// CHECK: arith.mulf %[[GATE]], %[[CDF]] : f32
func.func @activation_gelu(%h: tensor<?x64xf32>) -> tensor<?x32xf32> {
  %0 = moe.activation gelu_and_mul %h : tensor<?x64xf32> -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

// The inverse permutation is built first (catching repeats), then every
// output element gathers its row.
// CHECK-LABEL: func @unpermute
// CHECK: %[[INIT:.*]] = linalg.fill ins(%{{.*}} : i32) {{.*}} -> tensor<?xi32>
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %[[INIT]])
// CHECK: arith.cmpi ne
// CHECK: func.call @moe_report_runtime_error
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x2x16xf32>)
// CHECK: linalg.index 0
func.func @unpermute(%rows: tensor<?x16xf32>, %s: tensor<?xi32>) -> tensor<?x2x16xf32> {
  %0 = moe.unpermute %rows, %s : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x2x16xf32>
  return %0 : tensor<?x2x16xf32>
}

// -----

// CHECK-LABEL: func @combine
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<?x2x16xf32>, tensor<?x2xf32>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @combine(%y: tensor<?x2x16xf32>, %w: tensor<?x2xf32>) -> tensor<?x16xbf16> {
  %0 = moe.combine %y, %w {routed_scaling_factor = 2.5 : f32} : tensor<?x2x16xf32>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// -----

// moe.add_shared_experts: one generic per result over [M, k + S]; a routed
// column copies its input (a shared column reads column 0 and drops it), a
// shared column k + s holds expert E + s and weight 1 or sigmoid(gate).
// CHECK-LABEL: func @add_shared_experts
// CHECK-SAME: (%[[W:.*]]: tensor<?x4xf32>, %[[IDS:.*]]: tensor<?x4xi32>, %[[G:.*]]: tensor<?x1xf32>)
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x6xi32>)
// CHECK: %[[ROW:.*]] = linalg.index 0
// CHECK: %[[COL:.*]] = linalg.index 1
// CHECK: %[[ROUTED:.*]] = arith.cmpi ult, %[[COL]], %c4
// CHECK: %[[SRC:.*]] = arith.select %[[ROUTED]], %[[COL]], %c0
// CHECK: %[[ID:.*]] = tensor.extract %[[IDS]][%[[ROW]], %[[SRC]]]
// CHECK: %[[SHARED:.*]] = arith.addi %[[COL]], %c56
// CHECK: %[[SHARED32:.*]] = arith.index_cast %[[SHARED]] : index to i32
// CHECK: arith.select %[[ROUTED]], %[[ID]], %[[SHARED32]] : i32
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x6xf32>)
// CHECK: %[[ROW2:.*]] = linalg.index 0
// CHECK: %[[WEIGHT:.*]] = tensor.extract %[[W]]
// CHECK: %[[LOGIT:.*]] = tensor.extract %[[G]][%[[ROW2]], %c0
// CHECK: arith.negf %[[LOGIT]]
// CHECK: math.exp
// CHECK: %[[SIGMOID:.*]] = arith.divf
// CHECK: arith.select %{{.*}}, %[[WEIGHT]], %[[SIGMOID]] : f32
func.func @add_shared_experts(%w: tensor<?x4xf32>, %ids: tensor<?x4xi32>, %g: tensor<?x1xf32>) -> (tensor<?x6xf32>, tensor<?x6xi32>) {
  %0:2 = moe.add_shared_experts %w, %ids gate(%g : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 2 : i64} : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x6xf32>, tensor<?x6xi32>
  return %0#0, %0#1 : tensor<?x6xf32>, tensor<?x6xi32>
}

// -----

// moe.shared_expert_routing: one generic per result over [M, S]; column s
// holds shared expert s, with weight sigmoid(gate) of its row.
// CHECK-LABEL: func @shared_expert_routing
// CHECK-SAME: (%[[W:.*]]: tensor<?x4xf32>, %[[G:.*]]: tensor<?x1xf32>)
// CHECK: %[[M:.*]] = tensor.dim %[[W]], %c0
// CHECK: tensor.empty(%[[M]]) : tensor<?x2xi32>
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x2xi32>)
// CHECK-DAG: %[[COL:.*]] = linalg.index 1
// CHECK: %[[ID:.*]] = arith.index_cast %[[COL]] : index to i32
// CHECK: linalg.yield %[[ID]] : i32
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x2xf32>)
// CHECK-DAG: %[[ROW:.*]] = linalg.index 0
// CHECK: %[[LOGIT:.*]] = tensor.extract %[[G]][%[[ROW]], %c0
// CHECK: arith.negf %[[LOGIT]]
// CHECK: math.exp
// CHECK: %[[SIGMOID:.*]] = arith.divf
// CHECK: linalg.yield %[[SIGMOID]] : f32
func.func @shared_expert_routing(%w: tensor<?x4xf32>, %g: tensor<?x1xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %0:2 = moe.shared_expert_routing %w gate(%g : tensor<?x1xf32>) {num_shared = 2 : i64} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %0#0, %0#1 : tensor<?x2xf32>, tensor<?x2xi32>
}
