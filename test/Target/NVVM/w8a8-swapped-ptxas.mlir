// By default (--w8a8-swap-ab, --fp8-fast-accumulation), Qwen3's per-channel fp8
// GEMMs at decode take swapped 16-row slot blocks: the weights are the wgmma's
// A operand (m64) against 16 slot rows (n16), e4m3 sums in one accumulator,
// transposed once after the K loop. ptxas assembles both token counts without
// serializing a wgmma and without spills. So does Qwen3's int8 block at 256
// tokens, whose 32-row slot blocks give its combine two warpgroups (each 128
// weight rows of a 256-row tile, the weights by TMA; configure.mlir checks the
// configuration).
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: env PYTHONPATH=%moe_src_root/python %python -m moe_compiler.configs --write-gpu-blocks %t/blocks > /dev/null
// RUN: moe-compile %t/blocks/qwen3_30b_a3b_int8_channel_block.mlir -o %t --name int8 --num-tokens 256 --ptx %t/int8.ptx
// RUN: FileCheck %s --check-prefix=INT8 < %t/int8.ptx
// RUN: ptxas -arch=sm_90a -v %t/int8.ptx -o /dev/null > %t/int8.log 2>&1
// RUN: not grep -q C75 %t/int8.log
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/int8.log
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name one --num-tokens 1 --ptx %t/one.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name sixteen --num-tokens 16 --ptx %t/sixteen.ptx
// RUN: FileCheck %s < %t/one.ptx
// RUN: FileCheck %s < %t/sixteen.ptx
// RUN: ptxas -arch=sm_90a -v %t/one.ptx -o /dev/null > %t/one.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/sixteen.ptx -o /dev/null > %t/sixteen.log 2>&1
// RUN: not grep -q C75 %t/one.log %t/sixteen.log
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/one.log %t/sixteen.log

// GEMM1 and GEMM2, each with m64n16 e4m3 wgmmas.
// CHECK: .entry expert_matmul(
// CHECK: wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3
// CHECK: .entry expert_matmul_0(
// CHECK: wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3

// INT8: .entry expert_matmul(
// INT8: wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8
// INT8: .entry expert_matmul_0(
// INT8: wgmma.mma_async.sync.aligned.m64n32k32.s32.s8.s8
