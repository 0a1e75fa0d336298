//===- ExpertMatmulKernel.cpp - the Hopper kernel of moe.expert_matmul ----===//
//
// Builds the sm_90a kernel of an aligned moe.expert_matmul: for each slot
// block of 64, column tile of 128 and K split, one warpgroup runs a K loop
// over a ring of shared-memory stages. Per stage, TMA brings a 128x64 tile
// of the expert's [N, K] weights (under an mbarrier) and cp.async brings the
// block's 64 A rows (gathered by token, or in slot order) into the
// 128B-swizzled layout; four K-major wgmma accumulate in f32. Epilogues:
// bf16 rows in slot order, optionally through a gated activation, or the
// routed-weight combine, added atomically into an f32 [M, N] buffer. The
// structure was checked on an H200 first (runtime/test/gen_grouped_gemm.py).
//
// Quantized formats keep the structure. w8a8 (fp8 e4m3, int8) codes travel
// as bytes, 128 of K per stage (the same 128-byte swizzled rows), into k32
// wgmma; scales apply in the epilogue, except that fp8 partial sums are
// promoted to f32 every stage (times the block scales of DeepSeek's layout).
// Weight-only codes (int4, int8 groups, mxfp4) come by cp.async instead of
// TMA and are dequantized into the bf16 B tile before the bf16 wgmma.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"

#include "moe/Conversion/Utils/ScalarMath.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Utils/Utils.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

using moe_gpu::hopper::kMaxSharedBytes;
using moe_gpu::hopper::kSwizzleAlignment;
using moe_gpu::hopper::kWarpgroupRows;
using moe_gpu::hopper::kWarpgroupThreads;

namespace {
/// Bytes of one row of a stage's tiles: one 128B swizzle span, so 64 bf16
/// or 128 one-byte (e4m3, s8) elements of K per stage.
constexpr int64_t kRowBytes = moe_gpu::hopper::kStageRowBytes;
/// Bytes of K one wgmma consumes: k16 of bf16, k32 of e4m3 or s8.
constexpr int64_t kWgmmaKBytes = 32;
/// Block scales cover 128 x 128 weights and 1 x 128 activations.
constexpr int64_t kScaleBlock = 128;
/// cp.async moves 16 bytes per chunk: 8 rows of 8 chunks fill a 128B span.
constexpr int64_t kChunkBytes = 16;
/// bf16 values per 16-byte chunk of the B tile.
constexpr int64_t kValuesPerChunk = 8;
constexpr int64_t kMaxStages = moe_gpu::hopper::kMaxMultistageStages;
/// Warp-specialized: stages whose gathers stay in flight before the
/// producer waits for the oldest.
constexpr int64_t kProducerLag = 2;
/// Persistent: tiles the producer's leader publishes ahead of the block.
constexpr int64_t kTileRingDepth = 2;
/// Spin budget of one mbarrier try_wait before it is retried.
constexpr int64_t kWaitTicks = 10000000;
/// Descriptor bits of a K-major, 128B-swizzled tile: stride byte offset
/// 1024 (8 rows of 128 bytes) at bit 32, leading byte offset 1 at bit 16
/// (unused when swizzled), swizzle mode 1 (128B) at bit 62.
constexpr uint64_t kDescriptorBits =
    (uint64_t(1) << 62) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 16);

/// What one kernel computes: the shapes and format of the op, and the
/// decisions of its #moe_gpu.kernel_config.
struct KernelConfig {
  int64_t topK, outFeatures, inFeatures, numExperts;
  bool gather, combine;
  /// Per-expert f32 biases [E, N], added to the products in the epilogue.
  bool bias = false;
  std::optional<ActivationKind> activation;
  /// The activation's gate and up weight rows alternate (gate row j is row
  /// 2j, its up row 2j + 1) instead of forming halves.
  bool gateUpInterleaved = false;
  double alpha = 0, limit = 0, routedScalingFactor = 1;
  int64_t stages, splitK;
  /// Rows of a slot block: 64 or 128 (one or two consumer warpgroups, each
  /// an m64 wgmma on its 64 rows against the shared B tile).
  int64_t blockM = 64;
  /// Columns of the wgmma (its N): 64, 128 or 256.
  int64_t blockN = 128;
  /// The w8a8 format (fp8 e4m3 or int8; none for bf16) and its scales.
  QuantFormat format = QuantFormat::None;
  ScaleLayout scales = ScaleLayout::PerTensor;

  /// Group size along K and zero points of a weight-only format.
  int64_t group = 0;
  bool zeroPoint = false;
  /// Blocks per cluster along the slot blocks: 1, or 2 (multistage or
  /// warp-specialized): a pair of consecutive slot blocks of one expert
  /// loads each weight tile once, each block half of it, multicast to both.
  int64_t clusterM = 1;

  bool isW8A8() const {
    return format == QuantFormat::Fp8 || format == QuantFormat::Int8;
  }
  /// Weight-only: stored codes, dequantized to bf16 in shared memory.
  bool isWeightOnly() const { return !isW8A8() && format != QuantFormat::None; }
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
  /// accumulator was 1.2e-2 off the float64 oracle, 3.5e-3 promoted).
  bool promotesEachStage() const { return format == QuantFormat::Fp8; }
  int64_t elementBytes() const { return isW8A8() ? 1 : 2; }
  /// Elements of K per stage.
  int64_t blockK() const { return kRowBytes / elementBytes(); }
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
    return blockM / kWarpgroupRows * kWarpgroupThreads;
  }
  /// The 64-row accumulators of one consumer warpgroup: its own 64 rows, or
  /// with pingpong all block_m rows.
  int64_t rowFragments() const { return pingpong ? blockM / kWarpgroupRows : 1; }
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
  int64_t tileABytes() const { return blockM * kRowBytes; }

  int64_t tileBBytes() const { return blockN * kRowBytes; }

  int64_t outputTile() const { return activation ? blockN / 2 : blockN; }
  /// Columns of a product row after the epilogue.
  int64_t width() const { return activation ? outFeatures / 2 : outFeatures; }
  int64_t kSteps() const { return inFeatures / blockK() / splitK; }
  /// Per stage an A tile [BM, 128 bytes] and a B tile [BN, 128 bytes]
  /// (weight-only: and the B tile's stored codes), plus the slack for
  /// aligning the base to the swizzle.
  int64_t ringBytes() const {
    return stages * (tileABytes() + tileBBytes() + packedTileBytes());
  }
  /// Persistent: the tile ring's i32 slots, after the stages.
  int64_t tileSlotBytes() const { return persistent ? 4 * kTileRingDepth : 0; }
  /// Rows of a TMA box of the weights: the B tile, or with a gated
  /// activation or a cluster, half of it (gate and up rows; or the half
  /// each block of the pair loads).
  int64_t boxRows() const {
    return activation || clusterM > 1 ? blockN / 2 : blockN;
  }
  /// Cluster: per stage an 8-byte mbarrier, after the tile ring's slots,
  /// on which the other block (or, unpaired, this one) frees the stage;
  /// warp-specialized, it is the ring's empty barrier.
  int64_t stageFreeBarrierBytes() const { return clusterM > 1 ? 8 * stages : 0; }
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
  int64_t sharedBytes() const {
    return ringBytes() + tileSlotBytes() + stageFreeBarrierBytes() +
           kSwizzleAlignment;
  }
};

/// Builds the body; holds the values the steps share.
class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, const KernelConfig &config)
      : b(b), loc(loc), config(config) {}

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value i64(int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
  }

  void build(gpu::GPUFuncOp func, LLVM::GlobalOp sharedMemory);
  /// Cluster: every block initializes its full and stage-free barriers,
  /// and the pair synchronizes, before either block may multicast into the
  /// other or leave early.
  void initClusterBarriers();
  /// Cluster, multistage: the full barriers (the TMA's expect_tx) and the
  /// stage-free barriers (one arrival of the freeing block per use).
  void initMultistageBarriers();
  /// Cluster: the slot block and column tile of this block (a pair takes
  /// consecutive slot blocks of one column tile), and whether the pair
  /// shares the weights.
  std::pair<Value, Value> pairTile();
  void decideSharing(Value block);
  /// Cluster: the mbarrier in this block's shared memory on which the
  /// block that refills `stage` (the other one if shared, else this one)
  /// says it is done with the stage (warp-specialized: the stage's empty
  /// barrier, on which this block's consumers arrive too).
  Value stageFreeBarrier(Value stage);
  /// Cluster, at K step `step` of the multistage loop (this block is done
  /// with stage `next`): frees `next`'s stage for the block that fills it
  /// and waits until that stage is free in the other block too.
  void freeStageInPair(Value step, Value next);
  /// A barrier over every thread of both blocks of the cluster.
  void syncCluster();
  /// Names the kernel's arguments (their order: see buildExpertMatmulKernel).
  void bindArguments(Block &entry);
  /// The shared-memory tile, TMA box and accumulator types, and the weights'
  /// TMA descriptor from its pointer argument.
  void createTypes();
  /// The accumulator's element: i32 for int8, f32 otherwise.
  Type sumType() {
    return config.format == QuantFormat::Int8 ? Type(b.getI32Type())
                                              : Type(b.getF32Type());
  }

private:
  /// The (slot block, column tile) of grid block (x, y): see
  /// rasterizeLinear, for blocks issued in order of x + X·y.
  std::pair<Value, Value> rasterize(Value x, Value y);
  /// The (slot block, column tile) of the `linear`-th tile of
  /// `slotBlocks` x `columnTiles` in a raster of `groupM` slot blocks per
  /// group: consecutive tiles walk the group's slot blocks first.
  std::pair<Value, Value> rasterizeLinear(Value linear, Value slotBlocks,
                                          Value columnTiles);
  /// Loads the padded slot count and derives the assignment count M·k.
  void loadScheduleSize();
  /// Initializes the full and empty rings (thread 0) and synchronizes the
  /// block; sets the producer's TMA leader. In a cluster the rings were
  /// initialized before the pair's first synchronization.
  void initRings();
  /// The ring's barriers (the calling thread initializes them): full, empty
  /// (in a cluster, the stage-free barriers), and the persistent tile ring
  /// and pingpong's math order.
  void initRingBarriers();
  /// Producer: waits until the stage of ring position `position` was
  /// released in the round before (a fresh barrier counts as released).
  void waitForRelease(Value position);
  /// Consumers: release the stage of ring position `position` (in a cluster,
  /// on this block's empty barrier and on that of the block that refills
  /// this block's copy of the stage).
  void releaseStage(Value position);
  /// Persistent body: the producer and the consumers each walk this
  /// block's tiles (tile = block id, + grid size, ...) in the same order,
  /// the producer running up to a ring ahead, so that the next tile's
  /// loads overlap this tile's epilogue.
  void buildPersistent();
  /// Calls `body` for each tile of this block whose expert is local, with
  /// the tile's values bound and `stepBase` at the ring position of its
  /// first K step (tiles done so far · K steps). The block's first tile is
  /// its block id; the next ones come from the tile counter, in the order
  /// blocks become free (as the hardware would dispatch a grid of one-tile
  /// blocks, so that the tiles in flight stay close in the raster and share
  /// their rows and weights in L2). The producer's leader (`publishes`)
  /// takes each next tile one tile ahead and publishes it through the tile
  /// ring; every thread receives it.
  void forEachTile(bool publishes, function_ref<void()> body);
  /// The producer warpgroup: once every thread has received the tile before
  /// in the slot, the leader publishes `tileOf()` as the block's
  /// `index`-th. (The wait stays outside the leader's branch: it spins
  /// with `bra.uni`, which a diverged warp must not run.)
  void publishTile(Value index, function_ref<Value()> tileOf);
  /// The block's `index`-th tile, once published.
  Value receiveTile(Value index);
  /// Waits on barrier `position` mod `depth` of `ring` until the phase of
  /// round position / depth is complete or, with `previousRound`, that of
  /// the round before (which a fresh barrier counts as complete).
  void waitForPhase(Value ring, Value position, int64_t depth,
                    bool previousRound);
  /// The position in the ring of K step `step` of the current tile.
  Value ringStep(Value step) {
    return stepBase ? arith::AddIOp::create(b, loc, stepBase, step).getResult()
                    : step;
  }
  /// The first weight row of this block's tile in the [E·N, K] weights.
  Value firstWeightRow();
  /// Plans the 16-byte cp.async chunks of the A tile that `thread`, one of
  /// `numThreads` loading threads, copies at every stage.
  void planInputChunks(Value thread, int64_t numThreads);
  /// The fragment rows of this thread's accumulator (and, w8a8, the input
  /// rows whose scales apply).
  void planFragmentRows();
  /// Weight-only: plans this thread's chunks of stored codes to copy and of
  /// the B tile to dequantize at every stage.
  void planWeightOnlyChunks();
  Value zeroAccumulator(Type sumType);
  /// The multistage K loop: every thread issues its share of each stage,
  /// a barrier per step, one wgmma group in flight from three stages on;
  /// returns the f32 (s32 for int8) sums, fp8 partials promoted.
  Value multistageLoop(Value accumulator);
  /// The multistage body: every thread loads and multiplies, a barrier per
  /// K step (and, paired, a stage handshake with the other block).
  void buildMultistage(Type sumType);
  /// This block's slot block and column tile: the grid's, rasterized, or
  /// in a cluster its pair's (after the pair's first synchronization).
  std::pair<Value, Value> blockAndColumnTile();
  /// Warp-specialized body: thread 0 initializes the full and empty rings,
  /// then the producer warpgroup runs `produce` and the consumers `consume`
  /// and the epilogue, each role in one branch (as setmaxnreg needs).
  void buildWarpSpecialized(Type sumType);
  /// The producer warpgroup runs `producer` and the consumer warpgroups
  /// `consumers`, each in its branch after setmaxnreg moved its registers.
  void splitRoles(function_ref<void()> producer,
                  function_ref<void()> consumers);
  /// The producer's loop: per K step, wait until the consumers released the
  /// stage, then TMA the weights and cp.async the A rows into it; announce
  /// each stage's rows on its full barrier once they have landed.
  void produce();
  /// The consumers' K loop: wait for a full stage, multiply it, release it.
  /// Without `accumulator`, the first wgmma starts the sums (scale-d 0).
  Value consume(Value accumulator = Value()) {
    return consumeFragments(accumulator ? SmallVector<Value>{accumulator}
                                        : SmallVector<Value>{Value()})[0];
  }
  /// The K loop on one accumulator per 64-row fragment (null: fresh sums).
  SmallVector<Value> consumeFragments(SmallVector<Value> accumulators);
  /// Pingpong consumer body of one tile: if the tile is this warpgroup's
  /// (tiles done so far has its parity), its K loop over every row
  /// fragment and their epilogues.
  void consumePingpong();
  /// The ring stage of K step `step`.
  Value stageOf(Value step);
  /// Waits on `ring`'s barrier of `step`'s stage until the phase of `step`'s
  /// round is complete or, with `previousRound`, that of the round before
  /// (which a fresh barrier counts as complete).
  void waitForRound(Value ring, Value step, bool previousRound);
  /// Orders this thread's generic-proxy writes to shared memory (cp.async,
  /// st.shared) before the async proxy's reads (wgmma, TMA).
  void fenceAsyncProxy();
  Value sharedBase(LLVM::GlobalOp sharedMemory);
  /// The address of a memref's aligned pointer, as i64.
  Value addressOf(Value view);
  Value descriptor(Value address);
  /// The tile of `stage` at byte `offset` of stage 0, `stride` bytes apart.
  Value stageView(MemRefType type, Value stage, int64_t offset,
                  int64_t stride);
  Value tileA(Value stage) {
    return stageView(tileAType, stage, 0, config.tileABytes());
  }
  Value tileB(Value stage, int64_t extraOffset = 0) {
    return stageView(tileBType, stage,
                     config.stages * config.tileABytes() + extraOffset,
                     config.tileBBytes());
  }
  /// The input row that slot `slot` reads (its token with gather, else the
  /// slot), or row 0 for a padding slot; `real` is set to whether the slot
  /// holds an assignment.
  Value inputRowOf(Value slot, Value &real);
  void issueStage(Value step, Value valid);
  /// Cluster: the two boxes of the B tile (gate and up rows, or its two
  /// halves). Shared, block r loads box r and multicasts it to both blocks;
  /// else this block loads both, for itself. Predicates only, no branches.
  void loadPairedWeights(Value stage, Value kOffset, Value issuer);
  /// Weight-only: the scale (and zero) of each of this thread's chunks of
  /// the B tile at K step `step`, loaded ahead of the stage's waits.
  SmallVector<Value> weightOnlyScales(Value step);
  /// Weight-only: the stored codes of `stage` (read by cp.async) as bf16 in
  /// the swizzled B tile of the stage, each value (code − zero) · scale.
  void dequantizeStage(Value stage, ArrayRef<Value> scales);
  /// The f32 value of one stored `code` (its bits in an i32) before its
  /// scale; `zeroBias` is 2^23 + the group's zero point, or null.
  Value decodeWeight(Value code, Value zeroBias);
  /// The weight row (local to the expert) of row `row` of the B tile.
  Value weightRowOf(Value row);
  /// The TMA coordinates (column, row) of a gated tile's up rows at K
  /// offset `kOffset`, beside the gate rows at (kOffset, weightsRow).
  std::pair<Value, Value> upTileCoordinates(Value kOffset);
  Value packedTile(Value stage) {
    return stageView(packedType, stage,
                     config.stages * (config.tileABytes() + config.tileBBytes()),
                     config.packedTileBytes());
  }
  /// Issues the wgmmas of `stage` onto `accumulator` (or, `fresh`, onto
  /// nothing: the first one's scale-d is 0), commits them as a group and
  /// waits until at most `pendingGroups` groups are in flight; a warpgroup
  /// without assignments in the tile (ownRowsHoldAssignments) skips them.
  SmallVector<Value> wgmmaStep(ArrayRef<Value> accumulators, Value stage,
                               int64_t pendingGroups, bool fresh = false);
  /// wgmmaStep without the skip.
  SmallVector<Value> issueWgmmas(ArrayRef<Value> accumulators, Value stage,
                                 int64_t pendingGroups, bool fresh);
  Value wgmmaStep(Value accumulator, Value stage, int64_t pendingGroups,
                  bool fresh = false);
  /// The scales of K block `step` (block scales): per fragment half, per
  /// 64-column chunk of the B tile, activation x weight scale.
  SmallVector<Value> blockScales(Value step);
  /// total + partial, times the block's scale of each register when given.
  Value promote(Value total, Value partial, ArrayRef<Value> scales);
  /// Accumulator register `reg` as f32 (an s32 sum of int8 is converted).
  Value accumulatorValue(Value accumulator, int64_t reg);
  /// Loads what the epilogue needs of each fragment row (its slot's
  /// assignment, and for the combine its token and routing weight) before
  /// the K loop, so that their latency hides behind it.
  void loadEpilogueRows();
  /// With two consumer warpgroups of 64 rows each, sets
  /// `ownRowsHoldAssignments` for the current tile. Within an expert's group
  /// the padding follows the assignments, and a block never straddles two
  /// groups, so a 64-row half that starts on padding is all padding: its
  /// warpgroup skips its wgmmas.
  void findOwnRows();
  /// What the epilogue needs of fragment row half h (rows r and r + 8).
  struct EpilogueRow {
    Value slot, scheduled, token, scale;
  };
  /// What the epilogue applies to the products, loaded before the first
  /// store: per fragment half the row's input scale, and per column of the
  /// thread (2 of every 8; gated: also its up column) the weight scale and
  /// the bias.
  struct EpilogueOperands {
    /// Per-tensor or per-channel w8a8 scales multiply the products.
    bool scaled = false;
    SmallVector<Value> rowScales, gateScales, upScales;
    SmallVector<Value> gateBiases, upBiases;
  };
  EpilogueOperands loadEpilogueOperands(Value laneColumn);
  /// table[expert, c] for an [E, N] table of per-column values, c the
  /// product column of output column `column` (its up column if `up`); a
  /// column past the width (the last tile's overhang) reads column 0's.
  Value loadColumnValue(Value table, Value column, bool up = false);
  /// The product column (a weight row) of output column `column` of a
  /// gated tile, or of its up column if `up`: `column` or `column + N/2`
  /// as halves, `2 column` or `2 column + 1` interleaved.
  Value gateUpRow(Value column, bool up);
  /// Fragment register `reg`, the thread's column `columnIndex` (its up
  /// column if `up`) of fragment half `half`, scaled and biased.
  Value epilogueValue(Value accumulator, int64_t reg, int64_t half,
                      int64_t columnIndex, bool up,
                      const EpilogueOperands &operands);
  void storeEpilogue(Value accumulator);
  /// Puts the builder inside a branch on `column` < width when the last
  /// column tile can stick out of the width (`guard` restores it).
  void maskColumnPair(Value column,
                      std::optional<OpBuilder::InsertionGuard> &guard);
  /// Stores fragment half `half` of a non-combine matmul (activation and
  /// epilogue scales applied).
  void storeRows(Value accumulator, int64_t half, const EpilogueRow &rows,
                 Value laneColumn, const EpilogueOperands &operands);
  /// Stores a pair of adjacent bf16 columns as one 32-bit word.
  void storePair(Value slot, Value column, Value first, Value second);
  /// The combine's epilogue of fragment half `half`: each thread's two
  /// adjacent columns of a row, scaled and biased, times the routed weight
  /// `scale`, added into the f32 sums of `token` by one paired reduction.
  void combinePairs(Value accumulator, int64_t half, Value laneColumn,
                    Value token, Value scale,
                    const EpilogueOperands &operands);
  /// `red.global.add.v2.f32`: adds `first` and `second` to the two f32
  /// values at `address` (8-byte aligned), as one operation (sm_90).
  void reducePair(Value address, Value first, Value second);
  void ifThen(Value condition, function_ref<void()> body);

  OpBuilder &b;
  Location loc;
  const KernelConfig &config;
  MLIRContext *context() { return b.getContext(); }

  // Arguments and per-thread values.
  Value x, slots, blocks, padded, routingWeights, out, inputScales,
      weightScales, weightZeros, packedWeights, biases;
  /// The expert of this block, the thread's first fragment row in the
  /// block, and, per fragment half, the input row whose scale applies.
  Value expert, fragmentRow0;
  SmallVector<Value> scaleRow;
  Value tid, firstSlot, paddedCount, assignments, tileColumn, kBase;
  Value barriers, weightsMap, leader, weightsRow, weightsPointer;
  /// Warp-specialized: the ring's empty barriers (`barriers` are its full
  /// ones).
  Value emptyBarriers;
  /// Persistent: the ring position of the current tile's first K step
  /// (null otherwise: positions are the K steps), and the block's count of
  /// tiles done before the current one.
  Value stepBase, tilesDone;
  /// Persistent: the global tile counter, and the tile ring (its i32 slots
  /// in shared memory, and full and empty barriers).
  Value tileCounter, tileSlots, tileFull, tileEmpty;
  /// Pingpong: completes its phase d once tile d's K loop is done, so that
  /// the next tile's warpgroup waits on the ring at most one round ahead.
  Value mathOrder;
  /// Cluster: the dynamic shared memory as a pointer, this block's rank in
  /// its pair, whether the pair shares its weight tiles (both blocks in the
  /// schedule, of one local expert), and the rank whose stage-free barriers
  /// this block arrives on (the other block's if shared, else its own).
  Value sharedPointer, clusterRank, sharesWeights, freedRank;
  /// This thread's warpgroup, and its A rows' offset in descriptor units.
  Value warpgroup, warpgroupOffset;
  /// The dynamic shared memory, the shift that aligns it to 1024 bytes, and
  /// the tile types.
  Value smem, shift;
  MemRefType tileAType, tileBType, boxType, packedType;
  nvgpu::MBarrierGroupType barrierType;
  SmallVector<Value> chunkRow, dstColumn, chunkColumn, srcRow, srcElements;
  /// Weight-only: this thread's chunks of stored codes (tile row, byte
  /// column, source row of the [E·N, stored K] weights, bytes to copy).
  SmallVector<Value> packedRow, packedColumn, packedSourceRow, packedBytes;
  /// Weight-only: the B tile chunks (row, chunk) this thread dequantizes.
  SmallVector<Value> dequantRow, dequantColumn;
  LLVM::LLVMStructType accumulatorType;
  SmallVector<EpilogueRow, 2> epilogueRows;
  /// Null (every warpgroup multiplies), or whether this warpgroup's rows of
  /// the current tile hold an assignment (see findOwnRows).
  Value ownRowsHoldAssignments;
};
} // namespace

void KernelBuilder::ifThen(Value condition, function_ref<void()> body) {
  auto ifOp = scf::IfOp::create(b, loc, condition, /*withElse=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  body();
}

Value KernelBuilder::sharedBase(LLVM::GlobalOp sharedMemory) {
  // The dynamic shared memory as a memref: an external, zero-sized shared
  // global viewed through a hand-built descriptor (gpu.dynamic_shared_memory
  // gets internal linkage, and the NVPTX backend demotes it).
  auto pointerType = LLVM::LLVMPointerType::get(
      context(), static_cast<unsigned>(NVVM::NVVMMemorySpace::Shared));
  auto i64Type = b.getI64Type();
  auto arrayType = LLVM::LLVMArrayType::get(i64Type, 1);
  auto descriptorType = LLVM::LLVMStructType::getLiteral(
      context(), {pointerType, pointerType, i64Type, arrayType, arrayType});
  Value address = LLVM::AddressOfOp::create(b, loc, sharedMemory);
  Value value = LLVM::PoisonOp::create(b, loc, descriptorType);
  auto llvmConstant = [&](int64_t v) {
    return LLVM::ConstantOp::create(b, loc, i64Type, v);
  };
  value = LLVM::InsertValueOp::create(b, loc, value, address,
                                      ArrayRef<int64_t>{0});
  value = LLVM::InsertValueOp::create(b, loc, value, address,
                                      ArrayRef<int64_t>{1});
  value = LLVM::InsertValueOp::create(b, loc, value, llvmConstant(0),
                                      ArrayRef<int64_t>{2});
  value = LLVM::InsertValueOp::create(
      b, loc, value, llvmConstant(config.sharedBytes()), ArrayRef<int64_t>{3, 0});
  value = LLVM::InsertValueOp::create(b, loc, value, llvmConstant(1),
                                      ArrayRef<int64_t>{4, 0});
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  auto bytesType = MemRefType::get({config.sharedBytes()}, b.getI8Type(),
                                   MemRefLayoutAttrInterface(), workgroup);
  return UnrealizedConversionCastOp::create(b, loc, bytesType, value)
      .getResult(0);
}

Value KernelBuilder::addressOf(Value view) {
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, view);
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), pointer);
}

Value KernelBuilder::descriptor(Value address) {
  Value masked = arith::AndIOp::create(b, loc, address, i64(0x3FFFF));
  Value base = arith::ShRUIOp::create(b, loc, masked, i64(4));
  return arith::OrIOp::create(b, loc, base,
                              i64(static_cast<int64_t>(kDescriptorBits)));
}

Value KernelBuilder::stageView(MemRefType type, Value stage, int64_t offset,
                               int64_t stride) {
  Value bytes = arith::AddIOp::create(
      b, loc, arith::AddIOp::create(b, loc, shift, index(offset)),
      arith::MulIOp::create(b, loc, stage, index(stride)));
  return memref::ViewOp::create(b, loc, type, smem, bytes, ValueRange{});
}

Value KernelBuilder::inputRowOf(Value slot, Value &real) {
  Value assignment = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, slots, ValueRange{slot}));
  real = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                               assignments);
  Value source =
      config.gather
          ? arith::DivUIOp::create(b, loc, assignment, index(config.topK))
                .getResult()
          : slot;
  return arith::SelectOp::create(b, loc, real, source, index(0));
}

void KernelBuilder::issueStage(Value step, Value valid) {
  // Stage `step mod stages` of the ring: the weights tile by TMA (the leader
  // thread), the A rows by cp.async (every thread, one commit group). No
  // branches, only predicates: a wgmma is in flight, and ptxas serializes
  // wgmma around divergent code. An invalid step (past the end) loads
  // nothing but still commits its (empty) group, which keeps the count of
  // pending groups the same at every step.
  Value stage = stageOf(ringStep(step));
  Value kOffset = arith::AddIOp::create(
      b, loc, kBase, arith::MulIOp::create(b, loc, step, index(config.blockK())));
  kOffset = arith::SelectOp::create(b, loc, valid, kOffset, index(0));
  Value issuer = arith::AndIOp::create(b, loc, leader, valid);
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(context());
  if (config.isWeightOnly()) {
    // The stored codes by cp.async, in the A rows' commit group; they are
    // dequantized into the B tile when the step comes.
    Value kBytes = arith::DivUIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, kOffset,
                              index(config.packedRowBytes())),
        index(config.blockK()));
    Value stagePacked = packedTile(stage);
    for (size_t i = 0; i < packedRow.size(); ++i) {
      Value bytes =
          arith::SelectOp::create(b, loc, valid, packedBytes[i], index(0));
      nvgpu::DeviceAsyncCopyOp::create(
          b, loc, tokenType, stagePacked,
          ValueRange{packedRow[i], packedColumn[i]}, packedWeights,
          ValueRange{packedSourceRow[i],
                     arith::AddIOp::create(b, loc, kBytes, packedColumn[i])},
          b.getIndexAttr(kChunkBytes), bytes, UnitAttr());
    }
  } else if (config.clusterM > 1) {
    loadPairedWeights(stage, kOffset, issuer);
  } else if (!config.activation) {
    nvgpu::TmaAsyncLoadOp::create(b, loc, tileB(stage), barriers, weightsMap,
                                  ValueRange{kOffset, weightsRow}, stage,
                                  Value(), issuer);
  } else {
    // Gate rows, then the matching up rows: N/2 further down, or
    // (interleaved) in the second half of the same [2K]-wide row pair.
    auto [upColumn, upRow] = upTileCoordinates(kOffset);
    Value gateTile = stageView(boxType, stage,
                               config.stages * config.tileABytes(),
                               config.tileBBytes());
    Value upTile = stageView(boxType, stage,
                             config.stages * config.tileABytes() +
                                 config.tileBBytes() / 2,
                             config.tileBBytes());
    nvgpu::TmaAsyncLoadOp::create(b, loc, gateTile, barriers, weightsMap,
                                  ValueRange{kOffset, weightsRow}, stage,
                                  Value(), issuer);
    nvgpu::TmaAsyncLoadOp::create(b, loc, upTile, barriers, weightsMap,
                                  ValueRange{upColumn, upRow}, stage, Value(),
                                  issuer);
  }
  if (!config.isWeightOnly())
    nvgpu::MBarrierArriveExpectTxOp::create(
        b, loc, barriers, index(config.tileBBytes()), stage, issuer);
  Value stageA = tileA(stage);
  for (size_t i = 0; i < chunkRow.size(); ++i) {
    Value column = arith::AddIOp::create(b, loc, kOffset, chunkColumn[i]);
    Value elements =
        arith::SelectOp::create(b, loc, valid, srcElements[i], index(0));
    nvgpu::DeviceAsyncCopyOp::create(
        b, loc, tokenType, stageA, ValueRange{chunkRow[i], dstColumn[i]}, x,
        ValueRange{srcRow[i], column},
        b.getIndexAttr(kChunkBytes / config.elementBytes()), elements,
        /*bypassL1=*/b.getUnitAttr());
  }
  // One commit group per step; the wait counts groups, not tokens.
  NVVM::CpAsyncCommitGroupOp::create(b, loc);
}

void KernelBuilder::loadPairedWeights(Value stage, Value kOffset,
                                      Value issuer) {
  auto i16Constant = [&](int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI16IntegerAttr(value))
        .getResult();
  };
  // Shared, to both blocks' shared memory (the same offsets, the same
  // barrier); else to this block's alone.
  Value rank16 = arith::IndexCastOp::create(b, loc, b.getI16Type(), clusterRank);
  Value ownMask = arith::ShLIOp::create(b, loc, i16Constant(1), rank16);
  Value mask = arith::SelectOp::create(b, loc, sharesWeights, i16Constant(3),
                                       ownMask);
  // The second box: the up rows of a gated tile, else the tile's second
  // half of rows.
  auto [secondColumn, secondRow] =
      config.activation
          ? upTileCoordinates(kOffset)
          : std::pair<Value, Value>{
                kOffset, arith::AddIOp::create(b, loc, weightsRow,
                                               index(config.blockN / 2))};
  Value unshared = arith::XOrIOp::create(
      b, loc, sharesWeights,
      arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
  for (int64_t box = 0; box < 2; ++box) {
    Value ownBox = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         clusterRank, index(box));
    Value predicate = arith::AndIOp::create(
        b, loc, issuer, arith::OrIOp::create(b, loc, unshared, ownBox));
    Value tile = stageView(boxType, stage,
                           config.stages * config.tileABytes() +
                               box * config.tileBBytes() / 2,
                           config.tileBBytes());
    nvgpu::TmaAsyncLoadOp::create(b, loc, tile, barriers, weightsMap,
                                  box ? ValueRange{secondColumn, secondRow}
                                      : ValueRange{kOffset, weightsRow},
                                  stage, mask, predicate);
  }
}

Value KernelBuilder::stageFreeBarrier(Value stage) {
  Value offset = arith::AddIOp::create(
      b, loc, shift,
      arith::AddIOp::create(
          b, loc, index(config.ringBytes() + config.tileSlotBytes()),
          arith::MulIOp::create(b, loc, stage, index(8))));
  return LLVM::GEPOp::create(
      b, loc, sharedPointer.getType(), b.getI8Type(), sharedPointer,
      ValueRange{arith::IndexCastOp::create(b, loc, b.getI64Type(), offset)});
}

void KernelBuilder::initClusterBarriers() {
  Value first =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  ifThen(first, [&] {
    if (config.warpSpecialized)
      initRingBarriers();
    else
      initMultistageBarriers();
    // The other block's multicasts and arrivals may follow at once.
    NVVM::FenceMbarrierInitOp::create(b, loc);
  });
  syncCluster();
}

void KernelBuilder::initMultistageBarriers() {
  for (int64_t s = 0; s < config.stages; ++s) {
    nvgpu::MBarrierInitOp::create(b, loc, barriers, index(1), index(s),
                                  Value());
    // The freeing block's first thread arrives once per use, after the
    // block's barrier.
    NVVM::MBarrierInitOp::create(
        b, loc, stageFreeBarrier(index(s)),
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)), Value());
  }
}

void KernelBuilder::syncCluster() {
  NVVM::ClusterArriveOp::create(b, loc, UnitAttr());
  NVVM::ClusterWaitOp::create(b, loc, UnitAttr());
}

std::pair<Value, Value> KernelBuilder::blockAndColumnTile() {
  if (config.clusterM > 1) {
    initClusterBarriers();
    return pairTile();
  }
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnTile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  if (config.groupM > 0)
    return rasterize(block, columnTile);
  return {block, columnTile};
}

std::pair<Value, Value> KernelBuilder::pairTile() {
  // Cluster (2, 1, 1): blocks 2p and 2p + 1 of a grid row form pair p; the
  // raster orders pairs as it orders blocks.
  Value x = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnTile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  clusterRank = arith::RemUIOp::create(b, loc, x, index(2));
  Value pair = arith::DivUIOp::create(b, loc, x, index(2));
  if (config.groupM > 0) {
    Value pairs = arith::DivUIOp::create(
        b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x), index(2));
    Value columnTiles = gpu::GridDimOp::create(b, loc, gpu::Dimension::y);
    Value linear = arith::AddIOp::create(
        b, loc, pair, arith::MulIOp::create(b, loc, pairs, columnTile));
    std::tie(pair, columnTile) = rasterizeLinear(linear, pairs, columnTiles);
  }
  Value block = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, pair, index(2)), clusterRank);
  return {block, columnTile};
}

void KernelBuilder::decideSharing(Value block) {
  // Both blocks compute the same answer from the same schedule.
  Value partner = arith::XOrIOp::create(b, loc, block, index(1));
  auto expertOf = [&](Value slotBlock, Value &scheduled) {
    scheduled = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::slt,
        arith::MulIOp::create(b, loc, slotBlock, index(config.blockM)),
        paddedCount);
    Value safe =
        arith::SelectOp::create(b, loc, scheduled, slotBlock, index(0));
    return memref::LoadOp::create(b, loc, blocks, ValueRange{safe}).getResult();
  };
  Value ownScheduled, partnerScheduled;
  Value ownExpert = expertOf(block, ownScheduled);
  Value partnerExpert = expertOf(partner, partnerScheduled);
  Value sameExpert = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                           ownExpert, partnerExpert);
  Value localExpert = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::sge, ownExpert,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)));
  sharesWeights = arith::AndIOp::create(
      b, loc,
      arith::AndIOp::create(b, loc, ownScheduled, partnerScheduled),
      arith::AndIOp::create(b, loc, sameExpert, localExpert));
  Value rank32 =
      arith::IndexCastOp::create(b, loc, b.getI32Type(), clusterRank);
  Value otherRank = arith::XOrIOp::create(
      b, loc, rank32,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)));
  freedRank =
      arith::SelectOp::create(b, loc, sharesWeights, otherRank, rank32);
}

void KernelBuilder::freeStageInPair(Value step, Value next) {
  // Use u of a stage (u = step div stages: the steps whose `next` is the
  // stage, counted from the loop's first) completes phase u of its
  // stage-free barrier with the other block's (or, unshared, this block's)
  // arrival. Each block waits here for the other's arrival of the same
  // step, so the other block runs at most one step ahead: the barrier is at
  // most one phase ahead of the wait, and the parities never alias.
  Value stage = stageOf(next);
  auto clusterPointer = LLVM::LLVMPointerType::get(
      context(), static_cast<unsigned>(NVVM::NVVMMemorySpace::SharedCluster));
  Value target = NVVM::MapaOp::create(b, loc, clusterPointer,
                                      stageFreeBarrier(stage), freedRank);
  // One arrival per step: the block's barrier just before ordered every
  // thread's reads of the stage (complete: their wgmmas were waited for)
  // ahead of it, so the release is at CTA scope. At cluster scope it was
  // what made the pairs 25-40% slower on the H200, not the per-step
  // handshake (docs/gpu-warp-specialized.md).
  ifThen(leader, [&] {
    NVVM::MBarrierArriveOp::create(b, loc, Type(), target, Value(),
                                   NVVM::MemScopeKind::CTA,
                                   /*relaxed=*/false);
  });
  Value use = arith::DivUIOp::create(b, loc, step, index(config.stages));
  Value parity = arith::IndexCastOp::create(
      b, loc, b.getI32Type(), arith::RemUIOp::create(b, loc, use, index(2)));
  // The wait acquires at CTA scope, as CUTLASS's cluster pipelines do: what
  // it orders is this block's next TMA after the other block's reads, which
  // were complete before its arrival.
  NVVM::MBarrierTryWaitParityOp::create(
      b, loc, stageFreeBarrier(stage), parity,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(kWaitTicks)));
}

Value KernelBuilder::wgmmaStep(Value accumulator, Value stage,
                                int64_t pendingGroups, bool fresh) {
  return wgmmaStep(ArrayRef<Value>{accumulator}, stage, pendingGroups,
                   fresh)[0];
}

SmallVector<Value> KernelBuilder::wgmmaStep(ArrayRef<Value> accumulators,
                                            Value stage,
                                            int64_t pendingGroups,
                                            bool fresh) {
  if (!ownRowsHoldAssignments)
    return issueWgmmas(accumulators, stage, pendingGroups, fresh);
  // A warpgroup on padding rows multiplies nothing: its sums stay zero, as
  // the zero-filled A rows would have made them. The branch is uniform over
  // the warpgroup: ptxas 13 serializes no wgmma around it (see
  // docs/gpu-runtime.md).
  auto ifOp = scf::IfOp::create(
      b, loc, SmallVector<Type>(accumulators.size(), accumulatorType),
      ownRowsHoldAssignments, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.elseBlock());
  SmallVector<Value> unchanged(accumulators);
  if (fresh)
    for (Value &sum : unchanged)
      sum = zeroAccumulator(sumType());
  scf::YieldOp::create(b, loc, unchanged);
  b.setInsertionPointToStart(ifOp.thenBlock());
  scf::YieldOp::create(
      b, loc, issueWgmmas(accumulators, stage, pendingGroups, fresh));
  return SmallVector<Value>(ifOp.getResults());
}

SmallVector<Value> KernelBuilder::issueWgmmas(ArrayRef<Value> accumulators,
                                              Value stage,
                                              int64_t pendingGroups,
                                              bool fresh) {
  // Each warpgroup multiplies its own 64 rows: 64 x 128 bytes further (or,
  // with pingpong, every 64 rows of the tile, one accumulator each).
  Value descriptorA = arith::AddIOp::create(
      b, loc, descriptor(addressOf(tileA(stage))), warpgroupOffset);
  Value descriptorB = descriptor(addressOf(tileB(stage)));
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  // 32 bytes of K per wgmma: k16 of bf16, k32 of e4m3 or s8.
  auto shape = NVVM::MMAShapeAttr::get(context(), 64, config.blockN,
                                       kWgmmaKBytes / config.elementBytes());
  NVVM::WGMMATypes operandType = NVVM::WGMMATypes::bf16;
  NVVM::WGMMATypes sumType = NVVM::WGMMATypes::f32;
  if (config.format == QuantFormat::Fp8)
    operandType = NVVM::WGMMATypes::e4m3;
  if (config.format == QuantFormat::Int8) {
    operandType = NVVM::WGMMATypes::s8;
    sumType = NVVM::WGMMATypes::s32;
  }
  SmallVector<Value> sums(accumulators);
  for (int64_t step = 0; step < kRowBytes / kWgmmaKBytes; ++step) {
    // Both K-major operands advance 32 bytes (2 descriptor units); fragment
    // f's rows start 64 · 128 bytes (512 units) after fragment f − 1's.
    Value offset = i64(step * kWgmmaKBytes / 16);
    SmallVector<Value> stepA;
    for (int64_t fragment = 0; fragment < int64_t(sums.size()); ++fragment)
      stepA.push_back(arith::AddIOp::create(
          b, loc, descriptorA,
          fragment ? i64(fragment * kWarpgroupRows * kRowBytes / 16 +
                         step * kWgmmaKBytes / 16)
                   : offset));
    Value stepB = arith::AddIOp::create(b, loc, descriptorB, offset);
    for (auto [fragment, sum] : llvm::enumerate(sums))
      sum = NVVM::WgmmaMmaAsyncOp::create(
          b, loc, accumulatorType, sum, stepA[fragment], stepB, shape,
          operandType, operandType, sumType,
          fresh && step == 0 ? NVVM::WGMMAScaleOut::zero
                             : NVVM::WGMMAScaleOut::one,
          NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one,
          NVVM::MMALayout::row, NVVM::MMALayout::col,
          NVVM::MMAIntOverflowAttr());
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, pendingGroups);
  return sums;
}

Value KernelBuilder::weightRowOf(Value row) {
  if (!config.activation)
    return arith::AddIOp::create(b, loc, tileColumn, row);
  // The tile's gate rows, then their up rows: row r is output column
  // tileColumn + r (mod the output tile), gate below outputTile, else up.
  Value isGate = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row,
                                       index(config.outputTile()));
  Value column = arith::AddIOp::create(b, loc, tileColumn, row);
  Value upColumn =
      arith::SubIOp::create(b, loc, column, index(config.outputTile()));
  return arith::SelectOp::create(b, loc, isGate, gateUpRow(column, false),
                                 gateUpRow(upColumn, true));
}

Value KernelBuilder::gateUpRow(Value column, bool up) {
  if (!config.activation)
    return column;
  if (!config.gateUpInterleaved)
    return up ? arith::AddIOp::create(b, loc, column,
                                      index(config.outFeatures / 2))
              : column;
  Value gate = arith::MulIOp::create(b, loc, column, index(2));
  return up ? arith::AddIOp::create(b, loc, gate, index(1)) : gate;
}

std::pair<Value, Value> KernelBuilder::upTileCoordinates(Value kOffset) {
  if (config.gateUpInterleaved)
    return {arith::AddIOp::create(b, loc, kOffset, index(config.inFeatures)),
            weightsRow};
  return {kOffset, arith::AddIOp::create(b, loc, weightsRow,
                                         index(config.outFeatures / 2))};
}

Value KernelBuilder::decodeWeight(Value code, Value zeroBias) {
  // Integer codes become floats without a conversion instruction (those
  // issue at an eighth of the f32 rate): the f32 with bits 0x4B000000 | c
  // is 2^23 + c exactly, and subtracting 2^23 + zero is exact too.
  Type f32 = b.getF32Type();
  auto i32Constant = [&](int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value))
        .getResult();
  };
  auto f32Constant = [&](double value) {
    return arith::ConstantOp::create(
               b, loc, b.getF32FloatAttr(static_cast<float>(value)))
        .getResult();
  };
  constexpr int64_t kMagicBits = 0x4B000000;
  constexpr double kMagic = 8388608.0; // 2^23
  if (zeroBias)
    return arith::SubFOp::create(
        b, loc,
        arith::BitcastOp::create(
            b, loc, f32,
            arith::OrIOp::create(b, loc, code, i32Constant(kMagicBits))),
        zeroBias);
  if (config.format != QuantFormat::Mxfp4) {
    // Two's complement in 4 or 8 bits: flipping the sign bit offsets the
    // code by 2^(bits − 1), which the subtraction takes back.
    int64_t signBit = config.format == QuantFormat::Int4Weight ? 8 : 128;
    Value biased = arith::XOrIOp::create(b, loc, code,
                                         i32Constant(kMagicBits | signBit));
    return arith::SubFOp::create(b, loc,
                                 arith::BitcastOp::create(b, loc, f32, biased),
                                 f32Constant(kMagic + signBit));
  }
  // e2m1 (sign, exponent e, mantissa m): with e·m at bits 24..22 of an f32
  // the value is (1 + m/2)·2^(e − 127), or m/2·2^−126 (a denormal) for
  // e = 0, that is the e2m1 value times 2^−126 either way; the product by
  // 2^126 is exact (denormals are kept: no ftz).
  Value magnitude = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, code, i32Constant(7)),
      i32Constant(22));
  Value sign = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, code, i32Constant(8)),
      i32Constant(28));
  Value bits = arith::OrIOp::create(b, loc, magnitude, sign);
  return arith::MulFOp::create(b, loc,
                               arith::BitcastOp::create(b, loc, f32, bits),
                               f32Constant(std::ldexp(1.0, 126)));
}

SmallVector<Value> KernelBuilder::weightOnlyScales(Value step) {
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  Value kOffset = arith::AddIOp::create(
      b, loc, kBase, arith::MulIOp::create(b, loc, step, index(config.blockK())));
  SmallVector<Value> values;
  for (auto [row, column] : llvm::zip(dequantRow, dequantColumn)) {
    // A row past N (the last tile's overhang) reads row 0's scales; its
    // columns are dropped.
    Value weightRow = weightRowOf(row);
    weightRow = arith::SelectOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, weightRow,
                              index(config.outFeatures)),
        weightRow, index(0));
    Value groupIndex = arith::DivUIOp::create(
        b, loc,
        arith::AddIOp::create(
            b, loc, kOffset,
            arith::MulIOp::create(b, loc, column, index(kValuesPerChunk))),
        index(config.group));
    Value scale = memref::LoadOp::create(
        b, loc, weightScales, ValueRange{expert, weightRow, groupIndex});
    if (config.format == QuantFormat::Mxfp4) {
      // e8m0: the byte is an f32 exponent field, 2^(byte − 127).
      Value bits = arith::ShLIOp::create(
          b, loc, arith::ExtUIOp::create(b, loc, i32, scale),
          arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(23)));
      scale = arith::BitcastOp::create(b, loc, f32, bits);
    }
    values.push_back(scale);
    // A zero point z as the f32 2^23 + z (bits 0x4B000000 | z), which
    // decodeWeight subtracts.
    if (config.zeroPoint)
      values.push_back(arith::BitcastOp::create(
          b, loc, f32,
          arith::OrIOp::create(
              b, loc,
              arith::ExtUIOp::create(
                  b, loc, i32,
                  memref::LoadOp::create(
                      b, loc, weightZeros,
                      ValueRange{expert, weightRow, groupIndex})),
              arith::ConstantOp::create(b, loc,
                                        b.getI32IntegerAttr(0x4B000000)))));
  }
  return values;
}

void KernelBuilder::dequantizeStage(Value stage, ArrayRef<Value> scales) {
  Type i32 = b.getI32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  // The stored codes and the B tile as 32-bit words: a chunk's 8 codes are
  // one (int4, e2m1) or two (int8) words, its 8 bf16 four words.
  auto wordsOf = [&](int64_t rows, int64_t bytes) {
    return MemRefType::get({rows, bytes / 4}, i32, MemRefLayoutAttrInterface(),
                           workgroup);
  };
  Value packedWords = stageView(
      wordsOf(config.blockN, config.packedRowBytes()), stage,
      config.stages * (config.tileABytes() + config.tileBBytes()),
      config.packedTileBytes());
  Value tileWords =
      stageView(wordsOf(config.blockN, kRowBytes), stage,
                config.stages * config.tileABytes(), config.tileBBytes());
  int64_t bitsPerCode = config.format == QuantFormat::Int8Weight ? 8 : 4;
  int64_t wordsPerChunk = kValuesPerChunk * bitsPerCode / 32;
  auto i32Constant = [&](int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value))
        .getResult();
  };
  int64_t perChunk = config.zeroPoint ? 2 : 1;
  for (auto [i, row, column] :
       llvm::enumerate(dequantRow, dequantColumn)) {
    Value scale = scales[perChunk * i];
    Value zero = config.zeroPoint ? scales[perChunk * i + 1] : Value();
    SmallVector<Value> words;
    for (int64_t w = 0; w < wordsPerChunk; ++w)
      words.push_back(memref::LoadOp::create(
          b, loc, packedWords,
          ValueRange{row, arith::AddIOp::create(
                              b, loc,
                              arith::MulIOp::create(b, loc, column,
                                                    index(wordsPerChunk)),
                              index(w))}));
    // Chunk c of row r sits at chunk c xor (r mod 8): the 128B swizzle.
    Value swizzledWord = arith::MulIOp::create(
        b, loc,
        arith::XOrIOp::create(b, loc, column,
                              arith::RemUIOp::create(b, loc, row, index(8))),
        index(kValuesPerChunk / 2));
    auto pairType = VectorType::get({2}, b.getF32Type());
    Value pair;
    for (int64_t v = 0; v < kValuesPerChunk; ++v) {
      // Code v: element 2j in the low nibble of byte j, little-endian words.
      int64_t bit = v * bitsPerCode;
      Value code = arith::AndIOp::create(
          b, loc,
          arith::ShRUIOp::create(b, loc, words[bit / 32],
                                 i32Constant(bit % 32)),
          i32Constant((1 << bitsPerCode) - 1));
      Value value =
          arith::MulFOp::create(b, loc, decodeWeight(code, zero), scale);
      if (v % 2 == 0)
        pair = LLVM::PoisonOp::create(b, loc, pairType);
      pair = LLVM::InsertElementOp::create(b, loc, pair, value,
                                           i32Constant(v % 2));
      if (v % 2 == 0)
        continue;
      // Both values rounded to bf16 by one cvt.rn.bf16x2.f32, low first.
      Value packed = LLVM::BitcastOp::create(
          b, loc, i32,
          arith::TruncFOp::create(
              b, loc, VectorType::get({2}, b.getBF16Type()), pair));
      memref::StoreOp::create(
          b, loc, packed, tileWords,
          ValueRange{row,
                     arith::AddIOp::create(b, loc, swizzledWord, index(v / 2))});
    }
  }
}

SmallVector<Value> KernelBuilder::blockScales(Value step) {
  // The K block of this step among all of K (split-K blocks start at kBase).
  Value kBlock = arith::AddIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, kBase, index(kScaleBlock)), step);
  Value rowScales[2];
  for (int64_t half = 0; half < 2; ++half)
    rowScales[half] = memref::LoadOp::create(
        b, loc, inputScales, ValueRange{scaleRow[half], kBlock});
  // 64-column chunks of the B tile: gate rows, then (gated) their up rows;
  // a chunk's rows never straddle a 128-row scale block (as halves, N/2 is
  // a multiple of 64; interleaved, 64 output columns from a multiple of 64
  // are the 128 rows of one block).
  int64_t chunks = config.blockN / 64;
  int64_t gateChunks = config.activation ? chunks / 2 : chunks;
  SmallVector<Value> chunkScales;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    bool up = chunk >= gateChunks;
    Value column = arith::AddIOp::create(
        b, loc, tileColumn, index((up ? chunk - gateChunks : chunk) * 64));
    Value nBlock = arith::DivUIOp::create(b, loc, gateUpRow(column, up),
                                          index(kScaleBlock));
    chunkScales.push_back(memref::LoadOp::create(
        b, loc, weightScales, ValueRange{expert, nBlock, kBlock}));
  }
  SmallVector<Value> scales;
  for (int64_t half = 0; half < 2; ++half)
    for (Value chunkScale : chunkScales)
      scales.push_back(
          arith::MulFOp::create(b, loc, rowScales[half], chunkScale));
  return scales;
}

Value KernelBuilder::promote(Value total, Value partial,
                             ArrayRef<Value> scales) {
  int64_t chunks = config.blockN / 64;
  for (int64_t reg = 0; reg < config.blockN / 2; ++reg) {
    int64_t half = (reg / 2) % 2, chunk = reg / 4 / 8;
    Value value = LLVM::ExtractValueOp::create(b, loc, partial, reg);
    Value sum = LLVM::ExtractValueOp::create(b, loc, total, reg);
    sum = scales.empty()
              ? arith::AddFOp::create(b, loc, sum, value).getResult()
              : math::FmaOp::create(b, loc, value,
                                    scales[half * chunks + chunk], sum)
                    .getResult();
    total = LLVM::InsertValueOp::create(b, loc, total, sum, reg);
  }
  return total;
}

Value KernelBuilder::accumulatorValue(Value accumulator, int64_t reg) {
  Value value = LLVM::ExtractValueOp::create(b, loc, accumulator, reg);
  if (config.format == QuantFormat::Int8)
    value = arith::SIToFPOp::create(b, loc, b.getF32Type(), value);
  return value;
}

void KernelBuilder::reducePair(Value address, Value first, Value second) {
  auto globalPointer = LLVM::LLVMPointerType::get(
      context(), static_cast<unsigned>(NVVM::NVVMMemorySpace::Global));
  Value pointer = LLVM::IntToPtrOp::create(b, loc, globalPointer, address);
  // The NVPTX backend lowers a vector atomicrmw to a CAS loop; the vector
  // reduction needs PTX ISA 8.1.
  LLVM::InlineAsmOp::create(
      b, loc, TypeRange{}, ValueRange{pointer, first, second},
      "red.global.add.v2.f32 [$0], {$1, $2};", "l,f,f",
      /*has_side_effects=*/true, /*is_align_stack=*/false,
      LLVM::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
}

void KernelBuilder::combinePairs(Value accumulator, int64_t half,
                                 Value laneColumn, Value token, Value scale,
                                 const EpilogueOperands &operands) {
  // Element (token, column) of the sums lies token · N + column elements
  // past the memref's offset.
  Value offset =
      memref::ExtractStridedMetadataOp::create(b, loc, out).getOffset();
  Value rowOffset = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(
          b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), token),
          i64(config.outFeatures)),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), offset));
  Value base = addressOf(out);
  for (int64_t group = 0; group < config.outputTile() / 8; ++group) {
    Value column =
        arith::AddIOp::create(b, loc, laneColumn, index(8 * group));
    std::optional<OpBuilder::InsertionGuard> maskGuard;
    maskColumnPair(column, maskGuard);
    SmallVector<Value, 2> values;
    for (int64_t pair = 0; pair < 2; ++pair) {
      Value value = epilogueValue(accumulator, 4 * group + 2 * half + pair,
                                  half, 2 * group + pair, /*up=*/false,
                                  operands);
      values.push_back(arith::MulFOp::create(b, loc, value, scale));
    }
    Value element = arith::AddIOp::create(
        b, loc, rowOffset,
        arith::IndexCastOp::create(b, loc, b.getI64Type(), column));
    Value address = arith::AddIOp::create(
        b, loc, base, arith::MulIOp::create(b, loc, element, i64(4)));
    reducePair(address, values[0], values[1]);
  }
}

void KernelBuilder::maskColumnPair(
    Value column, std::optional<OpBuilder::InsertionGuard> &guard) {
  // The last column tile may stick out of a width that is not a multiple of
  // it: its extra columns are products with the next expert's rows (or
  // TMA's zero fill) and are dropped (and their scales, past the end, are
  // not read). Widths are multiples of 8: a pair is in or out whole.
  if (config.width() % config.outputTile() == 0)
    return;
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(config.width()));
  auto maskIf = scf::IfOp::create(b, loc, inside, false);
  guard.emplace(b);
  b.setInsertionPointToStart(maskIf.thenBlock());
}

Value KernelBuilder::epilogueValue(Value accumulator, int64_t reg,
                                  int64_t half, int64_t columnIndex, bool up,
                                  const EpilogueOperands &operands) {
  Value value = accumulatorValue(accumulator, reg);
  if (operands.scaled) {
    Value weightScale =
        (up ? operands.upScales : operands.gateScales)[columnIndex];
    value = arith::MulFOp::create(
        b, loc, value,
        arith::MulFOp::create(b, loc, operands.rowScales[half], weightScale));
  }
  if (config.bias)
    value = arith::AddFOp::create(
        b, loc, value,
        (up ? operands.upBiases : operands.gateBiases)[columnIndex]);
  return value;
}

Value KernelBuilder::loadColumnValue(Value table, Value column, bool up) {
  // The last tile's overhang (its products are dropped) reads column 0.
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(config.width()));
  column = arith::SelectOp::create(b, loc, inside, column, index(0));
  return memref::LoadOp::create(b, loc, table,
                                ValueRange{expert, gateUpRow(column, up)});
}

KernelBuilder::EpilogueOperands
KernelBuilder::loadEpilogueOperands(Value laneColumn) {
  // Per-tensor and per-channel scales and the biases are all loaded here,
  // before the first store: behind the stores (atomics for the combine)
  // each load's latency would be paid in turn. Per fragment half the row's
  // input scale; per column of the thread (2 of every 8; gated: and its up
  // column) the weight scale and the bias; per tensor, one scale of each.
  EpilogueOperands operands;
  operands.scaled = config.isW8A8() && !config.hasBlockScales();
  int64_t threadColumns = config.outputTile() / 4;
  if (operands.scaled && config.scales == ScaleLayout::PerTensor) {
    operands.rowScales.assign(2, memref::LoadOp::create(b, loc, inputScales,
                                                        ValueRange{index(0)}));
    Value weightScale =
        memref::LoadOp::create(b, loc, weightScales, ValueRange{expert});
    operands.gateScales.assign(threadColumns, weightScale);
    operands.upScales.assign(threadColumns, weightScale);
  } else if (operands.scaled) {
    for (int64_t half = 0; half < 2; ++half)
      operands.rowScales.push_back(memref::LoadOp::create(
          b, loc, inputScales, ValueRange{scaleRow[half]}));
  }
  bool perChannel =
      operands.scaled && config.scales != ScaleLayout::PerTensor;
  if (!perChannel && !config.bias)
    return operands;
  // With split-K (a combine, so no activation), only the first split adds
  // the bias into the sums.
  Value firstSplit;
  if (config.bias && config.splitK > 1)
    firstSplit = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        gpu::BlockIdOp::create(b, loc, gpu::Dimension::z), index(0));
  auto loadBias = [&](Value column, bool up) -> Value {
    Value bias = loadColumnValue(biases, column, up);
    if (!firstSplit)
      return bias;
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    return arith::SelectOp::create(b, loc, firstSplit, bias, zero);
  };
  for (int64_t group = 0; group < config.outputTile() / 8; ++group)
    for (int64_t pair = 0; pair < 2; ++pair) {
      Value column =
          arith::AddIOp::create(b, loc, laneColumn, index(8 * group + pair));
      if (perChannel) {
        operands.gateScales.push_back(loadColumnValue(weightScales, column));
        if (config.activation)
          operands.upScales.push_back(
              loadColumnValue(weightScales, column, /*up=*/true));
      }
      if (config.bias) {
        operands.gateBiases.push_back(loadBias(column, /*up=*/false));
        if (config.activation)
          operands.upBiases.push_back(loadBias(column, /*up=*/true));
      }
    }
  return operands;
}

void KernelBuilder::storeEpilogue(Value accumulator) {
  // The m64nNk16 f32 fragment: thread t of the warpgroup holds, for every
  // 8-column group g, rows 16·(t/32) + (t%32)/4 (+8) and columns
  // 8g + 2·(t%4) (+1).
  Value lane = arith::RemUIOp::create(b, loc, tid, index(32));
  Value laneColumn = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(
          b, loc, arith::RemUIOp::create(b, loc, lane, index(4)), index(2)),
      tileColumn);
  EpilogueOperands operands = loadEpilogueOperands(laneColumn);
  for (int64_t half = 0; half < 2; ++half) {
    const EpilogueRow &rows = epilogueRows[half];
    if (!config.combine) {
      storeRows(accumulator, half, rows, laneColumn, operands);
      continue;
    }
    ifThen(rows.scheduled, [&] {
      combinePairs(accumulator, half, laneColumn, rows.token, rows.scale,
                   operands);
    });
  }
}

void KernelBuilder::storeRows(Value accumulator, int64_t half,
                              const EpilogueRow &rows, Value laneColumn,
                              const EpilogueOperands &operands) {
  // No branch per row: a block never reaches past the padded count, and a
  // padding slot's A row is zero, so its outputs are zero as the op states
  // (with a bias, once selected away).
  Value zero = config.bias ? arith::ConstantOp::create(
                                 b, loc, b.getF32FloatAttr(0.0f))
                                 .getResult()
                           : Value();
  for (int64_t group = 0; group < config.outputTile() / 8; ++group) {
    Value column =
        arith::AddIOp::create(b, loc, laneColumn, index(8 * group));
    std::optional<OpBuilder::InsertionGuard> maskGuard;
    maskColumnPair(column, maskGuard);
    SmallVector<Value, 2> pairValues;
    for (int64_t pair = 0; pair < 2; ++pair) {
      int64_t reg = 4 * group + 2 * half + pair;
      int64_t columnIndex = 2 * group + pair;
      Value value = epilogueValue(accumulator, reg, half, columnIndex,
                                  /*up=*/false, operands);
      if (config.activation) {
        // The up column of this gate column sits 64 columns, 8 groups of
        // registers, further: in the same thread.
        Value up = epilogueValue(accumulator, reg + config.blockN / 4, half,
                                 columnIndex, /*up=*/true, operands);
        value = buildGatedActivation(b, loc, *config.activation, value, up,
                                     config.alpha, config.limit);
      }
      if (config.bias)
        value = arith::SelectOp::create(b, loc, rows.scheduled, value, zero);
      pairValues.push_back(value);
    }
    storePair(rows.slot, column, pairValues[0], pairValues[1]);
  }
}

void KernelBuilder::storePair(Value slot, Value column, Value first,
                              Value second) {
  // Element (slot, column) lies slot · width + column elements past the
  // memref's offset; column is even, so the word is 4-byte aligned.
  Value offset =
      memref::ExtractStridedMetadataOp::create(b, loc, out).getOffset();
  Value element = arith::AddIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc,
          arith::MulIOp::create(b, loc, slot, index(config.width())),
          column),
      offset);
  Value address = arith::AddIOp::create(
      b, loc, addressOf(out),
      arith::MulIOp::create(
          b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), element),
          i64(2)));
  auto pairType = VectorType::get({2}, b.getBF16Type());
  Value pair = LLVM::PoisonOp::create(b, loc, pairType);
  Value values[] = {first, second};
  for (auto [position, value] : llvm::enumerate(values)) {
    Value narrow = arith::TruncFOp::create(b, loc, b.getBF16Type(), value);
    pair = LLVM::InsertElementOp::create(
        b, loc, pair, narrow,
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(position)));
  }
  // The output is device memory: a global pointer makes it st.global.
  constexpr unsigned kGlobalAddressSpace = 1;
  Value pointer = LLVM::IntToPtrOp::create(
      b, loc, LLVM::LLVMPointerType::get(context(), kGlobalAddressSpace),
      address);
  LLVM::StoreOp::create(b, loc, pair, pointer, /*alignment=*/4);
}

void KernelBuilder::findOwnRows() {
  if (config.blockM <= kWarpgroupRows || config.pingpong)
    return;
  Value firstRow = arith::AddIOp::create(
      b, loc, firstSlot,
      arith::MulIOp::create(b, loc, warpgroup, index(kWarpgroupRows)));
  Value inSchedule = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           firstRow, paddedCount);
  Value assignment = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(
          b, loc, slots,
          ValueRange{arith::SelectOp::create(b, loc, inSchedule, firstRow,
                                             index(0))}));
  ownRowsHoldAssignments = arith::AndIOp::create(
      b, loc, inSchedule,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                            assignments));
}

void KernelBuilder::loadEpilogueRows() {
  epilogueRows.clear();
  for (int64_t half = 0; half < 2; ++half) {
    Value row = arith::AddIOp::create(b, loc, fragmentRow0, index(8 * half));
    EpilogueRow rows;
    rows.slot = arith::AddIOp::create(b, loc, firstSlot, row);
    // Rows out need to know their padding only to keep a bias out of it.
    if (!config.combine && !config.bias) {
      epilogueRows.push_back(rows);
      continue;
    }
    Value assignment = arith::IndexCastOp::create(
        b, loc, b.getIndexType(),
        memref::LoadOp::create(b, loc, slots, ValueRange{rows.slot}));
    rows.scheduled = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, rows.slot,
                              paddedCount),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                              assignments));
    if (!config.combine) {
      epilogueRows.push_back(rows);
      continue;
    }
    // A padding slot reads assignment 0's weight, which is then unused.
    Value safe =
        arith::SelectOp::create(b, loc, rows.scheduled, assignment, index(0));
    rows.token = arith::DivUIOp::create(b, loc, safe, index(config.topK));
    Value choice = arith::RemUIOp::create(b, loc, safe, index(config.topK));
    rows.scale = memref::LoadOp::create(b, loc, routingWeights,
                                        ValueRange{rows.token, choice});
    if (config.routedScalingFactor != 1.0)
      rows.scale = arith::MulFOp::create(
          b, loc, rows.scale,
          arith::ConstantOp::create(
              b, loc,
              b.getF32FloatAttr(
                  static_cast<float>(config.routedScalingFactor))));
    epilogueRows.push_back(rows);
  }
}

std::pair<Value, Value> KernelBuilder::rasterize(Value x, Value y) {
  Value slotBlocks = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
  Value columnTiles = gpu::GridDimOp::create(b, loc, gpu::Dimension::y);
  Value linear = arith::AddIOp::create(
      b, loc, x, arith::MulIOp::create(b, loc, slotBlocks, y));
  return rasterizeLinear(linear, slotBlocks, columnTiles);
}

std::pair<Value, Value>
KernelBuilder::rasterizeLinear(Value linear, Value slotBlocks,
                               Value columnTiles) {
  Value groupBlocks =
      arith::MulIOp::create(b, loc, columnTiles, index(config.groupM));
  Value group = arith::DivUIOp::create(b, loc, linear, groupBlocks);
  Value firstBlock = arith::MulIOp::create(b, loc, group, index(config.groupM));
  // The last group may hold fewer slot blocks.
  Value groupRows = arith::MinUIOp::create(
      b, loc, arith::SubIOp::create(b, loc, slotBlocks, firstBlock),
      index(config.groupM));
  Value within = arith::RemUIOp::create(b, loc, linear, groupBlocks);
  Value block = arith::AddIOp::create(
      b, loc, firstBlock, arith::RemUIOp::create(b, loc, within, groupRows));
  Value columnTile = arith::DivUIOp::create(b, loc, within, groupRows);
  return {block, columnTile};
}

Value KernelBuilder::firstWeightRow() {
  // Interleaved gate/up weights are read as [E·N/2, 2K] row pairs.
  int64_t rowsPerExpert = config.gateUpInterleaved ? config.outFeatures / 2
                                                   : config.outFeatures;
  return arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, expert, index(rowsPerExpert)),
      tileColumn);
}

void KernelBuilder::planInputChunks(Value thread, int64_t numThreads) {
  // Each thread copies its share of the block_m x 8 chunks of 16 bytes;
  // chunk c of row r lands at chunk c xor (r mod 8): the 128B swizzle TMA
  // would produce.
  int64_t chunkElements = kChunkBytes / config.elementBytes();
  for (SmallVector<Value> *plan :
       {&chunkRow, &srcRow, &srcElements, &dstColumn, &chunkColumn})
    plan->clear();
  for (int64_t i = 0; i < config.blockM * 8 / numThreads; ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, thread, index(numThreads * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(8));
    Value column = arith::RemUIOp::create(b, loc, chunk, index(8));
    Value real;
    Value source = inputRowOf(arith::AddIOp::create(b, loc, firstSlot, row),
                              real);
    chunkRow.push_back(row);
    srcRow.push_back(source);
    // A padding slot copies nothing and zero-fills its chunk.
    srcElements.push_back(
        arith::SelectOp::create(b, loc, real, index(chunkElements), index(0)));
    Value swizzled = arith::XOrIOp::create(
        b, loc, column, arith::RemUIOp::create(b, loc, row, index(8)));
    dstColumn.push_back(
        arith::MulIOp::create(b, loc, swizzled, index(chunkElements)));
    chunkColumn.push_back(
        arith::MulIOp::create(b, loc, column, index(chunkElements)));
  }
}

void KernelBuilder::planFragmentRows() {
  // The m64nNk16 fragment's rows: thread t of warpgroup w holds rows
  // 64·w + 16·(t/32 mod 4) + (t%32)/4 (+8).
  Value warp = arith::RemUIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, tid, index(32)), index(4));
  Value lane = arith::RemUIOp::create(b, loc, tid, index(32));
  fragmentRow0 = arith::AddIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, warp, index(16)),
          arith::DivUIOp::create(b, loc, lane, index(4))),
      config.pingpong
          ? index(0)
          : arith::MulIOp::create(b, loc, warpgroup, index(kWarpgroupRows))
                .getResult());
  // The input row of each fragment half whose scales apply: the token with
  // gather, else the slot (row 0 for a padding slot, whose A row is zero).
  if (config.isW8A8())
    for (int64_t half = 0; half < 2; ++half) {
      Value real;
      scaleRow.push_back(inputRowOf(
          arith::AddIOp::create(
              b, loc, firstSlot,
              arith::AddIOp::create(b, loc, fragmentRow0, index(8 * half))),
          real));
    }
}

Value KernelBuilder::zeroAccumulator(Type sumType) {
  Value accumulator = LLVM::ZeroOp::create(b, loc, accumulatorType);
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(sumType));
  for (int64_t reg = 0; reg < config.blockN / 2; ++reg)
    accumulator = LLVM::InsertValueOp::create(b, loc, accumulator, zero, reg);
  return accumulator;
}

void KernelBuilder::initRings() {
  int64_t consumerThreads = config.consumerThreads();
  // The producer's first thread issues the TMA and its expect_tx.
  leader = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid,
                                 index(consumerThreads));
  if (config.clusterM > 1)
    return;
  Value first =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  ifThen(first, [&] { initRingBarriers(); });
  gpu::BarrierOp::create(b, loc);
}

void KernelBuilder::initRingBarriers() {
  for (int64_t s = 0; s < config.stages; ++s) {
    // Full: the leader's expect_tx arrive, then one arrive per producer
    // thread once its A rows have landed (the TMA completes the bytes; in
    // a shared pair, both blocks' multicasts).
    nvgpu::MBarrierInitOp::create(b, loc, barriers,
                                  index(kWarpgroupThreads + 1), index(s),
                                  Value());
    // Empty: one arrive per consuming thread once its wgmma read the
    // stage (in a cluster, and the refilling block's releases).
    if (config.clusterM > 1) {
      NVVM::MBarrierInitOp::create(
          b, loc, stageFreeBarrier(index(s)),
          arith::ConstantOp::create(
              b, loc, b.getI32IntegerAttr(config.releasesPerStage())),
          Value());
      continue;
    }
    nvgpu::MBarrierInitOp::create(b, loc, emptyBarriers,
                                  index(config.stageConsumerThreads()),
                                  index(s), Value());
  }
  // The tile ring: full once the leader published a tile, empty once
  // every thread of the block has read it.
  for (int64_t slot = 0; tileFull && slot < kTileRingDepth; ++slot) {
    nvgpu::MBarrierInitOp::create(b, loc, tileFull, index(1), index(slot),
                                  Value());
    nvgpu::MBarrierInitOp::create(b, loc, tileEmpty, index(config.threads()),
                                  index(slot), Value());
  }
  if (mathOrder)
    nvgpu::MBarrierInitOp::create(b, loc, mathOrder,
                                  index(kWarpgroupThreads), index(0),
                                  Value());
}

void KernelBuilder::waitForRelease(Value position) {
  if (config.clusterM == 1) {
    waitForRound(emptyBarriers, position, /*previousRound=*/true);
    return;
  }
  // Round r waits for phase r − 1: parity (r + 1) mod 2, which a fresh
  // barrier (its phase 0 pending) passes at once in round 0.
  Value round = arith::DivUIOp::create(b, loc, position, index(config.stages));
  Value parity = arith::IndexCastOp::create(
      b, loc, b.getI32Type(),
      arith::RemUIOp::create(b, loc,
                             arith::AddIOp::create(b, loc, round, index(1)),
                             index(2)));
  // Acquire at CTA scope suffices: what it orders is the next TMA after
  // reads (this block's and the other's) complete before their arrivals.
  NVVM::MBarrierTryWaitParityOp::create(
      b, loc, stageFreeBarrier(stageOf(position)), parity,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(kWaitTicks)));
}

void KernelBuilder::releaseStage(Value position) {
  Value stage = stageOf(position);
  if (config.clusterM == 1) {
    nvgpu::MBarrierArriveOp::create(
        b, loc, nvgpu::MBarrierTokenType::get(context()), emptyBarriers,
        stage);
    return;
  }
  Value own = stageFreeBarrier(stage);
  NVVM::MBarrierArriveOp::create(b, loc, b.getI64Type(), own, Value());
  // The stage's copy in this block is refilled by the other block's
  // multicast too (shared), so its producer waits for this block's
  // consumers: one arrival per warpgroup, after that thread's wgmma of the
  // stage is done (a warpgroup's wgmma completes as one). What it orders is
  // reads that are already complete, so the release is at CTA scope: at
  // cluster scope it cost 25-35% on the H200 (the elected thread's fence
  // held its warpgroup at every K step; docs/gpu-warp-specialized.md).
  // Predicated, not branched: a wgmma is in flight, and ptxas serializes
  // wgmmas around divergent code.
  Value elected = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::RemUIOp::create(b, loc, tid, index(kWarpgroupThreads)),
      index(0));
  auto clusterPointer = LLVM::LLVMPointerType::get(
      context(), static_cast<unsigned>(NVVM::NVVMMemorySpace::SharedCluster));
  Value target = NVVM::MapaOp::create(b, loc, clusterPointer, own, freedRank);
  NVVM::InlinePtxOp::create(
      b, loc, TypeRange(), ValueRange{target}, ValueRange(),
      "mbarrier.arrive.release.cta.shared::cluster.b64 _, [$0];",
      elected);
}

void KernelBuilder::splitRoles(function_ref<void()> producer,
                               function_ref<void()> consumers) {
  Value isProducer = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                           tid,
                                           index(config.consumerThreads()));
  auto roles = scf::IfOp::create(b, loc, isProducer, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(roles.thenBlock());
  if (config.producerRegisters)
    NVVM::SetMaxRegisterOp::create(b, loc, config.producerRegisters,
                                   NVVM::SetMaxRegisterAction::decrease);
  producer();
  b.setInsertionPointToStart(roles.elseBlock());
  if (config.consumerRegisters)
    NVVM::SetMaxRegisterOp::create(b, loc, config.consumerRegisters,
                                   NVVM::SetMaxRegisterAction::increase);
  consumers();
}

void KernelBuilder::buildWarpSpecialized(Type sumType) {
  initRings();
  weightsRow = firstWeightRow();
  splitRoles([&] { produce(); },
             [&] {
               planFragmentRows();
               loadEpilogueRows();
               findOwnRows();
               storeEpilogue(consume(zeroAccumulator(sumType)));
             });
  // A shared pair leaves together: nothing may arrive on the barriers of a
  // block that has exited, and the other block's consumers release their
  // last stages on this block's empty barriers. (Its multicasts into this
  // block have landed: this block's consumers waited for every stage.)
  // After the epilogue, so that neither block's epilogue waits for the
  // other's K loop.
  if (config.clusterM > 1)
    ifThen(sharesWeights, [&] { syncCluster(); });
}

void KernelBuilder::produce() {
  planInputChunks(
      arith::SubIOp::create(b, loc, tid, index(config.consumerThreads())),
      kWarpgroupThreads);
  int64_t kSteps = config.kSteps();
  // A stage's rows are announced `lag` steps after their cp.async was
  // issued, so that the gathers of that many stages stay in flight while
  // the thread waits for the oldest. At most stages − 2: the consumers
  // release step t − 1 only once step t is full (one wgmma group stays in
  // flight), so issuing step p waits for step p − stages + 1 to be
  // announced, which a larger lag puts after issuing p.
  int64_t lag = std::min({kProducerLag, config.stages - 2, kSteps});
  Value trueValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  auto issue = [&](Value step) {
    // Round r of a stage waits for the consumers' release of round r − 1.
    waitForRelease(ringStep(step));
    issueStage(step, trueValue);
  };
  auto announce = [&](Value step) {
    // The arrive releases the rows to the consumers' wgmma.
    fenceAsyncProxy();
    nvgpu::MBarrierArriveOp::create(
        b, loc, nvgpu::MBarrierTokenType::get(context()), barriers,
        stageOf(ringStep(step)));
  };
  for (int64_t step = 0; step < lag; ++step)
    issue(index(step));
  scf::ForOp::create(b, loc, index(lag), index(kSteps), index(1), ValueRange{},
                     [&](OpBuilder &, Location, Value step, ValueRange) {
                       issue(step);
                       // Every step commits one group: the one `lag` steps
                       // back is done when at most `lag` are pending.
                       NVVM::CpAsyncWaitGroupOp::create(b, loc, lag);
                       announce(arith::SubIOp::create(b, loc, step,
                                                      index(lag)));
                       scf::YieldOp::create(b, loc);
                     });
  NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  for (int64_t step = kSteps - lag; step < kSteps; ++step)
    announce(index(step));
}

Value KernelBuilder::stageOf(Value step) {
  return arith::RemUIOp::create(b, loc, step, index(config.stages));
}

void KernelBuilder::waitForRound(Value ring, Value step, bool previousRound) {
  waitForPhase(ring, step, config.stages, previousRound);
}

void KernelBuilder::waitForPhase(Value ring, Value position, int64_t depth,
                                 bool previousRound) {
  // Round r of a barrier completes its phase r, of parity r mod 2.
  Value round = arith::DivUIOp::create(b, loc, position, index(depth));
  Value parity = arith::CmpIOp::create(
      b, loc,
      previousRound ? arith::CmpIPredicate::eq : arith::CmpIPredicate::ne,
      arith::RemUIOp::create(b, loc, round, index(2)), index(0));
  Value barrier = arith::RemUIOp::create(b, loc, position, index(depth));
  nvgpu::MBarrierTryWaitParityOp::create(b, loc, ring, parity,
                                         index(kWaitTicks), barrier);
}

void KernelBuilder::fenceAsyncProxy() {
  NVVM::FenceProxyOp::create(
      b, loc, NVVM::ProxyKindAttr::get(context(), NVVM::ProxyKind::async_shared),
      NVVM::SharedSpaceAttr::get(context(), NVVM::SharedSpace::shared_cta));
}

SmallVector<Value>
KernelBuilder::consumeFragments(SmallVector<Value> accumulators) {
  auto waitFull = [&](Value step) {
    waitForRound(barriers, ringStep(step), /*previousRound=*/false);
  };
  // One wgmma group stays in flight: step t's is issued before step t − 1's
  // is waited for, and only then is t − 1's stage released. The first step
  // is peeled, so that the loop holds no branch around the wgmma.
  waitFull(index(0));
  Value firstStage = stepBase ? stageOf(stepBase) : index(0);
  bool fresh = !accumulators.front();
  if (fresh)
    for (Value &accumulator : accumulators)
      accumulator = LLVM::PoisonOp::create(b, loc, accumulatorType);
  accumulators =
      wgmmaStep(accumulators, firstStage, /*pendingGroups=*/1, fresh);
  auto loop = scf::ForOp::create(
      b, loc, index(1), index(config.kSteps()), index(1), accumulators,
      [&](OpBuilder &, Location, Value step, ValueRange args) {
        waitFull(step);
        Value stage = stageOf(ringStep(step));
        SmallVector<Value> sums = wgmmaStep(
            SmallVector<Value>(args), stage, /*pendingGroups=*/1);
        Value previous = arith::SubIOp::create(b, loc, step, index(1));
        releaseStage(ringStep(previous));
        scf::YieldOp::create(b, loc, sums);
      });
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  // A persistent block's producer refills the last stage with the next
  // tile's first rows: release it too.
  if (stepBase)
    releaseStage(ringStep(index(config.kSteps() - 1)));
  return SmallVector<Value>(loop.getResults());
}

void KernelBuilder::consumePingpong() {
  // Tiles alternate between the two consumer warpgroups in the order the
  // producer fills the ring, so one's K loop follows the other's while the
  // other runs its epilogue.
  Value mine = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::RemUIOp::create(b, loc, tilesDone,
                             index(config.consumerThreads() /
                                   kWarpgroupThreads)),
      warpgroup);
  ifThen(mine, [&] {
    // A parity wait only tells rounds apart that are at most one apart. The
    // other warpgroup's tile holds the K steps before this tile's, so this
    // K loop starts once that one's is done: the ring's full barriers are
    // then at most one round behind this warpgroup's waits.
    waitForPhase(mathOrder, tilesDone, /*depth=*/1, /*previousRound=*/true);
    Value firstRow = fragmentRow0;
    SmallVector<SmallVector<EpilogueRow, 2>> rows;
    for (int64_t fragment = 0; fragment < config.rowFragments(); ++fragment) {
      fragmentRow0 = arith::AddIOp::create(b, loc, firstRow,
                                           index(fragment * kWarpgroupRows));
      loadEpilogueRows();
      rows.push_back(epilogueRows);
    }
    SmallVector<Value> sums =
        consumeFragments(SmallVector<Value>(config.rowFragments(), Value()));
    // The next tile's K loop runs beside this epilogue.
    nvgpu::MBarrierArriveOp::create(b, loc,
                                    nvgpu::MBarrierTokenType::get(context()),
                                    mathOrder, index(0));
    for (auto [fragment, sum] : llvm::enumerate(sums)) {
      epilogueRows = rows[fragment];
      storeEpilogue(sum);
    }
    fragmentRow0 = firstRow;
  });
}

void KernelBuilder::planWeightOnlyChunks() {
  // Each thread copies its 16-byte chunks of the stored codes of the tile's
  // BN weight rows (a row past N copies nothing), and dequantizes its
  // chunks of the B tile.
  int64_t chunksPerRow = config.packedRowBytes() / kChunkBytes;
  for (int64_t i = 0; i < config.blockN * chunksPerRow / config.threads();
       ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, tid, index(config.threads() * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(chunksPerRow));
    Value column = arith::MulIOp::create(
        b, loc, arith::RemUIOp::create(b, loc, chunk, index(chunksPerRow)),
        index(kChunkBytes));
    Value weightRow = weightRowOf(row);
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         weightRow,
                                         index(config.outFeatures));
    packedRow.push_back(row);
    packedColumn.push_back(column);
    packedSourceRow.push_back(arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, expert, index(config.outFeatures)),
        arith::SelectOp::create(b, loc, inside, weightRow, index(0))));
    packedBytes.push_back(arith::SelectOp::create(
        b, loc, inside, index(kChunkBytes), index(0)));
  }
  int64_t chunksPerRowB = config.blockK() / kValuesPerChunk;
  for (int64_t i = 0; i < config.blockN * chunksPerRowB / config.threads();
       ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, tid, index(config.threads() * i));
    dequantRow.push_back(
        arith::DivUIOp::create(b, loc, chunk, index(chunksPerRowB)));
    dequantColumn.push_back(
        arith::RemUIOp::create(b, loc, chunk, index(chunksPerRowB)));
  }

}

Value KernelBuilder::multistageLoop(Value accumulator) {
  // With three or more stages, one step's wgmma stays in flight while the
  // next is issued, so a stage is refilled only once the wgmma two steps
  // back is done: loads run `prefetch` steps ahead.
  int64_t kSteps = config.kSteps(), stages = config.stages;
  // A promoted stage's partial sum is read one step later, while the next
  // stage's wgmma, into a second accumulator, is in flight.
  int64_t wgmmaInFlight = stages >= 3 ? 1 : 0;
  int64_t prefetch = stages - 1 - wgmmaInFlight;
  Value trueValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  for (int64_t step = 0; step < prefetch; ++step)
    issueStage(index(step), step < kSteps ? trueValue
                                          : arith::ConstantOp::create(
                                                b, loc, b.getBoolAttr(false))
                                                .getResult());
  // Promoting with a wgmma in flight, the loop also carries the previous
  // step's partial sum and its block scales (zeros before the first step,
  // which promote nothing).
  bool promotesLate = config.promotesEachStage() && wgmmaInFlight;
  SmallVector<Value> initial = {accumulator};
  if (promotesLate) {
    initial.push_back(accumulator);
    int64_t numScales =
        config.hasBlockScales() ? 2 * (config.blockN / 64) : 0;
    initial.append(numScales, arith::ConstantOp::create(
                                  b, loc, b.getF32FloatAttr(0.0f)));
  }
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(kSteps), index(1), initial,
      [&](OpBuilder &, Location, Value step, ValueRange args) {
        // This thread's cp.async group of `step` is done when at most the
        // younger ones (prefetch − 1 of them; every step commits one) are
        // pending.
        // The step's block or group scales are loaded first: their latency
        // hides behind the waits and the wgmma.
        SmallVector<Value> scales;
        if (config.hasBlockScales())
          scales = blockScales(step);
        if (config.isWeightOnly())
          scales = weightOnlyScales(step);
        Value next = arith::AddIOp::create(b, loc, step, index(prefetch));
        NVVM::CpAsyncWaitGroupOp::create(b, loc, prefetch - 1);
        // cp.async wrote through the generic proxy; wgmma reads through the
        // async one.
        fenceAsyncProxy();
        // Every thread's rows are in, and every thread's wgmma of step
        // − 1 − wgmmaInFlight is done: that stage, `next`'s, may be refilled.
        gpu::BarrierOp::create(b, loc);
        if (config.clusterM > 1)
          freeStageInPair(step, next);
        Value inRange = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, next, index(kSteps));
        issueStage(next, inRange);
        Value stage = arith::RemUIOp::create(b, loc, step, index(stages));
        if (config.isWeightOnly()) {
          // Every thread's codes are in (the barrier above): dequantize
          // them into the B tile, through the generic proxy, then make the
          // tile visible to the wgmma's async proxy.
          dequantizeStage(stage, scales);
          fenceAsyncProxy();
          gpu::BarrierOp::create(b, loc);
        } else {
          waitForRound(barriers, step, /*previousRound=*/false);
        }
        if (!config.promotesEachStage()) {
          scf::YieldOp::create(
              b, loc, wgmmaStep(args[0], stage, wgmmaInFlight));
          return;
        }
        // The K block's partial sum, scaled and added in f32 (as DeepGEMM
        // promotes its fp8 accumulators). Once this step's wgmma is issued
        // and the previous one's is done, the previous partial is promoted.
        // The fresh sum's first wgmma ignores its input (scale-d 0): no
        // zeros to write into registers a wgmma may still own.
        Value partial = wgmmaStep(
            LLVM::PoisonOp::create(b, loc, accumulatorType), stage,
            wgmmaInFlight, /*fresh=*/true);
        if (!promotesLate) {
          scf::YieldOp::create(b, loc, promote(args[0], partial, scales));
          return;
        }
        SmallVector<Value> results = {
            promote(args[0], args[1], SmallVector<Value>(args.drop_front(2))),
            partial};
        llvm::append_range(results, scales);
        scf::YieldOp::create(b, loc, results);
      });
  if (promotesLate) {
    // Unrolled by two, the partial sums alternate between two register
    // sets, so the one in flight at the back edge needs no copy (ptxas
    // would wait for its wgmma to copy it).
    if (failed(loopUnrollByFactor(loop, 2)))
      loop->emitWarning("could not unroll the promoting K loop");
  }
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  Value total = loop.getResult(0);
  if (promotesLate)
    total = promote(total, loop.getResult(1),
                    SmallVector<Value>(loop.getResults().drop_front(2)));
  return total;
}

void KernelBuilder::bindArguments(Block &entry) {
  unsigned argument = 0;
  x = entry.getArgument(argument++);
  slots = entry.getArgument(argument++);
  blocks = entry.getArgument(argument++);
  padded = entry.getArgument(argument++);
  if (config.isWeightOnly()) {
    packedWeights = entry.getArgument(argument++);
    weightScales = entry.getArgument(argument++);
    if (config.zeroPoint)
      weightZeros = entry.getArgument(argument++);
  } else {
    weightsPointer = entry.getArgument(argument++);
  }
  if (config.isW8A8()) {
    inputScales = entry.getArgument(argument++);
    weightScales = entry.getArgument(argument++);
  }
  if (config.bias)
    biases = entry.getArgument(argument++);
  if (config.combine)
    routingWeights = entry.getArgument(argument++);
  out = entry.getArgument(argument++);
  if (config.persistent)
    tileCounter = entry.getArgument(argument++);
}

void KernelBuilder::createTypes() {
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  // The tiles hold bf16, or the bytes of the w8a8 codes.
  Type element = config.isW8A8() ? Type(b.getI8Type()) : Type(b.getBF16Type());
  tileAType = MemRefType::get({config.blockM, config.blockK()}, element,
                              MemRefLayoutAttrInterface(), workgroup);
  tileBType = MemRefType::get({config.blockN, config.blockK()}, element,
                              MemRefLayoutAttrInterface(), workgroup);
  boxType = MemRefType::get({config.boxRows(), config.blockK()}, element,
                            MemRefLayoutAttrInterface(), workgroup);
  packedType = MemRefType::get({config.blockN, config.packedRowBytes()},
                               b.getI8Type(), MemRefLayoutAttrInterface(),
                               workgroup);
  auto mapType = nvgpu::TensorMapDescriptorType::get(
      context(), boxType, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
      nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  barrierType =
      nvgpu::MBarrierGroupType::get(context(), workgroup, config.stages);
  accumulatorType = LLVM::LLVMStructType::getLiteral(
      context(), SmallVector<Type>(config.blockN / 2, sumType()));

  // The descriptor travels as a pointer: a tensor-map type in a gpu.func
  // signature breaks the NVVM pipeline.
  if (weightsPointer)
    weightsMap =
        UnrealizedConversionCastOp::create(b, loc, mapType, weightsPointer)
            .getResult(0);
}

void KernelBuilder::loadScheduleSize() {
  paddedCount = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, padded, ValueRange{index(0)}));
  // M·k, from the schedule's length: M·k + E·(block_m − 1) slots.
  assignments = arith::SubIOp::create(
      b, loc, memref::DimOp::create(b, loc, slots, 0),
      index(config.numExperts * (config.blockM - 1)));
}

void KernelBuilder::publishTile(Value position,
                                function_ref<Value()> tileOf) {
  waitForPhase(tileEmpty, position, kTileRingDepth, /*previousRound=*/true);
  Value slot = arith::RemUIOp::create(b, loc, position, index(kTileRingDepth));
  ifThen(leader, [&] {
    memref::StoreOp::create(
        b, loc, arith::IndexCastOp::create(b, loc, b.getI32Type(), tileOf()),
        tileSlots, ValueRange{slot});
    // The arrive releases the store to the threads that wait on the phase.
    nvgpu::MBarrierArriveOp::create(b, loc,
                                    nvgpu::MBarrierTokenType::get(context()),
                                    tileFull, slot);
  });
}

Value KernelBuilder::receiveTile(Value position) {
  waitForPhase(tileFull, position, kTileRingDepth, /*previousRound=*/false);
  Value slot = arith::RemUIOp::create(b, loc, position, index(kTileRingDepth));
  Value tile = memref::LoadOp::create(b, loc, tileSlots, ValueRange{slot});
  nvgpu::MBarrierArriveOp::create(b, loc,
                                  nvgpu::MBarrierTokenType::get(context()),
                                  tileEmpty, slot);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), tile);
}

void KernelBuilder::forEachTile(bool publishes, function_ref<void()> body) {
  // The tiles of the padded schedule (a multiple of block_m slots), in the
  // raster order.
  Value slotBlocks =
      arith::DivUIOp::create(b, loc, paddedCount, index(config.blockM));
  Value columnTiles = index(config.columnTiles());
  Value tiles = arith::MulIOp::create(b, loc, slotBlocks, columnTiles);
  if (publishes)
    publishTile(index(0), [&] {
      return gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
    });
  Type indexType = b.getIndexType();
  // Carried: the count of tiles received, and of those done (local); the
  // body also gets the tile.
  scf::WhileOp::create(
      b, loc, TypeRange{indexType, indexType, indexType},
      ValueRange{index(0), index(0)},
      [&](OpBuilder &, Location, ValueRange counts) {
        // The last tile's epilogue and the leader's branch may leave a warp
        // diverged; the waits ahead spin with bra.uni and the wgmmas are
        // .aligned, so each warp reconverges first.
        NVVM::SyncWarpOp::create(
            b, loc, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(-1)));
        Value tile = receiveTile(counts[0]);
        Value more = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           tile, tiles);
        scf::ConditionOp::create(b, loc, more,
                                 ValueRange{counts[0], counts[1], tile});
      },
      [&](OpBuilder &, Location, ValueRange args) {
        Value received = args[0], done = args[1], tile = args[2];
        Value next = arith::AddIOp::create(b, loc, received, index(1));
        if (publishes)
          publishTile(next, [&] {
            // Tiles past the grid's first ones, in the order asked for.
            Value taken = memref::AtomicRMWOp::create(
                b, loc, arith::AtomicRMWKind::addi,
                arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)),
                tileCounter, ValueRange{index(0)});
            return arith::AddIOp::create(
                b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x),
                arith::IndexCastOp::create(b, loc, indexType, taken));
          });
        Value block, columnTile;
        if (config.groupM > 0) {
          std::tie(block, columnTile) =
              rasterizeLinear(tile, slotBlocks, columnTiles);
        } else {
          block = arith::RemUIOp::create(b, loc, tile, slotBlocks);
          columnTile = arith::DivUIOp::create(b, loc, tile, slotBlocks);
        }
        firstSlot = arith::MulIOp::create(b, loc, block, index(config.blockM));
        tileColumn = arith::MulIOp::create(b, loc, columnTile,
                                           index(config.outputTile()));
        kBase = index(0);
        // Tiles of another device's experts are skipped by both roles
        // alike, and take no ring steps.
        expert = arith::IndexCastOp::create(
            b, loc, indexType,
            memref::LoadOp::create(b, loc, blocks, ValueRange{block}));
        Value local = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                            expert, index(0));
        auto localIf = scf::IfOp::create(b, loc, TypeRange{indexType}, local,
                                         /*withElse=*/true);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(localIf.thenBlock());
          tilesDone = done;
          stepBase =
              arith::MulIOp::create(b, loc, done, index(config.kSteps()));
          weightsRow = firstWeightRow();
          body();
          scf::YieldOp::create(
              b, loc, ValueRange{arith::AddIOp::create(b, loc, done, index(1))});
          b.setInsertionPointToStart(localIf.elseBlock());
          scf::YieldOp::create(b, loc, done);
        }
        scf::YieldOp::create(b, loc, ValueRange{next, localIf.getResult(0)});
      });
}

void KernelBuilder::buildPersistent() {
  initRings();
  splitRoles([&] { forEachTile(/*publishes=*/true, [&] { produce(); }); },
             [&] {
               planFragmentRows();
               forEachTile(/*publishes=*/false, [&] {
                 if (config.pingpong) {
                   consumePingpong();
                   return;
                 }
                 loadEpilogueRows();
                 findOwnRows();
                 storeEpilogue(consume());
               });
             });
}

void KernelBuilder::build(gpu::GPUFuncOp func, LLVM::GlobalOp sharedMemory) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bindArguments(entry);
  createTypes();
  Type sumType = this->sumType();
  smem = sharedBase(sharedMemory);
  if (config.clusterM > 1)
    sharedPointer = LLVM::AddressOfOp::create(b, loc, sharedMemory);
  Value baseAddress = addressOf(smem);
  Value misalignment = arith::AndIOp::create(b, loc, baseAddress,
                                             i64(kSwizzleAlignment - 1));
  shift = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      arith::AndIOp::create(
          b, loc,
          arith::SubIOp::create(b, loc, i64(kSwizzleAlignment), misalignment),
          i64(kSwizzleAlignment - 1)));
  barriers = nvgpu::MBarrierCreateOp::create(b, loc, barrierType);
  // A cluster's empty ring is its stage-free barriers, which the other
  // block reaches through mapa.
  if (config.warpSpecialized && config.clusterM == 1)
    emptyBarriers = nvgpu::MBarrierCreateOp::create(b, loc, barrierType);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  warpgroup = arith::DivUIOp::create(b, loc, tid, index(kWarpgroupThreads));
  // A consumer warpgroup's A rows: its own 64, or with pingpong all of them.
  warpgroupOffset =
      config.pingpong
          ? i64(0)
          : arith::IndexCastOp::create(
                b, loc, b.getI64Type(),
                arith::MulIOp::create(b, loc, warpgroup,
                                      index(kWarpgroupRows * 128 / 16)))
                .getResult();
  if (config.persistent) {
    auto workgroup =
        gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
    auto tileRingType =
        nvgpu::MBarrierGroupType::get(context(), workgroup, kTileRingDepth);
    tileFull = nvgpu::MBarrierCreateOp::create(b, loc, tileRingType);
    tileEmpty = nvgpu::MBarrierCreateOp::create(b, loc, tileRingType);
    if (config.pingpong)
      mathOrder = nvgpu::MBarrierCreateOp::create(
          b, loc, nvgpu::MBarrierGroupType::get(context(), workgroup, 1));
    tileSlots = memref::ViewOp::create(
        b, loc,
        MemRefType::get({kTileRingDepth}, b.getI32Type(),
                        MemRefLayoutAttrInterface(), workgroup),
        smem, arith::AddIOp::create(b, loc, shift, index(config.ringBytes())),
        ValueRange{});
    loadScheduleSize();
    buildPersistent();
    b.setInsertionPointToEnd(&entry);
    gpu::ReturnOp::create(b, loc);
    return;
  }
  auto [block, columnTile] = blockAndColumnTile();
  Value split = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  firstSlot = arith::MulIOp::create(b, loc, block, index(config.blockM));
  tileColumn =
      arith::MulIOp::create(b, loc, columnTile, index(config.outputTile()));
  kBase = arith::MulIOp::create(b, loc, split,
                                index(config.kSteps() * config.blockK()));
  loadScheduleSize();
  if (config.clusterM > 1)
    decideSharing(block);

  // Blocks past the padded count (the grid is sized for the upper bound)
  // and blocks of another device's experts exit at once (in a cluster, after
  // the pair's first synchronization, and then only unshared).
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        firstSlot, paddedCount);
  auto rangeIf = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(rangeIf.thenBlock());
  expert = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, blocks, ValueRange{block}));
  Value local = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, expert,
                                      index(0));
  auto localIf = scf::IfOp::create(b, loc, local, /*withElse=*/false);
  b.setInsertionPointToStart(localIf.thenBlock());
  if (config.warpSpecialized)
    buildWarpSpecialized(sumType);
  else
    buildMultistage(sumType);
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

void KernelBuilder::buildMultistage(Type sumType) {
  leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  if (config.clusterM == 1) {
    ifThen(leader, [&] {
      for (int64_t s = 0; s < config.stages; ++s)
        nvgpu::MBarrierInitOp::create(b, loc, barriers, index(1), index(s),
                                      Value());
    });
    gpu::BarrierOp::create(b, loc);
  }
  weightsRow = firstWeightRow();
  planInputChunks(tid, config.threads());

  if (config.isWeightOnly())
    planWeightOnlyChunks();

  planFragmentRows();
  loadEpilogueRows();
  findOwnRows();
  Value total = multistageLoop(zeroAccumulator(sumType));
  // A shared pair leaves together: every multicast into this block was
  // waited for, but this block's last multicast may still be landing in the
  // other block.
  if (config.clusterM > 1)
    ifThen(sharesWeights, [&] { syncCluster(); });
  storeEpilogue(total);
}

static LLVM::GlobalOp getOrCreateSharedMemory(OpBuilder &b,
                                              gpu::GPUModuleOp module) {
  constexpr StringLiteral kName = "moe_dynamic_shared_memory";
  if (auto global = module.lookupSymbol<LLVM::GlobalOp>(kName))
    return global;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  return LLVM::GlobalOp::create(
      b, module.getLoc(), LLVM::LLVMArrayType::get(b.getI8Type(), 0),
      /*isConstant=*/false, LLVM::Linkage::External, kName, Attribute(),
      /*alignment=*/kSwizzleAlignment,
      static_cast<unsigned>(NVVM::NVVMMemorySpace::Shared));
}

/// The shapes and format of `op` as a KernelConfig, or a remark where the
/// emitter does not cover them.
static FailureOr<KernelConfig> describeMatmul(OpBuilder &b,
                                              ExpertMatmulOp op) {
  auto weightsType = op.getWeights().getType();
  auto bf16 = b.getBF16Type();
  KernelConfig config;
  config.numExperts = weightsType.getDimSize(0);
  config.outFeatures = weightsType.getDimSize(1);
  config.inFeatures = weightsType.getDimSize(2);
  config.topK = op.getK();
  config.gather = op.getGather();
  config.combine = op.isCombine();
  config.activation = op.getActivation();
  config.gateUpInterleaved = op.getGateUpInterleaved();
  config.bias = static_cast<bool>(op.getBias());
  config.blockM = op.getBlockM().value_or(0);
  if (!op.isAligned() || op.getUnpermute())
    return op.emitRemark("no GPU kernel yet: only the aligned schedule with "
                         "rows or combine out is covered");
  if (config.combine && config.activation)
    return op.emitRemark(
        "no GPU kernel yet for an activation before the combine");
  QuantizationAttr quantization = op.getQuantization();
  if (quantization.getFormat() != QuantFormat::None) {
    config.format = quantization.getFormat();
    if (quantization.isW8A8()) {
      config.scales = *quantization.getScales();
    } else {
      config.group = quantization.getGroupSize();
      config.zeroPoint = quantization.getZeroPoint();
      // The stored K is halved for two codes per byte.
      config.inFeatures = op.getInput().getType().getDimSize(1);
    }
  }
  bool operandsCovered =
      config.isW8A8() ||
      (op.getInput().getType().getElementType() == bf16 &&
       (config.isWeightOnly() || weightsType.getElementType() == bf16));
  if (!operandsCovered || (op.getBlockM() != 64 && op.getBlockM() != 128) ||
      config.inFeatures % config.blockK() != 0 || config.width() % 8 != 0)
    return op.emitRemark("no GPU kernel yet: needs bf16 or w8a8 operands, "
                         "block_m 64 or 128, K a multiple of 128 bytes and "
                         "an output width that is a multiple of 8");
  // Each 64-column chunk of a gated tile must lie in one 128-row block of
  // weight scales: the up half starts N/2 down.
  if (config.hasBlockScales() && config.activation &&
      (config.outFeatures / 2) % 64 != 0)
    return op.emitRemark("no GPU kernel yet: block scales with a gated "
                         "activation need N/2 to be a multiple of 64");
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  if (!config.combine && resultType.getElementType() != bf16)
    return op.emitRemark("no GPU kernel yet: rows out must be bf16");
  if (config.activation) {
    config.alpha = op.getAlpha() ? op.getAlpha()->convertToDouble() : 0.0;
    config.limit = op.getLimit() ? op.getLimit()->convertToDouble() : 0.0;
  }
  if (auto factor = op.getRoutedScalingFactor())
    config.routedScalingFactor = factor->convertToDouble();

  return config;
}

/// Takes every decision of `op`'s #moe_gpu.kernel_config (moe-gpu-configure)
/// into `config`; a remark where this emitter does not build it.
static LogicalResult applyKernelConfig(ExpertMatmulOp op,
                                       KernelConfig &config) {
  // This emitter builds the multistage schedule of 128-byte K stages, and
  // the warp-specialized one for bf16.
  auto kernelConfig = op->getAttrOfType<moe_gpu::KernelConfigAttr>(
      moe_gpu::MoeGPUDialect::getConfigAttrName());
  if (!kernelConfig)
    return op.emitRemark("no GPU kernel: the op has no kernel configuration "
                         "(moe_gpu.config); run moe-gpu-configure first");
  // Warp specialization is built for bf16 operands, one producer warpgroup.
  // Persistence is built on it.
  config.pingpong = kernelConfig.getSchedule() == moe_gpu::Schedule::Pingpong;
  config.persistent =
      config.pingpong ||
      kernelConfig.getSchedule() == moe_gpu::Schedule::Persistent;
  config.warpSpecialized =
      config.persistent ||
      kernelConfig.getSchedule() == moe_gpu::Schedule::WarpSpecialized;
  bool scheduleBuilt =
      kernelConfig.getSchedule() == moe_gpu::Schedule::Multistage ||
      (config.warpSpecialized && config.format == QuantFormat::None &&
       kernelConfig.getProducerWarpgroups() == 1);
  // A pingpong thread keeps two 64 x block_n accumulators beside its
  // addresses: 128 registers of the 208 setmaxnreg gives it.
  if (config.pingpong && kernelConfig.getBlockN() > 128)
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": pingpong is built for block_n up to 128";
  if (!scheduleBuilt || kernelConfig.getBlockK() != config.blockK() ||
      !llvm::is_contained({64, 128, 256}, kernelConfig.getBlockN()) ||
      kernelConfig.getStages() < 2 || kernelConfig.getStages() > kMaxStages ||
      kernelConfig.getClusterN() != 1 || kernelConfig.getClusterM() > 2 ||
      (kernelConfig.getClusterM() == 2 &&
       (config.persistent || config.format != QuantFormat::None ||
        kernelConfig.getSplitK() != 1)))
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": the emitter builds the multistage schedule, and the "
              "warp-specialized, persistent and pingpong ones with one "
              "producer warpgroup for bf16, with 128 bytes of K per stage, "
              "block_n 64, 128 or 256, 2 to "
           << kMaxStages
           << " stages and no cluster but pairs along M (cluster_m = 2) of "
              "the bf16 multistage and warp-specialized schedules without "
              "split-K";
  config.blockN = kernelConfig.getBlockN();
  config.clusterM = kernelConfig.getClusterM();
  config.stages = kernelConfig.getStages();
  config.splitK = kernelConfig.getSplitK();
  config.groupM = kernelConfig.getGroupM();
  config.producerRegisters = kernelConfig.getProducerRegisters();
  config.consumerRegisters = kernelConfig.getConsumerRegisters();
  if (config.inFeatures % (config.blockK() * config.splitK) != 0)
    return op.emitRemark() << "no GPU kernel: split_k = " << config.splitK
                           << " does not divide the K steps";
  if (config.sharedBytes() > kMaxSharedBytes)
    return op.emitRemark() << "no GPU kernel: the ring takes "
                           << config.sharedBytes()
                           << " bytes of shared memory, more than "
                           << kMaxSharedBytes;

  return success();
}

/// The kernel's parameters (see buildExpertMatmulKernel in MoeGpuKernels.h).
static SmallVector<Type> kernelArguments(OpBuilder &b, ExpertMatmulOp op,
                                         const KernelConfig &config) {
  auto weightsType = op.getWeights().getType();
  auto bf16 = b.getBF16Type();
  MLIRContext *context = b.getContext();
  auto dynamic = ShapedType::kDynamic;
  auto i32 = b.getI32Type();
  // w8a8 codes travel as bytes: the wgmma reads them by descriptor.
  Type inputElement = config.isW8A8() ? Type(b.getI8Type()) : Type(bf16);
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, config.inFeatures}, inputElement),
      MemRefType::get({dynamic}, i32), MemRefType::get({dynamic}, i32),
      MemRefType::get({1}, i32), LLVM::LLVMPointerType::get(context)};
  if (config.isWeightOnly()) {
    // The stored codes as bytes [E·N, stored K], not a TMA descriptor; the
    // scales (f32, or e8m0 bytes) and zeros of [E, N, K / group].
    arguments.back() = MemRefType::get(
        {config.numExperts * config.outFeatures, weightsType.getDimSize(2)},
        b.getI8Type());
    for (Value operand : {op.getWeightScales(), op.getWeightZeros()}) {
      if (!operand)
        continue;
      auto type = cast<RankedTensorType>(operand.getType());
      Type element = type.getElementType().isF32() ? Type(b.getF32Type())
                                                   : Type(b.getI8Type());
      arguments.push_back(MemRefType::get(type.getShape(), element));
    }
  }
  if (config.isW8A8()) {
    // The scales, of the op's shapes (the input's first dimension dynamic).
    for (Value scales : {op.getInputScales(), op.getWeightScales()}) {
      SmallVector<int64_t> shape(
          cast<RankedTensorType>(scales.getType()).getShape());
      arguments.push_back(MemRefType::get(shape, b.getF32Type()));
    }
  }
  if (config.bias)
    arguments.push_back(MemRefType::get(
        {config.numExperts, config.outFeatures}, b.getF32Type()));
  if (config.combine) {
    arguments.push_back(MemRefType::get({dynamic, config.topK}, b.getF32Type()));
    arguments.push_back(
        MemRefType::get({dynamic, config.outFeatures}, b.getF32Type()));
  } else {
    arguments.push_back(MemRefType::get({dynamic, op.getOutputWidth()}, bf16));
  }
  // Persistent: the counter the blocks take their next tiles from (zeroed
  // by the host).
  if (config.persistent)
    arguments.push_back(MemRefType::get({1}, b.getI32Type()));
  return arguments;
}

/// How the host launches `func` and which parameter is a grid constant.
static void setLaunchAttributes(OpBuilder &b, gpu::GPUFuncOp func,
                                const KernelConfig &config,
                                ArrayRef<Type> arguments) {
  // setmaxnreg needs a register cap at entry: at most `threads` threads and
  // one block per SM.
  if (config.warpSpecialized) {
    func->setAttr(NVVM::NVVMDialect::getMaxntidAttrName(),
                  b.getDenseI32ArrayAttr(
                      {static_cast<int32_t>(config.threads()), 1, 1}));
    func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                  b.getI32IntegerAttr(1));
  }
  // How the host launches it: grid (ceil(slots / block_m), width / tile_n,
  // split_k) of `threads`, with this much dynamic shared memory and a TMA
  // descriptor of the weights as [E·N, K] with box [box_rows, box_cols] of
  // `element_bytes` elements (one 128-byte row).
  func->setAttr(
      "moe.launch",
      b.getDictionaryAttr({
          b.getNamedAttr("block_m", b.getI64IntegerAttr(config.blockM)),
          b.getNamedAttr("tile_n", b.getI64IntegerAttr(config.outputTile())),
          b.getNamedAttr("split_k", b.getI64IntegerAttr(config.splitK)),
          b.getNamedAttr("stages", b.getI64IntegerAttr(config.stages)),
          b.getNamedAttr("threads", b.getI64IntegerAttr(config.threads())),
          b.getNamedAttr("shared_bytes",
                         b.getI64IntegerAttr(config.sharedBytes())),
          b.getNamedAttr("box_rows", b.getI64IntegerAttr(config.boxRows())),
          b.getNamedAttr("box_cols", b.getI64IntegerAttr(config.blockK())),
          b.getNamedAttr("element_bytes",
                         b.getI64IntegerAttr(config.elementBytes())),
      }));
  // A cluster of pairs along the slot blocks: the grid's x is rounded up to
  // whole pairs, and the kernel declares its cluster shape.
  if (config.clusterM > 1) {
    NamedAttrList facts(func->getAttrOfType<DictionaryAttr>("moe.launch"));
    facts.set("cluster_m", b.getI64IntegerAttr(config.clusterM));
    func->setAttr("moe.launch", facts.getDictionary(b.getContext()));
    func->setAttr(NVVM::NVVMDialect::getClusterDimAttrName(),
                  b.getDenseI32ArrayAttr(
                      {static_cast<int32_t>(config.clusterM), 1, 1}));
  }
  // A persistent kernel is launched on at most one block per SM instead.
  if (config.persistent) {
    NamedAttrList facts(func->getAttrOfType<DictionaryAttr>("moe.launch"));
    facts.set("persistent", b.getI64IntegerAttr(1));
    func->setAttr("moe.launch", facts.getDictionary(b.getContext()));
  }
  // The descriptor's position among the lowered arguments (a memref of rank
  // r lowers to 3 + 2r of them): moe-nvvm-grid-constant-args passes it by
  // value.
  int64_t llvmPosition = 0;
  for (Type type : ArrayRef<Type>(arguments).take_front(4))
    llvmPosition += 3 + 2 * cast<MemRefType>(type).getRank();
  if (!config.isWeightOnly())
    func->setAttr("moe.grid_constant_args",
                  b.getI64ArrayAttr({llvmPosition}));
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildExpertMatmulKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                   ExpertMatmulOp op, StringRef name) {
  FailureOr<KernelConfig> config = describeMatmul(b, op);
  if (failed(config) || failed(applyKernelConfig(op, *config)))
    return failure();
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  LLVM::GlobalOp sharedMemory = getOrCreateSharedMemory(b, module);
  b.setInsertionPointToEnd(module.getBody());
  SmallVector<Type> arguments = kernelArguments(b, op, *config);
  auto func =
      gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(arguments, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  setLaunchAttributes(b, func, *config, arguments);
  KernelBuilder(b, loc, *config).build(func, sharedMemory);
  return func;
}
