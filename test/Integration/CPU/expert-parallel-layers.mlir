// The scaled example layers run as R expert-parallel ranks (moe-run
// --ep-ranks, the collectives emulated) and match the float64 reference of
// the single-device layer, over R = 2, 4, 8, both realizations, and a plan
// that replicates experts 0 and 7.
// RUN: moe-run %moe_src_root/examples/scaled/mixtral_8x7b.mlir --entry=mixtral_8x7b --random --seed=1 --num-tokens=16 --ep-ranks=8 --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/mixtral_8x7b.mlir --entry=mixtral_8x7b --random --seed=1 --num-tokens=16 --ep-ranks=2 --ep-realization=all_to_all --ep-placement=%S/Inputs/mixtral-plan-2x5.json --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/qwen3_30b_a3b.mlir --entry=qwen3_30b_a3b --random --seed=2 --num-tokens=16 --ep-ranks=4 --ep-realization=all_to_all --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/deepseek_v3.mlir --entry=deepseek_v3 --random --seed=3 --num-tokens=16 --ep-ranks=2 --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/gpt_oss_120b.mlir --entry=gpt_oss_120b --random --seed=4 --num-tokens=16 --ep-ranks=8 --ep-realization=all_to_all --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/gpt_oss_20b.mlir --entry=gpt_oss_20b --random --seed=5 --num-tokens=16 --ep-ranks=4 --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/deepseek_v3_shared.mlir --entry=deepseek_v3_shared --random --seed=6 --num-tokens=16 --ep-ranks=8 --ep-realization=all_to_all --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/scaled/qwen1_5_moe_a2_7b.mlir --entry=qwen1_5_moe_a2_7b --random --seed=7 --num-tokens=16 --ep-ranks=2 --check | FileCheck %s
// Weight-only quantized experts are sliced with their scales.
// RUN: moe-run %moe_src_root/examples/quantized/scaled/mixtral_8x7b_int4_g128.mlir --entry=mixtral_8x7b_int4_g128 --random --seed=8 --num-tokens=16 --ep-ranks=4 --ep-realization=all_to_all --check | FileCheck %s
// RUN: moe-run %moe_src_root/examples/quantized/scaled/gpt_oss_120b_mxfp4.mlir --entry=gpt_oss_120b_mxfp4 --random --seed=9 --num-tokens=16 --ep-ranks=8 --check | FileCheck %s

// CHECK: result #0: 16x256xbf16
// CHECK: check: result #0 [bf16]: relative L2 error {{.*}} (tolerance 1e-02): ok
// CHECK: check: PASS
