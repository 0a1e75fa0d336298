// Inputs of the crash classes of issue 13 (mutated IR that crashed the CPU
// pipeline, moe-run or moe-compile) now stop at the verifier with a located
// diagnostic and a non-zero exit, in every tool that reads IR.
// RUN: not moe-opt %s -split-input-file --moe-cpu-pipeline 2>&1 | FileCheck %s
// RUN: not moe-compile %s -o %t 2>&1 | FileCheck %s --check-prefix=COMPILE
// RUN: not moe-run %s --entry=no_choices --target=cpu --random --seed=1 2>&1 | FileCheck %s --check-prefix=EXEC

// Class 1: k = 0 (SIGSEGV in linalg tiling).
// CHECK: crash-classes.mlir:[[# @LINE + 4]]:{{[0-9]+}}: error: 'moe.permute' op expects k >= 1 experts per token (dimension 1 of ids), got 'tensor<?x0xi32>'
// COMPILE: crash-classes.mlir:[[# @LINE + 3]]:{{[0-9]+}}: error: 'moe.permute' op expects k >= 1
// EXEC: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.permute' op expects k >= 1
func.func @no_choices(%x: tensor<?x256xbf16>, %ids: tensor<?x0xi32>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x0xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  return %rows : tensor<?x256xbf16>
}

// -----

// Class 2: huge static sizes the lowerings allocate from (SIGSEGV after an
// unchecked allocation failure).
// CHECK: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.sort' op expects offsets of size E + 1 with 1 <= E <= 65536 experts, got 'tensor<1099511627776xi32>'
func.func @huge_offsets(%ids: tensor<?x2xi32>) -> tensor<1099511627776xi32> {
  %o, %s = moe.sort %ids : tensor<?x2xi32> -> tensor<1099511627776xi32>, tensor<?xi32>
  return %o : tensor<1099511627776xi32>
}

// -----

// CHECK: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.align' op expects num_experts <= 65536 and block_m <= 4096, got 2147483648 and 16
func.func @huge_experts(%ids: tensor<?x2xi32>) -> tensor<?xi32> {
  %s, %b, %p = moe.align %ids {block_m = 16 : i64, num_experts = 2147483648 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return %s : tensor<?xi32>
}

// -----

// Class 3: block_m = 2^63 - 1 (std::length_error in moe-run).
// CHECK: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.align' op expects num_experts <= 65536 and block_m <= 4096, got 8 and 9223372036854775807
func.func @huge_block(%ids: tensor<?x2xi32>) -> tensor<?xi32> {
  %s, %b, %p = moe.align %ids {block_m = 9223372036854775807 : i64, num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
  return %s : tensor<?xi32>
}

// -----

// Class 4: per-token scales typed tensor<1xf32> for a dynamic row count
// (heap corruption in moe-run).
// CHECK: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.quantize' op expects scales of shape [?] for #moe.quant<int8, scales = per_token_channel>, got 'tensor<1xf32>'
func.func @static_one_scales(%x: tensor<?x256xbf16>) -> tensor<?x256xi8> {
  %c, %s = moe.quantize %x {quantization = #moe.quant<int8, scales = per_token_channel>} : tensor<?x256xbf16> -> tensor<?x256xi8>, tensor<1xf32>
  return %c : tensor<?x256xi8>
}

// -----

// Class 5: per-tensor scales typed tensor<?xf32> feeding a per-token matmul
// (heap corruption after an offsets error in moe-run).
// CHECK: crash-classes.mlir:[[# @LINE + 3]]:{{[0-9]+}}: error: 'moe.quantize' op expects scales of shape [1] for #moe.quant<fp8, scales = per_tensor>, got 'tensor<?xf32>'
// CHECK-NOT: error
func.func @per_tensor_scales_per_token_matmul(%x: tensor<?x64xbf16>, %w: tensor<8x128x64xf8E4M3FN>, %o: tensor<9xi32>, %ws: tensor<8x128xf32>) -> tensor<?x128xf32> {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x64xbf16> -> tensor<?x64xf8E4M3FN>, tensor<?xf32>
  %0 = moe.grouped_matmul %c, %w, %o input_scales(%s : tensor<?xf32>) weight_scales(%ws : tensor<8x128xf32>) {quantization = #moe.quant<fp8, scales = per_token_channel>} : tensor<?x64xf8E4M3FN>, tensor<8x128x64xf8E4M3FN>, tensor<9xi32> -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}

// -----

// Found by scripts/fuzz.py --seed 11 (mutant 7386): an aligned matmul with
// block_m = 2^63 - 1 made moe-run run past the fuzzer's 60 s.
// CHECK: crash-classes.mlir:[[# @LINE + 2]]:{{[0-9]+}}: error: 'moe.expert_matmul' op expects block_m <= 4096, the limit of moe.align, got 9223372036854775807
func.func @aligned_huge_block(%h: tensor<?x32xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %rw: tensor<?x2xf32>, %w2: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  %out = moe.expert_matmul %h, %w2 slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>) combine(%rw : tensor<?x2xf32>) {k = 2 : i64, block_m = 9223372036854775807 : i64, routed_scaling_factor = 2.5 : f32} : tensor<?x32xbf16>, tensor<8x64x32xbf16> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}
