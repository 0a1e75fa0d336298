//===- HopperLimits.h - facts the sm_90a kernels are built around -*- C++ -*-//
//
// One place for the numbers that the kernel configuration's verifier, the
// configure pass and the Hopper emitters share.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H
#define MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H

#include "moe/Dialect/Moe/IR/MoeAttrs.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cstdint>

namespace mlir::moe_gpu::hopper {

/// A warpgroup: 4 warps, and the 64 rows of one m64 wgmma.
inline constexpr int64_t kWarpgroupRows = 64, kWarpgroupThreads = 128;
/// The tallest slot block the multistage emitter builds without a producer
/// (bf16, no cluster): three consumer warpgroups, 384 threads, which
/// `.maxntid` holds to 168 registers a thread.
inline constexpr int64_t kMaxMultistageConsumerWarpgroups = 3;
inline constexpr int64_t kTallBlockRows =
    kWarpgroupRows * kMaxMultistageConsumerWarpgroups;
/// Dynamic shared memory one thread block may use on sm_90a.
inline constexpr int64_t kMaxSharedBytes = 227 * 1024;
/// 128B-swizzled tiles start on 1024 bytes; the emitters round the dynamic
/// shared memory base up at run time and request this much more.
inline constexpr int64_t kSwizzleAlignment = 1024;
/// Bytes of one row of a stage's tiles: one 128B swizzle span (64 bf16 or
/// 128 one-byte codes of K).
inline constexpr int64_t kStageRowBytes = 128;
/// The deepest ring the multistage emitter builds: measured on an H200,
/// five stages of a 64x256 tile (one block per SM) beat four of 64x128 (two
/// per SM) by 14% at M = 4096.
inline constexpr int64_t kMaxMultistageStages = 5;
/// The deepest ring the emitters build where an option asks for it (the
/// kernel configuration's limit): small decode tiles fit many stages.
inline constexpr int64_t kMaxRingStages = 16;

/// The longest K loop (steps per tile) whose bf16 rows are staged through
/// shared memory: measured on an H100 (docs/gpu-benchmark.md, thirty-second
/// session), tiles of 12-32 K steps gained (Qwen3's block -4.8% at M =
/// 4096, fp8 and int8 -3 to -4%), Mixtral's GEMM1 of 64 steps lost 0.3-1.6%
/// and DeepSeek-V3's of 112 was level.
inline constexpr int64_t kMaxStagedEpilogueSteps = 32;

/// The most blocks of a cluster that every sm_90a part schedules (the
/// portable cluster size).
inline constexpr int64_t kMaxClusterBlocks = 8;

/// The most assignments (M·k) a GEMM kernel aligns its own slot block for
/// (`fused_align_assignments`): the ids are taken one per thread per round,
/// each round two block barriers, so a few rounds at most.
inline constexpr int64_t kMaxFusedAlignAssignments = 1024;
/// What such a kernel keeps in static shared memory beside its ring, as i32
/// words: the experts' counts, its slot block, a sum per warp (at most 32)
/// and four facts of the block (its expert, first rank, padded count and
/// count of invalid ids).
inline constexpr int64_t kFusedAlignWarpSums = 32, kFusedAlignFacts = 4;
inline int64_t fusedAlignSharedBytes(int64_t numExperts, int64_t blockM) {
  return 4 * (numExperts + blockM + kFusedAlignWarpSums + kFusedAlignFacts);
}

/// Persistent: tiles the producer's leader publishes ahead of the block,
/// each in an i32 slot after the ring.
inline constexpr int64_t kTileRingDepth = 2;
inline constexpr int64_t kTileSlotBytes = 4 * kTileRingDepth;
/// Persistent, staged in turn: where the epilogue table begins, after the
/// ring and the tile slots, rounded up so that its 16-byte chunks (rows of
/// a pitch that is a multiple of 16) are aligned for ld.shared.v4.
inline int64_t turnTableOffset(int64_t ringBytes) {
  constexpr uint64_t kChunkAlignment = 16;
  return llvm::alignTo(ringBytes + kTileSlotBytes, kChunkAlignment);
}
/// A staged epilogue table of `rows` rows of `columns` bf16 outputs: rows
/// of pairs `epilogueTablePitch` bytes apart (16 bytes of padding, so that
/// the 16-byte chunks of consecutive rows start in different banks), then a
/// destination word per row.
inline int64_t epilogueTablePitch(int64_t columns) { return 2 * columns + 16; }
inline int64_t epilogueTableBytes(int64_t rows, int64_t columns) {
  return rows * (epilogueTablePitch(columns) + 4);
}
/// Swapped operands: the slot rows a block transposes in one pass after
/// the K loop. Each consumer warp takes 16 of them from the table (64 per
/// warpgroup), so a block of more slot rows than that goes in passes.
inline int64_t swappedPassRows(int64_t blockM, int64_t consumerWarpgroups) {
  return std::min(blockM, kWarpgroupRows * consumerWarpgroups);
}
/// Swapped operands: the table of 32-bit sums through which a block
/// transposes its [block_n, block_m] accumulators after the K loop,
/// `passRows` slot rows at a time, four words of padding per row (so that
/// a store's lanes fall in distinct banks).
inline int64_t swappedTableBytes(int64_t passRows, int64_t blockN) {
  return passRows * (blockN + 4) * 4;
}

/// Bytes of stored weight codes per 64 of K of a weight-only format: 32 for
/// int4 and e2m1 pairs, 64 for int8.
inline int64_t packedRowBytes(moe::QuantFormat format) {
  return format == moe::QuantFormat::Int8Weight ? 64 : 32;
}

} // namespace mlir::moe_gpu::hopper

#endif // MOE_DIALECT_MOEGPU_IR_HOPPERLIMITS_H
