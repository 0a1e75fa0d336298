// The example layers through moe-optimize (fuse routing, fuse experts,
// tile, align): no permuted activations are materialized (no moe.permute,
// GEMM1 gathers), GEMM1 stores I columns, GEMM2 combines in its epilogue,
// and every matmul carries a tile.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-optimize=num-tokens=64 | FileCheck %s --check-prefix=MIXTRAL
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir --moe-optimize=num-tokens=4096 | FileCheck %s --check-prefix=QWEN3
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir --moe-optimize=num-tokens=1 | FileCheck %s --check-prefix=DEEPSEEK
// RUN: moe-opt %moe_src_root/examples/gpt_oss_120b.mlir --moe-optimize=num-tokens=256 | FileCheck %s --check-prefix=GPTOSS
// RUN: moe-opt %moe_src_root/examples/gpt_oss_20b.mlir --moe-optimize=num-tokens=256 | FileCheck %s --check-prefix=GPTOSS20
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir --moe-optimize=num-tokens=1 | FileCheck %s --check-prefix=DSSHARED

// MIXTRAL-LABEL: func.func @mixtral_8x7b
// MIXTRAL-NOT: moe.permute
// MIXTRAL-NOT: moe.router
// MIXTRAL: %[[W:.*]], %[[IDS:.*]] = moe.route softmax
// MIXTRAL: %[[S:.*]], %[[B:.*]], %[[P:.*]] = moe.align %[[IDS]] {block_m = [[BM:[0-9]+]] : i64, num_experts = 8 : i64}
// MIXTRAL: %[[H:.*]] = moe.expert_matmul %arg0, %arg2 slots(%[[S]] : tensor<?xi32>) blocks(%[[B]], %[[P]] : tensor<?xi32>, tensor<1xi32>) {activation = #moe.activation<silu_and_mul>, block_m = [[BM]] : i64, gather, k = 2 : i64, tile = #moe.tile<block_m = [[BM]], {{.*}}>} : tensor<?x4096xbf16>, tensor<8x28672x4096xbf16> -> tensor<?x14336xbf16>
// MIXTRAL: %[[OUT:.*]] = moe.expert_matmul %[[H]], %arg3 slots(%[[S]] : tensor<?xi32>) blocks(%[[B]], %[[P]] : tensor<?xi32>, tensor<1xi32>) combine(%[[W]] : tensor<?x2xf32>) {block_m = [[BM]] : i64, k = 2 : i64, tile = #moe.tile<block_m = [[BM]], {{.*}}>} : tensor<?x14336xbf16>, tensor<8x4096x14336xbf16> -> tensor<?x4096xbf16>
// MIXTRAL-NEXT: return %[[OUT]]

// QWEN3-LABEL: func.func @qwen3_30b_a3b
// QWEN3-NOT: moe.permute
// QWEN3: moe.expert_matmul {{.*}} {activation = #moe.activation<silu_and_mul>, block_m = {{.*}}, gather, {{.*}} -> tensor<?x768xbf16>
// QWEN3: moe.expert_matmul {{.*}} combine({{.*}}) {{.*}} -> tensor<?x2048xbf16>
// QWEN3-NOT: moe.unpermute
// QWEN3-NOT: moe.combine

// DEEPSEEK-LABEL: func.func @deepseek_v3
// DEEPSEEK: moe.route sigmoid %arg0, %arg1 score_bias(%arg2 : tensor<256xf32>)
// DEEPSEEK: moe.align {{.*}} {block_m = 8 : i64, num_experts = 256 : i64}
// DEEPSEEK: moe.expert_matmul {{.*}} tile = #moe.tile<block_m = 8, {{.*}}swap_ab = true{{.*}} -> tensor<?x2048xbf16>
// DEEPSEEK: moe.expert_matmul {{.*}} combine({{.*}})

// GPTOSS-LABEL: func.func @gpt_oss_120b
// GPTOSS: moe.route topk_softmax %arg0, %arg1 gate_bias(%arg2 : tensor<128xf32>)
// GPTOSS: moe.expert_matmul {{.*}} {activation = #moe.activation<swiglu>, alpha = 1.702000e+00 : f32, {{.*}}limit = 7.000000e+00 : f32{{.*}} -> tensor<?x2880xbf16>

// The expert biases ride on their fused GEMMs.
// GPTOSS20-LABEL: func.func @gpt_oss_20b
// GPTOSS20: moe.expert_matmul %arg0, %arg3 {{.*}} bias(%arg5 : tensor<32x5760xf32>) {activation = #moe.activation<swiglu>, {{.*}} -> tensor<?x2880xbf16>
// GPTOSS20: moe.expert_matmul {{.*}}, %arg4 {{.*}} combine({{.*}}) bias(%arg6 : tensor<32x2880xf32>) {{.*}} -> tensor<?x2880xbf16>

// The shared expert joins the routed ones: the schedule aligns E + 1
// experts and k + 1 choices, and the combine weighs the shared expert by 1.
// DSSHARED-LABEL: func.func @deepseek_v3_shared
// DSSHARED: %[[W:.*]], %[[IDS:.*]] = moe.route sigmoid
// DSSHARED: %[[WS:.*]], %[[IDSS:.*]] = moe.add_shared_experts %[[W]], %[[IDS]] {num_experts = 256 : i64}
// DSSHARED: moe.align %[[IDSS]] {block_m = {{[0-9]+}} : i64, num_experts = 257 : i64} : tensor<?x9xi32>
// DSSHARED: moe.expert_matmul {{.*}} gather, k = 9 : i64
// DSSHARED: moe.expert_matmul {{.*}} combine(%[[WS]] : tensor<?x9xf32>) {{.*}}k = 9 : i64
