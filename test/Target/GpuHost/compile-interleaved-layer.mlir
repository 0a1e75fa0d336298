// moe-compile of a GPT-OSS block whose gate and up weight rows alternate
// (its checkpoint layout): the host views GEMM1's [E, N, K] weights as
// [E, N/2, 2K] row pairs for the TMA descriptor (a gate row and its up row
// side by side), GEMM2's weights keep the plain view, and the source
// compiles.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name block --num-tokens 64 --ptx %t/block.ptx --kernels %t/host.mlir
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/block.cpp

// HOST-LABEL: func.func @moe_layer_block(
// HOST-SAME: %[[W13:[a-z0-9]+]]: memref<4x128x128xbf16>, %[[W2:[a-z0-9]+]]: memref<4x128x64xbf16>,
// HOST: %[[FLAT:.+]] = memref.collapse_shape %[[W13]] {{\[}}[0, 1, 2]] : memref<4x128x128xbf16> into memref<65536xbf16>
// HOST: %[[ROWS:.+]] = memref.expand_shape %[[FLAT]] {{\[}}[0, 1, 2]] output_shape [4, 64, 256] : memref<65536xbf16> into memref<4x64x256xbf16>
// HOST: %[[MAP1:.+]] = moe_gpu.tensor_map %[[ROWS]]
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul {{.*}} args({{.*}}, %[[MAP1]] : !llvm.ptr,
// HOST-NOT: memref.expand_shape
// HOST: %[[MAP2:.+]] = moe_gpu.tensor_map %[[W2]]
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 {{.*}} args({{.*}}, %[[MAP2]] : !llvm.ptr,

func.func @block(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<4x128x128xbf16>, %w2: tensor<4x128x64xbf16>, %b13: tensor<4x128xf32>, %b2: tensor<4x128xf32>) -> tensor<?x128xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<5xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets bias(%b13 : tensor<4x128xf32>) : tensor<?x128xbf16>, tensor<4x128x128xbf16>, tensor<5xi32> -> tensor<?x128xbf16>
  %act = moe.activation swiglu interleaved %gate_up {alpha = 1.702 : f32, limit = 7.0 : f32} : tensor<?x128xbf16> -> tensor<?x64xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets bias(%b2 : tensor<4x128xf32>) : tensor<?x64xbf16>, tensor<4x128x64xbf16>, tensor<5xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
