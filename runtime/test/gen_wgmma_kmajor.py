"""Prints the K-major TMA + wgmma test kernel as MLIR (run by
scripts/gpu-test-data.sh): C[64, 128] = A[64, 64] · W[128, 64]ᵀ, with W
stored [N, K] like expert weights (K contiguous, K-major for wgmma). The
wgmma ops and their descriptors are nvvm-level (nvgpu.warpgroup.mma
mis-steps a K-major B in LLVM 22, see docs/gpu-runtime.md); the 64 f32
accumulator registers are stored with the documented m64nNk16 fragment
layout, unrolled.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import wgmma_emit  # noqa: E402

# --gather: A rows come from X[100, 64] through an index list (-1: a padding
# row, zero-filled), copied by cp.async 16 bytes at a time into the
# 128B-swizzled layout TMA would have produced. That is GEMM1's A path,
# since TMA cannot gather rows.
GATHER = "--gather" in sys.argv[1:]
N = 128
lines = []
w = lines.append
w('!descA = !nvgpu.tensormap.descriptor<tensor = memref<64x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>')
w('!descB = !nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>')
w('!barriers = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>>')
w('!tileA = memref<64x64xbf16, #gpu.address_space<workgroup>>')
w('!tileB = memref<128x64xbf16, #gpu.address_space<workgroup>>')
w(f'!acc = {wgmma_emit.ACC}')
w('module attributes {gpu.container_module} {')
w('  gpu.module @kernels {')
w('    memref.global "private" @tiles : memref<24576xi8, #gpu.address_space<workgroup>> {alignment = 1024}')
if GATHER:
    w('    gpu.func @tile_gemm(%x: memref<100x64xbf16>, %idx: memref<64xi32>, %b_map: !llvm.ptr, %c: memref<64x128xf32>) kernel {')
else:
    w('    gpu.func @tile_gemm(%a_map: !llvm.ptr, %b_map: !llvm.ptr, %c: memref<64x128xf32>) kernel {')
w('      %c0 = arith.constant 0 : index')
w('      %c1 = arith.constant 1 : index')
if not GATHER:
    w('      %a_desc = builtin.unrealized_conversion_cast %a_map : !llvm.ptr to !descA')
w('      %b_desc = builtin.unrealized_conversion_cast %b_map : !llvm.ptr to !descB')
w('      %smem = memref.get_global @tiles : memref<24576xi8, #gpu.address_space<workgroup>>')
w('      %b_offset = arith.constant 8192 : index')
w('      %tile_a = memref.view %smem[%c0][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileA')
w('      %tile_b = memref.view %smem[%b_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileB')
w('      %barrier = nvgpu.mbarrier.create -> !barriers')
w('      %tid = gpu.thread_id x')
w('      %leader = arith.cmpi eq, %tid, %c0 : index')
w('      scf.if %leader {')
w('        nvgpu.mbarrier.init %barrier[%c0], %c1 : !barriers')
w('      }')
w('      gpu.barrier')
w('      scf.if %leader {')
if not GATHER:
    w('        nvgpu.tma.async.load %a_desc[%c0, %c0], %barrier[%c0] to %tile_a : !descA, !barriers -> !tileA')
w('        nvgpu.tma.async.load %b_desc[%c0, %c0], %barrier[%c0] to %tile_b : !descB, !barriers -> !tileB')
w(f'        %bytes = arith.constant {16384 if GATHER else 24576} : index')
w('        nvgpu.mbarrier.arrive.expect_tx %barrier[%c0], %bytes : !barriers')
w('      }')
if GATHER:
    # 64 rows x 8 chunks of 16 bytes, 4 per thread; chunk c of row r lands
    # at chunk c xor (r mod 8) of that row (the 128B swizzle).
    w('      %c8i = arith.constant 8 : index')
    w('      %c128 = arith.constant 128 : index')
    w('      %zero_i32 = arith.constant 0 : i32')
    w('      %eight = arith.constant 8 : index')
    tokens = []
    for i in range(4):
        w(f'      %c{128 * i}_q = arith.constant {128 * i} : index')
    for i in range(4):
        w(f'      %q{i} = arith.addi %tid, %c{128 * i}_q : index')
        w(f'      %r{i} = arith.divui %q{i}, %c8i : index')
        w(f'      %ch{i} = arith.remui %q{i}, %c8i : index')
        w(f'      %id{i} = memref.load %idx[%r{i}] : memref<64xi32>')
        w(f'      %valid{i} = arith.cmpi sge, %id{i}, %zero_i32 : i32')
        w(f'      %safe{i} = arith.select %valid{i}, %id{i}, %zero_i32 : i32')
        w(f'      %src_row{i} = arith.index_cast %safe{i} : i32 to index')
        w(f'      %src_elems{i} = arith.select %valid{i}, %eight, %c0 : index')
        w(f'      %src_col{i} = arith.muli %ch{i}, %c8i : index')
        w(f'      %phase_row{i} = arith.remui %r{i}, %c8i : index')
        w(f'      %swz{i} = arith.xori %ch{i}, %phase_row{i} : index')
        w(f'      %dst_col{i} = arith.muli %swz{i}, %c8i : index')
        w(f'      %tok{i} = nvgpu.device_async_copy %x[%src_row{i}, %src_col{i}], %tile_a[%r{i}, %dst_col{i}], 8, %src_elems{i} : memref<100x64xbf16> to !tileA')
        tokens.append(f'%tok{i}')
    w(f'      %group = nvgpu.device_async_create_group {", ".join(tokens)}')
    w('      nvgpu.device_async_wait %group')
    # cp.async wrote through the generic proxy; wgmma reads through the
    # async proxy.
    w('      nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}')
    w('      gpu.barrier')
w('      %phase = arith.constant false')
w('      %ticks = arith.constant 10000000 : index')
w('      nvgpu.mbarrier.try_wait.parity %barrier[%c0], %phase, %ticks : !barriers')
# descriptors: K-major, 128B swizzle: base (addr>>4)&0x3FFF, SBO 1024>>4=64 at bits 32..45, swizzle 1<<62, LBO 1 at bit 16
w('      %a_ptr = memref.extract_aligned_pointer_as_index %tile_a : !tileA -> index')
w('      %b_ptr = memref.extract_aligned_pointer_as_index %tile_b : !tileB -> index')
w('      %a_addr = arith.index_cast %a_ptr : index to i64')
w('      %b_addr = arith.index_cast %b_ptr : index to i64')
wgmma_emit.descriptors(w, "      ")
prev = wgmma_emit.zero_accumulator(w, "      ")
prev = wgmma_emit.k64_step(w, "      ", prev)
# fragment store
w('      %c4 = arith.constant 4 : index')
w('      %c8 = arith.constant 8 : index')
w('      %c16 = arith.constant 16 : index')
w('      %c32 = arith.constant 32 : index')
w('      %warp = arith.divui %tid, %c32 : index')
w('      %lane = arith.remui %tid, %c32 : index')
w('      %w16 = arith.muli %warp, %c16 : index')
w('      %l4 = arith.divui %lane, %c4 : index')
w('      %row0 = arith.addi %w16, %l4 : index')
w('      %row1 = arith.addi %row0, %c8 : index')
w('      %lm = arith.remui %lane, %c4 : index')
w('      %c2 = arith.constant 2 : index')
w('      %col0 = arith.muli %lm, %c2 : index')
for i in range(N // 8):
    w(f'      %cb{i} = arith.constant {8 * i} : index')
    w(f'      %colA{i} = arith.addi %col0, %cb{i} : index')
    w(f'      %colB{i} = arith.addi %colA{i}, %c1 : index')
    for j, (row, col) in enumerate([('%row0', f'%colA{i}'), ('%row0', f'%colB{i}'), ('%row1', f'%colA{i}'), ('%row1', f'%colB{i}')]):
        idx = 4 * i + j
        w(f'      %v{idx} = llvm.extractvalue {prev}[{idx}] : !acc')
        w(f'      memref.store %v{idx}, %c[{row}, {col}] : memref<64x128xf32>')
w('      gpu.return')
w('    }')
w('  }')
w('}')
print('\n'.join(lines))
