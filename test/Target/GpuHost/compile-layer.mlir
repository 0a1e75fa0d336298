// moe-compile: the GPU pipeline, the host functions (moe-gpu-outline-host),
// an sm_90a cubin, and the host source lowered from them through EmitC; the
// source compiles. The first build shows outline-host's order of the host
// ops for kernels that load their weights by TMA (--swap-ab=false
// --dependent-launch=false), with the align kernels that a call of more
// assignments than --fused-align-assignments launches; the second, the default, what
// moe-gpu-dependent-launch changes; the third, the default kernels' host
// function (swapped operands at decode, weights copied by cp.async).
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name block --num-tokens 64 --ptx %t/block.ptx --kernels %t/host.mlir --dependent-launch=false --swap-ab=false --fused-align-assignments=0
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=HEADER < %t/block.h
// RUN: FileCheck %s --check-prefix=SOURCE < %t/block.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/block.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/block.cpp

// By default (--dependent-launch) every kernel waits for its prerequisites first
// thing, and each launch is a programmatic dependent of the one before it.
// At M = 64 (128 assignments) GEMM1 also aligns the schedule and zeroes the
// f32 sums (the policy's fused_align_assignments = 128 for bf16): the align
// kernels run only for calls of more assignments, and there is no zeroing of
// the sums on the host.
// RUN: rm -rf %t.pdl && moe-compile %s -o %t.pdl --name block --num-tokens 64 --ptx %t.pdl/block.ptx --kernels %t.pdl/host.mlir
// RUN: FileCheck %s --check-prefix=PDL-HOST < %t.pdl/host.mlir
// RUN: FileCheck %s --check-prefix=PDL-PTX < %t.pdl/block.ptx
// RUN: FileCheck %s --check-prefix=PDL-SOURCE < %t.pdl/block.cpp
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t.pdl -I %moe_src_root/runtime/include -I %cuda_include %t.pdl/block.cpp
// PDL-HOST-LABEL: func.func @moe_layer_block(
// PDL-HOST: %[[ASSIGNMENTS:.+]] = arith.muli %arg6, %c2 : index
// PDL-HOST: %[[MANY:.+]] = arith.cmpi sgt, %[[ASSIGNMENTS]], %c128 : index
// PDL-HOST-NEXT: scf.if %[[MANY]] {
// PDL-HOST: gpu.launch_func {{.*}}@moe_kernels::@align {{.*}} {moe_gpu.dependent_launch}
// PDL-HOST-NEXT: }
// PDL-HOST-NEXT: }
// PDL-HOST-NOT: moe_gpu.zero
// PDL-HOST: %[[SUMS:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[{{[0-9]+}}] {{.*}} -> memref<?x128xf32>
// PDL-HOST-NOT: moe_gpu.zero
// PDL-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul {{.*}}%[[SUMS]] : memref<?x128xf32>) {moe_gpu.dependent_launch}
// PDL-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul_0 {{.*}}%[[SUMS]] {{.*}} {moe_gpu.dependent_launch}
// PDL-HOST: gpu.launch_func {{.*}}@moe_kernels::@combine_finalize {{.*}} {moe_gpu.dependent_launch}
// PDL-PTX-LABEL: .entry expert_matmul(
// PDL-PTX-NOT: ld.global
// PDL-PTX: griddepcontrol.wait;
// PDL-PTX-NEXT: griddepcontrol.launch_dependents;
// PDL-SOURCE: moe_rt_launcher_launch_dependent(
// PDL-SOURCE-NOT: moe_rt_launcher_launch(

// With swapped operands (the default at M = 64: 16 rows per expert, 24 at
// mean + 2 sd, so 32-row slot blocks) and two warpgroups each GEMM copies
// its weights with cp.async: the host passes them as [E·N, K] memory, and
// makes no tensor map.
// RUN: rm -rf %t.swap && moe-compile %s -o %t.swap --name block --num-tokens 64 --kernels %t.swap/host.mlir --dependent-launch=false --swapped-warpgroups=2
// RUN: FileCheck %s --check-prefix=SWAP-HOST < %t.swap/host.mlir
// RUN: FileCheck %s --check-prefix=SWAP-SOURCE < %t.swap/block.cpp
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t.swap -I %moe_src_root/runtime/include -I %cuda_include %t.swap/block.cpp
// SWAP-HOST-DAG: #[[SWAP_SLOTS:map[0-9]*]] = affine_map<()[s0] -> ((s0 * 2 + 248) * 4)>
// SWAP-HOST-DAG: #[[SWAP_BLOCKS:map[0-9]*]] = affine_map<()[s0] -> (((s0 * 2 + 279) floordiv 32) * 4)>
// SWAP-HOST-LABEL: func.func @moe_layer_block(
// SWAP-HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %{{[a-z0-9]+}}: memref<?x2xi32>, %[[RW:[a-z0-9]+]]: memref<?x2xf32>,
// SWAP-HOST-SAME: %[[W13:[a-z0-9]+]]: memref<8x256x128xbf16>, %[[W2:[a-z0-9]+]]: memref<8x128x128xbf16>,
// SWAP-HOST-NOT: moe_gpu.tensor_map
// SWAP-HOST: %[[ROWS13:.+]] = memref.collapse_shape %[[W13]] {{\[\[}}0, 1], [2]] : memref<8x256x128xbf16> into memref<2048x128xbf16>
// SWAP-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul blocks in (%{{.+}}, %c2, %c1) threads in (%c256, %c1, %c1) {{.*}}args(%[[X]] : memref<?x128xbf16>, {{.*}}, %[[ROWS13]] : memref<2048x128xbf16>, %[[H:[0-9a-z_]+]] : memref<?x128xbf16>, %{{[a-z0-9]+}} : memref<?x2xi32>, %{{[0-9]+}} : memref<1xi32>, %[[SWAP_SUMS:[0-9]+]] : memref<?x128xf32>)
// SWAP-HOST: %[[ROWS2:.+]] = memref.collapse_shape %[[W2]] {{\[\[}}0, 1], [2]] : memref<8x128x128xbf16> into memref<1024x128xbf16>
// SWAP-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul_0 blocks in (%{{.+}}, %c1, %c1) threads in (%c256, %c1, %c1) {{.*}}args(%[[H]] : memref<?x128xbf16>, {{.*}}, %[[ROWS2]] : memref<1024x128xbf16>, %[[RW]] : memref<?x2xf32>, %[[SWAP_SUMS]] : memref<?x128xf32>)
// SWAP-HOST-NOT: moe_gpu.tensor_map
// SWAP-HOST: moe_gpu.workspace_layout @moe_layer_block_workspace {buffers = [#[[SWAP_SLOTS]], #[[SWAP_BLOCKS]],
// At M = 64 (128 assignments) GEMM1 also takes the ids, the invalid-id word
// and the sums it zeroes, which GEMM2 then adds into.
// By default the gated GEMM1, whose weight rows hold 256 bytes of K, takes
// one warpgroup: its weights by TMA through a tensor map of 32 gate and 32
// up rows, 128 threads, 4 column tiles of 32; GEMM2 keeps two warpgroups
// and cp.async.
// RUN: rm -rf %t.mixed && moe-compile %s -o %t.mixed --name block --num-tokens 64 --kernels %t.mixed/host.mlir --dependent-launch=false
// RUN: FileCheck %s --check-prefix=MIXED-HOST < %t.mixed/host.mlir
// MIXED-HOST-LABEL: func.func @moe_layer_block(
// MIXED-HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %{{[a-z0-9]+}}: memref<?x2xi32>, %[[RW:[a-z0-9]+]]: memref<?x2xf32>,
// MIXED-HOST-SAME: %[[W13:[a-z0-9]+]]: memref<8x256x128xbf16>, %[[W2:[a-z0-9]+]]: memref<8x128x128xbf16>,
// MIXED-HOST: %[[MAP13:.+]] = moe_gpu.tensor_map %[[W13]] box [32, 64] : memref<8x256x128xbf16> -> !llvm.ptr
// MIXED-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul blocks in (%{{.+}}, %c4, %c1) threads in (%c128, %c1, %c1) {{.*}}args(%[[X]] : memref<?x128xbf16>, {{.*}}, %[[MAP13]] : !llvm.ptr, %[[H:[0-9a-z_]+]] : memref<?x128xbf16>, %{{[a-z0-9]+}} : memref<?x2xi32>, %{{[0-9]+}} : memref<1xi32>, %[[MIXED_SUMS:[0-9]+]] : memref<?x128xf32>)
// MIXED-HOST: %[[ROWS2:.+]] = memref.collapse_shape %[[W2]] {{\[\[}}0, 1], [2]] : memref<8x128x128xbf16> into memref<1024x128xbf16>
// MIXED-HOST: gpu.launch_func {{.*}}@moe_kernels::@expert_matmul_0 blocks in (%{{.+}}, %c1, %c1) threads in (%c256, %c1, %c1) {{.*}}args(%[[H]] : memref<?x128xbf16>, {{.*}}, %[[ROWS2]] : memref<1024x128xbf16>, %[[RW]] : memref<?x2xf32>, %[[MIXED_SUMS]] : memref<?x128xf32>)
// SWAP-SOURCE: extern "C" int32_t moe_layer_block(
// SWAP-SOURCE-NOT: moe_rt_launcher_encode_tma_2d(
// SWAP-SOURCE: return

// The workspace: the aligned schedule (M·k + E·(block_m − 1) slots, one
// block expert per 64 slots), the padded count, the invalid-id counter, the
// GEMM1 output, the combine's f32 sums.
// HOST-DAG: #[[SLOTS:map[0-9]*]] = affine_map<()[s0] -> ((s0 * 2 + 504) * 4)>
// HOST-DAG: #[[BLOCKS:map[0-9]*]] = affine_map<()[s0] -> (((s0 * 2 + 567) floordiv 64) * 4)>
// HOST-DAG: #[[WORD:map[0-9]*]] = affine_map<()[s0] -> (4)>
// HOST-DAG: #[[STATEBYTES:map[0-9]*]] = affine_map<()[s0] -> (64)>
// HOST-DAG: #[[GEMM1:map[0-9]*]] = affine_map<()[s0] -> ((s0 * 2 + 504) * 256)>
// HOST-DAG: #[[SUMBYTES:map[0-9]*]] = affine_map<()[s0] -> (s0 * 512)>

// HOST-LABEL: func.func @moe_layer_block(
// HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %[[IDS:[a-z0-9]+]]: memref<?x2xi32>, %[[RW:[a-z0-9]+]]: memref<?x2xf32>,
// HOST-SAME: %[[W13:[a-z0-9]+]]: memref<8x256x128xbf16>, %[[W2:[a-z0-9]+]]: memref<8x128x128xbf16>,
// HOST-SAME: %[[OUT:[a-z0-9]+]]: memref<?x128xbf16> {moe_gpu.result}, %[[M:[a-z0-9]+]]: index,
// HOST-SAME: %[[WS:[a-z0-9]+]]: memref<?xi8> {moe_gpu.workspace}, %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// HOST-SAME: attributes {moe_gpu.workspace_layout = @moe_layer_block_workspace}
// HOST: %[[SORTED:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[0] in %[[WS]] for %[[M]] sizes(%{{.+}}) : memref<?xi8> -> memref<?xi32>
// HOST: %[[EXPERTS:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[1] {{.*}} -> memref<?xi32>
// HOST: %[[PADDED:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[2] {{.*}} -> memref<1xi32>
// HOST: %[[ERRORS:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[3] {{.*}} -> memref<1xi32>
// Up to 4096 assignments one block aligns them; above, two kernels over
// many blocks, with their counts and cursors zeroed first.
// HOST: %[[STATE:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[4] {{.*}} -> memref<16xi32>
// HOST: scf.if
// HOST-NEXT: moe_gpu.zero %[[STATE]]
// HOST: @moe_kernels::@align_count
// HOST: @moe_kernels::@align_scatter
// HOST: } else {
// HOST: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align blocks in (%c1, %c1, %c1) threads in (%c1024, %c1, %c1) dynamic_shared_memory_size %c0_i32 args(%[[IDS]] : memref<?x2xi32>, %[[SORTED]] : memref<?xi32>, %[[EXPERTS]] : memref<?xi32>, %[[PADDED]] : memref<1xi32>, %[[ERRORS]] : memref<1xi32>)
// The weights as [E·N, K] with a box of one 64-column swizzle span.
// HOST: %[[MAP1:.+]] = moe_gpu.tensor_map %[[W13]] box [{{32|64|128|256}}, 64] : memref<8x256x128xbf16> -> !llvm.ptr
// HOST: %[[H:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[5] {{.*}} -> memref<?x128xbf16>
// The grid covers the slot blocks that can hold an assignment.
// HOST: %[[MIN:.+]] = arith.minsi %{{.+}}, %c8 : index
// HOST-NEXT: %[[FULL:.+]] = arith.divsi %{{.+}}, %c64 : index
// HOST-NEXT: %[[OCC:.+]] = arith.addi %[[FULL]], %[[MIN]] : index
// HOST-NEXT: %[[GRID:.+]] = arith.minsi %{{.+}}, %[[OCC]] : index
// HOST: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul blocks in (%[[GRID]], %{{.+}}, %c1) threads in (%c128, %c1, %c1) dynamic_shared_memory_size %{{.+}} args(%[[X]] : memref<?x128xbf16>, %[[SORTED]] : memref<?xi32>, %[[EXPERTS]] : memref<?xi32>, %[[PADDED]] : memref<1xi32>, %[[MAP1]] : !llvm.ptr, %[[H]] : memref<?x128xbf16>)
// HOST: %[[MAP2:.+]] = moe_gpu.tensor_map %[[W2]] box [{{64|128|256}}, 64]
// HOST: %[[SUMS:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[6] in %[[WS]] for %[[M]] sizes(%[[M]]) : memref<?xi8> -> memref<?x128xf32>
// HOST-NEXT: moe_gpu.zero %[[SUMS]] on %[[S]] : memref<?x128xf32>
// HOST-NEXT: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 blocks in (%[[GRID]], {{.*}} args(%[[H]] : memref<?x128xbf16>, %[[SORTED]] : memref<?xi32>, %[[EXPERTS]] : memref<?xi32>, %[[PADDED]] : memref<1xi32>, %[[MAP2]] : !llvm.ptr, %[[RW]] : memref<?x2xf32>, %[[SUMS]] : memref<?x128xf32>)
// HOST-NEXT: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@combine_finalize blocks in (%[[M]], %c1, %c1) threads in (%c256, %c1, %c1) dynamic_shared_memory_size %c0_i32 args(%[[SUMS]] : memref<?x128xf32>, %[[OUT]] : memref<?x128xbf16>)
// HOST-NEXT: return
// HOST: moe_gpu.workspace_layout @moe_layer_block_workspace {buffers = [#[[SLOTS]], #[[BLOCKS]], #[[WORD]], #[[WORD]], #[[STATEBYTES]], #[[GEMM1]], #[[SUMBYTES]]], invalid_id_counters = array<i64: 3>
// HOST-LABEL: func.func @moe_layer_block_workspace_bytes(
// HOST: %[[NONNEG:.+]] = arith.maxsi %{{.+}}, %c0 : index
// HOST-NEXT: moe_gpu.workspace_bytes @moe_layer_block_workspace for %[[NONNEG]]
// HOST-LABEL: func.func @moe_layer_block_invalid_ids(
// HOST: %[[COUNTER:.+]] = moe_gpu.workspace_buffer @moe_layer_block_workspace[3]
// HOST-NEXT: moe_gpu.read_count %[[COUNTER]] on

// Each parameter is documented in C terms and named as in the source
// (without a NameLoc, as through the C++ API, the inputs are numbered:
// scripts/test-install.sh checks that).
// HEADER: /// Parameters, in order:
// HEADER-NEXT: ///   const void *x: bf16 (uint16_t bits) [numTokens][128], row-major,
// HEADER-NEXT: ///     16-byte aligned device memory
// HEADER-NEXT: ///   const void *ids: int32_t [numTokens][2], row-major,
// HEADER: ///   const void *weights: float [numTokens][2], row-major,
// HEADER: ///   const void *w13: bf16 (uint16_t bits) [8][256][128], row-major,
// HEADER: ///   void *result: bf16 (uint16_t bits) [numTokens][128], row-major,
// HEADER-NEXT: ///     16-byte aligned device memory (written)
// HEADER-NEXT: ///   int64_t numTokens: the token count (0 to 2^24)
// HEADER: int32_t moe_layer_block(const void* x, const void* ids, const void* weights, const void* w13, const void* w2, void* result, int64_t numTokens, void* workspace, size_t workspaceBytes, CUstream stream);
// HEADER: /// Returns: the bytes
// HEADER-NEXT: size_t moe_layer_block_workspace_bytes(int64_t numTokens);
// HEADER: ///   void *workspace, size_t workspaceBytes: the workspace of the last call
// HEADER: ///   int64_t *count: host memory, set on success
// HEADER: int32_t moe_layer_block_invalid_ids(void* workspace, size_t workspaceBytes, int64_t numTokens, CUstream stream, int64_t* count);

// The kernels in launch order; each launch passes exactly its arguments.
// SOURCE: #include "block.h"
// SOURCE: static const char* kKernelNames[6] = {"align_count", "align_scatter", "align", "expert_matmul", "expert_matmul_0", "combine_finalize", };
// SOURCE: extern "C" int32_t moe_layer_block(
// SOURCE: moe_rt_launcher_begin(
// SOURCE: moe_rt_launcher_require_workspace(
// SOURCE: moe_rt_launcher_finish_if_empty(
// SOURCE: if (
// SOURCE: moe_rt_kernel_arg [[ARGS:v[0-9]+]][4];
// SOURCE: moe_rt_launcher_launch({{v[0-9]+}}, {{v[0-9]+}}, {{.*}}, [[ARGS]], {{v[0-9]+}});
// SOURCE: moe_rt_launcher_encode_tma_2d(
// SOURCE: moe_rt_launcher_zero(
// SOURCE: return

// PTX: .target sm_90a
// PTX-DAG: .entry align(
// PTX-DAG: .entry expert_matmul(
// PTX-DAG: .entry expert_matmul_0(
// PTX-DAG: .entry combine_finalize(
// PTX-DAG: wgmma.mma_async.sync.aligned
// PTX-DAG: cp.async.bulk.tensor.2d
// PTX-DAG: cp.async.cg.shared.global

func.func @block(%x: tensor<?x128xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
