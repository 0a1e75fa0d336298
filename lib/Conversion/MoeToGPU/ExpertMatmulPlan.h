//===- ExpertMatmulPlan.h - what one expert GEMM computes -----*- C++ -*-===//
//
// The facts the parts of the expert GEMM emitter share: the op's shapes and
// format with the decisions of its #moe_gpu.kernel_config
// (ExpertMatmulPlan), the kernel's arguments, and the values that place the
// current tile. The target-neutral MoE part (ExpertMatmulTile.h) and the
// schedules built on Hopper (ExpertMatmulKernel.cpp, HopperEmitter.h) read
// them; none of them holds kernel state of its own beyond these.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULPLAN_H
#define MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULPLAN_H

#include "moe/Dialect/Moe/IR/MoeAttrs.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"

#include "mlir/IR/Builders.h"

#include <cassert>
#include <optional>

namespace mlir::moe::expert_matmul {

using moe_gpu::hopper::kSwizzleAlignment;
using moe_gpu::hopper::kTileRingDepth;
using moe_gpu::hopper::kWarpgroupRows;
using moe_gpu::hopper::kWarpgroupThreads;

/// Bytes of one row of a stage's tiles: one 128B swizzle span, so 64 bf16
/// or 128 one-byte (e4m3, s8) elements of K per stage.
inline constexpr int64_t kRowBytes = moe_gpu::hopper::kStageRowBytes;
/// Block scales cover 128 x 128 weights and 1 x 128 activations.
inline constexpr int64_t kScaleBlock = 128;
/// cp.async moves 16 bytes per chunk: 8 rows of 8 chunks fill a 128B span.
inline constexpr int64_t kChunkBytes = 16;
/// bf16 values per 16-byte chunk of the B tile.
inline constexpr int64_t kValuesPerChunk = 8;
inline constexpr int64_t kMaxStages = moe_gpu::hopper::kMaxRingStages;
/// Warp-specialized: the named barrier (bar.sync id) of the consumer
/// warpgroups alone; 0 is the block's.
inline constexpr int64_t kConsumerBarrier = 1;
/// Persistent, staged in turn (`staged_epilogue`): each consumer
/// warpgroup's own barrier is kOwnTurnBarrier + its index; the first
/// warpgroup arrives at kFirstTurnDoneBarrier once it has copied its rows
/// out of the table, the second at kSecondTurnDoneBarrier.
inline constexpr int64_t kOwnTurnBarrier = 2, kFirstTurnDoneBarrier = 4,
                         kSecondTurnDoneBarrier = 5;
/// What one kernel computes: the shapes and format of the op, and the
/// decisions of its #moe_gpu.kernel_config.
struct ExpertMatmulPlan {
  int64_t topK, outFeatures, inFeatures, numExperts;
  bool gather, combine;
  /// With `combine`: each product row is added, unweighted, into the f32 row
  /// of its assignment (moe.expert_matmul's unpermute mode) rather than
  /// weighted into its token's.
  bool unpermute = false;
  /// With `combine` (`combine_rows`): each weighted product row is stored
  /// in bf16 at the row of its assignment of an [M·k, N] buffer, for the
  /// finalize kernel to sum over k, rather than reduced into f32 sums.
  bool combineRows = false;
  /// Per-expert f32 biases [E, N], added to the products in the epilogue.
  bool bias = false;
  std::optional<ActivationKind> activation;
  /// The activation's gate and up weight rows alternate (gate row j is row
  /// 2j, its up row 2j + 1) instead of forming halves.
  bool gateUpInterleaved = false;
  double alpha = 0, limit = 0, routedScalingFactor = 1;
  int64_t stages, splitK;
  /// 128-byte swizzle spans of K in each row of a stage: 1, or 2 for the
  /// bf16 multistage schedule (256 bytes of every weight row per TMA step,
  /// half the steps). A stage's tile is `spans` swizzled [rows, span]
  /// blocks, one after the other.
  int64_t spans = 1;
  /// Rows of a slot block: 64 or 128 (one or two consumer warpgroups, each
  /// an m64 wgmma on its 64 rows against the shared B tile), or with
  /// swapped operands the wgmma's N: 16 or 32, and on the register operand
  /// 64, 128 or (with a producer warpgroup) 256.
  int64_t blockM = 64;
  /// Swapped operands (decode): the weight tile is the wgmma's A operand, 64
  /// weight rows per accumulator, and the slot block's rows its B operand;
  /// one warpgroup loads and multiplies, and its sums are transposed
  /// through shared memory into the unswapped fragment for the epilogue.
  bool swapAB = false;
  /// Swapped operands: the consumer warpgroups (1 or 2), which split the
  /// tile's weight rows, block_n / swappedWarpgroups each.
  int64_t swappedWarpgroups = 1;
  /// The weight tile is copied by every thread in 16-byte cp.async chunks
  /// (placed as the 128B swizzle would place them) rather than by TMA.
  bool copiesWeights = false;
  /// The A rows of a stage arrive by TMA, a box of block_m rows per span
  /// on the stage's full barrier (`input_tma`; an input in slot order),
  /// rather than in cp.async chunks copied by every thread.
  bool inputTma = false;
  /// Weight-only with swapped operands (`weight_load = registers`): each
  /// thread decodes its elements of the wgmma's A fragment from the stored
  /// codes into registers; a stage holds no bf16 weight tile.
  bool registerOperand = false;
  /// Weight-only codes stored in moe.prepack's wgmma_a_4bit order.
  bool packedCodes = false;
  /// fp8 sums stay in the wgmma's accumulator over all of K
  /// (`fast_accumulation`): nothing is promoted.
  bool fastAccumulation = false;
  /// Calls of at most this many assignments (M·k) align the block's own
  /// slot block from the ids (`fused_align_assignments`); 0: never.
  int64_t fusedAlignAssignments = 0;
  /// The width of the combine's f32 sums this kernel zeroes (see
  /// moe_gpu::getSumsZeroedBy); 0: none.
  int64_t zeroedSumsWidth = 0;
  /// Columns of the wgmma (its N): 64, 128 or 256.
  int64_t blockN = 128;
  /// The w8a8 format (fp8 e4m3 or int8; none for bf16) and its scales.
  QuantFormat format = QuantFormat::None;
  ScaleLayout scales = ScaleLayout::PerTensor;

  /// Group size along K and zero points of a weight-only format.
  int64_t group = 0;
  bool zeroPoint = false;
  /// Persistent (`staged_epilogue`): the consumer warpgroups stage their
  /// bf16 rows in turn through one table of 64 rows after the tile slots,
  /// which the producer's loads of the next tile leave alone.
  bool stagesInTurn = false;
  /// Blocks per cluster along the slot blocks: 1, or 2 (multistage or
  /// warp-specialized): a pair of consecutive slot blocks of one expert
  /// loads each weight tile once, each block half of it, multicast to both.
  int64_t clusterM = 1;

  /// Rows out whose padding rows the epilogue sets to zero (the value the
  /// zero-filled input rows of cp.async give): a bias would land there, and
  /// with input_tma a padding slot's input row holds whatever its row held.
  bool zeroesPaddingRows() const { return bias || inputTma; }

  bool isW8A8() const {
    return format == QuantFormat::Fp8 || format == QuantFormat::Int8;
  }
  /// Weight-only: stored codes, dequantized to bf16 in shared memory.
  bool isWeightOnly() const { return !isW8A8() && format != QuantFormat::None; }
  /// Weight-only codes packed two per byte: int4 and mxfp4.
  bool isFourBit() const {
    return format == QuantFormat::Int4Weight || format == QuantFormat::Mxfp4;
  }
  /// Bytes of stored weights per 64 of K: 32 for int4 and e2m1 pairs.
  int64_t packedRowBytes() const {
    return moe_gpu::hopper::packedRowBytes(format);
  }
  int64_t packedTileBytes() const {
    return isWeightOnly() ? blockN * packedRowBytes() : 0;
  }
  bool hasBlockScales() const {
    return isW8A8() && scales == ScaleLayout::Block;
  }
  /// fp8 sums are moved into an f32 accumulator after every stage (128 of
  /// K): the tensor cores add e4m3 products with fewer mantissa bits than
  /// f32 (measured on an H200: per-channel fp8 over K = 2048 in one
  /// accumulator was 1.2e-2 off the float64 oracle, 3.5e-3 promoted),
  /// unless the configuration asks for `fast_accumulation`.
  bool promotesEachStage() const {
    return format == QuantFormat::Fp8 && !fastAccumulation;
  }
  int64_t elementBytes() const { return isW8A8() ? 1 : 2; }
  /// Elements of K in one 128-byte swizzle span (a TMA box's width).
  int64_t spanElements() const { return kRowBytes / elementBytes(); }
  /// Elements of K per stage.
  int64_t blockK() const { return spans * spanElements(); }
  /// Warp-specialized: a producer warpgroup after the consumers fills the
  /// ring; setmaxnreg moves the roles to these per-thread register counts
  /// (0: no rebalancing).
  bool warpSpecialized = false;
  /// Persistent (warp-specialized): a block per SM walks the tiles, and the
  /// ring's phases run on across them.
  bool persistent = false;
  /// Pingpong (persistent): each consumer warpgroup multiplies all block_m
  /// rows of its own tiles (every other one), so that one's epilogue runs
  /// while the other's wgmmas do.
  bool pingpong = false;
  int64_t producerRegisters = 0, consumerRegisters = 0;
  /// Slot blocks a raster group walks before the next column tile; 0: all.
  int64_t groupM = 0;
  int64_t consumerThreads() const {
    return swapAB ? swappedWarpgroups * kWarpgroupThreads
                  : blockM / kWarpgroupRows * kWarpgroupThreads;
  }
  /// Swapped operands: the weight rows of the tile each consumer warpgroup
  /// multiplies.
  int64_t swappedRowsPerWarpgroup() const {
    return blockN / swappedWarpgroups;
  }
  /// The accumulators one consumer thread carries through the K loop: one
  /// per 64 of its warpgroup's weight rows with swapped operands, else
  /// rowFragments().
  int64_t mmaFragments() const {
    return swapAB ? swappedRowsPerWarpgroup() / kWarpgroupRows
                  : rowFragments();
  }
  /// The N of each wgmma: the slot rows with swapped operands, else the
  /// tile's columns.
  int64_t mmaColumns() const { return swapAB ? blockM : blockN; }
  /// The 64-row accumulators of one consumer warpgroup: its own 64 rows, or
  /// with pingpong all block_m rows.
  int64_t rowFragments() const {
    return pingpong ? blockM / kWarpgroupRows : 1;
  }
  /// The threads that consume (and release) each stage: one warpgroup with
  /// pingpong, else all consumers.
  int64_t stageConsumerThreads() const {
    return pingpong ? kWarpgroupThreads : consumerThreads();
  }
  int64_t threads() const {
    return consumerThreads() + (warpSpecialized ? kWarpgroupThreads : 0);
  }
  /// Column tiles across the output width (the last may stick out).
  int64_t columnTiles() const {
    return (width() + outputTile() - 1) / outputTile();
  }
  int64_t tileABytes() const { return spans * blockM * kRowBytes; }

  int64_t tileBBytes() const {
    return registerOperand ? 0 : spans * blockN * kRowBytes;
  }
  /// Where stage 0's B tile and, weight-only, its stored codes begin: the
  /// ring holds every stage's A tile, then every B tile, then every stage's
  /// codes.
  int64_t tileBOffset() const { return stages * tileABytes(); }
  int64_t codesOffset() const { return stages * (tileABytes() + tileBBytes()); }
  /// Bytes from one span's block of the A (B) tile to the next.
  int64_t spanABytes() const { return blockM * kRowBytes; }
  int64_t spanBBytes() const { return blockN * kRowBytes; }

  int64_t outputTile() const { return activation ? blockN / 2 : blockN; }
  /// Columns of a product row after the epilogue.
  int64_t width() const { return activation ? outFeatures / 2 : outFeatures; }
  int64_t kSteps() const { return inFeatures / blockK() / splitK; }
  /// Split-K of a matmul that stores its products (no combine's sums to add
  /// into): the splits of a tile form a cluster along the grid's z, and
  /// split 0 adds the others' sums through distributed shared memory
  /// before its epilogue.
  bool reducesSplitsInCluster() const { return splitK > 1 && !combine; }
  /// Per stage an A tile [BM, spans × 128 bytes] and a B tile [BN, spans ×
  /// 128 bytes]
  /// (weight-only: and the B tile's stored codes), plus the slack for
  /// aligning the base to the swizzle.
  int64_t ringBytes() const {
    return stages * (tileABytes() + tileBBytes() + packedTileBytes());
  }
  /// Persistent: the tile ring's i32 slots, after the stages.
  int64_t tileSlotBytes() const {
    return persistent ? moe_gpu::hopper::kTileSlotBytes : 0;
  }
  /// Rows of a TMA box of the weights: the B tile, or with a gated
  /// activation or a cluster, half of it (gate and up rows; or the half
  /// each block of the pair loads).
  int64_t boxRows() const {
    return activation || clusterM > 1 ? blockN / 2 : blockN;
  }
  /// Cluster: per stage an 8-byte mbarrier, after the tile ring's slots,
  /// on which the other block (or, unpaired, this one) frees the stage;
  /// warp-specialized, it is the ring's empty barrier.
  int64_t stageFreeBarrierBytes() const {
    return clusterM > 1 ? 8 * stages : 0;
  }
  /// Warp-specialized: the arrivals that release a stage. Every thread that
  /// consumed it, and in a cluster also one per consumer warpgroup of the
  /// block whose multicasts refill it (the other block, shared; this one,
  /// unshared), so that the count is the same either way.
  int64_t releasesPerStage() const {
    int64_t releases = stageConsumerThreads();
    if (clusterM > 1)
      releases += consumerThreads() / kWarpgroupThreads;
    return releases;
  }
  /// The staged epilogue table of the output tile (see
  /// moe_gpu::hopper::epilogueTableBytes).
  int64_t epilogueTablePitch() const {
    return moe_gpu::hopper::epilogueTablePitch(outputTile());
  }
  int64_t epilogueTableBytes(int64_t rows) const {
    return moe_gpu::hopper::epilogueTableBytes(rows, outputTile());
  }
  /// Persistent, staged in turn: the table of one consumer warpgroup's rows,
  /// after the tile slots (where the swapped table would be).
  int64_t turnTableBytes() const {
    return stagesInTurn ? epilogueTableBytes(kWarpgroupRows) : 0;
  }
  int64_t turnTableOffset() const {
    return moe_gpu::hopper::turnTableOffset(ringBytes());
  }
  /// Swapped operands: the table through which the sums are transposed
  /// after the K loop.
  int64_t swappedTableBytes() const {
    return swapAB
               ? moe_gpu::hopper::swappedTableBytes(swappedPassRows(), blockN)
               : 0;
  }
  /// Swapped operands: the slot rows transposed per pass after the K loop:
  /// all of them, at most 64 per consumer warpgroup.
  int64_t swappedPassRows() const {
    return moe_gpu::hopper::swappedPassRows(blockM, swappedWarpgroups);
  }
  /// Swapped operands: the passes of the transpose (two for 256 rows).
  int64_t swappedPasses() const {
    assert(blockM % swappedPassRows() == 0 && "whole passes (verified)");
    return blockM / swappedPassRows();
  }
  /// Where the swapped table begins: over the ring's memory, which one
  /// tile per block no longer reads, or after the ring and the tile slots
  /// where a persistent producer fills the next tile's stages meanwhile.
  int64_t swappedTableOffset() const {
    return persistent ? ringBytes() + tileSlotBytes() : 0;
  }
  /// The block aligns its own slot block (`fused_align_assignments`):
  /// the alignment's arrays, after the stage-free barriers.
  int64_t fusedAlignOffset() const {
    return std::max({ringBytes() + tileSlotBytes(),
                     swappedTableOffset() + swappedTableBytes(),
                     stagesInTurn ? turnTableOffset() + turnTableBytes() : 0}) +
           stageFreeBarrierBytes();
  }
  int64_t fusedAlignBytes() const {
    return fusedAlignAssignments > 0
               ? moe_gpu::hopper::fusedAlignSharedBytes(numExperts, blockM)
               : 0;
  }
  int64_t sharedBytes() const {
    return fusedAlignOffset() + fusedAlignBytes() + kSwizzleAlignment;
  }
};

/// The kernel's arguments, in their order (see buildExpertMatmulKernel);
/// those the plan does not use stay null.
struct KernelArguments {
  Value x, slots, blocks, padded;
  /// The weights' TMA descriptor (a pointer), the bf16 weights themselves
  /// (copied by cp.async; as the descriptor would view them), or
  /// weight-only stored codes.
  Value weightsPointer, weights, packedWeights;
  Value inputScales, weightScales, weightZeros, biases;
  Value routingWeights, out;
  /// Persistent: the counter of tiles taken.
  Value tileCounter;
  /// `fused_align_assignments`: the ids [M, k], and the word that counts
  /// the ids outside [-1, E).
  Value ids, alignErrors;
  /// The combine's f32 sums [M, width] this kernel zeroes.
  Value zeroedSums;
};

/// The schedule's size and the values that place the current tile.
struct TileValues {
  /// The padded slot count (from moe.align) and the assignments M·k.
  Value paddedCount, assignments;
  /// The tile's expert, first slot, first output column and first K.
  Value expert, firstSlot, tileColumn, kBase;
  /// The first weight row of the tile in the [E·N, K] weights.
  Value weightsRow;
  /// `fused_align_assignments`: the tile's slots in shared memory
  /// (memref<block_m x i32>; slot s is row s - firstSlot); null: the
  /// schedule's slots in global memory.
  Value ownSlots;
};

/// Creates an scf.if without else on `condition` and builds `body` in it.
void buildIfThen(OpBuilder &b, Location loc, Value condition,
                 function_ref<void()> body);

} // namespace mlir::moe::expert_matmul

#endif // MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULPLAN_H
