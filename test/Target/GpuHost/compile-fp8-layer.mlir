// moe-compile of a w8a8 (fp8, 128x128 block scales) expert block: the
// activation quantization runs before GEMM1 (gathered by token) and between
// the GEMMs (rows bounded by the blocks that can hold an assignment), the
// weights' TMA descriptors have 1-byte elements and 128-element boxes, and
// the scales follow the descriptor among the kernel parameters; the source
// compiles and the PTX has the e4m3 wgmma.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name fp8_block --num-tokens 64 --ptx %t/fp8_block.ptx
// RUN: FileCheck %s --check-prefix=SOURCE < %t/fp8_block.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/fp8_block.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/fp8_block.cpp

// SOURCE: const char *const kKernelNames[] = {"align", "quantize", "expert_matmul", "quantize_0", "expert_matmul_0", "combine_finalize", };
// SOURCE: // moe.quantize
// SOURCE: launch(kernels, 1, {((numTokens) + 3) / 4, 1, 1}, 128, 0, stream,
// SOURCE: // moe.expert_matmul
// SOURCE: moe_rt_encode_tma_2d(&map[[GEMM1:[0-9]+]], const_cast<void *>(arg3), 2048, 256, 1, 64, 128)
// SOURCE: .add(map[[GEMM1]]);
// SOURCE-NEXT: Memref<2> memref{{[0-9]+}} = {(base + plan.offsets[{{[0-9]+}}]), {{.*}}, 0, {numTokens, 2}, {(1) * (2), 1}};
// SOURCE-NEXT: .add(memref
// SOURCE-NEXT: Memref<3> memref{{[0-9]+}} = {static_cast<char *>(const_cast<void *>(arg4)), {{.*}}, 0, {8, 2, 2}, {((1) * (2)) * (2), (1) * (2), 1}};
// SOURCE: // moe.quantize
// SOURCE: launch(kernels, 3, {(((std::min<int64_t>(((((numTokens) * 2 + 504)) + 63) / 64, ((((numTokens) * 2 + 504)) - 504) / 64 + std::min<int64_t>(8, ((((numTokens) * 2 + 504)) - 504)))) * 64) + 3) / 4, 1, 1}, 128, 0, stream,
// SOURCE: // moe.expert_matmul (combine)
// SOURCE: moe_rt_encode_tma_2d(&map{{[0-9]+}}, const_cast<void *>(arg5), 2048, 128, 1, 128, 128)

// PTX: .entry quantize(
// PTX: cvt.rn.satfinite.e4m3x2.f32
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3

func.func @fp8_block(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x256xf8E4M3FN>, %w13_scales: tensor<8x2x2xf32>, %w2: tensor<8x256x128xf8E4M3FN>, %w2_scales: tensor<8x2x1xf32>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %gate_up = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<?x2xf32>) weight_scales(%w13_scales : tensor<8x2x2xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xf32> -> tensor<?x128xbf16>
  %act_codes, %act_scales = moe.quantize %act {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<?x1xf32>
  %down = moe.grouped_matmul %act_codes, %w2, %offsets input_scales(%act_scales : tensor<?x1xf32>) weight_scales(%w2_scales : tensor<8x2x1xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xf8E4M3FN>, tensor<8x256x128xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x256xf32>, tensor<?xi32> -> tensor<?x2x256xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x256xf32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}

// q expert block: E=8, k=2, H=256, I=128, softmax routing, silu_and_mul, int4_g32_zp weights.
