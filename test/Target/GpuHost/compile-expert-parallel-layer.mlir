// moe-compile of one rank's program of an expert-parallel layer (two ranks,
// allgather): the entry takes the runtime's group before the stream, the
// header declares the group's type without including the runtime, documents
// the parameter and compiles as C and C++ beside the runtime header; the
// source calls the group collectives through the launcher.
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t && moe-opt %s --moe-expert-parallel="ranks=2" -o %t/rank.mlir
// RUN: moe-compile %t/rank.mlir -o %t --name rank --num-tokens 16
// RUN: FileCheck %s --check-prefix=HEADER < %t/rank.h
// RUN: FileCheck %s --check-prefix=CPP < %t/rank.cpp
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/rank.cpp
// RUN: printf '#include "rank.h"\n#include "moe/Runtime/Runtime.h"\n' | cc -x c -std=c11 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include -

// HEADER: typedef struct moe_rt_group moe_rt_group;
// HEADER: ///   const moe_rt_group *group: the expert-parallel group (e.g. moe_rt_group_from_nccl);
// HEADER-NEXT: ///     every rank calls the layer with the same token count
// HEADER-NEXT: ///   CUstream stream: the stream the work is ordered on
// HEADER: int32_t moe_layer_rank({{.*}}, int64_t numTokens, void* workspace, size_t workspaceBytes, const moe_rt_group* group, CUstream stream);

// CPP-LABEL: extern "C" int32_t moe_layer_rank(
// CPP-SAME: const moe_rt_group* [[GROUP:v[0-9]+]], CUstream
// CPP: moe_rt_launcher_store_group_rank([[L:v[0-9]+]], [[GROUP]], {{v[0-9]+}}, {{v[0-9]+}});
// CPP: moe_rt_launcher_all_gather([[L]], [[GROUP]],
// CPP: moe_rt_launcher_all_gather([[L]], [[GROUP]],
// CPP: moe_rt_memref_size(
// CPP: moe_rt_launcher_all_gather([[L]], [[GROUP]],
// CPP: moe_rt_launcher_reduce_scatter_sum_f32([[L]], [[GROUP]],

func.func @layer(%x: tensor<?x128xbf16>, %w_gate: tensor<8x128xbf16>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %logits = moe.router %x, %w_gate : tensor<?x128xbf16>, tensor<8x128xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
