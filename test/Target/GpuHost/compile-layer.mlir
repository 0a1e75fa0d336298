// moe-compile: the GPU pipeline, an sm_90a cubin, and the host source that
// launches every kernel through the runtime; the source compiles.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name block --num-tokens 64 --ptx %t/block.ptx
// RUN: FileCheck %s --check-prefix=HEADER < %t/block.h
// RUN: FileCheck %s --check-prefix=SOURCE < %t/block.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/block.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/block.cpp

// HEADER: int moe_layer_block(const void *arg0, const void *arg1, const void *arg2, const void *arg3, const void *arg4, void *result0, int64_t numTokens, void *workspace, size_t workspaceBytes, CUstream stream);
// HEADER: size_t moe_layer_block_workspace_bytes(int64_t numTokens);
// HEADER: int moe_layer_block_invalid_ids(const void *workspace, int64_t numTokens,

// The kernels in launch order; align, GEMM1, zeroed sums, GEMM2, finalize.
// SOURCE: const char *const kKernelNames[] = {"align", "expert_matmul", "expert_matmul_0", "combine_finalize", };
// SOURCE: extern "C" int moe_layer_block(
// SOURCE: if (numTokens == 0)
// SOURCE: // moe.align
// SOURCE: Memref<2> memref{{[0-9]+}} = {static_cast<char *>(const_cast<void *>(arg1)), {{.*}}, 0, {numTokens, 2}, {(1) * (2), 1}};
// SOURCE: Memref<1> memref{{[0-9]+}} = {{.*}}{((numTokens) * 2 + 504)}, {1}};
// SOURCE: launch(kernels, 0, {1, 1, 1}, 1024, 0, stream,
// SOURCE: // moe.expert_matmul
// SOURCE: CUtensorMap map[[GEMM1:[0-9]+]];
// SOURCE-NEXT: moe_rt_encode_tma_2d(&map[[GEMM1]], const_cast<void *>(arg3), 2048, 128, 2, [[BOX1:[0-9]+]], 64)
// SOURCE: .add(map[[GEMM1]]);
// SOURCE: launch(kernels, 1, {std::min<int64_t>(((((numTokens) * 2 + 504)) + 63) / 64, ((((numTokens) * 2 + 504)) - 504) / 64 + std::min<int64_t>(8, ((((numTokens) * 2 + 504)) - 504))), {{[0-9]+}}, 1}, 128,
// SOURCE: // moe.expert_matmul (combine)
// SOURCE: CUtensorMap map[[GEMM2:[0-9]+]];
// SOURCE-NEXT: moe_rt_encode_tma_2d(&map[[GEMM2]], const_cast<void *>(arg4), 1024, 128, 2, {{64|128|256}}, 64)
// SOURCE: moe_rt_memset_zero_async((base + plan.offsets[{{[0-9]+}}]), int64_t(1) * (numTokens) * (128) * 4, stream)
// SOURCE: launch(kernels, 2, {std::min<int64_t>(((((numTokens) * 2 + 504)) + 63) / 64,
// SOURCE: Memref<2> memref{{[0-9]+}} = {static_cast<char *>(result0),
// SOURCE: launch(kernels, 3, {numTokens, 1, 1}, 256, 0, stream,

// PTX: .target sm_90a
// PTX-DAG: .entry align(
// PTX-DAG: .entry expert_matmul(
// PTX-DAG: .entry expert_matmul_0(
// PTX-DAG: .entry combine_finalize(
// PTX-DAG: wgmma.mma_async.sync.aligned
// PTX-DAG: cp.async.bulk.tensor.2d
// PTX-DAG: cp.async.ca.shared.global

func.func @block(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
