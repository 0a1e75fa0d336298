//===- Configure.cpp - moe-gpu-configure ----------------------------------===//
//
// The policy that picks each expert matmul's sm_90a kernel. Its numbers
// were measured on an H200 (docs/gpu-benchmark.md,
// docs/gpu-benchmark-quantized.md); the emitters only follow the result.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>
#include <optional>

namespace mlir::moe_gpu {
#define GEN_PASS_DEF_MOEGPUCONFIGURE
#include "moe/Dialect/MoeGPU/Transforms/Passes.h.inc"
} // namespace mlir::moe_gpu

using namespace mlir;
using namespace mlir::moe_gpu;
using moe::ExpertMatmulOp;
using moe::QuantFormat;
using moe::TileAttr;

using hopper::kStageRowBytes;
using hopper::kWarpgroupRows;

namespace {
/// The slot-block heights of the multistage kernel: one or two consumer
/// warpgroups of 64 rows.
constexpr int64_t kSmallBlockM = 64, kLargeBlockM = 128;
/// Three consumer warpgroups of 64 rows (bf16, multistage): where an
/// expert's rows spill out of 128 but fit 192, one block per expert streams
/// its weights once (`tall-blocks`).
constexpr int64_t kTallBlockM = hopper::kTallBlockRows;
/// The register operand's wide slot blocks: m64n256 wgmmas, each decoded
/// weight fragment multiplied by 256 slot rows; taken where an expert's
/// mean rows are at least kMinWideBlockRows, below which most of an
/// expert's last block would be padding. Measured on an H100 against
/// 128-row blocks (Mixtral int4 g128 prepacked, docs/
/// gpu-benchmark-quantized.md): since the producer's copies arrive by
/// themselves (twenty-fourth session) -14% at 1024 and 512 rows per
/// expert, -4.4% at 256 (with the producer that waited for its copies,
/// twenty-third: -3.9%, level, +10%). GPT-OSS mxfp4 at 512 rows per
/// expert: +4.5% (its consumers spill 576 bytes).
constexpr int64_t kWideBlockM = 256, kMinWideBlockRows = 256;
/// wgmma widths the kernel is built for.
constexpr int64_t kMinBlockN = 64, kMaxBlockN = 256;
/// Capped widths: see the pass description.
constexpr int64_t kNarrowBlockN = 128;
/// K elements of bf16 in two 128-byte spans.
constexpr int64_t kTwoSpansOfBf16 = 2 * (kStageRowBytes / 2);
/// The largest K of a bf16 combine given `combine_rows` by policy
/// (isCombineRowsByPolicy): DeepSeek-V3's 2048, not Mixtral's 14336.
constexpr int64_t kCombineRowsMaxK = 2048;
/// The fewest expected assignments (M·k) of a schedule whose combine takes
/// `combine_rows` by policy.
constexpr int64_t kCombineRowsMinAssignments = 8192;
/// The share of a wave a grid of shared-expert tiles must fill to take the
/// widest tiles (DeepSeek-V3's shared GEMM1 at M = 1024: 128 tiles of 256
/// weight rows on 132 SMs, 113.4 -> 103.8 µs against 256 of 128; its GEMM2
/// at M = 256 in 64-row blocks: 112 tiles, 26.2 -> 22.8 µs against 224).
constexpr double kWideTileWave = 0.8;
/// Two spans of K per stage where the ring still holds this many stages.
constexpr int64_t kMinTwoSpanStages = 4;
/// Weight-only rings are two stages deep: three blocks per SM at 64x128
/// hide the dequantization better than deeper prefetch (Mixtral int4
/// M = 64: 1262 -> 849 µs).
constexpr int64_t kMaxWeightOnlyStages = 2;
constexpr int64_t kMinStages = 2;
/// The decode split of the combine when the tile asked for swapped operands.
constexpr int64_t kMaxDecodeSplitK = 8, kMinStepsPerSplit = 8;
/// setmaxnreg counts of a warp-specialized block of one producer and two
/// consumer warpgroups, 128 · (88 + 2 · 208) = 64512, all that a block of
/// 384 threads starts with (168 each). A consumer holds a 64x256 f32 accumulator (128 registers; the
/// multistage kernel's thread takes 168 in all); the producer keeps each
/// A chunk's source row and size across the K loop (ptxas spilled 12-32
/// bytes at 40, 56 and 64 registers, none at 80; the persistent producer,
/// which also walks the tiles, spilled 28 bytes at 80, none at 88).
constexpr int64_t kProducerRegisters = 88, kConsumerRegisters = 208;
/// A pingpong consumer's two 64-row accumulators take block_n registers.
constexpr int64_t kMaxPingpongBlockN = 128;
/// Warp-specialized w8a8 tiles: at most this wide. The consumers' 208
/// registers hold an m64n256 s32 accumulator, but int8's epilogue then spilled
/// 236 bytes (ptxas 13); fp8's promoted sums need a second accumulator.
constexpr int64_t kMaxSpecializedW8A8BlockN = 128;
/// Shared memory of one block, less what the emitter requests for rounding
/// the dynamic base up to the swizzle alignment.
constexpr int64_t kUsableSharedBytes =
    hopper::kMaxSharedBytes - hopper::kSwizzleAlignment;

/// Swapped operands: slot blocks of 16 or 32 rows (the wgmma's N), chosen
/// where an expert's rows, at two standard deviations above their mean,
/// fit in one.
constexpr int64_t kSwappedBlockMs[] = {16, 32};
/// Bytes of K in a weight row up to which a gated swapped matmul streams
/// short enough that one warpgroup per block wins (see
/// chooseSwappedWarpgroups), and a weight-only schedule takes 32 swapped
/// rows (see chooseSwappedBlockM).
constexpr int64_t kShortStreamRowBytes = 4096;
/// Bytes of K (as bf16) in a gated weight row up to which a 4-bit
/// weight-only schedule (int4, mxfp4) of unswapped blocks takes 64 x 64
/// tiles: a short stream per block, so more resident blocks overlap one
/// block's ring fill and epilogue with another's stream. Measured on an
/// H100 (docs/gpu-benchmark-quantized.md, nineteenth session) against the
/// 128 x 128 tiles of two warpgroups at M = 1024 and 4096: GPT-OSS mxfp4
/// (K = 2880) -10 to -19% (120B at 1024 +1%), Qwen3 int4 g32 zp
/// (K = 2048) -7% and level, Mixtral int4 g128 (K = 4096) +5% and +9%.
constexpr int64_t kShortFourBitRowBytes = 6144;
/// Where `fused-align-assignments` is left to the policy: the first matmul
/// of a schedule aligns its own slot blocks for calls of at most this many
/// assignments (M·k), if the schedule expects at most as many. Every block
/// of that matmul then recomputes the alignment before its first load, so
/// the saving (no align kernel, no memset: 1-3 µs) must outweigh a prologue
/// paid per wave of blocks. Measured on an H100 and an H200
/// (docs/gpu-benchmark-quantized.md, eighteenth session): bf16 gained or
/// stayed level up to 128 (Qwen3 -2 to -4.5 µs); swapped w8a8 (fp8 and
/// int8 per channel, 16-row blocks) gained up to 64 on the H200 (-1.3 to
/// -2.4 µs) and lost 1 µs at 128 on the H100; 64-row w8a8 blocks (fp8 with
/// 128x128 block scales) gained at 8 only and lost from 32 on (DeepSeek
/// +5 µs at 32, +53 at 256). Weight-only schedules were not measured and
/// keep the align kernel.
constexpr int64_t kAutoFusedAlignBf16 = 128, kAutoFusedAlignSwappedW8A8 = 64,
                  kAutoFusedAlignW8A8 = 8;

/// The facts of `op` the policy reads.
struct MatmulFacts {
  QuantFormat format = QuantFormat::None;
  bool blockScales = false;
  bool combine = false;
  /// Stored K: the input's columns (a weight-only weight packs two codes in
  /// a byte of some formats).
  int64_t inFeatures = 0;
  TileAttr tile;
  /// 128-byte swizzle spans of K per stage (1, or 2 with `block-k` for bf16).
  int64_t spans = 1;
  /// fp8 sums stay in the wgmma's accumulator over all of K (see
  /// `fp8-fast-accumulation`): no second accumulator to promote from.
  bool fastAccumulation = false;

  static MatmulFacts of(ExpertMatmulOp op, int64_t blockKOverride = 0) {
    MatmulFacts facts;
    moe::QuantizationAttr quantization = op.getQuantization();
    facts.format = quantization.getFormat();
    facts.blockScales = quantization.isW8A8() &&
                        quantization.getScales() == moe::ScaleLayout::Block;
    facts.combine = op.isCombine();
    facts.inFeatures = op.getInput().getType().getDimSize(1);
    facts.tile = op.getTileAttr();
    // Two spans are built for bf16 operands (not weight-only, whose codes
    // are dequantized per 64 of K), where K holds whole pairs of spans
    // (GPT-OSS's 2880 does not).
    if (facts.format == QuantFormat::None &&
        blockKOverride == 2 * facts.spanElements() &&
        facts.inFeatures % blockKOverride == 0)
      facts.spans = 2;
    return facts;
  }
  bool isW8A8() const {
    return format == QuantFormat::Fp8 || format == QuantFormat::Int8;
  }
  bool isWeightOnly() const { return !isW8A8() && format != QuantFormat::None; }
  /// Weight-only codes packed two per byte: int4 and mxfp4.
  bool isFourBit() const {
    return format == QuantFormat::Int4Weight || format == QuantFormat::Mxfp4;
  }
  int64_t elementBytes() const { return isW8A8() ? 1 : 2; }
  int64_t spanElements() const { return kStageRowBytes / elementBytes(); }
  int64_t blockK() const { return spans * spanElements(); }
  int64_t totalSteps() const { return inFeatures / blockK(); }
  /// Shared bytes per stage of the stored weight codes of a weight-only
  /// B tile `blockN` rows high (32 bytes per 64 of K, 64 for int8).
  int64_t packedTileBytes(int64_t blockN) const {
    return isWeightOnly() ? blockN * hopper::packedRowBytes(format) : 0;
  }
};

/// The largest divisor of `steps` in (1, limit], or 1.
int64_t largestSplit(int64_t steps, int64_t limit) {
  for (int64_t split = std::min(limit, steps); split > 1; --split)
    if (steps % split == 0)
      return split;
  return 1;
}

/// The K split of a combine: the one its tile asked for, else, where the
/// tile asked for swapped operands and `decodeSplit` allows it, the decode
/// split.
int64_t chooseSplitK(const MatmulFacts &facts, bool decodeSplit = true) {
  // Only the combine splits K: its partial sums add atomically anyway.
  if (!facts.combine || !facts.tile)
    return 1;
  int64_t split = largestSplit(facts.totalSteps(), facts.tile.getSplitK());
  // Where the tile asked for swapped operands (few rows per expert), a K
  // split spreads the weight stream over more blocks.
  if (split == 1 && facts.tile.getSwapAb() && decodeSplit)
    split = largestSplit(facts.totalSteps(),
                         std::min(kMaxDecodeSplitK,
                                  facts.totalSteps() / kMinStepsPerSplit));
  return split;
}

int64_t roundBlockN(int64_t blockN) {
  return std::clamp<int64_t>(
      int64_t(1) << llvm::Log2_64(std::max<int64_t>(blockN, 1)), kMinBlockN,
      kMaxBlockN);
}

int64_t chooseBlockN(const MatmulFacts &facts, int64_t override) {
  int64_t blockN = kNarrowBlockN;
  if (override > 0)
    blockN = roundBlockN(override);
  else if (facts.tile)
    blockN = roundBlockN(facts.tile.getBlockN());
  // Block scales: one 64-column chunk of gate and one of up columns, each
  // in one 128-row block of weight scales, and a second accumulator.
  if (facts.blockScales)
    return kNarrowBlockN;
  // Promoted fp8 keeps a partial beside its f32 sums, as wide as them.
  if ((facts.format == QuantFormat::Fp8 && !facts.fastAccumulation) ||
      facts.isWeightOnly())
    blockN = std::min(blockN, kNarrowBlockN);
  return blockN;
}

int64_t chooseStages(const MatmulFacts &facts, int64_t blockM, int64_t blockN,
                     int64_t splitK, int64_t override,
                     bool registerOperand = false, int64_t reservedBytes = 0) {
  // Codes decoded into registers leave no bf16 tile in the ring, nor a
  // dequantization between its stages: the ring is as deep as bf16's.
  int64_t stages = override > 0 ? override
                   : facts.isWeightOnly() && !registerOperand
                       ? kMaxWeightOnlyStages
                       : hopper::kMaxMultistageStages;
  int64_t tileRows = registerOperand ? blockM : blockM + blockN;
  int64_t stageBytes =
      tileRows * kStageRowBytes * facts.spans + facts.packedTileBytes(blockN);
  int64_t fitting = (kUsableSharedBytes - reservedBytes) / stageBytes;
  int64_t steps = facts.totalSteps() / splitK;
  int64_t deepest =
      override > 0 ? hopper::kMaxRingStages : hopper::kMaxMultistageStages;
  return std::max(kMinStages, std::min({stages, deepest, fitting, steps}));
}

/// The pass options the policy reads.
struct ConfigureOptions {
  int64_t blockN = 0, stages = 0;
  /// K elements per stage; 0: one 128-byte span.
  int64_t blockK = 0;
  bool warpSpecialize = false;
  bool persistent = false;
  bool pingpong = false;
  int64_t clusterM = 1;
  bool swapAB = false;
  /// The swapped kernel's consumer warpgroups (1 or 2; 0: chosen per
  /// matmul) and how it loads its weight tile.
  int64_t swappedWarpgroups = 0;
  WeightLoad swappedWeightLoad = WeightLoad::CpAsync;
  /// Swapped int4 weight-only matmuls take `weight_load = registers`.
  bool weightOnlyRegisters = true;
  /// Weight-only prefill blocks of 128 rows without split-K on the register
  /// operand take the persistent schedule (a producer warpgroup), and from
  /// kMinWideBlockRows rows per expert blocks of 256 (takesWideBlocks).
  bool weightOnlyWarpSpecialize = true;
  /// fp8 matmuls with per-channel or per-tensor scales keep their sums in
  /// the wgmma's accumulator (`fast_accumulation`).
  bool fp8FastAccumulation = true;
  /// The first matmul of each schedule aligns its own slot block for calls
  /// of at most this many assignments (`fused_align_assignments`); -1: the
  /// policy's bound (autoFusedAlignAssignments).
  int64_t fusedAlignAssignments = -1;
  /// w8a8 schedules that promote nothing take swapped slot blocks.
  bool w8a8SwapAB = true;
  /// M where the gathered input's rows are dynamic.
  int64_t numTokens = 0;
  /// Streaming multiprocessors of the target, for the waves of a grid.
  int64_t numSMs = 132;
  /// The largest mean of rows per expert for which bf16 128 x 256 matmuls
  /// take the persistent schedule by policy; 0 turns that off.
  int64_t persistentMaxRows = 64;
  /// The largest K split chooseShortStreamSplit takes (1: none).
  int64_t shortSplitK = kMaxDecodeSplitK;
  /// Every combine with a bf16 result on unswapped tiles stores rows per
  /// assignment (`combine_rows`).
  bool combineRows = false;
  /// bf16 schedules whose experts' rows likely spill out of 128 but fit
  /// 192 take 192-row slot blocks (takesTallBlocks).
  bool tallBlocks = false;
  /// Persistent bf16 matmuls that store rows take staged_epilogue
  /// (takesStagedEpilogue).
  bool stagedEpilogue = false;
  /// Multistage bf16 matmuls whose input rows are their slots load them by
  /// TMA (takesInputTma).
  bool inputTma = false;
  /// The largest K of a bf16 combine that stores rows per assignment by
  /// policy (isCombineRowsByPolicy); 0 turns that off.
  int64_t combineRowsMaxK = kCombineRowsMaxK;
};

/// The consumer warpgroups of a swapped matmul where `swapped-warpgroups`
/// leaves them to the policy: one warpgroup with 64 weight rows per block
/// (TMA) for a gated matmul whose weight rows are short streams (at most
/// 4 KB of K), else two. Measured per GEMM on an H200 at decode
/// (docs/gpu-decode-kernel.md): Qwen3's GEMM1 (K = 2048, 12 column tiles
/// per expert) 3-4% faster with one; DeepSeek-V3's (K = 7168) 2% slower,
/// Mixtral's (K = 4096) level; the ungated combines (Qwen3 K = 768,
/// DeepSeek-V3 K = 2048) level or slower with one. Several resident 50 KB
/// blocks overlap one block's fill with another's stream, which counts
/// where a block's stream is short and the grid narrow.
int64_t chooseSwappedWarpgroups(ExpertMatmulOp op) {
  MatmulFacts facts = MatmulFacts::of(op);
  bool gated = static_cast<bool>(op.getActivation());
  int64_t rowBytes = facts.inFeatures * facts.elementBytes();
  return gated && rowBytes <= kShortStreamRowBytes ? 1 : 2;
}

/// Whether `op`'s 4-bit weight-only codes (int4, mxfp4) take the wgmma's
/// register operand (`weight_load = registers`) with swapped operands:
/// codes in groups of whole 32-column halves of a 64-wide stage, where
/// `weight-only-registers` asks for it or the codes are prepacked for it.
bool takesRegisterOperand(ExpertMatmulOp op, const ConfigureOptions &options) {
  MatmulFacts facts = MatmulFacts::of(op, options.blockK);
  bool packed = op.getQuantization().getPacked().has_value();
  return (options.weightOnlyRegisters || packed) && facts.isFourBit() &&
         facts.blockK() == 64 && op.getQuantization().getGroupSize() % 32 == 0;
}

int64_t columnTiles(ExpertMatmulOp op, int64_t blockN);

/// Whether a swapped matmul's expected grid, `slotBlocks` (expected row
/// blocks of the routing) times its column tiles, holds at least two tiles
/// per SM.
bool holdsTwoTilesPerSM(ExpertMatmulOp op, int64_t blockN, double slotBlocks,
                        const ConfigureOptions &options) {
  return slotBlocks * double(columnTiles(op, blockN)) >=
         2.0 * double(options.numSMs);
}

/// Split-K on the register operand (4-bit weight-only codes decoded by the
/// warpgroup that multiplies them) where a swapped matmul's expected grid,
/// `slotBlocks` (expected row blocks of the routing) times column tiles, is
/// under two blocks per SM: so few warps per scheduler that each waits on
/// its own chain of loads, decodes and wgmmas, step after step. In pieces of
/// at least 4 K steps, at most `short-split-k`. Measured on an H100
/// (docs/gpu-benchmark-quantized.md, twenty-fifth and twenty-sixth
/// sessions), Qwen3 int4 g32 zp at M = 1 (~250 tiles; none at M = 16, ~2600):
/// - a combine too short for the decode split (fewer than 2 ·
///   kMinStepsPerSplit K steps): GEMM2 (K = 768, 12 steps) split in 3 is
///   7.5% faster on the block, and 9.4% slower at M = 16;
/// - a matmul without a combine (a gated GEMM1), whose splits reduce in a
///   cluster: GEMM1 (32 steps, 192 tiles) split in 2 is 4% faster on the
///   block, in 4 and 8 16% and 68% slower (more blocks than the SMs hold
///   clusters for). bf16 and fp8 GEMM1s were slower split in any number
///   (Qwen3 bf16 +7% at 2; DeepSeek-V3 bf16 +5%; Qwen3 fp8 +13%): their
///   streams are not bound by a decode's latency.
int64_t chooseShortStreamSplit(ExpertMatmulOp op, const MatmulFacts &facts,
                               int64_t blockN, WeightLoad weightLoad,
                               std::optional<double> slotBlocks,
                               const ConfigureOptions &options) {
  constexpr int64_t kMinShortSplitSteps = 4, kMaxClusterSplit = 2;
  if (!slotBlocks || weightLoad != WeightLoad::Registers || !facts.tile ||
      !facts.tile.getSwapAb())
    return 1;
  if (holdsTwoTilesPerSM(op, blockN, *slotBlocks, options))
    return 1;
  int64_t limit =
      std::min(options.shortSplitK, facts.totalSteps() / kMinShortSplitSteps);
  if (!facts.combine)
    limit = std::min(limit, kMaxClusterSplit);
  return largestSplit(facts.totalSteps(), limit);
}

/// Whether the decode K split of a bf16 swapped combine (chooseSplitK's,
/// not one its tile asked for) is better left out: its expected unsplit
/// grid already holds two tiles per SM, so splitting only shortens every
/// tile's K loop and doubles the f32 reductions. Measured on an H100
/// (docs/gpu-benchmark.md, thirty-second session): DeepSeek-V3's GEMM2 (16
/// K steps, ~6700-14300 tiles) 0.75-1.5% faster unsplit at M = 16-256,
/// level at M = 1 (448 tiles).
bool splitsOnlyShortenTiles(ExpertMatmulOp op, const MatmulFacts &facts,
                            int64_t blockN, WeightLoad weightLoad,
                            std::optional<double> slotBlocks,
                            const ConfigureOptions &options) {
  // Measured on the two-warpgroup cp.async kernel without expert biases
  // only: the one-warpgroup TMA kernel (GPT-OSS's GEMM2) keeps the split.
  if (!slotBlocks || !facts.combine || facts.format != QuantFormat::None ||
      weightLoad != WeightLoad::CpAsync || !facts.tile ||
      facts.tile.getSplitK() > 1 || op.getBias())
    return false;
  return holdsTwoTilesPerSM(op, blockN, *slotBlocks, options);
}

/// The swapped-operand kernel of a slot block of `blockM` (< 64) rows: one
/// or two consumer warpgroups multiply 64 weight rows at a time by the
/// block's rows; no warp specialization or cluster. Two warpgroups (two
/// warps per scheduler, and with cp.async 256 threads keeping 16-byte
/// requests in flight) split the weight rows, so block_n is at least 128,
/// and read 256 bytes of every row per stage where K allows (the probe of
/// docs/gpu-decode-kernel.md: a short weight stream goes fastest that way);
/// they need at least one 16-byte chunk of the slot rows per thread.
KernelConfigAttr chooseSwappedConfig(ExpertMatmulOp op, int64_t blockM,
                                     std::optional<double> slotBlocks,
                                     const ConfigureOptions &options) {
  // A `block-n` of 64 is one warpgroup's weight rows.
  int64_t warpgroups = options.swappedWarpgroups;
  if (warpgroups == 0)
    warpgroups = options.blockN == kMinBlockN ? 1 : chooseSwappedWarpgroups(op);
  // The policy's single warpgroup for a short stream takes 64 weight rows
  // per block: as many blocks as the grid can hold (several 50 KB rings per
  // SM).
  bool shortStream = options.swappedWarpgroups == 0 && warpgroups == 1;
  MatmulFacts facts = MatmulFacts::of(
      op, options.blockK == 0 && warpgroups > 1 ? kTwoSpansOfBf16
                                                : options.blockK);
  constexpr int64_t kChunksPerSpanRow = kStageRowBytes / 16;
  if (blockM * kChunksPerSpanRow * facts.spans <
      warpgroups * hopper::kWarpgroupThreads)
    warpgroups = 1;
  // Weight-only: one warpgroup dequantizes and multiplies. Two over 32
  // slot rows measured 8% slower than the unswapped kernel on Mixtral int4
  // at M = 64 (H200, docs/gpu-benchmark-quantized.md); one over 16 rows
  // 17-19% faster at M = 1-16.
  if (facts.isWeightOnly() && options.swappedWarpgroups == 0)
    warpgroups = 1;
  // cp.async from one warpgroup's 128 threads streams slower than TMA
  // (2.5-2.7 against 3.3 TB/s in the probe); from 256, faster over tiles
  // of 128 weight rows (3.8), which also leave 5 stages room (3 in flight).
  // Weight-only codes are copied by cp.async whatever the load of bf16
  // weights (`tma` in the attribute).
  // w8a8 weights come by TMA: cp.async copies are built for bf16.
  WeightLoad weightLoad = warpgroups > 1 && facts.format == QuantFormat::None
                              ? options.swappedWeightLoad
                              : WeightLoad::Tma;
  // As in chooseKernelConfig: a swapped fp8 kernel is built only with it
  // (nothing to promote), and it leaves no partial beside the sums.
  facts.fastAccumulation = options.fp8FastAccumulation &&
                           facts.format == QuantFormat::Fp8 &&
                           !facts.blockScales;
  int64_t blockN = std::max(chooseBlockN(facts, options.blockN),
                            kWarpgroupRows * warpgroups);
  if (weightLoad == WeightLoad::CpAsync && options.blockN == 0)
    blockN = kNarrowBlockN;
  if (shortStream && options.blockN == 0)
    blockN = kMinBlockN;
  int64_t splitK =
      chooseSplitK(facts, /*decodeSplit=*/!splitsOnlyShortenTiles(
                       op, facts, blockN, weightLoad, slotBlocks, options));
  // 4-bit codes (int4, two's complement or with zero points, and mxfp4)
  // decoded into the wgmma's register operand, where asked: one warpgroup,
  // 64 of K per stage, and groups of whole 32-column halves of a stage.
  // Codes packed for the register operand always take it.
  if (warpgroups == 1 && takesRegisterOperand(op, options))
    weightLoad = WeightLoad::Registers;
  // The register operand over one 64-row fragment per block keeps half the
  // decoded registers live (88 against 166 per thread on Mixtral's GEMM1),
  // so five blocks share an SM instead of three: measured 2-7% faster than
  // 128 rows at M = 1-16 (Mixtral int4 g128, Qwen3 int4 g32 zp; H100,
  // docs/gpu-benchmark-quantized.md, nineteenth session).
  if (weightLoad == WeightLoad::Registers && options.blockN == 0)
    blockN = kMinBlockN;
  if (splitK == 1)
    splitK = chooseShortStreamSplit(op, facts, blockN, weightLoad, slotBlocks,
                                    options);
  int64_t stages =
      chooseStages(facts, blockM, blockN, splitK, options.stages,
                   /*registerOperand=*/weightLoad == WeightLoad::Registers);
  int64_t groupM = facts.tile ? facts.tile.getGroupM() : 0;
  return KernelConfigAttr::get(
      op.getContext(), getMmaKind(facts.format), Schedule::Multistage, blockM,
      blockN, facts.blockK(), stages, warpgroups,
      /*producer_warpgroups=*/0, /*producer_registers=*/0,
      /*consumer_registers=*/0, splitK, /*cluster_m=*/1, /*cluster_n=*/1,
      groupM, /*swap_ab=*/true, weightLoad, facts.fastAccumulation,
      /*fused_align_assignments=*/0, /*combine_rows=*/false,
      /*staged_epilogue=*/false, /*input_tma=*/false);
}

/// What the block-height policy reads of a bf16, weight-only or (with
/// `w8a8-swap-ab`) unpromoted w8a8 schedule: an
/// expert's rows at their mean plus two binomial standard deviations (mean
/// M·k/E; M: the gathered input's rows, or `numTokens` where they are
/// dynamic), and whether every tile asked for swapped operands.
struct ExpertRows {
  bool swapAsked = true;
  /// Every matmul is bf16; else weight-only or w8a8, which take swapped
  /// slot blocks from these rows and no other policy built on them (those
  /// were measured on bf16 only).
  bool bf16 = true;
  int64_t assignments = 0, experts = 0;
  /// Every expert holds every token (a schedule of shared experts alone,
  /// moe.shared_expert_routing): assignments / experts rows each, exactly.
  bool everyToken = false;

  double mean() const { return double(assignments) / double(experts); }
  /// An expert's rows where every expert holds every token.
  int64_t each() const { return assignments / experts; }
  double likelyMost() const { return mean() + 2.0 * std::sqrt(mean()); }
};

/// Whether `op`'s schedule sorts the ids of moe.shared_expert_routing.
bool isScheduleOfSharedExperts(ExpertMatmulOp op) {
  Value ids;
  for (Value schedule : {op.getOffsets(), op.getBlockExperts()}) {
    if (!schedule)
      continue;
    if (auto sort = schedule.getDefiningOp<moe::SortOp>())
      ids = sort.getIds();
    else if (auto align = schedule.getDefiningOp<moe::AlignOp>())
      ids = align.getIds();
  }
  return ids && ids.getDefiningOp<moe::SharedExpertRoutingOp>();
}

/// Whether w8a8 matmul `facts` sums without promotion (int8, or fp8 with
/// `fp8-fast-accumulation` and no block scales), so that its sums can be
/// transposed once after the K loop of a swapped kernel.
bool promotesNothing(const MatmulFacts &facts,
                     const ConfigureOptions &options) {
  return facts.format == QuantFormat::Int8 ||
         (facts.format == QuantFormat::Fp8 && options.fp8FastAccumulation &&
          !facts.blockScales);
}

/// The assignments (M·k) that `schedule` expects: its gathered input's
/// rows, or `numTokens` where they are dynamic, times k; 0 where no matmul
/// gathers.
int64_t expectedAssignments(ArrayRef<ExpertMatmulOp> schedule,
                            int64_t numTokens) {
  for (ExpertMatmulOp op : schedule) {
    if (!op.getGather())
      continue;
    int64_t rows = op.getInput().getType().getDimSize(0);
    return (ShapedType::isDynamic(rows) ? numTokens : rows) * op.getK();
  }
  return 0;
}

/// The expert rows of `schedule`, or nothing unless every matmul is bf16,
/// or every one weight-only or (with `w8a8-swap-ab`) unpromoted w8a8, with
/// a tile, and the schedule has assignments.
std::optional<ExpertRows> getExpertRows(ArrayRef<ExpertMatmulOp> schedule,
                                        const ConfigureOptions &options) {
  ExpertRows result;
  int64_t experts = 0;
  bool anyBf16 = false;
  for (ExpertMatmulOp op : schedule) {
    MatmulFacts facts = MatmulFacts::of(op);
    if (!facts.tile || (facts.isW8A8() && !(options.w8a8SwapAB &&
                                            promotesNothing(facts, options))))
      return std::nullopt;
    anyBf16 |= facts.format == QuantFormat::None;
    result.bf16 &= facts.format == QuantFormat::None;
    result.swapAsked &= facts.tile.getSwapAb();
    experts = op.getWeights().getType().getDimSize(0);
  }
  int64_t assignments = expectedAssignments(schedule, options.numTokens);
  // A schedule that mixes bf16 and weight-only matmuls keeps the kernels
  // it had before either policy was measured on it.
  if (assignments == 0 || experts == 0 || (anyBf16 && !result.bf16))
    return std::nullopt;
  result.everyToken = isScheduleOfSharedExperts(schedule.front());
  result.assignments = assignments;
  result.experts = experts;
  return result;
}

/// The row blocks of `blockM` rows that an expert's assignments are
/// expected to fill: E[ceil(X / blockM)] for X ~ Binomial(assignments,
/// 1 / experts), summed where the probability mass is (12 standard
/// deviations around the mean).
double expectedRowBlocks(const ExpertRows &rows, int64_t blockM) {
  if (rows.everyToken)
    return double((rows.each() + blockM - 1) / blockM);
  double n = double(rows.assignments), p = 1.0 / double(rows.experts);
  double mean = n * p, sd = std::sqrt(n * p * (1.0 - p));
  int64_t first = std::max<int64_t>(0, int64_t(mean - 12.0 * sd));
  int64_t last = std::min<int64_t>(rows.assignments,
                                   int64_t(std::ceil(mean + 12.0 * sd)) + 1);
  double logChoose = std::lgamma(n + 1.0), blocks = 0.0;
  for (int64_t x = first; x <= last; ++x) {
    double logProbability = logChoose - std::lgamma(double(x) + 1.0) -
                            std::lgamma(n - double(x) + 1.0) +
                            double(x) * std::log(p) +
                            (n - double(x)) * std::log1p(-p);
    blocks += std::exp(logProbability) * double((x + blockM - 1) / blockM);
  }
  return blocks;
}

/// Split-K 2 for a bf16 combine that has none, where its expected grid
/// (row blocks of the binomial routing × column tiles, over the blocks the
/// SMs hold at once) ends in a wave so partial that half-length tiles save
/// a tenth of the time the waves take. Its partial sums add atomically
/// anyway. Measured on an H200 (docs/gpu-benchmark.md): Mixtral M = 1024's
/// GEMM2, ~320 tiles in 2.4 waves, 3.4-4% faster on the block; M = 4096
/// (8.2 waves) level, which the tenth leaves unsplit.
int64_t chooseWaveSplit(const MatmulFacts &facts, const ExpertRows &rows,
                        int64_t blockM, int64_t blockN, int64_t stages,
                        int64_t width, const ConfigureOptions &options) {
  constexpr int64_t kWaveSplit = 2;
  constexpr double kMinWaveSaving = 0.9;
  if (!facts.combine || facts.format != QuantFormat::None ||
      facts.totalSteps() % kWaveSplit != 0 ||
      facts.totalSteps() / kWaveSplit < kMinStepsPerSplit)
    return 1;
  int64_t stageBytes = (blockM + blockN) * kStageRowBytes * facts.spans;
  int64_t blocksPerSM =
      std::max<int64_t>(1, kUsableSharedBytes / (stages * stageBytes));
  double slots = double(options.numSMs * blocksPerSM);
  double tiles = double(rows.experts) * expectedRowBlocks(rows, blockM) *
                 double((width + blockN - 1) / blockN);
  auto wavesTime = [&](int64_t split) {
    return std::ceil(tiles * double(split) / slots) / double(split);
  };
  return wavesTime(kWaveSplit) <= kMinWaveSaving * wavesTime(1) ? kWaveSplit
                                                                : 1;
}

/// The column tiles of `op` at `blockN` weight rows per tile: a gated
/// matmul's tile holds `blockN / 2` output columns' gate and up rows.
int64_t columnTiles(ExpertMatmulOp op, int64_t blockN) {
  int64_t columns = op.getActivation() ? blockN / 2 : blockN;
  return (op.getOutputWidth() + columns - 1) / columns;
}

/// Whether a matmul of a schedule of shared experts alone takes the
/// persistent schedule: bf16 128 x 256 tiles of two consumer warpgroups
/// without split-K, more of them than SMs, whose tail wave the persistent
/// grid avoids (DeepSeek-V3's shared GEMM2 at M = 1024, 224 tiles: 74.3 ->
/// 71.9 µs on an H200; its GEMM1 at 128 x 128, 256 tiles: 113 -> 165 µs,
/// which the width leaves out). `persistent-max-rows` = 0 turns it off with
/// the routed policy.
bool isPersistentSharedGrid(ExpertMatmulOp op, const MatmulFacts &facts,
                            const std::optional<ExpertRows> &rows,
                            int64_t blockM, int64_t blockN, int64_t splitK,
                            const ConfigureOptions &options) {
  return rows && rows->everyToken && facts.format == QuantFormat::None &&
         facts.spans == 1 && blockM == kLargeBlockM && blockN == kMaxBlockN &&
         splitK == 1 && options.clusterM == 1 &&
         options.persistentMaxRows > 0 &&
         double(rows->experts) * expectedRowBlocks(*rows, blockM) *
                 double(columnTiles(op, blockN)) >
             double(options.numSMs);
}

/// Whether a matmul takes the persistent schedule by policy: bf16, 128 x 256
/// tiles of two consumer warpgroups, no split-K or cluster, and experts
/// that hold at most `persistent-max-rows` rows on average. There a
/// 128-row block is about half padding and many of the grid's slot blocks
/// are empty; the persistent grid walks only the tiles that exist and
/// starts each next tile's loads under the current one's epilogue (ncu in
/// docs/gpu-benchmark.md: DRAM 70 -> 74% busy at Qwen3 M = 1024). Measured on
/// an H200 in one process (docs/gpu-benchmark.md, eighth session): Qwen3 M =
/// 1024 and DeepSeek-V3 M = 2048 (64 rows per expert) -4 to -5%, Qwen3 M = 2048
/// (128) -3%, DeepSeek-V3 M = 4096 (128) -1%; Qwen3 M = 4096 (256) -1.4%
/// and Mixtral M = 1024 (256) +6%. On an H100 (docs/gpu-benchmark.md,
/// thirty-first session) DeepSeek-V3 M = 4096 (128) ran 2.6-4.1% faster
/// multistage, Qwen3 M = 2048 (128) 0.4-1.2% slower and Qwen3 M = 1024 (64)
/// 2.8% slower: the bound (64) keeps it where experts hold ~64 rows.
bool isPersistentByPolicy(const MatmulFacts &facts,
                          const std::optional<ExpertRows> &rows,
                          int64_t consumers, int64_t blockN, int64_t splitK,
                          const ConfigureOptions &options) {
  // Two spans of K per stage are built for the multistage schedule only;
  // the 128 x 256 tile is the one measured.
  return rows && facts.format == QuantFormat::None && facts.spans == 1 &&
         consumers == 2 && blockN == kMaxBlockN && splitK == 1 &&
         options.clusterM == 1 &&
         rows->mean() <= double(options.persistentMaxRows);
}

/// The tile width of a schedule of shared experts alone, whose experts
/// hold every token and at decode one row block each (DeepSeek-V3 M = 64:
/// 16 tiles of 256 weight rows would stream its 58 MB on 16 SMs). The
/// widest tiles where those still fill most of a wave; otherwise the width
/// starts from at least 128 and halves, down to 64, while the grid has
/// fewer tiles than half the SMs.
int64_t chooseSharedBlockN(ExpertMatmulOp op, const ExpertRows &rows,
                           int64_t blockM, int64_t blockN,
                           const ConfigureOptions &options) {
  double rowBlocks = double(rows.experts) * expectedRowBlocks(rows, blockM);
  auto tiles = [&](int64_t width) {
    return rowBlocks * double(columnTiles(op, width));
  };
  if (tiles(kMaxBlockN) >= kWideTileWave * double(options.numSMs))
    return kMaxBlockN;
  blockN = std::max(blockN, kNarrowBlockN);
  while (blockN > kMinBlockN && 2.0 * tiles(blockN) < double(options.numSMs))
    blockN /= 2;
  return blockN;
}

/// Whether no option asks for kernels other than the shared-expert
/// policy's 64-row multistage ones (two spans of K, one block per tile).
bool leavesSharedKernelsToPolicy(const ConfigureOptions &options) {
  return options.blockK == 0 && options.clusterM == 1 &&
         !options.warpSpecialize && !options.persistent && !options.pingpong;
}

/// Whether `schedule` holds shared experts alone (every expert every
/// token) whose GEMM1 grid of 64-row blocks and 128-weight-row tiles fits
/// one wave, where no option asks for other kernels. Such a schedule takes
/// 64-row blocks with two spans of K per stage: its GEMMs stream their
/// weights over few tiles, and the shorter block keeps more weight bytes
/// in flight. Measured on an H200 (docs/checkpoint-features.md):
/// DeepSeek-V3's shared GEMM1 at M = 64 48.7 -> 32.3 µs, at M = 256 51.9
/// -> 38.3 µs; Qwen1.5-MoE's block at M = 64 4% faster, but at M = 256
/// (16 row blocks of 22 tiles, 2.7 waves) 2-3% slower.
bool isShortSharedSchedule(ArrayRef<ExpertMatmulOp> schedule,
                           const std::optional<ExpertRows> &rows,
                           const ConfigureOptions &options) {
  if (!rows || !rows->everyToken || !leavesSharedKernelsToPolicy(options))
    return false;
  double rowBlocks =
      double(rows->experts) * expectedRowBlocks(*rows, kSmallBlockM);
  return llvm::all_of(schedule, [&](ExpertMatmulOp op) {
    return !op.getGather() ||
           rowBlocks * double(columnTiles(op, kNarrowBlockN)) <=
               double(options.numSMs);
  });
}

/// Prefill's slot blocks (64, 128 or 256 rows) of a matmul that takes the
/// register operand (takesRegisterOperand; the schedule and cluster options
/// are bf16's and w8a8's), else null: swapped operands, two consumer
/// warpgroups of 64 weight rows each (block_n 128) over the block's slot
/// rows as the wgmma's N. The tile kernel wrote every stage's bf16 weights
/// into shared memory and waited for them before its wgmma; here each
/// thread decodes its own A registers and the wgmma reads only the slot
/// rows from shared memory.
KernelConfigAttr chooseRegisterPrefillConfig(ExpertMatmulOp op, int64_t blockM,
                                             const ConfigureOptions &options) {
  if (!takesRegisterOperand(op, options))
    return {};
  MatmulFacts facts = MatmulFacts::of(op, options.blockK);
  int64_t warpgroups = 2;
  int64_t blockN = options.blockN
                       ? std::max(options.blockN, kWarpgroupRows * warpgroups)
                       : kNarrowBlockN;
  int64_t splitK = chooseSplitK(facts);
  // 128-row blocks without split-K are persistent: a producer warpgroup
  // copies the slot rows and codes, the consumers' 208 registers hold the
  // sums and two stages' A registers, and a block per SM walks the tiles,
  // its producer filling the next tile's stages while the consumers
  // transpose this one's sums (so their table and the tile slots come
  // beside the ring rather than over it). Against the multistage kernel
  // (H100, docs/gpu-benchmark-quantized.md, twenty-second session): 6-12%
  // faster at M = 1024-4096 on Mixtral int4 g128, GPT-OSS-120B mxfp4 and
  // Qwen3 int4 g32 zp. 64-row blocks stay multistage (with the producer
  // 2-30% slower), and so do split ones (not measured).
  bool specialized = options.weightOnlyWarpSpecialize &&
                     (blockM == kLargeBlockM || blockM == kWideBlockM) &&
                     splitK == 1;
  Schedule schedule = specialized ? Schedule::Persistent : Schedule::Multistage;
  int64_t reservedBytes =
      schedule == Schedule::Persistent
          ? hopper::swappedTableBytes(
                hopper::swappedPassRows(blockM, warpgroups), blockN) +
                hopper::kTileSlotBytes
          : 0;
  int64_t stages = chooseStages(facts, blockM, blockN, splitK, options.stages,
                                /*registerOperand=*/true, reservedBytes);
  int64_t groupM = facts.tile ? facts.tile.getGroupM() : 0;
  // Wide blocks keep the same split: with 200 consumer registers (104 for
  // the producer, whose 16 gathered chunks a stage then spilled 364 bytes
  // at 88; 48 since its copies arrive by themselves) they measured 5%
  // slower than with 208.
  return KernelConfigAttr::get(
      op.getContext(), getMmaKind(facts.format), schedule, blockM, blockN,
      facts.blockK(), stages, warpgroups,
      /*producer_warpgroups=*/specialized ? 1 : 0,
      specialized ? kProducerRegisters : 0,
      specialized ? kConsumerRegisters : 0, splitK, /*cluster_m=*/1,
      /*cluster_n=*/1, groupM, /*swap_ab=*/true, WeightLoad::Registers,
      /*fast_accumulation=*/false, /*fused_align_assignments=*/0,
      /*combine_rows=*/false, /*staged_epilogue=*/false, /*input_tma=*/false);
}

KernelConfigAttr chooseKernelConfig(ExpertMatmulOp op, int64_t blockM,
                                    std::optional<ExpertRows> rows,
                                    std::optional<double> slotBlocks,
                                    const ConfigureOptions &options) {
  if (blockM < kSmallBlockM)
    return chooseSwappedConfig(op, blockM, slotBlocks, options);
  if (KernelConfigAttr registers =
          chooseRegisterPrefillConfig(op, blockM, options))
    return registers;
  MatmulFacts facts = MatmulFacts::of(op, options.blockK);
  facts.fastAccumulation = options.fp8FastAccumulation &&
                           facts.format == QuantFormat::Fp8 &&
                           !facts.blockScales;
  int64_t blockN = chooseBlockN(facts, options.blockN);
  // Three consumer warpgroups share 65536 registers over 384 threads (168
  // each): sums of at most 128 columns.
  if (blockM == kTallBlockM)
    blockN = std::min(blockN, kNarrowBlockN);
  // A schedule of shared experts alone takes its own widths
  // (chooseSharedBlockN): moe-tile's decode tiles (64) measured 1.5% slower
  // on Qwen1.5-MoE M = 256's block (4 experts x 2 row blocks x 22 tiles of
  // 128 columns).
  bool sharedAlone =
      rows && rows->everyToken && facts.format == QuantFormat::None;
  if (sharedAlone && options.blockN == 0)
    blockN = chooseSharedBlockN(op, *rows, blockM, blockN, options);
  // Its 64-row blocks (isShortSharedSchedule) read two spans of K per
  // stage where the ring keeps enough stages.
  if (sharedAlone && blockM == kSmallBlockM &&
      leavesSharedKernelsToPolicy(options)) {
    MatmulFacts twoSpans = MatmulFacts::of(op, kTwoSpansOfBf16);
    if (twoSpans.spans == 2 &&
        chooseStages(twoSpans, blockM, blockN, chooseSplitK(twoSpans),
                     options.stages) >= kMinTwoSpanStages)
      facts = twoSpans;
  }
  int64_t splitK = chooseSplitK(facts);
  int64_t stages = chooseStages(facts, blockM, blockN, splitK, options.stages);
  int64_t consumers = blockM / kWarpgroupRows;
  bool specialized =
      options.warpSpecialize || options.persistent || options.pingpong;
  // The wave split is measured on the default kernel alone (the others
  // without split-K lose their persistence or pairs); where it splits, it
  // comes before the persistent policy (Mixtral M = 512: the split -3.9%,
  // the persistent schedule instead +3.9%).
  if (splitK == 1 && rows && !specialized && options.clusterM == 1) {
    splitK = chooseWaveSplit(facts, *rows, blockM, blockN, stages,
                             op.getOutputWidth(), options);
    stages = chooseStages(facts, blockM, blockN, splitK, options.stages);
  }
  bool persistent =
      options.persistent ||
      (!specialized &&
       (isPersistentByPolicy(facts, rows, consumers, blockN, splitK, options) ||
        isPersistentSharedGrid(op, facts, rows, blockM, blockN, splitK,
                               options)));
  // The cost model's swizzle: slot blocks that run together along N.
  int64_t groupM = facts.tile ? facts.tile.getGroupM() : 0;
  // Warp specialization: two consumer warpgroups, which
  // with the producer fill the 64K registers once setmaxnreg moves them.
  // Persistence: the same roles, without split-K (a tile is one block's).
  // Pingpong: persistent, each consumer warpgroup on all 128 rows of its
  // own tiles, in two accumulators of at most 64 x 128 (a deeper ring of
  // the narrower tiles).
  Schedule schedule = Schedule::WarpSpecialized;
  if (splitK == 1 && persistent)
    schedule = Schedule::Persistent;
  if (splitK == 1 && options.pingpong && facts.format == QuantFormat::None &&
      consumers == 2) {
    schedule = Schedule::Pingpong;
    blockN = std::min<int64_t>(blockN, kMaxPingpongBlockN);
    stages = chooseStages(facts, blockM, blockN, splitK, options.stages);
  }
  // A pair shares bf16 weight tiles loaded by TMA (the one format measured
  // paired on the device so far), and needs whole K loops. Pairs are built
  // for one tile per block: not for the persistent schedules.
  bool pairable = options.clusterM > 1 && splitK == 1 &&
                  facts.format == QuantFormat::None;
  // w8a8 operands (e4m3, s8) take the warp-specialized schedule where it is
  // asked for, not yet the persistent ones.
  bool specializedFormat = facts.format == QuantFormat::None ||
                           (facts.isW8A8() && options.warpSpecialize &&
                            schedule == Schedule::WarpSpecialized);
  if ((specialized || persistent) && specializedFormat && consumers == 2) {
    if (facts.isW8A8() && options.blockN == 0 &&
        blockN > kMaxSpecializedW8A8BlockN) {
      blockN = kMaxSpecializedW8A8BlockN;
      stages = chooseStages(facts, blockM, blockN, splitK, options.stages);
    }
    bool paired = pairable && schedule == Schedule::WarpSpecialized;
    return KernelConfigAttr::get(
        op.getContext(), getMmaKind(facts.format), schedule, blockM, blockN,
        facts.blockK(), stages, consumers, /*producer_warpgroups=*/1,
        kProducerRegisters, kConsumerRegisters, splitK,
        /*cluster_m=*/paired ? options.clusterM : 1, /*cluster_n=*/1, groupM,
        /*swap_ab=*/false, WeightLoad::Tma, facts.fastAccumulation,
        /*fused_align_assignments=*/0, /*combine_rows=*/false,
        /*staged_epilogue=*/false, /*input_tma=*/false);
  }
  // With warp specialization asked for, the pairs are the warp-specialized
  // kernels': the multistage ones left (64-row blocks) stay single, so that
  // such a build pairs one kind of kernel (docs/gpu-warp-specialized.md).
  bool paired = pairable && !specialized;
  return KernelConfigAttr::get(
      op.getContext(), getMmaKind(facts.format), Schedule::Multistage, blockM,
      blockN, facts.blockK(), stages, consumers, /*producer_warpgroups=*/0,
      /*producer_registers=*/0, /*consumer_registers=*/0, splitK,
      /*cluster_m=*/paired ? options.clusterM : 1, /*cluster_n=*/1, groupM,
      /*swap_ab=*/false, WeightLoad::Tma, facts.fastAccumulation,
      /*fused_align_assignments=*/0, /*combine_rows=*/false,
      /*staged_epilogue=*/false, /*input_tma=*/false);
}

KernelConfigAttr getKernelConfig(ExpertMatmulOp op) {
  return op->getAttrOfType<KernelConfigAttr>(
      MoeGPUDialect::getConfigAttrName());
}

/// Whether every gated matmul of `schedule` streams weight rows of at most
/// kShortStreamRowBytes of K (bf16 for weight-only, as dequantized).
bool hasShortGatedStreams(ArrayRef<ExpertMatmulOp> schedule) {
  return llvm::all_of(schedule, [](ExpertMatmulOp op) {
    // Weight-only rows count as the bf16 they become, w8a8 as stored.
    MatmulFacts facts = MatmulFacts::of(op);
    int64_t elementBytes = facts.isW8A8() ? 1 : 2;
    return !op.getActivation() ||
           facts.inFeatures * elementBytes <= kShortStreamRowBytes;
  });
}

/// Whether every matmul of `schedule` multiplies 4-bit weight-only codes
/// (int4, mxfp4) and every gated one streams weight rows of at most
/// kShortFourBitRowBytes of K as bf16.
bool isShortFourBitSchedule(ArrayRef<ExpertMatmulOp> schedule) {
  return llvm::all_of(schedule, [](ExpertMatmulOp op) {
    MatmulFacts facts = MatmulFacts::of(op);
    return facts.isFourBit() && (!op.getActivation() ||
                                 facts.inFeatures * 2 <= kShortFourBitRowBytes);
  });
}

/// The swapped slot-block height, or 0 where the tiles stay unswapped: every
/// tile asked for swapped operands and an expert's likely most rows fit 16
/// or 32. A weight-only schedule takes 32 rows only where its gated weight
/// rows are short streams: measured on an H200 (docs/
/// gpu-benchmark-quantized.md), 32 swapped rows took Qwen3's int4 and int8
/// blocks at M = 256 (K = 2048) 7-20% below the unswapped kernel, but
/// Mixtral int4 at M = 64 (K = 4096) 3-11% above it, with 64 or 128 weight
/// rows per block and one or two warpgroups; 16 rows won on both.
int64_t chooseSwappedBlockM(ArrayRef<ExpertMatmulOp> schedule,
                            std::optional<ExpertRows> rows) {
  if (!rows || !rows->swapAsked)
    return 0;
  for (int64_t blockM : kSwappedBlockMs) {
    if (blockM > kSwappedBlockMs[0] && !rows->bf16 &&
        !hasShortGatedStreams(schedule))
      return 0;
    if (rows->likelyMost() <= double(blockM))
      return blockM;
  }
  return 0;
}

/// Whether `schedule` takes the register operand's wide slot blocks
/// (kWideBlockM): every matmul decodes its weights into the wgmma's
/// registers in the persistent kernel (without split-K), and an expert's
/// mean rows are many. Each decoded fragment then feeds twice the slot
/// rows, halving the decode per product, the consumers' busiest work.
/// Only int4 in groups of 128 or more without zero points, the format
/// measured (Mixtral): mxfp4 and int4 g32 with zero points, whose
/// consumers hold more scales, spill about twice as much with 256 rows
/// and were not measured.
bool takesWideBlocks(ArrayRef<ExpertMatmulOp> schedule,
                     const std::optional<ExpertRows> &rows,
                     const ConfigureOptions &options) {
  // 256 weight rows (`block-n`) would need 256 registers of sums.
  if (!rows || !options.weightOnlyWarpSpecialize ||
      options.blockN > kNarrowBlockN ||
      rows->mean() < double(kMinWideBlockRows))
    return false;
  return llvm::all_of(schedule, [&](ExpertMatmulOp op) {
    moe::QuantizationAttr quantization = op.getQuantization();
    return takesRegisterOperand(op, options) &&
           quantization.getFormat() == QuantFormat::Int4Weight &&
           quantization.getGroupSize() >= 128 && !quantization.getZeroPoint() &&
           chooseSplitK(MatmulFacts::of(op, options.blockK)) == 1;
  });
}

/// Whether a bf16 schedule takes 192-row slot blocks (`tall-blocks`): its
/// experts' likely most rows spill out of one 128-row block but fit one of
/// 192, so that a block per expert streams the expert's weights once
/// instead of again for a spilled block of a few rows (the third
/// warpgroup skips its wgmmas where the expert holds at most 128), and no
/// option asks for what the three-warpgroup kernel is not built with (a
/// producer, a cluster, 256 columns). Not for shared experts alone, whose
/// rows are exact.
bool takesTallBlocks(const std::optional<ExpertRows> &bf16Rows,
                     const ConfigureOptions &options) {
  if (!options.tallBlocks || !bf16Rows || bf16Rows->everyToken ||
      options.warpSpecialize || options.persistent || options.pingpong ||
      options.clusterM != 1 || options.blockN > kNarrowBlockN)
    return false;
  double likelyMost = bf16Rows->likelyMost();
  return likelyMost > double(kLargeBlockM) && likelyMost <= double(kTallBlockM);
}

/// The slot-block height of a schedule's matmuls: their aligned block_m,
/// else that of a configuration written in the input, else (with
/// `swap-ab`) a swapped height for few rows per expert, else 256 where the
/// register operand's rows per expert are many (takesWideBlocks), else 64
/// for short 4-bit streams (isShortFourBitSchedule), else 192 where bf16
/// experts' rows likely spill out of 128 but fit 192 (takesTallBlocks,
/// with `tall-blocks`), else 128 unless one
/// tile asked for fewer rows and (bf16) an expert's likely most rows fit
/// 64.
int64_t chooseBlockM(ArrayRef<ExpertMatmulOp> schedule,
                     const std::optional<ExpertRows> &rows,
                     const ConfigureOptions &options) {
  for (ExpertMatmulOp op : schedule)
    if (std::optional<int64_t> blockM = op.getBlockM())
      return *blockM;
  for (ExpertMatmulOp op : schedule)
    if (KernelConfigAttr config = getKernelConfig(op))
      return config.getBlockM();
  if (options.swapAB)
    if (int64_t swapped = chooseSwappedBlockM(schedule, rows))
      return swapped;
  if (takesWideBlocks(schedule, rows, options))
    return kWideBlockM;
  // The short-stream rule was measured on the bf16 tile kernel; on the
  // register operand 128-row blocks measured 25-34% faster than 64-row ones
  // at M = 1024 and 4096 (GPT-OSS-20B mxfp4, Qwen3 int4 zp; H100,
  // docs/gpu-benchmark-quantized.md, twentieth session).
  if (isShortFourBitSchedule(schedule) &&
      !llvm::all_of(schedule, [&](ExpertMatmulOp op) {
        return takesRegisterOperand(op, options);
      }))
    return kSmallBlockM;
  // The other heights were measured on bf16 only.
  std::optional<ExpertRows> bf16Rows = rows && rows->bf16 ? rows : std::nullopt;
  if (isShortSharedSchedule(schedule, bf16Rows, options))
    return kSmallBlockM;
  if (takesTallBlocks(bf16Rows, options))
    return kTallBlockM;
  bool asksSmall = llvm::any_of(schedule, [](ExpertMatmulOp op) {
    TileAttr tile = op.getTileAttr();
    return tile && tile.getBlockM() < kLargeBlockM;
  });
  if (!asksSmall)
    return kLargeBlockM;
  // Where an expert's rows likely spill out of one 64-row block but fit one
  // of 128, the spilled block would stream the expert's weights again for a
  // few rows: one 128-row block per expert instead (bf16 Mixtral M = 256
  // and Qwen3 M = 1024: -9% and -7% on an H200, level on an H100; the
  // quantized kernels lost up to 9%, docs/gpu-benchmark.md).
  if (bf16Rows && bf16Rows->likelyMost() > double(kSmallBlockM) &&
      bf16Rows->likelyMost() <= double(kLargeBlockM))
    return kLargeBlockM;
  return kSmallBlockM;
}

/// The policy's `fused_align_assignments` for `schedule`, whose first
/// matmul has `config` (see kAutoFusedAlignBf16): the bound of its format
/// where the schedule expects no more assignments than that, 0 otherwise.
int64_t autoFusedAlignAssignments(ArrayRef<ExpertMatmulOp> schedule,
                                  KernelConfigAttr config, int64_t numTokens) {
  int64_t bound = kAutoFusedAlignBf16;
  for (ExpertMatmulOp op : schedule) {
    MatmulFacts facts = MatmulFacts::of(op);
    if (facts.isWeightOnly())
      return 0;
    if (facts.isW8A8())
      bound = std::min(bound, config.getSwapAb() ? kAutoFusedAlignSwappedW8A8
                                                 : kAutoFusedAlignW8A8);
  }
  int64_t assignments = expectedAssignments(schedule, numTokens);
  return assignments > 0 && assignments <= bound ? bound : 0;
}

/// `config` with the fields set after its tiles were chosen:
/// `fused_align_assignments`, `combine_rows`, `staged_epilogue` and
/// `input_tma`.
KernelConfigAttr withEpilogueFields(KernelConfigAttr config,
                                    int64_t fusedAlignAssignments,
                                    bool combineRows, bool stagedEpilogue,
                                    bool inputTma) {
  return KernelConfigAttr::get(
      config.getContext(), config.getMma(), config.getSchedule(),
      config.getBlockM(), config.getBlockN(), config.getBlockK(),
      config.getStages(), config.getConsumerWarpgroups(),
      config.getProducerWarpgroups(), config.getProducerRegisters(),
      config.getConsumerRegisters(), config.getSplitK(), config.getClusterM(),
      config.getClusterN(), config.getGroupM(), config.getSwapAb(),
      config.getWeightLoad(), config.getFastAccumulation(),
      fusedAlignAssignments, combineRows, stagedEpilogue, inputTma);
}

/// `config` with `fused_align_assignments` = `assignments` where its kernel
/// can take it: one tile per block, no cluster, and room beside the ring
/// for the counts, slots and scan of the alignment in shared memory.
KernelConfigAttr withFusedAlign(ExpertMatmulOp op, KernelConfigAttr config,
                                int64_t assignments) {
  if (assignments == 0 ||
      (config.getSchedule() != Schedule::Multistage &&
       config.getSchedule() != Schedule::WarpSpecialized) ||
      config.getClusterM() != 1 || config.getClusterN() != 1)
    return config;
  int64_t elementBytes = config.getMma() == MmaKind::WgmmaBf16 ? 2 : 1;
  int64_t ringBytes = config.getStages() *
                      (config.getBlockM() + config.getBlockN()) *
                      config.getBlockK() * elementBytes;
  if (ringBytes + hopper::kSwizzleAlignment +
          hopper::fusedAlignSharedBytes(op.getNumExperts(),
                                        config.getBlockM()) >
      hopper::kMaxSharedBytes)
    return config;
  return withEpilogueFields(config, assignments, config.getCombineRows(),
                            config.getStagedEpilogue(), config.getInputTma());
}

/// Whether `op` can store its combine as rows per assignment
/// (`combine_rows`): a combine with a bf16 result, no partial sums, on
/// unswapped tiles without split-K.
bool takesCombineRows(ExpertMatmulOp op, KernelConfigAttr config) {
  return op.isCombine() && !op.getAccumulate() &&
         getElementTypeOrSelf(op.getType()).isBF16() && !config.getSwapAb() &&
         config.getSplitK() == 1;
}

/// Whether the policy gives `op` `combine_rows`: a bf16 or w8a8 (fp8,
/// int8) combine whose K is at most `combine-rows-max-k`, in a schedule of
/// at least kCombineRowsMinAssignments expected assignments (M·k: the sum
/// kernel is one more launch, which only prefill amortizes; the smallest
/// measured gain was Qwen3's at M = 1024, 8192). Measured on an H100
/// (docs/gpu-benchmark.md, thirtieth session): the f32 reductions of a
/// 128 x 256 tile cost as much as a short K loop (Qwen3's K = 768: 12
/// steps), so storing bf16 rows and summing them in a second kernel took
/// GEMM2 21% and the block 5.1% faster at M = 4096 (DeepSeek-V3, K = 2048:
/// 12% and 3.3%); with Mixtral's K = 14336 the epilogue is hidden behind
/// 224 steps, and the block was level to 3% slower. The w8a8 blocks gained
/// 0.5-3.5% (docs/gpu-benchmark-quantized.md, thirty-first session: Qwen3
/// fp8 and int8 per channel at M = 4096 -3.2% and -3.5%, DeepSeek-V3's fp8
/// blocks -0.6 to -1.4%), on the multistage schedule. Weight-only combines
/// and the warp-specialized w8a8 ones were not measured with it.
bool isCombineRowsByPolicy(ExpertMatmulOp op, KernelConfigAttr config,
                           int64_t assignments,
                           const ConfigureOptions &options) {
  MatmulFacts facts = MatmulFacts::of(op);
  // The w8a8 rows were measured on the multistage schedule only.
  bool measuredSchedule =
      !facts.isW8A8() || config.getSchedule() == Schedule::Multistage;
  return options.combineRowsMaxK > 0 && !facts.isWeightOnly() &&
         measuredSchedule && assignments >= kCombineRowsMinAssignments &&
         facts.inFeatures <= options.combineRowsMaxK &&
         takesCombineRows(op, config);
}

/// Whether `config` (chosen for `op`) takes staged_epilogue with the
/// `staged-epilogue` option: the persistent bf16 schedule of two consumer
/// warpgroups storing rows (no combine, or combine_rows), with at most
/// kMaxStagedEpilogueSteps K steps per tile (where the multistage kernel's
/// staging gained), and room for the 64-row table after the ring.
bool takesStagedEpilogue(ExpertMatmulOp op, KernelConfigAttr config,
                         const ConfigureOptions &options) {
  MatmulFacts facts = MatmulFacts::of(op);
  if (!options.stagedEpilogue || facts.format != QuantFormat::None ||
      config.getSchedule() != Schedule::Persistent || config.getSwapAb() ||
      config.getConsumerWarpgroups() != 2 || config.getClusterM() != 1 ||
      (op.isCombine() && !config.getCombineRows()) ||
      facts.inFeatures / config.getBlockK() > hopper::kMaxStagedEpilogueSteps)
    return false;
  int64_t outputColumns =
      op.getActivation() ? config.getBlockN() / 2 : config.getBlockN();
  return hopper::turnTableOffset(config.getRingBytes()) +
             hopper::epilogueTableBytes(hopper::kWarpgroupRows, outputColumns) +
             hopper::kSwizzleAlignment <=
         hopper::kMaxSharedBytes;
}

/// Whether `config` (chosen for `op`) takes input_tma with the `input-tma`
/// option: the multistage bf16 schedule of unswapped tiles without a
/// cluster, weights by TMA, over an input whose rows are the slots (no
/// gather).
bool takesInputTma(ExpertMatmulOp op, KernelConfigAttr config,
                   const ConfigureOptions &options) {
  return options.inputTma && !op.getGather() &&
         MatmulFacts::of(op).format == QuantFormat::None &&
         config.getSchedule() == Schedule::Multistage && !config.getSwapAb() &&
         config.getWeightLoad() == WeightLoad::Tma &&
         config.getClusterM() == 1 && config.getClusterN() == 1;
}

struct MoeGpuConfigurePass
    : public moe_gpu::impl::MoeGpuConfigureBase<MoeGpuConfigurePass> {
  using Base::Base;

  /// `block-k` is one or two 128-byte spans of bf16; two are built for the
  /// multistage schedule without a cluster only.
  LogicalResult verifyBlockK() {
    int64_t span = kStageRowBytes / 2;
    if (!llvm::is_contained({int64_t(0), span, 2 * span}, blockK.getValue()))
      return getOperation()->emitError("moe-gpu-configure: block-k must be "
                                       "0, ")
             << span << " or " << 2 * span << ", got " << blockK.getValue();
    if (blockK == 2 * span &&
        (warpSpecialize || persistent || pingpong || clusterM != 1))
      return getOperation()->emitError(
          "moe-gpu-configure: block-k = 128 is built for the multistage "
          "schedule without a cluster, not with warp-specialize, "
          "persistent, pingpong or cluster-m = 2");
    return success();
  }

  /// The pass options as the policy reads them, with the parsed
  /// `swapped-weight-load`.
  ConfigureOptions collectOptions(WeightLoad swappedLoad) {
    ConfigureOptions options;
    options.blockN = blockN;
    options.stages = stages;
    options.blockK = blockK;
    options.warpSpecialize = warpSpecialize;
    options.persistent = persistent;
    options.pingpong = pingpong;
    options.clusterM = clusterM;
    options.swapAB = swapAb;
    options.swappedWarpgroups = swappedWarpgroups;
    options.swappedWeightLoad = swappedLoad;
    options.weightOnlyRegisters = weightOnlyRegisters;
    options.weightOnlyWarpSpecialize = weightOnlyWarpSpecialize;
    options.fp8FastAccumulation = fp8FastAccumulation;
    options.w8a8SwapAB = w8a8SwapAb;
    options.fusedAlignAssignments = fusedAlignAssignments;
    options.numTokens = numTokens;
    options.numSMs = numSMs;
    options.persistentMaxRows = persistentMaxRows;
    options.shortSplitK = shortSplitK;
    options.combineRows = combineRows;
    options.combineRowsMaxK = combineRowsMaxK;
    options.tallBlocks = tallBlocks;
    options.stagedEpilogue = stagedEpilogue;
    options.inputTma = inputTma;
    return options;
  }

  /// The options as the policy reads them, or an error for an override the
  /// policy would round or clamp silently: the caller asked for a kernel it
  /// would not get.
  FailureOr<ConfigureOptions> verifyOptions() {
    if (!llvm::is_contained({int64_t(0), kMinBlockN, kNarrowBlockN,
                             kMaxBlockN},
                            blockN.getValue())) {
      getOperation()->emitError("moe-gpu-configure: block-n must be 0, 64, "
                                "128 or 256, got ")
          << blockN.getValue();
      return failure();
    }
    if (stages != 0 &&
        (stages < kMinStages || stages > hopper::kMaxRingStages)) {
      getOperation()->emitError("moe-gpu-configure: stages must be 0 or "
                                "between ")
          << kMinStages << " and " << hopper::kMaxRingStages << ", got "
          << stages.getValue();
      return failure();
    }
    if (persistentMaxRows < 0) {
      getOperation()->emitError("moe-gpu-configure: persistent-max-rows must "
                                "be 0 (off) or positive, got ")
          << persistentMaxRows.getValue();
      return failure();
    }
    if (combineRowsMaxK < 0) {
      getOperation()->emitError("moe-gpu-configure: combine-rows-max-k must "
                                "be 0 (off) or positive, got ")
          << combineRowsMaxK.getValue();
      return failure();
    }
    if (shortSplitK < 1 || shortSplitK > kMaxDecodeSplitK) {
      getOperation()->emitError("moe-gpu-configure: short-split-k must be "
                                "between 1 (off) and ")
          << kMaxDecodeSplitK << ", got " << shortSplitK.getValue();
      return failure();
    }
    if (clusterM != 1 && clusterM != 2) {
      getOperation()->emitError("moe-gpu-configure: cluster-m must be 1 or "
                                "2, got ")
          << clusterM.getValue();
      return failure();
    }
    if (failed(verifyBlockK()))
      return failure();
    if (fusedAlignAssignments < -1 ||
        fusedAlignAssignments > hopper::kMaxFusedAlignAssignments) {
      getOperation()->emitError("moe-gpu-configure: "
                                "fused-align-assignments must be -1 (the "
                                "policy's) or in [0, ")
          << hopper::kMaxFusedAlignAssignments << "], got "
          << fusedAlignAssignments.getValue();
      return failure();
    }
    if (swappedWarpgroups < 0 || swappedWarpgroups > 2) {
      getOperation()->emitError("moe-gpu-configure: swapped-warpgroups must "
                                "be 0 (the policy's choice), 1 or 2, got ")
          << swappedWarpgroups.getValue();
      return failure();
    }
    if (swappedWarpgroups == 2 && blockN == kMinBlockN) {
      getOperation()->emitError("moe-gpu-configure: block-n = 64 is one "
                                "warpgroup's weight rows, but "
                                "swapped-warpgroups = 2 splits each tile's "
                                "rows over two (block-n 128 or 256)");
      return failure();
    }
    std::optional<WeightLoad> weightLoad =
        symbolizeWeightLoad(swappedWeightLoad.getValue());
    if (!weightLoad || *weightLoad == WeightLoad::Registers) {
      getOperation()->emitError("moe-gpu-configure: swapped-weight-load must "
                                "be tma or cp_async (weight-only-registers "
                                "asks for register operands), got '")
          << swappedWeightLoad.getValue() << "'";
      return failure();
    }
    return collectOptions(*weightLoad);
  }

  /// Chooses the block height of each schedule (the matmuls on one slot
  /// order) and the kernel configuration of each of its matmuls.
  LogicalResult configureSchedules(const ConfigureOptions &options) {
    llvm::MapVector<Value, SmallVector<ExpertMatmulOp>> bySchedule;
    getOperation().walk([&](ExpertMatmulOp op) {
      if (op.getTileAttr() || op.isAligned() || getKernelConfig(op))
        bySchedule[op.getSlots()].push_back(op);
    });
    for (auto &[slots, schedule] : bySchedule) {
      std::optional<ExpertRows> rows = getExpertRows(schedule, options);
      int64_t blockM = chooseBlockM(schedule, rows, options);
      // Short 4-bit streams in unswapped blocks: 64 weight rows a block too
      // (kShortFourBitRowBytes), unless `block-n` says otherwise.
      ConfigureOptions scheduleOptions = options;
      if (blockM >= kSmallBlockM && options.blockN == 0 &&
          isShortFourBitSchedule(schedule))
        scheduleOptions.blockN = kMinBlockN;
      // The schedule's expected slot blocks (weight-only decode splits by
      // them); the other policies that read the rows were measured on bf16.
      std::optional<double> slotBlocks;
      if (rows)
        slotBlocks = double(rows->experts) * expectedRowBlocks(*rows, blockM);
      if (rows && !rows->bf16)
        rows = std::nullopt;
      // The first matmul of the schedule runs first: it can align the
      // schedule for the ones after it (unless its configuration was
      // written in the input).
      ExpertMatmulOp first = schedule.front();
      bool firstChosen = !getKernelConfig(first);
      for (ExpertMatmulOp op : schedule) {
        // moe-align pads the schedule to the tile's block_m.
        if (TileAttr tile = op.getTileAttr(); tile && !op.isAligned())
          op.setTileAttr(TileAttr::get(
              op.getContext(), blockM, tile.getBlockN(), tile.getBlockK(),
              tile.getStages(), tile.getSplitK(), tile.getSwapAb(),
              tile.getGroupM()));
        // A configuration written in the input is kept, as a tuning
        // experiment or a user's choice would want.
        if (getKernelConfig(op))
          continue;
        KernelConfigAttr chosen =
            chooseKernelConfig(op, blockM, rows, slotBlocks, scheduleOptions);
        // The schedule's slot blocks were aligned before this pass (a
        // schedule of 256 rows with the producer off, say): say so here,
        // at the op, rather than leave a configuration no kernel has.
        if (failed(chosen.verifyContract([&] {
              return op.emitError()
                     << "moe-gpu-configure: no kernel for the schedule's "
                     << blockM << "-row slot blocks with these options: ";
            })))
          return failure();
        if ((options.combineRows && takesCombineRows(op, chosen)) ||
            isCombineRowsByPolicy(
                op, chosen, expectedAssignments(schedule, options.numTokens),
                options))
          chosen = withEpilogueFields(
              chosen, chosen.getFusedAlignAssignments(), /*combineRows=*/true,
              chosen.getStagedEpilogue(), chosen.getInputTma());
        if (takesStagedEpilogue(op, chosen, options))
          chosen =
              withEpilogueFields(chosen, chosen.getFusedAlignAssignments(),
                                 chosen.getCombineRows(),
                                 /*stagedEpilogue=*/true, chosen.getInputTma());
        if (takesInputTma(op, chosen, options))
          chosen = withEpilogueFields(chosen, chosen.getFusedAlignAssignments(),
                                      chosen.getCombineRows(),
                                      chosen.getStagedEpilogue(),
                                      /*inputTma=*/true);
        op->setAttr(MoeGPUDialect::getConfigAttrName(), chosen);
      }
      int64_t fusedAlign =
          options.fusedAlignAssignments >= 0
              ? options.fusedAlignAssignments
              : autoFusedAlignAssignments(schedule, getKernelConfig(first),
                                          options.numTokens);
      if (firstChosen)
        first->setAttr(
            MoeGPUDialect::getConfigAttrName(),
            withFusedAlign(first, getKernelConfig(first), fusedAlign));
    }
    return success();
  }

  void runOnOperation() override {
    FailureOr<ConfigureOptions> options = verifyOptions();
    if (failed(options))
      return signalPassFailure();
    if (failed(configureSchedules(*options)))
      signalPassFailure();
  }
};
} // namespace
