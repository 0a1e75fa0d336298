// moe-compile of an fp8 expert block with per-tensor scales: each dynamic
// quantization is two launches after zeroing its amax word, the amax kernel
// (a grid of at most 264 blocks; between the GEMMs it also takes the padded
// count and the slots, to skip what GEMM1 never wrote) and the
// quantization kernel, which reads the word; GEMM1 gathers the codes of the
// token rows. The source compiles and the PTX has the atomic max.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name fp8_tensor --num-tokens 64 --ptx %t/fp8_tensor.ptx --kernels %t/host.mlir --dependent-launch=false
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=SOURCE < %t/fp8_tensor.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/fp8_tensor.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/fp8_tensor.cpp

// SOURCE: static const char* kKernelNames[10] = {"align_count", "align_scatter", "align", "quantize_amax", "quantize", "expert_matmul", "quantize_amax_0", "quantize_0", "expert_matmul_0", "combine_finalize", };

// Per tensor: the amax of all rows into a zeroed word first, then the codes
// with that word's scale.
// HOST-LABEL: func.func @moe_layer_fp8_tensor(
// HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x256xbf16>
// HOST: %[[CODES:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x256xi8>
// HOST-NEXT: %[[SCALE:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<1xf32>
// HOST: %[[ROWBLOCKS:.+]] = arith.divsi %{{.+}}, %c4 : index
// HOST-NEXT: %[[WORD:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<1xi32>
// HOST-NEXT: moe_gpu.zero %[[WORD]] on %{{.+}} : memref<1xi32>
// HOST-NEXT: %[[AMAXBLOCKS:.+]] = arith.minsi %[[ROWBLOCKS]], %c264 : index
// HOST-NEXT: gpu.launch_func {{.*}} @moe_kernels::@quantize_amax blocks in (%[[AMAXBLOCKS]], %c1, %c1) {{.*}} args(%[[X]] : memref<?x256xbf16>, %[[WORD]] : memref<1xi32>)
// HOST-NEXT: gpu.launch_func {{.*}} @moe_kernels::@quantize blocks in (%[[ROWBLOCKS]], %c1, %c1) {{.*}} args(%[[X]] : memref<?x256xbf16>, %[[CODES]] : memref<?x256xi8>, %[[SCALE]] : memref<1xf32>, %[[WORD]] : memref<1xi32>)
// The intermediate's amax stops at the padded count.
// HOST: %[[WORD2:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<1xi32>
// HOST-NEXT: moe_gpu.zero %[[WORD2]]
// HOST-NEXT: arith.minsi %{{.+}}, %c264 : index
// HOST-NEXT: gpu.launch_func {{.*}} @moe_kernels::@quantize_amax_0 {{.*}} args(%{{.+}} : memref<?x128xbf16>, %[[WORD2]] : memref<1xi32>, %{{.+}} : memref<1xi32>, %{{.+}} : memref<?xi32>)

// PTX: .entry quantize(
// PTX: .entry quantize_amax(
// PTX: atom.global.max.s32
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k32.f32.e4m3.e4m3

func.func @fp8_tensor(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x256xf8E4M3FN>, %w13_scales: tensor<8xf32>, %w2: tensor<8x256x128xf8E4M3FN>, %w2_scales: tensor<8xf32>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<1xf32>
  %gate_up = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<1xf32>) weight_scales(%w13_scales : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xf32> -> tensor<?x128xbf16>
  %act_codes, %act_scales = moe.quantize %act {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<1xf32>
  %down = moe.grouped_matmul %act_codes, %w2, %offsets input_scales(%act_scales : tensor<1xf32>) weight_scales(%w2_scales : tensor<8xf32>) {quantization = #moe.quant<fp8, scales = per_tensor>} : tensor<?x128xf8E4M3FN>, tensor<8x256x128xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x256xf32>, tensor<?xi32> -> tensor<?x2x256xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x256xf32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}
