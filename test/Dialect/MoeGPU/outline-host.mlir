// The host functions with the align kernels (fused-align-assignments=0;
// outline-host-fused-align.mlir has the GEMM that aligns its schedule).
// RUN: moe-opt %s -split-input-file --moe-gpu-pipeline="num-tokens=16 fused-align-assignments=0" --moe-gpu-outline-host -verify-diagnostics | FileCheck %s
// The finalize of a wide combine covers 2048 columns per block (eight per
// thread): Mixtral's 4096 take two column blocks, not sixteen.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-gpu-pipeline="num-tokens=4096" --moe-gpu-outline-host | FileCheck %s --check-prefix=WIDE
// With input-tma, Qwen3's GEMM2 reads its input (GEMM1's rows, in slot
// order, M·k + E·(block_m − 1) of them per call) through a TMA descriptor
// of 128-row boxes, encoded per call from the workspace buffer, passed as
// the kernel's first argument.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir --moe-gpu-pipeline="num-tokens=4096 input-tma=true" --moe-gpu-outline-host | FileCheck %s --check-prefix=INPUT-TMA
// INPUT-TMA: %[[HIDDEN:.+]] = moe_gpu.workspace_buffer {{.*}} : memref<?xi8> -> memref<?x768xbf16>
// INPUT-TMA: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul blocks {{.*}} args({{.*}}, %[[HIDDEN]] : memref<?x768xbf16>
// INPUT-TMA: %[[HIDDEN_MAP:.+]] = moe_gpu.tensor_map %[[HIDDEN]] box [128, 64] : memref<?x768xbf16> -> !llvm.ptr
// INPUT-TMA-NEXT: %[[WEIGHTS_MAP:.+]] = moe_gpu.tensor_map %{{.+}} box [256, 64] : memref<128x2048x768xbf16> -> !llvm.ptr
// INPUT-TMA: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 blocks {{.*}} args(%[[HIDDEN_MAP]] : !llvm.ptr, %{{.+}} : memref<?xi32>, %{{.+}} : memref<?xi32>, %{{.+}} : memref<1xi32>, %[[WEIGHTS_MAP]] : !llvm.ptr,
// INPUT-TMA: gpu.func @expert_matmul_0(%{{.+}}: !llvm.ptr, {{.*}}moe.grid_constant_args = [0, 16]
// WIDE: gpu.launch_func <%{{.*}} : !moe_gpu.stream> @moe_kernels::@combine_finalize blocks in (%{{[^,]*}}, %c2{{(_[0-9]+)?}}, %c1{{(_[0-9]+)?}}) threads in (%c256

// A routed layer: the router's logits kernel writes an [M, E] f32 workspace
// buffer over a grid of (expert chunks, token tiles of 8) — its many-token
// tiling from 2112 tokens on, as its launch facts say — the selection
// kernel writes ids and weights into workspace buffers of M·k elements; the
// outlined function launches them, align and the GEMMs on the stream,
// zeroes the combine's sums, and the layout keeps the byte count of each
// buffer as a map of the token count.
// CHECK-DAG: #[[LOGITS:map[0-9]*]] = affine_map<()[s0] -> (s0 * 32)>
// CHECK-DAG: #[[ROUTED:map[0-9]*]] = affine_map<()[s0] -> (s0 * 8)>
// CHECK-LABEL: func.func @moe_layer_layer(
// CHECK-SAME: %[[X:[a-z0-9]+]]: memref<?x128xbf16>, %[[GATE:[a-z0-9]+]]: memref<8x128xbf16>, %{{.+}}: memref<8x256x128xbf16>, %{{.+}}: memref<8x128x128xbf16>,
// CHECK-SAME: %[[OUT:[a-z0-9]+]]: memref<?x128xbf16> {moe_gpu.result}, %[[M:[a-z0-9]+]]: index, %[[WS:[a-z0-9]+]]: memref<?xi8> {moe_gpu.workspace}, %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// CHECK: %[[ALL:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[0] in %[[WS]] for %[[M]] sizes(%[[M]]) : memref<?xi8> -> memref<?x8xf32>
// CHECK: %[[MANY_TOKENS:.+]] = arith.cmpi sge, %[[M]], %c2112 : index
// CHECK: scf.if %[[MANY_TOKENS]] {
// CHECK: %[[PLUS7:.+]] = arith.addi %[[M]], %c7 : index
// CHECK: %[[TILES:.+]] = arith.divsi %[[PLUS7]], %c8{{.*}} : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@route_gate_logits_many_tokens blocks in (%c1{{.*}}, %[[TILES]], %{{.+}}) threads in (%c64{{.*}}, {{.*}} args(%[[X]] : memref<?x128xbf16>, %[[GATE]] : memref<8x128xbf16>, %[[ALL]] : memref<?x8xf32>)
// CHECK: } else {
// CHECK: %[[PLUS7_D:.+]] = arith.addi %[[M]], %c7 : index
// CHECK: %[[TILES_D:.+]] = arith.divsi %[[PLUS7_D]], %c8{{.*}} : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@route_gate_logits blocks in (%c2{{.*}}, %[[TILES_D]], %{{.+}}) threads in (%c128{{.*}}, {{.*}} args(%[[X]] : memref<?x128xbf16>, %[[GATE]] : memref<8x128xbf16>, %[[ALL]] : memref<?x8xf32>)
// CHECK-NEXT: }
// CHECK: %[[WEIGHTS:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[1] in %[[WS]] for %[[M]] sizes(%[[M]]) : memref<?xi8> -> memref<?x2xf32>
// CHECK: %[[IDS:.+]] = moe_gpu.workspace_buffer @moe_layer_layer_workspace[2] in %[[WS]] for %[[M]] sizes(%[[M]]) : memref<?xi8> -> memref<?x2xi32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@route blocks in (%[[M]], %{{.+}}, %{{.+}}) {{.*}} args(%[[ALL]] : memref<?x8xf32>, %[[WEIGHTS]] : memref<?x2xf32>, %[[IDS]] : memref<?x2xi32>)
// moe.align: one block up to 4096 assignments, two kernels over many
// blocks above, after zeroing their counts, cursors and error word.
// CHECK: %[[STATE:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<16xi32>
// CHECK: %[[A:.+]] = arith.muli %[[M]], %{{.+}} : index
// CHECK: %[[MANY:.+]] = arith.cmpi sgt, %[[A]], %c4096 : index
// CHECK: scf.if %[[MANY]] {
// CHECK-NEXT: moe_gpu.zero %[[STATE]] on %[[S]] : memref<16xi32>
// CHECK-NEXT: moe_gpu.zero %[[ERRORS:.+]] on %[[S]] : memref<1xi32>
// CHECK: %[[CHUNKS:.+]] = arith.divsi %{{.+}}, %c1024 : index
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align_count blocks in (%[[CHUNKS]], {{.*}} args(%[[IDS]] : memref<?x2xi32>, %[[SORTED:.+]] : memref<?xi32>, %[[STATE]] : memref<16xi32>, %[[ERRORS]] : memref<1xi32>)
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align_scatter blocks in (%[[CHUNKS]], {{.*}} args(%[[IDS]] : memref<?x2xi32>, %[[SORTED]] : memref<?xi32>, %{{.+}} : memref<?xi32>, %{{.+}} : memref<1xi32>, %[[STATE]] : memref<16xi32>)
// CHECK-NEXT: } else {
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@align {{.*}} args(%[[IDS]] : memref<?x2xi32>, %[[SORTED]] : memref<?xi32>, {{.*}}, %[[ERRORS]] : memref<1xi32>)
// CHECK-NEXT: }
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul
// CHECK: %[[SUMS:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x128xf32>
// CHECK: moe_gpu.zero %[[SUMS]] on %[[S]] : memref<?x128xf32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@expert_matmul_0 {{.*}} %[[WEIGHTS]] : memref<?x2xf32>, %[[SUMS]] : memref<?x128xf32>)
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@combine_finalize {{.*}} args(%[[SUMS]] : memref<?x128xf32>, %[[OUT]] : memref<?x128xbf16>)
// CHECK: moe_gpu.workspace_layout @moe_layer_layer_workspace {buffers = [#[[LOGITS]], #[[ROUTED]], #[[ROUTED]],
// CHECK-SAME: names = ["moe.route logits", "moe.route weights", "moe.route ids", "moe.align sorted ids"
// CHECK-LABEL: func.func @moe_layer_layer_workspace_bytes(
// CHECK-LABEL: func.func @moe_layer_layer_invalid_ids(
// The kernels keep no launch facts: the launches state them.
// CHECK-NOT: moe.launch
func.func @layer(%x: tensor<?x128xbf16>, %gate: tensor<8x128xbf16>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %logits = moe.router %x, %gate : tensor<?x128xbf16>, tensor<8x128xbf16> -> tensor<?x8xf32>
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}

// -----

// A result that is an argument has no buffer of its own to write.
func.func @passthrough(%ids: tensor<?x2xi32>) -> (tensor<?x2xi32>) {
  // expected-error @+1 {{GPU layer: each result must be a distinct computed tensor}}
  return %ids : tensor<?x2xi32>
}

// -----

// An op without a kernel stops the outlining with its location.
func.func @no_kernel(%x: tensor<?x100xbf16>) -> tensor<?x100xf32> {
  // expected-error @+1 {{no GPU lowering for this op yet}}
  %y = arith.extf %x : tensor<?x100xbf16> to tensor<?x100xf32>
  return %y : tensor<?x100xf32>
}

// -----

// A layer on given router logits (the inputs of vLLM's fused_moe): the
// moe.topk kernel reads the logits argument into the workspace's weights
// and ids, one block per token.
// CHECK-LABEL: func.func @moe_layer_from_logits(
// CHECK-SAME: %{{[a-z0-9]+}}: memref<?x128xbf16>, %[[LOGITS:[a-z0-9]+]]: memref<?x8xf32>,
// CHECK-SAME: %[[M:[a-z0-9]+]]: index, %{{[a-z0-9]+}}: memref<?xi8> {moe_gpu.workspace}, %[[S:[a-z0-9]+]]: !moe_gpu.stream)
// CHECK: %[[WEIGHTS:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[0] {{.*}} -> memref<?x2xf32>
// CHECK: %[[IDS:.+]] = moe_gpu.workspace_buffer @moe_layer_from_logits_workspace[1] {{.*}} -> memref<?x2xi32>
// CHECK: gpu.launch_func <%[[S]] : !moe_gpu.stream> @moe_kernels::@topk blocks in (%[[M]], {{.*}} args(%[[LOGITS]] : memref<?x8xf32>, %[[WEIGHTS]] : memref<?x2xf32>, %[[IDS]] : memref<?x2xi32>)
// CHECK: moe_gpu.workspace_layout @moe_layer_from_logits_workspace {{.*}}names = ["moe.topk weights", "moe.topk ids",
func.func @from_logits(%x: tensor<?x128xbf16>, %logits: tensor<?x8xf32>, %w13: tensor<8x256x128xbf16>, %w2: tensor<8x128x128xbf16>) -> tensor<?x128xbf16> {
  %weights, %ids = moe.topk softmax %logits {k = 2 : i64, renormalize} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x128xbf16>, tensor<?x2xi32> -> tensor<?x128xbf16>, tensor<9xi32>, tensor<?xi32>
  %gate_up = moe.grouped_matmul %rows, %w13, %offsets : tensor<?x128xbf16>, tensor<8x256x128xbf16>, tensor<9xi32> -> tensor<?x256xbf16>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xbf16> -> tensor<?x128xbf16>
  %down = moe.grouped_matmul %act, %w2, %offsets : tensor<?x128xbf16>, tensor<8x128x128xbf16>, tensor<9xi32> -> tensor<?x128xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x128xf32>, tensor<?xi32> -> tensor<?x2x128xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x128xf32>, tensor<?x2xf32> -> tensor<?x128xbf16>
  return %out : tensor<?x128xbf16>
}
