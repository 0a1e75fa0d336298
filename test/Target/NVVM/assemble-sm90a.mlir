// ptxas assembles the sm_90a PTX into a cubin (an ELF image).
// REQUIRES: ptxas
// RUN: moe-opt %moe_src_root/test/Target/NVVM/serialize-sm90a.mlir --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=bin" | FileCheck %s

// CHECK: gpu.binary @kernels [#gpu.object<#nvvm.target<chip = "sm_90a", features = "+ptx80">, {{.*}}"\7FELF
