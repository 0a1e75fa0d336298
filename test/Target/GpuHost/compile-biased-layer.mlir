// moe-compile of a block with per-expert biases (GPT-OSS): each biased
// GEMM's launch passes the bias table after the weights' descriptor, the
// header documents the tables, and the source compiles.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name block --num-tokens 64 --ptx %t/block.ptx --kernels %t/host.mlir
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=HEADER < %t/block.h
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/block.cpp

// HOST-LABEL: func.func @moe_layer_block(
// HOST-SAME: %[[W13:[a-z0-9]+]]: memref<4x128x128xbf16>, %[[W2:[a-z0-9]+]]: memref<4x128x64xbf16>,
// HOST-SAME: %[[B13:[a-z0-9]+]]: memref<4x128xf32>, %[[B2:[a-z0-9]+]]: memref<4x128xf32>,
// HOST: %[[MAP1:.+]] = moe_gpu.tensor_map %[[W13]]
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul {{.*}} args({{.*}}, %[[MAP1]] : !llvm.ptr, %[[B13]] : memref<4x128xf32>, %{{[0-9a-z_]+}} : memref<?x64xbf16>, %{{[a-z0-9]+}} : memref<?x2xi32>, %{{[0-9]+}} : memref<1xi32>, %[[SUMS:[0-9]+]] : memref<?x128xf32>)
// HOST: %[[MAP2:.+]] = moe_gpu.tensor_map %[[W2]]
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 {{.*}} args({{.*}}, %[[MAP2]] : !llvm.ptr, %[[B2]] : memref<4x128xf32>, %{{.*}} : memref<?x2xf32>, %[[SUMS]] : memref<?x128xf32>)

// HEADER: ///   const void *b13: float [4][128], row-major,
// HEADER: ///   const void *b2: float [4][128], row-major,
// HEADER: int32_t moe_layer_block(const void* x, const void* ids, const void* weights, const void* w13, const void* w2, const void* b13, const void* b2, void* result,

func.func @block(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<4x128x128xbf16>, %w2: tensor<4x128x64xbf16>, %b13: tensor<4x128xf32>, %b2: tensor<4x128xf32>) -> tensor<?x128xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<5xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets bias(%b13 : tensor<4x128xf32>) : tensor<?x128xbf16>, tensor<4x128x128xbf16>, tensor<5xi32> -> tensor<?x128xbf16>
  %act = moe.activation swiglu %gate_up {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x128xbf16> -> tensor<?x64xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets bias(%b2 : tensor<4x128xf32>) : tensor<?x64xbf16>, tensor<4x128x64xbf16>, tensor<5xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
