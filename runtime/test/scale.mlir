// The test kernel of moe-runtime-test: buf[i] *= 2 for 256 floats, and host
// code that launches it through gpu.launch_func (lowered by upstream MLIR to
// the mgpu* calls the runtime provides), with 64 KiB of dynamic shared memory.
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
  func.func @run(%buf: memref<256xf32>) attributes {llvm.emit_c_interface} {
    %c1 = arith.constant 1 : index
    %c256 = arith.constant 256 : index
    %smem = arith.constant 65536 : i32
    gpu.launch_func @kernels::@scale blocks in (%c1, %c1, %c1) threads in (%c256, %c1, %c1) dynamic_shared_memory_size %smem args(%buf : memref<256xf32>)
    return
  }
}
