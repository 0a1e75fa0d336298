//===- MoeGPUAttrs.td - moe_gpu attributes -----------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_TD
#define MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_TD

include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def MoeGPU_MmaKind : I32EnumAttr<"MmaKind",
    "matrix instruction a grouped GEMM accumulates with", [
  I32EnumAttrCase<"WgmmaBf16", 0, "wgmma_bf16">,
  I32EnumAttrCase<"WgmmaE4m3", 1, "wgmma_e4m3">,
  I32EnumAttrCase<"WgmmaS8", 2, "wgmma_s8">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe_gpu";
}

def MoeGPU_Schedule : I32EnumAttr<"Schedule",
    "how the warps of a block share loading and multiplying", [
  I32EnumAttrCase<"Multistage", 0, "multistage">,
  I32EnumAttrCase<"WarpSpecialized", 1, "warp_specialized">,
  I32EnumAttrCase<"Persistent", 2, "persistent">,
  I32EnumAttrCase<"Pingpong", 3, "pingpong">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe_gpu";
}

def MoeGPU_WeightLoad : I32EnumAttr<"WeightLoad",
    "how a block copies its weight tile into shared memory", [
  I32EnumAttrCase<"Tma", 0, "tma">,
  I32EnumAttrCase<"CpAsync", 1, "cp_async">,
  I32EnumAttrCase<"Registers", 2, "registers">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe_gpu";
}

/// `weight_load`, TMA unless written.
def MoeGPU_WeightLoadParameter : EnumParameter<MoeGPU_WeightLoad> {
  let defaultValue = "::mlir::moe_gpu::WeightLoad::Tma";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

def MoeGPU_KernelConfigAttr : AttrDef<MoeGPU_Dialect, "KernelConfig"> {
  let mnemonic = "kernel_config";
  let summary = "the kernel a grouped matmul is emitted as";
  let description = [{
    Every decision a kernel emitter needs about the GPU kernel of one
    `moe.expert_matmul`, chosen by `moe-gpu-configure`:

    - `mma`: the matrix instruction: `wgmma_bf16` (bf16 operands, including
      weight-only formats dequantized to bf16), `wgmma_e4m3` (fp8 w8a8) or
      `wgmma_s8` (int8 w8a8).
    - `schedule`: `multistage` (every warp loads its share of a stage and
      multiplies; a barrier per K step), `warp_specialized` (producer
      warpgroups load through a ring of full/empty barriers while consumer
      warpgroups multiply), `persistent` (warp-specialized, one block per
      SM walking a tile schedule) or `pingpong` (persistent, and each
      consumer warpgroup multiplies all `block_m` rows of every other tile,
      so that one's epilogue overlaps the other's wgmmas).
    - `block_m`, `block_n`, `block_k`: the rows (assignment slots), output
      columns and reduction depth of one tile step; `block_m` is also the
      slot-block height of the aligned schedule. Each consumer warpgroup
      multiplies 64 rows of a tile (with `pingpong`, every 64 rows of its
      own tiles), so `block_m` = 64 × `consumer_warpgroups`.
    - `stages`: the depth of the shared-memory ring.
    - `consumer_warpgroups`, `producer_warpgroups`: the warpgroup roles
      (128 threads each); a multistage kernel has no producers.
    - `producer_registers`, `consumer_registers`: the per-thread register
      counts `setmaxnreg` moves each role to (0: no rebalancing).
    - `split_k`: blocks that share one tile's reduction.
    - `cluster_m`, `cluster_n`: the thread-block cluster shape (blocks that
      could share a weight tile through TMA multicast).
    - `group_m`: the grid's raster. Consecutive blocks walk `group_m` slot
      blocks, then move to the next column tile, so that the column tiles
      of a few slot blocks run together and share their A rows in L2; 0
      walks all slot blocks of a column tile first (blocks of one expert
      share its weight tile).
    - `swap_ab`: the weights are the wgmma's A operand and the slot block's
      rows its B operand: each wgmma multiplies 64 weight rows (output
      columns) by `block_m` rows, m64nNk16 with N = `block_m`, so that a
      slot block of few rows (decode) multiplies no 64-row padding. Then
      `block_m` is an N of the wgmma, at most 64 per consumer warpgroup
      (the sums are transposed after the K loop into 64 slot rows per
      warpgroup), or 256 over two consumer warpgroups with `weight_load =
      registers` and a producer warpgroup (transposed in two passes of 128,
      the consumers' registers holding the wider sums); a consumer thread's
      accumulators must fit its 255 registers. Each of the one or two
      consumer warpgroups multiplies its
      `block_n / consumer_warpgroups` weight rows and keeps one accumulator
      of `block_m / 2` registers per 64 of them, and the schedule is
      `multistage`, or `warp_specialized` or `persistent` with
      `weight_load = registers`.
    - `weight_load`: how the weight tile reaches shared memory: `tma`
      (one thread issues a TMA box per 128-byte span of K; the default) or
      `cp_async` (every thread of the block copies 16-byte chunks, placed
      as the 128B swizzle would place them: more requests in flight per SM,
      which a short weight stream at decode needs; bf16 multistage only),
      or `registers` (weight-only codes with swapped operands: 16-byte
      chunks of the stored codes are copied into the stage, by every
      thread (`multistage`) or by the producer warpgroup
      (`warp_specialized`, `persistent`), then each consumer thread
      decodes its own elements of the wgmma's A fragment into registers;
      no bf16 tile is written to shared memory). `registers` needs `swap_ab`, `wgmma_bf16`
      and a `block_k` of 64 (one K step of codes per stage).
    - `fast_accumulation`: e4m3 products stay in the wgmma's own
      accumulator over all of K (the tensor cores add them with fewer
      mantissa bits than f32), instead of being promoted into an f32 sum
      after every stage. It frees the second accumulator, so tiles can be
      as wide as int8's; the scales of per-channel and per-tensor fp8 are
      applied in the epilogue either way. Block scales need the promotion
      (each K block has its own scale). `wgmma_e4m3` only; false unless
      written.
    - `fused_align_assignments`: where the matmul's slots come from a
      `moe.align` and the call has at most this many assignments (M·k),
      the kernel builds its own slot block of the aligned schedule from the
      ids (counts, padded starts and ranks in shared memory), and the
      blocks of its first column tile write the schedule for the kernels
      after it; the host then launches no align kernel. At any M·k, the
      kernel also zeroes the f32 sums of the schedule's combine (which
      then needs no memset node). It is for the first matmul of a
      schedule, at decode, where the align kernel and the memset are nodes
      of the chain of their own. 0 (the default): the kernel reads the
      schedule the align kernel wrote. It needs a schedule of one tile per
      block (`multistage` or `warp_specialized`) without a cluster.
    - `combine_rows`: how a combine adds its weighted products. False
      (the default): each product row is reduced (`red.global.add.f32`)
      into its token's f32 sums, zeroed before, which a finalize kernel
      rounds to the result type. True: each assignment's weighted product
      row is stored once, rounded to the result's element type, in a
      `[M·k, N]` buffer, and the finalize kernel sums each token's k rows
      in f32 (skipping assignments of ids out of range) before rounding:
      no atomics and half the bytes written where the result is bf16, one
      more rounding per product, and sums in a fixed order. The buffer
      takes M·k·N·2 bytes of workspace, k/2 times the f32 sums' M·N·4. For
      a combine with a bf16 result and no `accumulate` partial sums, and
      not with `swap_ab` or `split_k` > 1.
    - `staged_epilogue`: the persistent schedule's bf16 rows (a matmul
      without a combine, or `combine_rows`) leave through a table of 64
      rows in shared memory, after the ring, instead of as 4-byte pairs from
      the wgmma's fragments: each consumer warpgroup in turn writes its 64
      rows there and copies them out in 16-byte chunks of whole rows, while
      the producer fills the ring for the next tile. False (the default):
      the fragments are stored directly. (The multistage schedule stages its
      rows over the ring's stages by itself where its K loop is short; it
      takes no table of its own.) Only with `schedule = persistent`
      (whose tiles have no K split), not with `swap_ab` or a cluster.
    - `input_tma`: the A rows reach each stage by TMA, one box of
      `block_m` rows per 128-byte span of K, on the stage's full barrier
      beside the weights' boxes, instead of in 16-byte cp.async chunks
      copied by every thread: no copies to issue, wait for and fence at
      each K step. For a matmul whose input rows are its slots (no gather:
      a slot block's rows are contiguous); a padding slot then reads
      whatever its row holds, which only its own product row sees: a
      combine does not store that row, and rows out are set to zero, as
      the op states them. False (the default): cp.async, which zero-fills
      padding rows. Only with `mma = wgmma_bf16` over bf16 weights (no
      weight-only format), `schedule = multistage`, `weight_load = tma`,
      unswapped and without a cluster.

    The verifier states what sm_90a can run: wgmma shapes, 227 KiB of shared
    memory for the ring, 1024 threads and 64K registers per block, `setmaxnreg`
    counts, portable cluster sizes. Which configurations an emitter
    implements is narrower; it says so in a remark.

    Example: `#moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage,
    block_m = 128, block_n = 256, block_k = 64, stages = 5,
    consumer_warpgroups = 2>`.
  }];
  let parameters = (ins
    EnumParameter<MoeGPU_MmaKind>:$mma,
    EnumParameter<MoeGPU_Schedule>:$schedule,
    "int64_t":$block_m,
    "int64_t":$block_n,
    "int64_t":$block_k,
    "int64_t":$stages,
    "int64_t":$consumer_warpgroups,
    DefaultValuedParameter<"int64_t", "0">:$producer_warpgroups,
    DefaultValuedParameter<"int64_t", "0">:$producer_registers,
    DefaultValuedParameter<"int64_t", "0">:$consumer_registers,
    DefaultValuedParameter<"int64_t", "1">:$split_k,
    DefaultValuedParameter<"int64_t", "1">:$cluster_m,
    DefaultValuedParameter<"int64_t", "1">:$cluster_n,
    DefaultValuedParameter<"int64_t", "0">:$group_m,
    DefaultValuedParameter<"bool", "false">:$swap_ab,
    MoeGPU_WeightLoadParameter:$weight_load,
    DefaultValuedParameter<"bool", "false">:$fast_accumulation,
    DefaultValuedParameter<"int64_t", "0">:$fused_align_assignments,
    DefaultValuedParameter<"bool", "false">:$combine_rows,
    DefaultValuedParameter<"bool", "false">:$staged_epilogue,
    DefaultValuedParameter<"bool", "false">:$input_tma);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Bytes of one operand element the MMA reads: 2 for bf16, 1 for e4m3
    /// and s8.
    int64_t getElementBytes() const;
    /// The K of one wgmma instruction (32 bytes of operands).
    int64_t getInstructionK() const { return 32 / getElementBytes(); }
    /// Threads of one block: 128 per warpgroup of either role.
    int64_t getNumThreads() const {
      return 128 * (getConsumerWarpgroups() + getProducerWarpgroups());
    }
    /// Shared-memory bytes of the ring's A and B tiles.
    int64_t getRingBytes() const {
      return getStages() * (getBlockM() + getBlockN()) * getBlockK() *
             getElementBytes();
    }
    /// Checks this configuration against the whole contract the parser
    /// checks (verify), for one built unchecked by `get`.
    ::llvm::LogicalResult verifyContract(
        ::llvm::function_ref<::mlir::InFlightDiagnostic()> emitError) const;
  }];
}

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_TD
