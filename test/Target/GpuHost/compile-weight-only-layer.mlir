// moe-compile of a weight-only (int4, groups of 32, zero points) expert
// block: no TMA descriptor; the stored codes go to the kernels as a
// [E·N, K/2] byte matrix, then their scales and zeros; the source compiles
// and the PTX has the bf16 wgmma.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name int4_block --num-tokens 64 --ptx %t/int4_block.ptx --kernels %t/host.mlir
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=SOURCE < %t/int4_block.cpp
// RUN: not grep -q moe_rt_launcher_encode_tma_2d %t/int4_block.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/int4_block.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/int4_block.cpp

// SOURCE: static const char* kKernelNames[6] = {"align_count", "align_scatter", "align", "expert_matmul", "expert_matmul_0", "combine_finalize", };

// Weight-only codes are read by cp.async as an [E·N, stored K] byte matrix,
// beside their group scales and zero points; no TMA descriptor.
// HOST-LABEL: func.func @moe_layer_int4_block(
// HOST-SAME: %[[W13:[a-z0-9]+]]: memref<8x256x128xi8>, %[[S13:[a-z0-9]+]]: memref<8x256x8xf32>, %[[Z13:[a-z0-9]+]]: memref<8x256x8xi8>
// HOST-NOT: moe_gpu.tensor_map
// HOST: %[[CODES:.+]] = memref.collapse_shape %[[W13]] {{\[\[}}0, 1], [2]] : memref<8x256x128xi8> into memref<2048x128xi8>
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul {{.*}} %[[CODES]] : memref<2048x128xi8>, %[[S13]] : memref<8x256x8xf32>, %[[Z13]] : memref<8x256x8xi8>, %{{.+}} : memref<?x128xbf16>)
// HOST-NOT: moe_gpu.tensor_map
// HOST: memref.collapse_shape %{{.+}} {{\[\[}}0, 1], [2]] : memref<8x256x64xi8> into memref<2048x64xi8>

// PTX: .entry expert_matmul(
// PTX-NOT: cp.async.bulk.tensor
// PTX: wgmma.mma_async.sync.aligned.m64n{{[0-9]+}}k16.f32.bf16.bf16

func.func @int4_block(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xui8>, %w13_scales: tensor<8x256x8xf32>, %w13_zeros: tensor<8x256x8xui8>, %w2: tensor<8x256x64xui8>, %w2_scales: tensor<8x256x4xf32>, %w2_zeros: tensor<8x256x4xui8>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets weight_scales(%w13_scales : tensor<8x256x8xf32>) weight_zeros(%w13_zeros : tensor<8x256x8xui8>) {quantization = #moe.quant<int4_weight, group = 32, zero_point = true>} : tensor<?x256xbf16>, tensor<8x256x128xui8>, tensor<9xi32> -> tensor<?x256xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xf32> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets weight_scales(%w2_scales : tensor<8x256x4xf32>) weight_zeros(%w2_zeros : tensor<8x256x4xui8>) {quantization = #moe.quant<int4_weight, group = 32, zero_point = true>} : tensor<?x128xbf16>, tensor<8x256x64xui8>, tensor<9xi32> -> tensor<?x256xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x256xf32>, tensor<?xi32> -> tensor<?x2x256xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x256xf32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}

