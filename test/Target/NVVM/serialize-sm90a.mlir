// moe-opt can take a GPU module all the way to sm_90a PTX (the groundwork of
// the GPU backend). sm_90a needs PTX ISA 8.0 or newer: without +ptx80 the
// NVPTX backend refuses the target.
// RUN: moe-opt %s --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | FileCheck %s

// CHECK: gpu.binary @kernels
// CHECK-SAME: .version 8.0
// CHECK-SAME: .target sm_90a
// CHECK-SAME: .entry scale
module attributes {gpu.container_module} {
  gpu.module @kernels {
    gpu.func @scale(%buf: memref<256xf32>) kernel {
      %tid = gpu.thread_id x
      %v = memref.load %buf[%tid] : memref<256xf32>
      %two = arith.constant 2.0 : f32
      %r = arith.mulf %v, %two : f32
      memref.store %r, %buf[%tid] : memref<256xf32>
      gpu.return
    }
  }
}
