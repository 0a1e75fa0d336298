// moe-compile --token-buckets: one library for every token count. Each
// bucket's variant (tiles chosen for it) is a static function of the one
// source, with its own program; the entry points dispatch on the token count
// to the smallest bucket that holds it, else the largest; the header
// declares the entry points alone; the source compiles.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %moe_src_root/examples/scaled/mixtral_8x7b.mlir -o %t --name mix --token-buckets 256,1,64,64 --ptx %t/mix.ptx
// RUN: FileCheck %s --check-prefix=SOURCE < %t/mix.cpp
// RUN: FileCheck %s --check-prefix=HEADER < %t/mix.h
// RUN: FileCheck %s --check-prefix=PTX < %t/mix.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/mix.cpp
// RUN: not moe-compile %moe_src_root/examples/scaled/mixtral_8x7b.mlir -o %t/bad --token-buckets 0,64 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not moe-compile %moe_src_root/examples/scaled/mixtral_8x7b.mlir -o %t/bad --token-buckets 1,64 --cubin %t/bad.cubin 2>&1 | FileCheck %s --check-prefix=CUBIN
// RUN: not moe-compile %moe_src_root/examples/scaled/mixtral_8x7b.mlir -o %t/bad --token-buckets 1,64 --num-tokens 8 2>&1 | FileCheck %s --check-prefix=BOTH

// SOURCE: #include "mix.h"
// SOURCE: static moe_rt_program kProgram_m1 = {kImage_m1, sizeof(kImage_m1), kKernelNames_m1,
// SOURCE: static int32_t moe_layer_mix_m1(
// SOURCE: static size_t moe_layer_mix_m1_workspace_bytes(
// SOURCE: static int32_t moe_layer_mix_m1_invalid_ids(
// SOURCE: static moe_rt_program kProgram_m64 =
// SOURCE: static int32_t moe_layer_mix_m64(
// SOURCE: static moe_rt_program kProgram_m256 =
// SOURCE: static int32_t moe_layer_mix_m256(
// SOURCE: int32_t moe_layer_mix(const void* [[X:v[0-9]+]], {{.*}}, int64_t [[M:v[0-9]+]], void*
// SOURCE: int64_t [[ONE:v[0-9]+]] = 1;
// SOURCE: bool [[FITS1:v[0-9]+]] = [[M]] <= [[ONE]];
// SOURCE: if ([[FITS1]]) {
// SOURCE: moe_layer_mix_m1([[X]],
// SOURCE: } else {
// SOURCE: int64_t [[SIXTYFOUR:v[0-9]+]] = 64;
// SOURCE: bool [[FITS64:v[0-9]+]] = [[M]] <= [[SIXTYFOUR]];
// SOURCE: if ([[FITS64]]) {
// SOURCE: moe_layer_mix_m64([[X]],
// SOURCE: } else {
// SOURCE: moe_layer_mix_m256([[X]],
// SOURCE-LABEL: size_t moe_layer_mix_workspace_bytes(int64_t
// SOURCE: moe_layer_mix_m1_workspace_bytes(
// SOURCE: moe_layer_mix_m64_workspace_bytes(
// SOURCE: moe_layer_mix_m256_workspace_bytes(
// SOURCE-LABEL: int32_t moe_layer_mix_invalid_ids(
// SOURCE: moe_layer_mix_m1_invalid_ids(
// SOURCE: moe_layer_mix_m64_invalid_ids(
// SOURCE: moe_layer_mix_m256_invalid_ids(

// HEADER-NOT: _m1
// HEADER-NOT: _m64
// HEADER: /// (1, 64, 256), tiled for it; a call runs the smallest bucket at
// HEADER: /// call once with a token count of each bucket the graph will use.
// HEADER: int32_t moe_layer_mix(const void* x, const void* w_gate, const void* w13, const void* w2, void* result, int64_t numTokens, void* workspace, size_t workspaceBytes, CUstream stream);
// HEADER: size_t moe_layer_mix_workspace_bytes(int64_t numTokens);
// HEADER: int32_t moe_layer_mix_invalid_ids(void* workspace, size_t workspaceBytes, int64_t numTokens, CUstream stream, int64_t* count);
// HEADER-NOT: _m256

// PTX: // token-count bucket 1
// PTX: .entry expert_matmul(
// PTX: // token-count bucket 64
// PTX: // token-count bucket 256

// ZERO: error: token-count buckets must be positive, got 0
// CUBIN: moe-compile: error: --cubin takes one variant; with --token-buckets the cubins are only in the source
// BOTH: moe-compile: error: --num-tokens and --token-buckets both choose the tiles; give one
