// RUN: moe-opt %s -split-input-file -verify-diagnostics '-moe-expert-parallel=ranks=2 placement=%S/Inputs/plan-2x3.json'
// RUN: not moe-opt %s -split-input-file '-moe-expert-parallel=ranks=0 realization=allgather' 2>&1 | FileCheck %s --check-prefix=RANKS
// RUN: not moe-opt %s -split-input-file '-moe-expert-parallel=ranks=2 realization=ring' 2>&1 | FileCheck %s --check-prefix=REALIZATION
// RUN: not moe-opt %s -split-input-file '-moe-expert-parallel=ranks=2 placement=%S/Inputs/missing.json' 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not moe-opt %s -split-input-file '-moe-expert-parallel=ranks=2 placement=%S/Inputs/plan-3x2.json' 2>&1 | FileCheck %s --check-prefix=MISMATCH
// RUN: not moe-opt %s -split-input-file '-moe-expert-parallel=ranks=2 placement=%s' 2>&1 | FileCheck %s --check-prefix=NOTJSON

// RANKS: error: moe-expert-parallel: expects ranks >= 1 and realization=allgather|all_to_all, got ranks=0 realization=allgather
// REALIZATION: error: moe-expert-parallel: expects ranks >= 1 and realization=allgather|all_to_all, got ranks=2 realization=ring
// MISSING: error: moe-expert-parallel: cannot read the placement plan '{{.*}}missing.json'
// MISMATCH: error: moe-expert-parallel: the plan '{{.*}}plan-3x2.json' places 3 ranks, but ranks=2
// NOTJSON: error: moe-expert-parallel: '{{.*}}expert-parallel-invalid.mlir' is not JSON

// A w8a8 GEMM1 would need its token scales dispatched with the rows.
func.func @w8a8(%codes: tensor<?x128xi8>, %scales: tensor<?xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x16x128xi8>, %ws: tensor<4x16xf32>) -> tensor<?x16xbf16> {
  // expected-error @+1 {{moe-expert-parallel: cannot distribute this expert block: w8a8 activations (input scales) cannot be dispatched}}
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<5xi32>, tensor<?xi32>
  %out = moe.expert_matmul %codes, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<5xi32>) combine(%w : tensor<?x2xf32>)
      input_scales(%scales : tensor<?xf32>) weight_scales(%ws : tensor<4x16xf32>)
      {gather, k = 2 : i64, quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x128xi8>, tensor<4x16x128xi8> -> tensor<?x16xbf16>
  return %out : tensor<?x16xbf16>
}

// -----

// The weights must be arguments, so that each rank can take its slice.
// expected-error @+1 {{moe-expert-parallel: the expert operand #1 of}}
func.func @computed_weights(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  %w1n = arith.negf %w1 : tensor<4x16x16xf32>
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<5xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1n slots(%src : tensor<?xi32>) offsets(%off : tensor<5xi32>) combine(%w : tensor<?x2xf32>) {gather, k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16x16xf32> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// An expert argument that the block shares with other code keeps its
// global shape there.
// expected-error @+1 {{moe-expert-parallel: the expert argument #3 has uses outside the expert block}}
func.func @shared_weights(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %w1: tensor<4x16x16xf32>) -> (tensor<?x16xf32>, tensor<4x16x16xf32>) {
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<5xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<5xi32>) combine(%w : tensor<?x2xf32>) {gather, k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16x16xf32> -> tensor<?x16xf32>
  return %out, %w1 : tensor<?x16xf32>, tensor<4x16x16xf32>
}

// -----

// Rows in schedule order that leave the block cannot be returned.
func.func @no_combine(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w1: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{moe-expert-parallel: cannot distribute this expert block: its first matmul must gather token rows and its last combine them}}
  %off, %src = moe.sort %ids : tensor<?x2xi32> -> tensor<5xi32>, tensor<?xi32>
  %out = moe.expert_matmul %x, %w1 slots(%src : tensor<?xi32>) offsets(%off : tensor<5xi32>) {gather, k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16x16xf32> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}
