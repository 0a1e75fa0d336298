"""Prints a prototype grouped-GEMM kernel as MLIR: the structure that the
moe.expert_matmul GPU lowering should emit, checked on a GPU before it is
written as a C++ lowering. Aligned schedule, gathered A rows, K-major expert
weights, bf16 in, bf16 rows out (GEMM1 without its activation):

    out[s, :] = x[slots[s] / k, :] · W[block_experts[s / 64]]ᵀ

for every slot s below num_padded that holds a real assignment (< M·k).
One CTA (one warpgroup) computes a 64 x 128 tile per (slot block, column
tile); its K loop is single-stage: TMA for the weights, cp.async for the
gathered rows (128B-swizzled by hand), four wgmma per 64-deep K step.

    gen_grouped_gemm.py K N k > kernel.mlir
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import wgmma_emit  # noqa: E402

K, N, TOPK = (int(v) for v in sys.argv[1:4])
BM, BN, BK = 64, 128, 64
assert K % BK == 0 and N % BN == 0
lines = []
w = lines.append
w("!descW = !nvgpu.tensormap.descriptor<tensor = memref<128x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>")
w("!barriers = !nvgpu.mbarrier.group<memorySpace = #gpu.address_space<workgroup>>")
w("!tileA = memref<64x64xbf16, #gpu.address_space<workgroup>>")
w("!tileB = memref<128x64xbf16, #gpu.address_space<workgroup>>")
w(f"!acc = {wgmma_emit.ACC}")
w("module attributes {gpu.container_module} {")
w("  gpu.module @kernels {")
w('    memref.global "private" @tiles : memref<24576xi8, #gpu.address_space<workgroup>> {alignment = 1024}')
w(f"    gpu.func @grouped_gemm(%x: memref<?x{K}xbf16>, %slots: memref<?xi32>, %blocks: memref<?xi32>, %padded: memref<1xi32>, %w_map: !llvm.ptr, %out: memref<?x{N}xbf16>) kernel {{")
for v in (0, 1, 2, 4, 8, 16, 32, 64, 128):
    w(f"      %c{v} = arith.constant {v} : index")
w(f"      %ck = arith.constant {TOPK} : index")
w(f"      %cN = arith.constant {N} : index")
w("      %w_desc = builtin.unrealized_conversion_cast %w_map : !llvm.ptr to !descW")
w("      %smem = memref.get_global @tiles : memref<24576xi8, #gpu.address_space<workgroup>>")
w("      %b_offset = arith.constant 8192 : index")
w("      %tile_a = memref.view %smem[%c0][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileA")
w("      %tile_b = memref.view %smem[%b_offset][] : memref<24576xi8, #gpu.address_space<workgroup>> to !tileB")
w("      %barrier = nvgpu.mbarrier.create -> !barriers")
w("      %tid = gpu.thread_id x")
w("      %block = gpu.block_id x")
w("      %ntile = gpu.block_id y")
w("      %first_slot = arith.muli %block, %c64 : index")
w("      %padded_i32 = memref.load %padded[%c0] : memref<1xi32>")
w("      %padded_count = arith.index_cast %padded_i32 : i32 to index")
w("      %tokens = memref.dim %x, %c0 : memref<?x" + str(K) + "xbf16>")
w("      %assignments = arith.muli %tokens, %ck : index")
w("      %in_range = arith.cmpi slt, %first_slot, %padded_count : index")
# Blocks past the padded count exit at once (grid sized for the upper bound).
w("      scf.if %in_range {")
w("      %expert_i32 = memref.load %blocks[%block] : memref<?xi32>")
w("      %expert = arith.index_cast %expert_i32 : i32 to index")
w("      %local = arith.cmpi sge, %expert, %c0 : index")
w("      scf.if %local {")
w("      %leader = arith.cmpi eq, %tid, %c0 : index")
w("      scf.if %leader {")
w("        nvgpu.mbarrier.init %barrier[%c0], %c1 : !barriers")
w("      }")
w("      gpu.barrier")
w("      %expert_rows = arith.muli %expert, %cN : index")
w("      %tile_rows = arith.muli %ntile, %c128 : index")
w("      %w_first_row = arith.addi %expert_rows, %tile_rows : index")
# Per-thread gather coordinates (4 chunks of 16 bytes).
w("      %zero_i32 = arith.constant 0 : i32")
for i in range(4):
    w(f"      %q{i}_base = arith.constant {128 * i} : index")
    w(f"      %q{i} = arith.addi %tid, %q{i}_base : index")
    w(f"      %r{i} = arith.divui %q{i}, %c8 : index")
    w(f"      %ch{i} = arith.remui %q{i}, %c8 : index")
    w(f"      %slot{i} = arith.addi %first_slot, %r{i} : index")
    w(f"      %a{i}_i32 = memref.load %slots[%slot{i}] : memref<?xi32>")
    w(f"      %a{i} = arith.index_cast %a{i}_i32 : i32 to index")
    w(f"      %real{i} = arith.cmpi ult, %a{i}, %assignments : index")
    w(f"      %tok_row{i} = arith.divui %a{i}, %ck : index")
    w(f"      %src_row{i} = arith.select %real{i}, %tok_row{i}, %c0 : index")
    w(f"      %src_elems{i} = arith.select %real{i}, %c8, %c0 : index")
    w(f"      %phase_row{i} = arith.remui %r{i}, %c8 : index")
    w(f"      %swz{i} = arith.xori %ch{i}, %phase_row{i} : index")
    w(f"      %dst_col{i} = arith.muli %swz{i}, %c8 : index")
    w(f"      %chunk_col{i} = arith.muli %ch{i}, %c8 : index")
# Descriptors (K-major, 128B swizzle).
w("      %a_ptr = memref.extract_aligned_pointer_as_index %tile_a : !tileA -> index")
w("      %b_ptr = memref.extract_aligned_pointer_as_index %tile_b : !tileB -> index")
w("      %a_addr = arith.index_cast %a_ptr : index to i64")
w("      %b_addr = arith.index_cast %b_ptr : index to i64")
wgmma_emit.descriptors(w, "      ")
prev = wgmma_emit.zero_accumulator(w, "      ")
w("      %false = arith.constant false")
w("      %true = arith.constant true")
w("      %ticks = arith.constant 10000000 : index")
w(f"      %k_steps = arith.constant {K // BK} : index")
w(f"      %result:2 = scf.for %kt = %c0 to %k_steps step %c1 iter_args(%acc_in = {prev}, %parity = %false) -> (!acc, i1) {{")
w("        %k0 = arith.muli %kt, %c64 : index")
w("        scf.if %leader {")
w("          nvgpu.tma.async.load %w_desc[%k0, %w_first_row], %barrier[%c0] to %tile_b : !descW, !barriers -> !tileB")
w("          %bytes = arith.constant 16384 : index")
w("          nvgpu.mbarrier.arrive.expect_tx %barrier[%c0], %bytes : !barriers")
w("        }")
tokens = []
for i in range(4):
    w(f"        %src_col{i} = arith.addi %k0, %chunk_col{i} : index")
    w(f"        %cp{i} = nvgpu.device_async_copy %x[%src_row{i}, %src_col{i}], %tile_a[%r{i}, %dst_col{i}], 8, %src_elems{i} : memref<?x{K}xbf16> to !tileA")
    tokens.append(f"%cp{i}")
w(f"        %group = nvgpu.device_async_create_group {', '.join(tokens)}")
w("        nvgpu.device_async_wait %group")
w("        nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}")
w("        gpu.barrier")
w("        nvgpu.mbarrier.try_wait.parity %barrier[%c0], %parity, %ticks : !barriers")
p = wgmma_emit.k64_step(w, "        ", "%acc_in")
# The next step overwrites both tiles: everyone must be done reading them.
w("        gpu.barrier")
w("        %next_parity = arith.xori %parity, %true : i1")
w(f"        scf.yield {p}, %next_parity : !acc, i1")
w("      }")
# Epilogue: rows in slot order; padding and out-of-range slots are skipped.
w("      %warp = arith.divui %tid, %c32 : index")
w("      %lane = arith.remui %tid, %c32 : index")
w("      %w16 = arith.muli %warp, %c16 : index")
w("      %l4 = arith.divui %lane, %c4 : index")
w("      %row0 = arith.addi %w16, %l4 : index")
w("      %row1 = arith.addi %row0, %c8 : index")
w("      %lm = arith.remui %lane, %c4 : index")
w("      %lane_col = arith.muli %lm, %c2 : index")
w("      %col_base = arith.addi %lane_col, %tile_rows : index")
for rname in ("row0", "row1"):
    w(f"      %s_{rname} = arith.addi %first_slot, %{rname} : index")
    w(f"      %a_{rname}_i32 = memref.load %slots[%s_{rname}] : memref<?xi32>")
    w(f"      %a_{rname} = arith.index_cast %a_{rname}_i32 : i32 to index")
    w(f"      %below_{rname} = arith.cmpi slt, %s_{rname}, %padded_count : index")
    w(f"      %real_{rname} = arith.cmpi ult, %a_{rname}, %assignments : index")
    w(f"      %store_{rname} = arith.andi %below_{rname}, %real_{rname} : i1")
    w(f"      scf.if %store_{rname} {{")
    for i in range(BN // 8):
        for j in range(2):
            reg = 4 * i + j + (2 if rname == "row1" else 0)
            w(f"        %v{reg} = llvm.extractvalue %result#0[{reg}] : !acc")
            w(f"        %t{reg} = arith.truncf %v{reg} : f32 to bf16")
            w(f"        %cc{reg} = arith.constant {8 * i + j} : index")
            w(f"        %col{reg} = arith.addi %col_base, %cc{reg} : index")
            w(f"        memref.store %t{reg}, %out[%s_{rname}, %col{reg}] : memref<?x{N}xbf16>")
    w("      }")
w("      }")
w("      }")
w("      gpu.return")
w("    }")
w("  }")
w("}")
print("\n".join(lines))
