// One 64x128x64 bf16 tile: A [64, 64] and B [64, 128] (row-major) come in
// through TMA (128B swizzle) under an mbarrier, one warpgroup multiplies
// them with wgmma into f32, and the fragments are stored to C [64, 128].
// B is [K, N] with N contiguous (MN-major), loaded as two 64-column boxes;
// nvgpu.warpgroup.mma needs {transposeB} for that layout: without it the
// lowering steps the descriptor as MN-major but emits trans-b = 0, and the
// wgmma reads past the tile.
// The TMA descriptors arrive as pointers to device memory (a tensor-map
// type in a gpu.func signature breaks the NVVM pipeline) and are cast back.
!descA = !nvgpu.tensormap.descriptor<tensor = memref<64x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>
!descB = !nvgpu.tensormap.descriptor<tensor = memref<64x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>
!barriers = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>>
!tileA = memref<64x64xbf16, #gpu.address_space<workgroup>>
!tileB = memref<64x128xbf16, #gpu.address_space<workgroup>>
!halfB = memref<64x64xbf16, #gpu.address_space<workgroup>>
!acc = !nvgpu.warpgroup.accumulator<fragmented = vector<64x128xf32>>
module attributes {gpu.container_module} {
  gpu.module @kernels {
    // Static, not gpu.dynamic_shared_memory: this LLVM 22 demotes the
    // dynamic-shared-memory global to a 1-byte static variable, and offsets
    // into it fall outside shared memory (docs/gpu-runtime.md).
    memref.global "private" @tiles : memref<24576xi8, #gpu.address_space<workgroup>> {alignment = 1024}
    gpu.func @tile_gemm(%a_map: !llvm.ptr, %b_map: !llvm.ptr, %c: memref<64x128xf32>) kernel {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %a_desc = builtin.unrealized_conversion_cast %a_map : !llvm.ptr to !descA
      %b_desc = builtin.unrealized_conversion_cast %b_map : !llvm.ptr to !descB
      %smem = memref.get_global @tiles : memref<24576xi8, #gpu.address_space<workgroup>>
      %a_offset = arith.constant 0 : index
      %b_offset = arith.constant 8192 : index
      %tile_a = memref.view %smem[%a_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileA
      %tile_b = memref.view %smem[%b_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileB
      %barrier = nvgpu.mbarrier.create -> !barriers
      %tid = gpu.thread_id x
      %leader = arith.cmpi eq, %tid, %c0 : index
      scf.if %leader {
        nvgpu.mbarrier.init %barrier[%c0], %c1 : !barriers
        nvgpu.tma.prefetch.descriptor %a_desc : !descA
        nvgpu.tma.prefetch.descriptor %b_desc : !descB
      }
      gpu.barrier
      scf.if %leader {
        nvgpu.tma.async.load %a_desc[%c0, %c0], %barrier[%c0] to %tile_a : !descA, !barriers -> !tileA
        %b_left = memref.view %smem[%b_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !halfB
        %b_right_offset = arith.constant 16384 : index
        %b_right = memref.view %smem[%b_right_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !halfB
        %c64 = arith.constant 64 : index
        nvgpu.tma.async.load %b_desc[%c0, %c0], %barrier[%c0] to %b_left : !descB, !barriers -> !halfB
        nvgpu.tma.async.load %b_desc[%c64, %c0], %barrier[%c0] to %b_right : !descB, !barriers -> !halfB
        %bytes = arith.constant 24576 : index
        nvgpu.mbarrier.arrive.expect_tx %barrier[%c0], %bytes : !barriers
      }
      %phase = arith.constant false
      %ticks = arith.constant 10000000 : index
      nvgpu.mbarrier.try_wait.parity %barrier[%c0], %phase, %ticks : !barriers
      %da = nvgpu.warpgroup.generate.descriptor %tile_a, %a_desc : !tileA, !descA -> !nvgpu.warpgroup.descriptor<tensor = !tileA>
      %db = nvgpu.warpgroup.generate.descriptor %tile_b, %b_desc : !tileB, !descB -> !nvgpu.warpgroup.descriptor<tensor = !tileB>
      %init = nvgpu.warpgroup.mma.init.accumulator -> !acc
      %d = nvgpu.warpgroup.mma %da, %db, %init {transposeB} : !nvgpu.warpgroup.descriptor<tensor = !tileA>, !nvgpu.warpgroup.descriptor<tensor = !tileB>, !acc -> !acc
      nvgpu.warpgroup.mma.store %d, %c : !acc to memref<64x128xf32>
      gpu.return
    }
  }
}
