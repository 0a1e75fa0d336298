// moe-compile of an fp8 expert block with per-tensor scales: each dynamic
// quantization is two launches after zeroing its amax word, the amax kernel
// (a grid of at most 264 blocks; between the GEMMs it also takes the padded
// count and the slots, to skip what GEMM1 never wrote) and the
// quantization kernel, which reads the word; GEMM1 gathers the codes of the
// token rows. The source compiles and the PTX has the atomic max.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name fp8_tensor --num-tokens 64 --ptx %t/fp8_tensor.ptx
// RUN: FileCheck %s --check-prefix=SOURCE < %t/fp8_tensor.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/fp8_tensor.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/fp8_tensor.cpp

// SOURCE: const char *const kKernelNames[] = {"align", "quantize_amax", "quantize", "expert_matmul", "quantize_amax_0", "quantize_0", "expert_matmul_0", "combine_finalize", };
// SOURCE: // moe.quantize
// SOURCE: // amax word of the per-tensor quantization
// SOURCE-NEXT: moe_rt_memset_zero_async((base + plan.offsets[[[WORD:[0-9]+]]]), 4, stream)
// SOURCE: Memref<2> memref{{[0-9]+}} = {static_cast<char *>(const_cast<void *>(arg0)), {{.*}}, 0, {numTokens, 256}
// SOURCE: Memref<1> memref{{[0-9]+}} = {(base + plan.offsets[[[WORD]]]), {{.*}}, 0, {1}, {1}};
// SOURCE: launch(kernels, 1, {std::min<int64_t>(((numTokens) + 3) / 4, 264), 1, 1}, 128, 0, stream,
// SOURCE: Memref<1> memref{{[0-9]+}} = {(base + plan.offsets[[[WORD]]]), {{.*}}, 0, {1}, {1}};
// SOURCE-NEXT: .add(memref
// SOURCE-NEXT: launch(kernels, 2, {((numTokens) + 3) / 4, 1, 1}, 128, 0, stream,
// SOURCE: // moe.expert_matmul
// SOURCE: // moe.quantize
// SOURCE: moe_rt_memset_zero_async((base + plan.offsets[[[WORD2:[0-9]+]]]), 4, stream)
// SOURCE: Memref<1> memref{{[0-9]+}} = {(base + plan.offsets[[[WORD2]]]), {{.*}}, 0, {1}, {1}};
// SOURCE-NEXT: .add(memref
// SOURCE-NEXT: Memref<1> memref{{[0-9]+}} = {(base + plan.offsets[{{[0-9]+}}]), {{.*}}, 0, {1}, {1}};
// SOURCE-NEXT: .add(memref
// SOURCE-NEXT: Memref<1> memref{{[0-9]+}} = {(base + plan.offsets[{{[0-9]+}}]), {{.*}}, 0, {((numTokens) * 2 + 504)}, {1}};
// SOURCE-NEXT: .add(memref
// SOURCE-NEXT: launch(kernels, 4, {std::min<int64_t>(
// SOURCE: launch(kernels, 5, {
// SOURCE: // moe.expert_matmul (combine)

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
