// moe-compile of a layer with a gated shared expert (the scaled
// Qwen1.5-MoE example): the host launches the routing, the gate's router,
// the shared experts' append, then the aligned schedule over E + S experts
// and k + S choices per token, whose weights the combine reads; the source
// compiles. With --shared-experts=split (moe-split-shared-experts; the
// default policy splits at this M) the shared experts run as a schedule of
// their own over leading slices of the weights, their GEMM2 adding into the
// routed GEMM2's f32 sums, and one finalize rounds them.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %moe_src_root/examples/scaled/qwen1_5_moe_a2_7b.mlir -o %t --name qwen --num-tokens 64 --shared-experts=fused --ptx %t/qwen.ptx --kernels %t/host.mlir
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=HEADER < %t/qwen.h
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/qwen.cpp
// RUN: rm -rf %t.split && moe-compile %moe_src_root/examples/scaled/qwen1_5_moe_a2_7b.mlir -o %t.split --name qwen --num-tokens 64 --shared-experts=split --ptx %t.split/qwen.ptx --kernels %t.split/host.mlir
// RUN: FileCheck %s --check-prefix=SPLIT < %t.split/host.mlir
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t.split -I %moe_src_root/runtime/include -I %cuda_include %t.split/qwen.cpp

// SPLIT-LABEL: func.func @moe_layer_qwen(
// SPLIT-SAME: %[[X:[a-z0-9]+]]: memref<?x256xbf16>, %{{[a-z0-9]+}}: memref<60x256xbf16>, %{{[a-z0-9]+}}: memref<1x256xbf16>,
// SPLIT-SAME: %[[W13:[a-z0-9]+]]: memref<64x256x256xbf16>, %[[W2:[a-z0-9]+]]: memref<64x256x128xbf16>, %[[OUT:[a-z0-9]+]]: memref<?x256xbf16>
// SPLIT: moe_gpu.zero %[[SUMS:.+]] on %{{.*}} : memref<?x256xf32>
// SPLIT-NOT: add_shared_experts
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@route {{.*}} args(%{{.*}} : memref<?x60xf32>, %[[RW:.+]] : memref<?x4xf32>, %[[RI:.+]] : memref<?x4xi32>)
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@router {{.*}} args(%[[X]] : memref<?x256xbf16>, %{{.*}} : memref<1x256xbf16>, %[[GATE:.+]] : memref<?x1xf32>)
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@align {{.*}} args(%[[RI]] : memref<?x4xi32>,
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 {{.*}} %[[RW]] : memref<?x4xf32>, %[[SUMS]] : memref<?x256xf32>)
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@shared_expert_routing blocks in (%{{.*}}, %c1, %c1) threads in (%c32, %c1, %c1) {{.*}} args(%[[GATE]] : memref<?x1xf32>, %[[SW:.+]] : memref<?x4xf32>, %[[SI:.+]] : memref<?x4xi32>)
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@align_0 {{.*}} args(%[[SI]] : memref<?x4xi32>,
// SPLIT: moe_gpu.leading_slice %[[W13]][60] : memref<64x256x256xbf16> to memref<4x256x256xbf16>
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_1
// SPLIT: moe_gpu.leading_slice %[[W2]][60] : memref<64x256x128xbf16> to memref<4x256x128xbf16>
// SPLIT-NOT: moe_gpu.zero
// SPLIT: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_2 {{.*}} %[[SW]] : memref<?x4xf32>, %[[SUMS]] : memref<?x256xf32>)
// SPLIT-NEXT: gpu.launch_func {{.*}} @moe_kernels::@combine_finalize {{.*}} args(%[[SUMS]] : memref<?x256xf32>, %[[OUT]] : memref<?x256xbf16>)
// SPLIT-NOT: @combine_finalize_0

// HOST-LABEL: func.func @moe_layer_qwen(
// HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x256xbf16>, %[[WG:[a-z0-9]+]]: memref<60x256xbf16>, %[[WSG:[a-z0-9]+]]: memref<1x256xbf16>,
// HOST-SAME: %{{[a-z0-9]+}}: memref<64x256x256xbf16>, %{{[a-z0-9]+}}: memref<64x256x128xbf16>,
// HOST: gpu.launch_func {{.*}} @moe_kernels::@route_gate_logits blocks in (%c15, {{.*}} args(%[[X]] : memref<?x256xbf16>, %[[WG]] : memref<60x256xbf16>, %[[LOGITS:.+]] : memref<?x60xf32>)
// HOST: gpu.launch_func {{.*}} @moe_kernels::@route {{.*}} args(%[[LOGITS]] : memref<?x60xf32>, %[[RW:.+]] : memref<?x4xf32>, %[[RI:.+]] : memref<?x4xi32>)
// HOST: %[[GATE:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x1xf32>
// HOST: gpu.launch_func {{.*}} @moe_kernels::@router blocks in (%c1, {{.*}} threads in (%c32, {{.*}} args(%[[X]] : memref<?x256xbf16>, %[[WSG]] : memref<1x256xbf16>, %[[GATE]] : memref<?x1xf32>)
// HOST: gpu.launch_func {{.*}} @moe_kernels::@add_shared_experts {{.*}} threads in (%c32, %c1, %c1) {{.*}} args(%[[RW]] : memref<?x4xf32>, %[[RI]] : memref<?x4xi32>, %[[GATE]] : memref<?x1xf32>, %[[W:.+]] : memref<?x8xf32>, %[[IDS:.+]] : memref<?x8xi32>)
// HOST: gpu.launch_func {{.*}} @moe_kernels::@align_count {{.*}} args(%[[IDS]] : memref<?x8xi32>, {{.*}}, %{{.+}} : memref<128xi32>,
// HOST: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul_0 {{.*}}, %[[W]] : memref<?x8xf32>, %{{.+}} : memref<?x256xf32>)

// HEADER: ///   const void *w_shared_gate: bf16 (uint16_t bits) [1][256], row-major,
// HEADER: int32_t moe_layer_qwen(const void* x, const void* w_gate, const void* w_shared_gate, const void* w13, const void* w2, void* result,
