// The example layers parse, verify and print back.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir | FileCheck %s --check-prefix=MIXTRAL
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir | FileCheck %s --check-prefix=QWEN3
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir | FileCheck %s --check-prefix=DEEPSEEK
// RUN: moe-opt %moe_src_root/examples/gpt_oss_120b.mlir | FileCheck %s --check-prefix=GPTOSS
// RUN: moe-opt %moe_src_root/examples/gpt_oss_20b.mlir | FileCheck %s --check-prefix=GPTOSS20
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir | FileCheck %s --check-prefix=DSSHARED
// RUN: moe-opt %moe_src_root/examples/qwen1_5_moe_a2_7b.mlir | FileCheck %s --check-prefix=QWEN15

// MIXTRAL-LABEL: func.func @mixtral_8x7b
// MIXTRAL: moe.topk softmax %{{.*}} {k = 2 : i64, renormalize} : tensor<?x8xf32>
// MIXTRAL: moe.grouped_matmul {{.*}} tensor<8x28672x4096xbf16>
// MIXTRAL: moe.activation silu_and_mul
// MIXTRAL: moe.grouped_matmul {{.*}} tensor<8x4096x14336xbf16>

// QWEN3-LABEL: func.func @qwen3_30b_a3b
// QWEN3: moe.topk softmax %{{.*}} {k = 8 : i64, renormalize} : tensor<?x128xf32>
// QWEN3: moe.grouped_matmul {{.*}} tensor<128x1536x2048xbf16>
// QWEN3: moe.grouped_matmul {{.*}} tensor<128x2048x768xbf16>

// DEEPSEEK-LABEL: func.func @deepseek_v3
// DEEPSEEK: moe.topk sigmoid %{{.*}} bias(%{{.*}} : tensor<256xf32>) {k = 8 : i64, num_groups = 8 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_groups = 4 : i64}
// DEEPSEEK: moe.grouped_matmul {{.*}} tensor<256x4096x7168xbf16>
// DEEPSEEK: moe.grouped_matmul {{.*}} tensor<256x7168x2048xbf16>

// GPTOSS-LABEL: func.func @gpt_oss_120b
// GPTOSS: moe.router %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<128xf32>)
// GPTOSS: moe.topk topk_softmax %{{.*}} {k = 4 : i64} : tensor<?x128xf32>
// GPTOSS: moe.activation swiglu %{{.*}} {alpha = 1.702000e+00 : f32, limit = 7.000000e+00 : f32}

// GPTOSS20-LABEL: func.func @gpt_oss_20b
// GPTOSS20: moe.grouped_matmul {{.*}} bias(%{{.*}} : tensor<32x5760xf32>) : {{.*}} tensor<32x5760x2880xbf16>
// GPTOSS20: moe.grouped_matmul {{.*}} bias(%{{.*}} : tensor<32x2880xf32>) : {{.*}} tensor<32x2880x2880xbf16>

// DSSHARED-LABEL: func.func @deepseek_v3_shared
// DSSHARED: moe.add_shared_experts %{{.*}}, %{{.*}} {num_experts = 256 : i64} : tensor<?x8xf32>, tensor<?x8xi32> -> tensor<?x9xf32>, tensor<?x9xi32>
// DSSHARED: moe.grouped_matmul {{.*}} tensor<257x4096x7168xbf16>

// QWEN15-LABEL: func.func @qwen1_5_moe_a2_7b
// QWEN15: moe.topk softmax %{{.*}} {k = 4 : i64} : tensor<?x60xf32>
// QWEN15: %[[G:.*]] = moe.router %{{.*}}, %{{.*}} : tensor<?x2048xbf16>, tensor<1x2048xbf16> -> tensor<?x1xf32>
// QWEN15: moe.add_shared_experts %{{.*}}, %{{.*}} gate(%[[G]] : tensor<?x1xf32>) {num_experts = 60 : i64, num_shared = 4 : i64}
// QWEN15: moe.grouped_matmul {{.*}} tensor<64x2816x2048xbf16>
