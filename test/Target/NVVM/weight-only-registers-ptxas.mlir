// ptxas keeps the register-operand wgmmas of the Mixtral int4 layer at
// decode (weight_load = registers) asynchronous: no "wgmma.mma_async
// instructions are serialized" notice (which ptxas prints when a non-wgmma
// instruction touches an in-flight wgmma's registers) and no spills.
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: moe-compile %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -o %t --name int4_layer --num-tokens 1 --weight-only-registers --ptx %t/int4_layer.ptx
// RUN: FileCheck %s --check-prefix=PTX < %t/int4_layer.ptx
// RUN: ptxas -arch=sm_90a -v %t/int4_layer.ptx -o /dev/null > %t/ptxas.log 2>&1
// RUN: not grep -q serialized %t/ptxas.log
// RUN: FileCheck %s --check-prefix=GEMM1 < %t/ptxas.log
// RUN: FileCheck %s --check-prefix=GEMM2 < %t/ptxas.log

// Both GEMMs take A from registers.
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;
// PTX: .entry expert_matmul_0(
// PTX: wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{.*}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, 1, 1, 1, 0;

// GEMM1: Compiling entry function 'expert_matmul' for 'sm_90a'
// GEMM1-NEXT: Function properties for expert_matmul
// GEMM1-NEXT: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
// GEMM2: Compiling entry function 'expert_matmul_0' for 'sm_90a'
// GEMM2-NEXT: Function properties for expert_matmul_0
// GEMM2-NEXT: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
