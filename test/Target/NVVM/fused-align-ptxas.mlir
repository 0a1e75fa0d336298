// With --fused-align-assignments, GEMM1 aligns its own slot block before
// its tile: ptxas assembles the prologue (shuffles up for the padded starts,
// ballots and population counts for the ranks) in the swapped bf16 and fp8
// kernels at decode, the block-scaled fp8 one (the most registers), and the
// warp-specialized bf16 one at prefill (384 threads, before setmaxnreg),
// without spills or serialized wgmmas; GEMM2 has no prologue.
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: env PYTHONPATH=%moe_src_root/python %python -m moe_compiler.configs --write-gpu-blocks %t/blocks > /dev/null
// RUN: moe-compile %t/blocks/qwen3_30b_a3b_block.mlir -o %t --name bf16 --num-tokens 1 --fused-align-assignments=1024 --ptx %t/bf16.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name fp8 --num-tokens 16 --fused-align-assignments=1024 --ptx %t/fp8.ptx
// RUN: moe-compile %t/blocks/deepseek_v3_fp8_block_block.mlir -o %t --name block --num-tokens 1 --fused-align-assignments=1024 --ptx %t/block.ptx
// RUN: moe-compile %t/blocks/qwen3_30b_a3b_block.mlir -o %t --name specialized --num-tokens 4096 --warp-specialize --fused-align-assignments=1024 --ptx %t/specialized.ptx
// RUN: FileCheck %s < %t/bf16.ptx
// RUN: FileCheck %s < %t/fp8.ptx
// RUN: FileCheck %s < %t/block.ptx
// RUN: FileCheck %s < %t/specialized.ptx
// RUN: ptxas -arch=sm_90a -v %t/bf16.ptx -o /dev/null > %t/bf16.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/fp8.ptx -o /dev/null > %t/fp8.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/block.ptx -o /dev/null > %t/block.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/specialized.ptx -o /dev/null > %t/specialized.log 2>&1
// RUN: not grep -q C75 %t/bf16.log %t/fp8.log %t/block.log %t/specialized.log
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/bf16.log %t/fp8.log %t/block.log %t/specialized.log

// CHECK: .entry expert_matmul(
// CHECK-COUNT-5: shfl.sync.up.b32
// CHECK: vote.sync.ballot.b32
// CHECK: popc.b32
// CHECK: wgmma.mma_async
// CHECK: .entry expert_matmul_0(
// CHECK-NOT: vote.sync.ballot
// CHECK: .entry
