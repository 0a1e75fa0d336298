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
// This file holds the schedules (who loads, who multiplies, the rings that
// order them). The MoE side of a tile (gathers, weight rows, scales,
// epilogues) is ExpertTileEmitter (ExpertMatmulTile.h), target-neutral; the
// sm_90a mechanisms (wgmma, mbarrier waits, fences, setmaxnreg, clusters)
// are HopperEmitter (HopperEmitter.h); the weight-only formats' copies and
// decoding of a stage's codes are WeightOnlyStageEmitter (WeightOnlyStage.h).
//
//===----------------------------------------------------------------------===//

#include "ExpertMatmulTile.h"
#include "FusedAlign.h"
#include "HopperEmitter.h"
#include "MoeGpuKernels.h"
#include "WeightOnlyStage.h"

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
#include "mlir/IR/Matchers.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::expert_matmul;

using moe_gpu::hopper::kMaxSharedBytes;
using moe_gpu::hopper::kSwizzleAlignment;
using moe_gpu::hopper::kWarpgroupRows;
using moe_gpu::hopper::kWarpgroupThreads;

/// f32 values each thread zeroes per store of the combine's sums (16 bytes).
static constexpr int64_t kZeroVectorWidth = 4;
/// How many K steps ahead the register operand's multistage loop loads its
/// group scales (MultistageRing::scalesAhead). Two and three measured no
/// better on an H100 at M = 1 (docs/gpu-benchmark-quantized.md, twenty-sixth
/// session): Mixtral int4 −1 to −2%, Qwen3 int4 and GPT-OSS mxfp4 +1 to +2%.
static constexpr int64_t kScalesAhead = 1;

namespace {
/// The wgmma accumulator fragment, as the MoE epilogue asks for it.
class WgmmaAccumulator : public AccumulatorTarget {
public:
  explicit WgmmaAccumulator(int64_t columns) : layout{columns} {}
  int64_t registerOf(int64_t group, int64_t half, int64_t pair) const final {
    return layout.registerOf(group, half, pair);
  }
  Value laneColumnOffset(OpBuilder &b, Location loc, Value tid) const final {
    // Thread t's columns are 8g + 2·(t%4) (+1).
    Value lane = arith::RemUIOp::create(
        b, loc, tid, arith::ConstantIndexOp::create(b, loc, 32));
    return arith::MulIOp::create(
        b, loc,
        arith::RemUIOp::create(b, loc, lane,
                               arith::ConstantIndexOp::create(b, loc, 4)),
        arith::ConstantIndexOp::create(b, loc, 2));
  }
  void reduceAddPair(OpBuilder &b, Location loc, Value address, Value first,
                     Value second) const final {
    hopper::HopperEmitter(b, loc).reduceAddPair(address, first, second);
  }

private:
  hopper::WgmmaFragmentLayout layout;
};

/// The dynamic shared memory and the views of its stages.
struct SharedTiles {
  /// The dynamic shared memory and the shift that aligns it to 1024 bytes,
  /// and, in a cluster, the same memory as a pointer.
  hopper::StageMemory memory;
  Value pointer;
  /// A stage's A and B tiles, a weights' TMA box, and with input_tma an
  /// input box (one span of the slot block's rows).
  MemRefType tileAType, tileBType, boxType, inputBoxType;
};

/// The mbarrier rings of a kernel and where the current tile sits on them.
struct Rings {
  nvgpu::MBarrierGroupType barrierType;
  /// Full barriers of the stages (multistage: the TMA's), and, warp-
  /// specialized, the empty ones (in a cluster: the stage-free barriers).
  Value full, empty;
  /// Persistent: the tile ring (its i32 slots in shared memory, and full
  /// and empty barriers).
  Value tileSlots, tileFull, tileEmpty;
  /// Pingpong: completes its phase d once tile d's K loop is done, so that
  /// the next tile's warpgroup waits on the ring at most one round ahead.
  Value mathOrder;
  /// Persistent: the ring position of the current tile's first K step
  /// (null otherwise: positions are the K steps), and the block's count of
  /// tiles done before the current one.
  Value stepBase, tilesDone;
};

/// This thread's place in the block.
struct ThreadValues {
  Value tid, warpgroup;
  /// The offset of this warpgroup's A rows, in descriptor units.
  Value warpgroupOffset;
  /// The thread that issues the TMA and its expect_tx.
  Value leader;
  /// The thread's first fragment row in the tile, and, w8a8, per fragment
  /// half the input row whose scale applies.
  Value fragmentRow;
  SmallVector<Value> scaleRows;
  /// Null (every warpgroup multiplies), or whether this warpgroup's rows of
  /// the current tile hold an assignment (see findOwnRows).
  Value ownRowsHoldAssignments;
};

/// Cluster: this block's rank in its pair, whether the pair shares its
/// weight tiles (both blocks in the schedule, of one local expert), and the
/// rank whose stage-free barriers this block arrives on (the other block's
/// if shared, else its own).
struct PairValues {
  Value rank, sharesWeights, freedRank;
};

/// What each thread copies at every stage.
struct CopyPlan {
  /// The A tile's 16-byte chunks: tile row, swizzled destination column,
  /// source column, source row, elements to copy (0 zero-fills).
  SmallVector<Value> chunkRow, dstColumn, chunkColumn, srcRow, srcElements;
  /// Weights copied by cp.async: the B tile's chunks (tile row, swizzled
  /// destination column, source row of the weights as the descriptor
  /// views them, source column before the step's K offset, elements to
  /// copy: 0 past the weights' last row, which zero-fills as TMA would).
  SmallVector<Value> weightRow, weightDstColumn, weightSrcRow,
      weightSrcColumn, weightElements;
};

/// The shape of a multistage K loop: its steps, how far its loads run
/// ahead, whether a wgmma group stays in flight and fp8 partials are
/// promoted a step late, the accumulators it carries, and how many steps
/// ahead its weight-only group scales are loaded (0: in their own step;
/// otherwise the loop carries that many steps' scales after the sums).
struct MultistageRing {
  int64_t kSteps, prefetch, wgmmaInFlight;
  bool promotesLate;
  int64_t numSums;
  int64_t scalesAhead = 0;
};

/// Builds a kernel's schedule on Hopper: the ring of stages, who loads and
/// who multiplies (multistage, warp-specialized, persistent, pingpong,
/// pairs), around the MoE part (ExpertTileEmitter) and the sm_90a
/// mechanisms (HopperEmitter).
class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, const ExpertMatmulPlan &config)
      : b(b), loc(loc), config(config), hopper(b, loc),
        fragmentTarget(config.blockN),
        moe(b, loc, config, args, tile, fragmentTarget) {}

  void build(gpu::GPUFuncOp func, LLVM::GlobalOp sharedMemory);

private:
  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value i64(int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
  }
  Value i32(int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
  }
  MLIRContext *context() { return b.getContext(); }
  void ifThen(Value condition, function_ref<void()> body) {
    buildIfThen(b, loc, condition, body);
  }
  /// The accumulator's element: i32 for int8, f32 otherwise.
  Type sumType() {
    return config.format == QuantFormat::Int8 ? Type(b.getI32Type())
                                              : Type(b.getF32Type());
  }
  Value zeroAccumulator() {
    return hopper.zeroAccumulator(accumulatorType, sumType());
  }

  /// Names the kernel's arguments (their order: see buildExpertMatmulKernel).
  void bindArguments(Block &entry);
  /// The shared-memory tile, TMA box and accumulator types, and the weights'
  /// TMA descriptor from its pointer argument.
  void createTypes();
  /// The dynamic shared memory, aligned, and the stage rings' barriers.
  void createSharedState(LLVM::GlobalOp sharedMemory);
  /// The thread's id, warpgroup and A-row offset.
  void placeThread();
  /// Persistent: the tile ring's barriers and slots (and pingpong's math
  /// order).
  void createTileRing();

  // Cluster pairs.
  /// Every block initializes its full and stage-free barriers, and the
  /// pair synchronizes, before either block may multicast into the other
  /// or leave early.
  void initClusterBarriers();
  /// Multistage: the full barriers (the TMA's expect_tx) and the
  /// stage-free barriers (one arrival of the freeing block per use).
  void initMultistageBarriers();
  /// The slot block and column tile of this block (a pair takes
  /// consecutive slot blocks of one column tile).
  std::pair<Value, Value> pairTile();
  /// Whether the pair shares the weights, and whose barriers it frees.
  void decideSharing(Value block);
  /// The mbarrier in this block's shared memory on which the block that
  /// refills `stage` (the other one if shared, else this one) says it is
  /// done with the stage (warp-specialized: the stage's empty barrier, on
  /// which this block's consumers arrive too).
  Value stageFreeBarrier(Value stage);
  /// At K step `step` of the multistage loop (this block is done with
  /// stage `next`): frees `next`'s stage for the block that fills it and
  /// waits until that stage is free in the other block too.
  void freeStageInPair(Value step, Value next);
  /// Leader: the TMA boxes of span `span` of `stage`'s weight tile (gated:
  /// its gate rows, then their up rows), from K column `kOffset` + the
  /// span's.
  void loadWeightSpan(Value stage, int64_t span, Value kOffset, Value issuer);
  /// The first K column of span `span` of a stage from K column `kOffset`.
  Value spanColumn(Value kOffset, int64_t span);
  /// input_tma, leader: the TMA box of span `span` of `stage`'s A tile (the
  /// slot block's block_m rows), from K column `kOffset` + the span's.
  void loadInputSpan(Value stage, int64_t span, Value kOffset, Value issuer);
  /// Shared, to both blocks' shared memory; else this block's alone: the
  /// two boxes of the B tile (gate and up rows, or its two halves). Block r
  /// loads box r. Predicates only, no branches.
  void loadPairedWeights(Value stage, Value kOffset, Value issuer);

  // Tiles.
  /// The (slot block, column tile) of grid block (x, y): see
  /// ExpertTileEmitter::rasterizeLinear, for blocks issued in order of
  /// x + X·y.
  std::pair<Value, Value> rasterize(Value x, Value y);
  /// This block's slot block and column tile: the grid's, rasterized, or
  /// in a cluster its pair's (after the pair's first synchronization).
  std::pair<Value, Value> blockAndColumnTile();
  /// Calls `body` for each tile of this block whose expert is local, with
  /// the tile's values bound and `stepBase` at the ring position of its
  /// first K step (tiles done so far · K steps). The block's first tile is
  /// its block id; the next ones come from the tile counter, in the order
  /// blocks become free (as the hardware would dispatch a grid of one-tile
  /// blocks, so that the tiles in flight stay close in the raster and share
  /// their rows and weights in L2). The producer's leader (`publishes`)
  /// takes each next tile one tile ahead and publishes it through the tile
  /// ring; every thread receives it.
  /// Returns the count of this block's tiles the body ran for.
  Value forEachTile(bool publishes, function_ref<void()> body);
  /// The producer warpgroup: once every thread has received the tile before
  /// in the slot, the leader publishes `tileOf()` as the block's
  /// `index`-th. (The wait stays outside the leader's branch: it spins
  /// with `bra.uni`, which a diverged warp must not run.)
  void publishTile(Value index, function_ref<Value()> tileOf);
  /// The block's `index`-th tile, once published.
  Value receiveTile(Value index);

  // The ring.
  /// Initializes the full and empty rings (thread 0) and synchronizes the
  /// block; sets the producer's TMA leader. In a cluster the rings were
  /// initialized before the pair's first synchronization.
  void initRings();
  /// The ring's barriers (the calling thread initializes them): full, empty
  /// (in a cluster, the stage-free barriers), and the persistent tile ring
  /// and pingpong's math order.
  void initRingBarriers();
  /// The position in the ring of K step `step` of the current tile.
  Value ringStep(Value step) {
    return rings.stepBase
               ? arith::AddIOp::create(b, loc, rings.stepBase, step).getResult()
               : step;
  }
  /// The ring stage of K step `step`.
  Value stageOf(Value step);
  /// Waits on `ring`'s barrier of `step`'s stage until the phase of `step`'s
  /// round is complete or, with `previousRound`, that of the round before
  /// (which a fresh barrier counts as complete).
  void waitForRound(Value ring, Value step, bool previousRound);
  /// Warp-specialized consumers, once a stage is full (waited for) and
  /// before its wgmma: orders its copied slot rows for the async proxy.
  void fenceCopiedRows();
  /// A weight-only step's group scales, `step` clamped to the last step
  /// (loaded a step ahead, the last step loads its own again); none for
  /// other formats.
  SmallVector<Value> groupScalesUpTo(Value step);
  /// Producer: waits until the stage of ring position `position` was
  /// released in the round before (a fresh barrier counts as released).
  void waitForRelease(Value position);
  /// Consumers: release the stage of ring position `position` (in a cluster,
  /// on this block's empty barrier and on that of the block that refills
  /// this block's copy of the stage).
  void releaseStage(Value position);
  /// The tile of `stage` at byte `offset` of stage 0, `stride` bytes apart.
  Value stageView(MemRefType type, Value stage, int64_t offset, int64_t stride);
  Value tileA(Value stage) {
    return stageView(shared.tileAType, stage, 0, config.tileABytes());
  }
  Value tileB(Value stage, int64_t extraOffset = 0) {
    return stageView(shared.tileBType, stage,
                     config.stages * config.tileABytes() + extraOffset,
                     config.tileBBytes());
  }

  // Loads.
  /// Plans the 16-byte cp.async chunks of the A tile that `thread`, one of
  /// `numThreads` loading threads, copies at every stage.
  void planInputChunks(Value thread, int64_t numThreads);
  /// Weights copied by cp.async: plans the 16-byte chunks of the B tile
  /// that `thread`, one of `numThreads`, copies at every stage.
  void planWeightChunks(Value thread, int64_t numThreads);
  /// Issues this thread's chunks of the B tile of `stage` from K column
  /// `kOffset` (each zero-filled where `valid` is false).
  void copyWeightChunks(Value stage, Value kOffset, Value valid);
  /// A chunk's destination in a swizzled tile of `rows` rows per span:
  /// chunk `column` (of 8 · spans) of tile row `row` lies in span
  /// column / 8's block, at chunk (column mod 8) xor (row mod 8), the 128B
  /// swizzle TMA would produce. Returns (tile row, column in elements).
  std::pair<Value, Value> swizzledChunk(Value row, Value column, int64_t rows);
  /// Issues stage `step mod stages` (or `stage`, where the caller knows
  /// it): the weights by TMA (the leader), the A rows by cp.async (every
  /// loading thread, one commit group).
  void issueStage(Value step, Value valid, Value stage = Value());

  // Multiplies.
  /// The fragment rows of this thread's accumulator (and, w8a8, the input
  /// rows whose scales apply).
  void planFragmentRows();
  /// With two consumer warpgroups of 64 rows each, sets
  /// `ownRowsHoldAssignments` for the current tile. Within an expert's group
  /// the padding follows the assignments, and a block never straddles two
  /// groups, so a 64-row half that starts on padding is all padding: its
  /// warpgroup skips its wgmmas. Not in the multistage loop where fp8
  /// partial sums are promoted: the skipped branch's zeros merged with a
  /// partial in flight made ptxas 13 serialize every wgmma (C7514) and spill
  /// 160-380 bytes. (The warp-specialized fp8 consumers keep no partial in
  /// flight.) Nor with swapped operands, whose warpgroups split the weight
  /// rows and each multiply all of the slot rows.
  void findOwnRows();
  /// Issues the wgmmas of `stage` onto `accumulator` (or, `fresh`, onto
  /// nothing: the first one's scale-d is 0), commits them as a group and
  /// waits until at most `pendingGroups` groups are in flight; a warpgroup
  /// without assignments in the tile (ownRowsHoldAssignments) skips them.
  SmallVector<Value> wgmmaStep(ArrayRef<Value> accumulators, Value stage,
                               int64_t pendingGroups, bool fresh = false);
  Value wgmmaStep(Value accumulator, Value stage, int64_t pendingGroups,
                  bool fresh = false);
  /// wgmmaStep without the skip.
  SmallVector<Value> issueWgmmas(ArrayRef<Value> accumulators, Value stage,
                                 int64_t pendingGroups, bool fresh);
  /// total + partial, times the block's scale of each register when given.
  Value promote(Value total, Value partial, ArrayRef<Value> scales);
  /// Loads the epilogue's rows of the current tile, before its K loop: two
  /// (the fragment's row halves) per pass of the swapped transpose.
  SmallVector<EpilogueRow, 2> loadEpilogueRows() {
    if (!config.swapAB || config.swappedPasses() == 1)
      return moe.loadEpilogueRows(thisThread.fragmentRow);
    SmallVector<EpilogueRow, 2> rows;
    for (int64_t pass = 0; pass < config.swappedPasses(); ++pass)
      llvm::append_range(rows, moe.loadEpilogueRows(arith::AddIOp::create(
                                   b, loc, thisThread.fragmentRow,
                                   index(pass * config.swappedPassRows()))));
    return rows;
  }
  void storeEpilogue(Value sums, ArrayRef<EpilogueRow> rows) {
    moe.storeEpilogue(sums, rows, thisThread.tid, thisThread.scaleRows);
  }
  /// Whether the multistage kernel's unswapped epilogue goes through an
  /// EpilogueTable over its stages: whole 128-byte lines per warp store
  /// instead of 16 bytes in each of 8 rows.
  bool stagesMultistageEpilogue() const;
  /// The epilogue of `sums` staged in shared memory and copied out by the
  /// whole block.
  void storeStagedEpilogue(Value sums, ArrayRef<EpilogueRow> rows);
  /// The staged epilogue's table of `rows` rows at byte `start` of the
  /// dynamic shared memory: the pairs, then (a combine) the destinations.
  EpilogueTable viewEpilogueTable(Value start, int64_t rows);
  /// Persistent (`staged_epilogue`): each consumer warpgroup in turn stages
  /// its 64 rows of `sums` in the table after the tile slots and copies
  /// them out, while the producer fills the ring for the next tile.
  void storeEpilogueInTurn(Value sums, ArrayRef<EpilogueRow> rows);
  /// After the last tile: the first warpgroup takes the second's last
  /// release of the table, so that no arrival is left pending.
  void finishTurns(Value tilesDone);
  /// Waits at named barrier `barrier` with both consumer warpgroups (one
  /// arrives, the other waits).
  void syncTurn(int64_t barrier);

  // Schedules.
  /// The multistage K loop: every thread issues its share of each stage,
  /// a barrier per step, one wgmma group in flight from three stages on;
  /// returns the f32 (s32 for int8) sums of each accumulator, fp8 partials
  /// promoted (one accumulator).
  SmallVector<Value> multistageLoop(ArrayRef<Value> accumulators);
  /// One K step of the multistage loop: `step`, its ring stage `stage` and
  /// round `round`, and the stage `nextStage` it refills (`prefetch` steps
  /// on); `knownStep` is the step where the kernel's builder knows it (after
  /// the loop), so that a refill past the end is known too. A step that
  /// `drainsWgmmas` waits for its wgmmas at its end (after the previous
  /// partial's promotion), none left in flight. Returns the carried values
  /// after the step.
  SmallVector<Value> multistageStep(const MultistageRing &ring, Value step,
                                    Value stage, Value round, Value nextStage,
                                    std::optional<int64_t> knownStep,
                                    ValueRange carried,
                                    bool drainsWgmmas = false);
  /// Swapped operands: writes the sums of the weight rows (accumulator f
  /// holds tile rows 64·f + its fragment rows, the slot rows as columns)
  /// of pass `pass`'s slot rows to a table in shared memory, and returns
  /// the table once the block's threads have written it.
  Value writeSwappedTable(ArrayRef<Value> sums, int64_t pass);
  /// Swapped operands: this thread's slot rows of `table` as the unswapped
  /// fragment of block_n columns, which the epilogue takes; where the K
  /// splits reduce in a cluster, plus the other splits' tables.
  Value readSwappedTable(Value table);
  /// Swapped operands: the epilogue of `sums` (one accumulator per 64 of
  /// the warpgroup's weight rows), transposed pass by pass (`rows` holds
  /// each pass's two rows); the warps whose 16 fragment rows lie in the
  /// block store them.
  void storeSwappedEpilogue(ArrayRef<Value> sums, ArrayRef<EpilogueRow> rows);
  /// A barrier of the threads that multiply: the block's, or with a
  /// producer warpgroup the consumers' named barrier.
  void syncConsumers();
  /// The multistage body: every thread loads and multiplies, a barrier per
  /// K step (and, paired, a stage handshake with the other block).
  void buildMultistage();
  /// Warp-specialized body: thread 0 initializes the full and empty rings,
  /// then the producer warpgroup runs `produce` and the consumers `consume`
  /// and the epilogue, each role in one branch (as setmaxnreg needs).
  void buildWarpSpecialized();
  /// One tile per block: the grid's tile, if it is scheduled and its
  /// expert is local, by the multistage or warp-specialized schedule.
  void buildOneTile();
  /// `fused_align_assignments`: the block's slots into shared memory
  /// (tile.ownSlots), aligned by the block itself where the call has few
  /// enough assignments, else copied from the schedule; sets the padded
  /// count and M·k, and returns the block's expert (i32, -1 past the
  /// schedule).
  Value alignOwnSlotBlock(Value block, Value columnTile, Value split);
  /// The blocks of the first column tile and K split write what they
  /// aligned into the schedule's arrays for the kernels after this one;
  /// block 0 also the padded count and the invalid ids.
  void publishSchedule(const OwnSlotBlock &own, Value block, Value columnTile,
                       Value split);
  /// Every block zeroes its share of the combine's f32 sums, 16 bytes per
  /// thread and step, grid-strided.
  void zeroSums();
  /// Persistent body: the producer and the consumers each walk this
  /// block's tiles in the same order, the producer running up to a ring
  /// ahead, so that the next tile's loads overlap this tile's epilogue.
  void buildPersistent();
  /// The producer warpgroup runs `producer` and the consumer warpgroups
  /// `consumers`, each in its branch after setmaxnreg moved its registers.
  void splitRoles(function_ref<void()> producer,
                  function_ref<void()> consumers);
  /// The producer's loop: per K step, wait until the consumers released the
  /// stage, then TMA the weights and cp.async the A rows into it; each
  /// thread's copies arrive on the stage's full barrier as they land.
  void produce();
  /// The consumers' K loop: wait for a full stage, multiply it, release it.
  /// Without `accumulator`, the first wgmma starts the sums (scale-d 0).
  Value consume(Value accumulator = Value()) {
    return consumeFragments(accumulator ? SmallVector<Value>{accumulator}
                                        : SmallVector<Value>{Value()})[0];
  }
  /// The K loop on one accumulator per 64-row fragment (null: fresh sums).
  SmallVector<Value> consumeFragments(SmallVector<Value> accumulators);
  /// Warp-specialized consumers on the register operand: plans what this
  /// thread decodes from each stage; nothing otherwise.
  void planDecoding();
  /// Swapped consumers: the K loop of the tile on one accumulator per 64
  /// of the warpgroup's weight rows, then its transposed epilogue.
  void consumeSwapped(ArrayRef<EpilogueRow> rows);
  /// The consumers' multiply of a full stage: its wgmmas onto
  /// `accumulators`, or with the register operand this thread's A registers
  /// decoded from the stage's codes with the step's `scales` first.
  SmallVector<Value> multiplyStage(ArrayRef<Value> accumulators, Value stage,
                                   ArrayRef<Value> scales,
                                   int64_t pendingGroups, bool fresh);
  /// The consumers' K loop for fp8: each stage's wgmmas start a fresh
  /// partial sum, which is promoted into the f32 total (times the block
  /// scales) once they are done and the stage is released.
  Value consumePromoted();
  /// Pingpong consumer body of one tile: if the tile is this warpgroup's
  /// (tiles done so far has its parity), its K loop over every row
  /// fragment and their epilogues.
  void consumePingpong();

  OpBuilder &b;
  Location loc;
  const ExpertMatmulPlan &config;
  hopper::HopperEmitter hopper;
  WgmmaAccumulator fragmentTarget;
  KernelArguments args;
  TileValues tile;
  ExpertTileEmitter moe;
  SharedTiles shared;
  Rings rings;
  ThreadValues thisThread;
  PairValues cluster;
  CopyPlan copies;
  /// Weight-only: the stage's codes, copied and decoded. Warp-specialized,
  /// each role builds its own in its branch (splitRoles builds the
  /// producer's first): the producer's plans its copies, the consumers'
  /// their decoding.
  std::optional<WeightOnlyStageEmitter> weightOnly;
  /// The weights' TMA descriptor, and with input_tma the input's.
  Value weightsMap, inputMap;
  /// What one wgmma accumulates into, and (differing with swapped
  /// operands) the fragment of block_n columns the epilogue reads.
  LLVM::LLVMStructType accumulatorType, tileAccumulatorType;
};
} // namespace

Value KernelBuilder::stageView(MemRefType type, Value stage, int64_t offset,
                               int64_t stride) {
  return shared.memory.view(b, loc, type, stage, offset, stride);
}

void KernelBuilder::issueStage(Value step, Value valid, Value knownStage) {
  // Stage `step mod stages` of the ring: the weights tile by TMA (the leader
  // thread), the A rows by cp.async (every thread, one commit group). No
  // branches, only predicates: a wgmma is in flight, and ptxas serializes
  // wgmma around divergent code. An invalid step (past the end) loads
  // nothing but still commits its (empty) group, which keeps the count of
  // pending groups the same at every step. A step known to be past the end
  // when the kernel is built (the last round's) issues nothing but its
  // commit: a predicate folded to false is not valid PTX.
  if (matchPattern(valid, m_Zero())) {
    if (!config.inputTma)
      NVVM::CpAsyncCommitGroupOp::create(b, loc);
    return;
  }
  Value stage = knownStage ? knownStage : stageOf(ringStep(step));
  Value kOffset = arith::AddIOp::create(
      b, loc, tile.kBase,
      arith::MulIOp::create(b, loc, step, index(config.blockK())));
  kOffset = arith::SelectOp::create(b, loc, valid, kOffset, index(0));
  Value issuer = arith::AndIOp::create(b, loc, thisThread.leader, valid);
  if (config.isWeightOnly()) {
    // The stored codes by cp.async, in the A rows' commit group; they are
    // dequantized when the step comes.
    weightOnly->copyCodes(stage, kOffset, valid, args.packedWeights);
  } else if (config.copiesWeights) {
    // Every thread's chunks of the weight tile, in the A rows' group.
    copyWeightChunks(stage, kOffset, valid);
  } else if (config.clusterM > 1) {
    loadPairedWeights(stage, kOffset, issuer);
  } else {
    for (int64_t span = 0; span < config.spans; ++span)
      loadWeightSpan(stage, span, kOffset, issuer);
  }
  if (config.inputTma) {
    // The A rows by TMA too (verified: no cp.async in the kernel), on the
    // same full barrier: nothing to commit.
    for (int64_t span = 0; span < config.spans; ++span)
      loadInputSpan(stage, span, kOffset, issuer);
    nvgpu::MBarrierArriveExpectTxOp::create(
        b, loc, rings.full, index(config.tileABytes() + config.tileBBytes()),
        stage, issuer);
    return;
  }
  if (!config.isWeightOnly() && !config.copiesWeights)
    nvgpu::MBarrierArriveExpectTxOp::create(
        b, loc, rings.full, index(config.tileBBytes()), stage, issuer);
  Value stageA = tileA(stage);
  for (size_t i = 0; i < copies.chunkRow.size(); ++i) {
    Value column =
        arith::AddIOp::create(b, loc, kOffset, copies.chunkColumn[i]);
    Value elements =
        arith::SelectOp::create(b, loc, valid, copies.srcElements[i], index(0));
    hopper.copyAsync(stageA, {copies.chunkRow[i], copies.dstColumn[i]}, args.x,
                     {copies.srcRow[i], column},
                     kChunkBytes / config.elementBytes(), elements,
                     /*bypassL1=*/true);
  }
  // One commit group per step; the wait counts groups, not tokens.
  NVVM::CpAsyncCommitGroupOp::create(b, loc);
}

Value KernelBuilder::spanColumn(Value kOffset, int64_t span) {
  if (span == 0)
    return kOffset;
  return arith::AddIOp::create(b, loc, kOffset,
                               index(span * config.spanElements()));
}

void KernelBuilder::loadWeightSpan(Value stage, int64_t span, Value kOffset,
                                   Value issuer) {
  Value column = spanColumn(kOffset, span);
  int64_t spanOffset =
      config.stages * config.tileABytes() + span * config.spanBBytes();
  auto boxAt = [&](int64_t offset) {
    return stageView(shared.boxType, stage, spanOffset + offset,
                     config.tileBBytes());
  };
  auto load = [&](Value box, Value boxColumn, Value boxRow) {
    nvgpu::TmaAsyncLoadOp::create(b, loc, box, rings.full, weightsMap,
                                  ValueRange{boxColumn, boxRow}, stage,
                                  Value(), issuer);
  };
  if (!config.activation) {
    load(boxAt(0), column, tile.weightsRow);
    return;
  }
  // Gate rows, then the matching up rows: N/2 further down, or
  // (interleaved) in the second half of the same [2K]-wide row pair.
  auto [upColumn, upRow] = moe.upTileCoordinates(column);
  Value gateBox = boxAt(0);
  Value upBox = boxAt(config.spanBBytes() / 2);
  load(gateBox, column, tile.weightsRow);
  load(upBox, upColumn, upRow);
}

void KernelBuilder::loadInputSpan(Value stage, int64_t span, Value kOffset,
                                  Value issuer) {
  // The slot block's rows are the input's rows firstSlot.. (no gather);
  // past the input's rows the box reads zeros.
  Value box = stageView(shared.inputBoxType, stage, span * config.spanABytes(),
                        config.tileABytes());
  nvgpu::TmaAsyncLoadOp::create(
      b, loc, box, rings.full, inputMap,
      ValueRange{spanColumn(kOffset, span), tile.firstSlot}, stage, Value(),
      issuer);
}

void KernelBuilder::loadPairedWeights(Value stage, Value kOffset,
                                      Value issuer) {
  auto i16Constant = [&](int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI16IntegerAttr(value))
        .getResult();
  };
  // Shared, to both blocks' shared memory (the same offsets, the same
  // barrier); else to this block's alone.
  Value rank16 =
      arith::IndexCastOp::create(b, loc, b.getI16Type(), cluster.rank);
  Value ownMask = arith::ShLIOp::create(b, loc, i16Constant(1), rank16);
  Value mask = arith::SelectOp::create(b, loc, cluster.sharesWeights,
                                       i16Constant(3), ownMask);
  // The second box: the up rows of a gated tile, else the tile's second
  // half of rows.
  auto [secondColumn, secondRow] =
      config.activation
          ? moe.upTileCoordinates(kOffset)
          : std::pair<Value, Value>{
                kOffset, arith::AddIOp::create(b, loc, tile.weightsRow,
                                               index(config.blockN / 2))};
  Value unshared = arith::XOrIOp::create(
      b, loc, cluster.sharesWeights,
      arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
  for (int64_t box = 0; box < 2; ++box) {
    Value ownBox = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         cluster.rank, index(box));
    Value predicate = arith::AndIOp::create(
        b, loc, issuer, arith::OrIOp::create(b, loc, unshared, ownBox));
    Value boxTile = stageView(shared.boxType, stage,
                              config.stages * config.tileABytes() +
                                  box * config.tileBBytes() / 2,
                              config.tileBBytes());
    nvgpu::TmaAsyncLoadOp::create(b, loc, boxTile, rings.full, weightsMap,
                                  box ? ValueRange{secondColumn, secondRow}
                                      : ValueRange{kOffset, tile.weightsRow},
                                  stage, mask, predicate);
  }
}

Value KernelBuilder::stageFreeBarrier(Value stage) {
  Value offset = arith::AddIOp::create(
      b, loc, shared.memory.shift,
      arith::AddIOp::create(b, loc,
                            index(config.ringBytes() + config.tileSlotBytes()),
                            arith::MulIOp::create(b, loc, stage, index(8))));
  return LLVM::GEPOp::create(
      b, loc, shared.pointer.getType(), b.getI8Type(), shared.pointer,
      ValueRange{arith::IndexCastOp::create(b, loc, b.getI64Type(), offset)});
}

void KernelBuilder::initClusterBarriers() {
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      thisThread.tid, index(0));
  ifThen(first, [&] {
    if (config.warpSpecialized)
      initRingBarriers();
    else
      initMultistageBarriers();
    // The other block's multicasts and arrivals may follow at once.
    NVVM::FenceMbarrierInitOp::create(b, loc);
  });
  hopper.syncCluster();
}

void KernelBuilder::initMultistageBarriers() {
  for (int64_t s = 0; s < config.stages; ++s) {
    nvgpu::MBarrierInitOp::create(b, loc, rings.full, index(1), index(s),
                                  Value());
    // The freeing block's first thread arrives once per use, after the
    // block's barrier.
    NVVM::MBarrierInitOp::create(
        b, loc, stageFreeBarrier(index(s)),
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)), Value());
  }
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
  cluster.rank = arith::RemUIOp::create(b, loc, x, index(2));
  Value pair = arith::DivUIOp::create(b, loc, x, index(2));
  if (config.groupM > 0) {
    Value pairs = arith::DivUIOp::create(
        b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x), index(2));
    Value columnTiles = gpu::GridDimOp::create(b, loc, gpu::Dimension::y);
    Value linear = arith::AddIOp::create(
        b, loc, pair, arith::MulIOp::create(b, loc, pairs, columnTile));
    std::tie(pair, columnTile) =
        moe.rasterizeLinear(linear, pairs, columnTiles);
  }
  Value block = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, pair, index(2)), cluster.rank);
  return {block, columnTile};
}

void KernelBuilder::decideSharing(Value block) {
  // Both blocks compute the same answer from the same schedule.
  Value partner = arith::XOrIOp::create(b, loc, block, index(1));
  auto expertOf = [&](Value slotBlock, Value &scheduled) {
    scheduled = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::slt,
        arith::MulIOp::create(b, loc, slotBlock, index(config.blockM)),
        tile.paddedCount);
    Value safe =
        arith::SelectOp::create(b, loc, scheduled, slotBlock, index(0));
    return memref::LoadOp::create(b, loc, args.blocks, ValueRange{safe})
        .getResult();
  };
  Value ownScheduled, partnerScheduled;
  Value ownExpert = expertOf(block, ownScheduled);
  Value partnerExpert = expertOf(partner, partnerScheduled);
  Value sameExpert = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                           ownExpert, partnerExpert);
  Value localExpert = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::sge, ownExpert,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)));
  cluster.sharesWeights = arith::AndIOp::create(
      b, loc, arith::AndIOp::create(b, loc, ownScheduled, partnerScheduled),
      arith::AndIOp::create(b, loc, sameExpert, localExpert));
  Value rank32 =
      arith::IndexCastOp::create(b, loc, b.getI32Type(), cluster.rank);
  Value otherRank = arith::XOrIOp::create(
      b, loc, rank32,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)));
  cluster.freedRank =
      arith::SelectOp::create(b, loc, cluster.sharesWeights, otherRank, rank32);
}

void KernelBuilder::freeStageInPair(Value step, Value next) {
  // Use u of a stage (u = step div stages: the steps whose `next` is the
  // stage, counted from the loop's first) completes phase u of its
  // stage-free barrier with the other block's (or, unshared, this block's)
  // arrival. Each block waits here for the other's arrival of the same
  // step, so the other block runs at most one step ahead: the barrier is at
  // most one phase ahead of the wait, and the parities never alias.
  Value stage = stageOf(next);
  Value target =
      hopper.clusterAddress(stageFreeBarrier(stage), cluster.freedRank);
  // One arrival per step: the block's barrier just before ordered every
  // thread's reads of the stage (complete: their wgmmas were waited for)
  // ahead of it, so the release is at CTA scope. At cluster scope it was
  // what made the pairs 25-40% slower on the H200, not the per-step
  // handshake (docs/gpu-warp-specialized.md).
  ifThen(thisThread.leader, [&] {
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
  hopper.waitForParity(stageFreeBarrier(stage), parity);
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
  if (!thisThread.ownRowsHoldAssignments)
    return issueWgmmas(accumulators, stage, pendingGroups, fresh);
  // A warpgroup on padding rows multiplies nothing: its sums stay zero, as
  // the zero-filled A rows would have made them. The branch is uniform over
  // the warpgroup: ptxas 13 serializes no wgmma around it (see
  // docs/gpu-runtime.md).
  auto ifOp = scf::IfOp::create(
      b, loc, SmallVector<Type>(accumulators.size(), accumulatorType),
      thisThread.ownRowsHoldAssignments, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.elseBlock());
  SmallVector<Value> unchanged(accumulators);
  if (fresh)
    for (Value &sum : unchanged)
      sum = zeroAccumulator();
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
  // Both tiles are K-major and 128B-swizzled, so swapping the operands
  // swaps the descriptors: each 64 weight rows against all the slot rows.
  Value descriptorA = hopper.wgmmaDescriptor(hopper.addressOf(tileA(stage)));
  Value descriptorB = hopper.wgmmaDescriptor(hopper.addressOf(tileB(stage)));
  // Each span of K is its own swizzled block of the tile: the slot rows'
  // spans are block_m rows apart, the weight rows' block_n.
  hopper::WgmmaStageSpans spans{config.spans, config.spanABytes() / 16,
                                config.spanBBytes() / 16};
  if (config.swapAB) {
    std::swap(descriptorA, descriptorB);
    std::swap(spans.strideA, spans.strideB);
  }
  // Each warpgroup multiplies its own rows of the A operand: its 64 slot
  // rows (or, with pingpong, every 64 rows of the tile, one accumulator
  // each), or with swapped operands its share of the weight rows.
  descriptorA =
      arith::AddIOp::create(b, loc, descriptorA, thisThread.warpgroupOffset);
  hopper::WgmmaKind kind;
  kind.elementBytes = config.elementBytes();
  if (config.format == QuantFormat::Fp8)
    kind.operands = NVVM::WGMMATypes::e4m3;
  if (config.format == QuantFormat::Int8) {
    kind.operands = NVVM::WGMMATypes::s8;
    kind.sums = NVVM::WGMMATypes::s32;
  }
  // With pingpong, fragment f's rows start 64 · 128 bytes after f − 1's.
  return hopper.wgmmaStage(accumulators, descriptorA, descriptorB,
                           /*fragmentStride=*/kWarpgroupRows * kRowBytes / 16,
                           spans, hopper::WgmmaFragmentLayout{config.mmaColumns()},
                           kind,
                           accumulatorType, pendingGroups, fresh);
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

void KernelBuilder::findOwnRows() {
  if (config.blockM <= kWarpgroupRows || config.pingpong || config.swapAB ||
      (config.promotesEachStage() && !config.warpSpecialized))
    return;
  Value firstRow =
      arith::AddIOp::create(b, loc, tile.firstSlot,
                            arith::MulIOp::create(b, loc, thisThread.warpgroup,
                                                  index(kWarpgroupRows)));
  Value inSchedule = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           firstRow, tile.paddedCount);
  // Outside the schedule, any slot of the tile will do: the value is unused.
  Value anySlot = tile.ownSlots ? tile.firstSlot : index(0);
  Value assignment = moe.assignmentOf(
      arith::SelectOp::create(b, loc, inSchedule, firstRow, anySlot));
  thisThread.ownRowsHoldAssignments = arith::AndIOp::create(
      b, loc, inSchedule,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                            tile.assignments));
}

std::pair<Value, Value> KernelBuilder::rasterize(Value x, Value y) {
  Value slotBlocks = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
  Value columnTiles = gpu::GridDimOp::create(b, loc, gpu::Dimension::y);
  Value linear = arith::AddIOp::create(
      b, loc, x, arith::MulIOp::create(b, loc, slotBlocks, y));
  return moe.rasterizeLinear(linear, slotBlocks, columnTiles);
}

std::pair<Value, Value> KernelBuilder::swizzledChunk(Value row, Value column,
                                                     int64_t rows) {
  int64_t chunkElements = kChunkBytes / config.elementBytes();
  Value spanRow = row;
  if (config.spans > 1)
    spanRow = arith::AddIOp::create(
        b, loc, row,
        arith::MulIOp::create(
            b, loc, arith::DivUIOp::create(b, loc, column, index(8)),
            index(rows)));
  Value swizzled = arith::XOrIOp::create(
      b, loc,
      config.spans > 1 ? arith::RemUIOp::create(b, loc, column, index(8))
                       : column,
      arith::RemUIOp::create(b, loc, row, index(8)));
  return {spanRow,
          arith::MulIOp::create(b, loc, swizzled, index(chunkElements))};
}

void KernelBuilder::planWeightChunks(Value thread, int64_t numThreads) {
  // Consecutive threads along a weight row, as the A rows are copied. A
  // gated tile's first block_n / 2 rows are gate rows, the others the
  // matching up rows (as the TMA boxes of loadWeightSpan place them).
  int64_t chunkElements = kChunkBytes / config.elementBytes();
  int64_t rowChunks = 8 * config.spans;
  auto weightsType = cast<MemRefType>(args.weights.getType());
  int64_t weightRows = weightsType.getDimSize(0);
  auto [upColumn, upRow] = moe.upTileCoordinates(index(0));
  for (int64_t i = 0; i < config.blockN * rowChunks / numThreads; ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, thread, index(numThreads * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(rowChunks));
    Value column = arith::RemUIOp::create(b, loc, chunk, index(rowChunks));
    auto [tileRow, dstColumn] = swizzledChunk(row, column, config.blockN);
    Value sourceRow = arith::AddIOp::create(b, loc, tile.weightsRow, row);
    Value sourceColumn =
        arith::MulIOp::create(b, loc, column, index(chunkElements));
    if (config.activation) {
      Value half = index(config.blockN / 2);
      Value isUp =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, row, half);
      Value upSourceRow = arith::AddIOp::create(
          b, loc, upRow, arith::SubIOp::create(b, loc, row, half));
      sourceRow =
          arith::SelectOp::create(b, loc, isUp, upSourceRow, sourceRow);
      sourceColumn = arith::SelectOp::create(
          b, loc, isUp,
          arith::AddIOp::create(b, loc, upColumn, sourceColumn), sourceColumn);
    }
    // Rows past the weights (the last expert's last column tile sticking
    // out) copy nothing from row 0 and zero-fill their chunk.
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         sourceRow, index(weightRows));
    copies.weightRow.push_back(tileRow);
    copies.weightDstColumn.push_back(dstColumn);
    copies.weightSrcRow.push_back(
        arith::SelectOp::create(b, loc, inside, sourceRow, index(0)));
    copies.weightSrcColumn.push_back(sourceColumn);
    copies.weightElements.push_back(arith::SelectOp::create(
        b, loc, inside, index(chunkElements), index(0)));
  }
}

void KernelBuilder::copyWeightChunks(Value stage, Value kOffset, Value valid) {
  Value stageB = tileB(stage);
  for (size_t i = 0; i < copies.weightRow.size(); ++i) {
    Value elements = arith::SelectOp::create(b, loc, valid,
                                             copies.weightElements[i], index(0));
    Value column =
        arith::AddIOp::create(b, loc, kOffset, copies.weightSrcColumn[i]);
    hopper.copyAsync(stageB, {copies.weightRow[i], copies.weightDstColumn[i]},
                     args.weights, {copies.weightSrcRow[i], column},
                     kChunkBytes / config.elementBytes(), elements,
                     /*bypassL1=*/true);
  }
}

void KernelBuilder::planInputChunks(Value thread, int64_t numThreads) {
  // Each thread copies its share of the block_m x (8 x spans) chunks of 16
  // bytes, consecutive threads along a row, to where TMA's 128B swizzle
  // would put them (swizzledChunk).
  int64_t chunkElements = kChunkBytes / config.elementBytes();
  int64_t rowChunks = 8 * config.spans;
  for (SmallVector<Value> *plan :
       {&copies.chunkRow, &copies.srcRow, &copies.srcElements,
        &copies.dstColumn, &copies.chunkColumn})
    plan->clear();
  for (int64_t i = 0; i < config.blockM * rowChunks / numThreads; ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, thread, index(numThreads * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(rowChunks));
    Value column = arith::RemUIOp::create(b, loc, chunk, index(rowChunks));
    Value real;
    Value source = moe.inputRowOf(
        arith::AddIOp::create(b, loc, tile.firstSlot, row), real);
    auto [tileRow, dstColumn] = swizzledChunk(row, column, config.blockM);
    copies.chunkRow.push_back(tileRow);
    copies.srcRow.push_back(source);
    // A padding slot copies nothing and zero-fills its chunk.
    copies.srcElements.push_back(
        arith::SelectOp::create(b, loc, real, index(chunkElements), index(0)));
    copies.dstColumn.push_back(dstColumn);
    copies.chunkColumn.push_back(
        arith::MulIOp::create(b, loc, column, index(chunkElements)));
  }
}

void KernelBuilder::planFragmentRows() {
  // The m64nNk16 fragment's rows: thread t of warpgroup w holds rows
  // 64·w + 16·(t/32 mod 4) + (t%32)/4 (+8). With swapped operands the
  // epilogue's fragments cover the block_m slot rows only: below 64 rows,
  // warps past them (of either warpgroup) take the rows of warp t/32 mod
  // (block_m / 16) (and store nothing); 128 rows are two warpgroups' 64,
  // and 256 rows two passes of them (writeSwappedTable, readSwappedTable).
  bool swappedBelowWarpgroup = config.swapAB && config.blockM < kWarpgroupRows;
  Value warp = arith::RemUIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, thisThread.tid, index(32)),
      index(swappedBelowWarpgroup ? config.blockM / 16 : 4));
  Value lane = arith::RemUIOp::create(b, loc, thisThread.tid, index(32));
  thisThread.fragmentRow = arith::AddIOp::create(
      b, loc,
      arith::AddIOp::create(b, loc,
                            arith::MulIOp::create(b, loc, warp, index(16)),
                            arith::DivUIOp::create(b, loc, lane, index(4))),
      config.pingpong || (config.swapAB && config.blockM <= kWarpgroupRows)
          ? index(0)
          : arith::MulIOp::create(b, loc, thisThread.warpgroup,
                                  index(kWarpgroupRows))
                .getResult());
  // The input row of each fragment half whose scales apply: the token with
  // gather, else the slot (row 0 for a padding slot, whose A row is zero).
  if (config.isW8A8())
    for (int64_t half = 0; half < 2; ++half) {
      Value real;
      thisThread.scaleRows.push_back(moe.inputRowOf(
          arith::AddIOp::create(b, loc, tile.firstSlot,
                                arith::AddIOp::create(b, loc,
                                                      thisThread.fragmentRow,
                                                      index(8 * half))),
          real));
    }
}

void KernelBuilder::initRings() {
  int64_t consumerThreads = config.consumerThreads();
  // The producer's first thread issues the TMA and its expect_tx.
  thisThread.leader = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq, thisThread.tid, index(consumerThreads));
  if (config.clusterM > 1)
    return;
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      thisThread.tid, index(0));
  ifThen(first, [&] { initRingBarriers(); });
  gpu::BarrierOp::create(b, loc);
}

void KernelBuilder::initRingBarriers() {
  for (int64_t s = 0; s < config.stages; ++s) {
    // Full: the leader's expect_tx arrive where TMA loads the weights,
    // then one arrive per producer thread once its A rows (weight-only:
    // and codes) have landed (the TMA completes the bytes; in a shared
    // pair, both blocks' multicasts).
    int64_t expectTx = config.isWeightOnly() ? 0 : 1;
    nvgpu::MBarrierInitOp::create(b, loc, rings.full,
                                  index(kWarpgroupThreads + expectTx), index(s),
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
    nvgpu::MBarrierInitOp::create(b, loc, rings.empty,
                                  index(config.stageConsumerThreads()),
                                  index(s), Value());
  }
  // The tile ring: full once the leader published a tile, empty once
  // every thread of the block has read it.
  for (int64_t slot = 0; rings.tileFull && slot < kTileRingDepth; ++slot) {
    nvgpu::MBarrierInitOp::create(b, loc, rings.tileFull, index(1), index(slot),
                                  Value());
    nvgpu::MBarrierInitOp::create(
        b, loc, rings.tileEmpty, index(config.threads()), index(slot), Value());
  }
  if (rings.mathOrder)
    nvgpu::MBarrierInitOp::create(b, loc, rings.mathOrder,
                                  index(kWarpgroupThreads), index(0), Value());
}

void KernelBuilder::waitForRelease(Value position) {
  if (config.clusterM == 1) {
    waitForRound(rings.empty, position, /*previousRound=*/true);
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
  hopper.waitForParity(stageFreeBarrier(stageOf(position)), parity);
}

void KernelBuilder::releaseStage(Value position) {
  Value stage = stageOf(position);
  if (config.clusterM == 1) {
    nvgpu::MBarrierArriveOp::create(
        b, loc, nvgpu::MBarrierTokenType::get(context()), rings.empty, stage);
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
      arith::RemUIOp::create(b, loc, thisThread.tid, index(kWarpgroupThreads)),
      index(0));
  hopper.arriveOnClusterBarrier(hopper.clusterAddress(own, cluster.freedRank),
                                elected);
}

void KernelBuilder::splitRoles(function_ref<void()> producer,
                               function_ref<void()> consumers) {
  Value isProducer =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, thisThread.tid,
                            index(config.consumerThreads()));
  hopper.splitRoles(isProducer, config.producerRegisters,
                    config.consumerRegisters, producer, consumers);
}

void KernelBuilder::buildWarpSpecialized() {
  initRings();
  tile.weightsRow = moe.firstWeightRow();
  splitRoles([&] { produce(); },
             [&] {
               planDecoding();
               planFragmentRows();
               SmallVector<EpilogueRow, 2> rows = loadEpilogueRows();
               findOwnRows();
               if (config.swapAB) {
                 consumeSwapped(rows);
                 return;
               }
               storeEpilogue(config.promotesEachStage()
                                 ? consumePromoted()
                                 : consume(zeroAccumulator()),
                             rows);
             });
  // A shared pair leaves together: nothing may arrive on the barriers of a
  // block that has exited, and the other block's consumers release their
  // last stages on this block's empty barriers. (Its multicasts into this
  // block have landed: this block's consumers waited for every stage.)
  // After the epilogue, so that neither block's epilogue waits for the
  // other's K loop.
  if (config.clusterM > 1)
    ifThen(cluster.sharesWeights, [&] { hopper.syncCluster(); });
}

void KernelBuilder::produce() {
  Value producerThread = arith::SubIOp::create(b, loc, thisThread.tid,
                                               index(config.consumerThreads()));
  planInputChunks(producerThread, kWarpgroupThreads);
  // Weight-only: the producer also copies the stage's stored codes.
  if (config.isWeightOnly()) {
    weightOnly.emplace(b, loc, config, tile, moe, shared.memory);
    weightOnly->planCopies(producerThread, kWarpgroupThreads);
  }
  // Each thread's copies of a step arrive on the stage's full barrier as
  // they land, so the producer waits on nothing but free stages and runs
  // as far ahead as the ring allows, across tiles too. (Waiting for its
  // own oldest group before announcing, two groups in flight, left the
  // consumers waiting for full stages about 60% of the time:
  // docs/gpu-benchmark-quantized.md.) The consumers read nothing that has
  // not arrived, so no copy is pending when the block exits.
  Value trueValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  scf::ForOp::create(
      b, loc, index(0), index(config.kSteps()), index(1), ValueRange{},
      [&](OpBuilder &, Location, Value step, ValueRange) {
        // Round r of a stage waits for the consumers' release of round
        // r − 1.
        Value position = ringStep(step);
        waitForRelease(position);
        Value stage = stageOf(position);
        issueStage(step, trueValue, stage);
        hopper.arriveWhenCopiesLand(rings.full, stage);
        scf::YieldOp::create(b, loc);
      });
}

void KernelBuilder::fenceCopiedRows() {
  // The producer's cp.async wrote the stage's rows through the generic
  // proxy and arrived as they landed, without a fence of its own; the
  // wgmma reads them through the async proxy.
  hopper.fenceAsyncProxy();
}

SmallVector<Value> KernelBuilder::groupScalesUpTo(Value step) {
  if (!config.isWeightOnly())
    return {};
  // Folded where `step` is a constant (the first steps).
  return weightOnly->loadScales(
      b.createOrFold<arith::MinUIOp>(loc, step, index(config.kSteps() - 1)));
}

Value KernelBuilder::stageOf(Value step) {
  return arith::RemUIOp::create(b, loc, step, index(config.stages));
}

void KernelBuilder::waitForRound(Value ring, Value step, bool previousRound) {
  hopper.waitForPhase(ring, step, config.stages, previousRound);
}

SmallVector<Value>
KernelBuilder::consumeFragments(SmallVector<Value> accumulators) {
  // A weight-only step's group scales are loaded a step ahead, before the
  // previous step's wait and decode, so that their global-memory latency
  // is not on the decode's path (1-4% faster than loading them at the top
  // of their own step, H100: docs/gpu-benchmark-quantized.md). The last
  // step loads its own scales again rather than any past K.
  int64_t kSteps = config.kSteps();
  // One wgmma group stays in flight: step t's is issued before step t − 1's
  // is waited for, and only then is t − 1's stage released. The first step
  // is peeled, so that the loop holds no branch around the wgmma. A step's
  // scales are loaded once the previous step's wgmma is issued, after its
  // proxy fence, which would otherwise wait for them too.
  SmallVector<Value> firstScales = groupScalesUpTo(index(0));
  waitForRound(rings.full, ringStep(index(0)), /*previousRound=*/false);
  Value firstStage = rings.stepBase ? stageOf(rings.stepBase) : index(0);
  bool fresh = !accumulators.front();
  if (fresh)
    for (Value &accumulator : accumulators)
      accumulator = LLVM::PoisonOp::create(b, loc, accumulatorType);
  accumulators = multiplyStage(accumulators, firstStage, firstScales,
                               /*pendingGroups=*/1, fresh);
  SmallVector<Value> scales = groupScalesUpTo(index(1));
  // Multiplies `step` with its `scales` onto `sums`; returns the next
  // step's scales.
  auto consumeStep = [&](Value step, SmallVector<Value> &sums,
                         ArrayRef<Value> scales) {
    waitForRound(rings.full, ringStep(step), /*previousRound=*/false);
    Value stage = stageOf(ringStep(step));
    sums = multiplyStage(sums, stage, scales, /*pendingGroups=*/1,
                         /*fresh=*/false);
    SmallVector<Value> next =
        groupScalesUpTo(arith::AddIOp::create(b, loc, step, index(1)));
    Value previous = arith::SubIOp::create(b, loc, step, index(1));
    releaseStage(ringStep(previous));
    return next;
  };
  // A register operand stays in its registers until its wgmma is done, one
  // step later, so consecutive steps decode into distinct registers: an
  // iteration holds four steps (the steps left over follow the loop).
  int64_t stepsPerIteration = config.registerOperand ? 4 : 1;
  int64_t loopEnd = 1 + (kSteps - 1) / stepsPerIteration * stepsPerIteration;
  size_t numSums = accumulators.size();
  SmallVector<Value> carried(accumulators);
  llvm::append_range(carried, scales);
  auto loop = scf::ForOp::create(
      b, loc, index(1), index(loopEnd), index(stepsPerIteration), carried,
      [&](OpBuilder &, Location, Value first, ValueRange iterArgs) {
        SmallVector<Value> sums(iterArgs.take_front(numSums));
        SmallVector<Value> stepScales(iterArgs.drop_front(numSums));
        for (int64_t j = 0; j < stepsPerIteration; ++j)
          stepScales = consumeStep(
              j == 0
                  ? first
                  : arith::AddIOp::create(b, loc, first, index(j)).getResult(),
              sums, stepScales);
        SmallVector<Value> yielded(sums);
        llvm::append_range(yielded, stepScales);
        scf::YieldOp::create(b, loc, yielded);
      });
  SmallVector<Value> sums(loop.getResults().take_front(numSums));
  scales.assign(loop.getResults().begin() + numSums, loop.getResults().end());
  for (int64_t step = loopEnd; step < kSteps; ++step)
    scales = consumeStep(index(step), sums, scales);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  // A persistent block's producer refills the last stage with the next
  // tile's first rows: release it too.
  if (rings.stepBase)
    releaseStage(ringStep(index(kSteps - 1)));
  return sums;
}

void KernelBuilder::planDecoding() {
  // The register operand: each consumer decodes its own rows of the codes
  // the producer copied into the stage (what it decodes depends on the
  // thread only; the tile's scales are loaded at each step).
  if (!config.registerOperand)
    return;
  weightOnly.emplace(b, loc, config, tile, moe, shared.memory);
  weightOnly->planDecoding(thisThread.tid);
}

void KernelBuilder::consumeSwapped(ArrayRef<EpilogueRow> rows) {
  storeSwappedEpilogue(consumeFragments(SmallVector<Value>(
                           config.mmaFragments(), zeroAccumulator())),
                       rows);
}

SmallVector<Value> KernelBuilder::multiplyStage(ArrayRef<Value> accumulators,
                                                Value stage,
                                                ArrayRef<Value> scales,
                                                int64_t pendingGroups,
                                                bool fresh) {
  if (!config.registerOperand) {
    fenceCopiedRows();
    return wgmmaStep(accumulators, stage, pendingGroups, fresh);
  }
  // The register operand's wgmma adds onto its accumulators (scale-d 1):
  // its consumers start from zeros.
  assert(!fresh && "the register operand's sums start from zeros");
  SmallVector<SmallVector<Value, 16>> operandA =
      weightOnly->decodeOperandA(stage, scales);
  // Only the wgmma reads through the async proxy: the decode before the
  // fence overlaps the previous step's wgmma.
  fenceCopiedRows();
  return hopper.wgmmaRegisterStage(
      accumulators, operandA,
      hopper.wgmmaDescriptor(hopper.addressOf(tileA(stage))),
      hopper::WgmmaFragmentLayout{config.mmaColumns()}, accumulatorType,
      pendingGroups);
}

Value KernelBuilder::consumePromoted() {
  // The warpgroup waits for its own wgmmas at every step, so that it can
  // add their partial sums and release the stage at once (the other
  // consumer warpgroup's wgmmas keep the tensor cores busy meanwhile); the
  // producer refills the stage while the sums are promoted. The step's
  // block scales are loaded before the wait for its stage.
  assert(!rings.stepBase && "promoted sums are built for one tile per block");
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(config.kSteps()), index(1),
      ValueRange{zeroAccumulator()},
      [&](OpBuilder &, Location, Value step, ValueRange carried) {
        SmallVector<Value> scales;
        if (config.hasBlockScales())
          scales = moe.blockScales(step, thisThread.scaleRows);
        waitForRound(rings.full, step, /*previousRound=*/false);
        fenceCopiedRows();
        Value partial =
            wgmmaStep(LLVM::PoisonOp::create(b, loc, accumulatorType),
                      stageOf(step), /*pendingGroups=*/0, /*fresh=*/true);
        releaseStage(step);
        scf::YieldOp::create(b, loc, promote(carried[0], partial, scales));
      });
  return loop.getResult(0);
}

void KernelBuilder::consumePingpong() {
  // Tiles alternate between the two consumer warpgroups in the order the
  // producer fills the ring, so one's K loop follows the other's while the
  // other runs its epilogue.
  Value mine = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::RemUIOp::create(
          b, loc, rings.tilesDone,
          index(config.consumerThreads() / kWarpgroupThreads)),
      thisThread.warpgroup);
  ifThen(mine, [&] {
    // A parity wait only tells rounds apart that are at most one apart. The
    // other warpgroup's tile holds the K steps before this tile's, so this
    // K loop starts once that one's is done: the ring's full barriers are
    // then at most one round behind this warpgroup's waits.
    hopper.waitForPhase(rings.mathOrder, rings.tilesDone, /*depth=*/1,
                        /*previousRound=*/true);
    Value firstRow = thisThread.fragmentRow;
    SmallVector<SmallVector<EpilogueRow, 2>> rows;
    for (int64_t fragment = 0; fragment < config.rowFragments(); ++fragment) {
      thisThread.fragmentRow = arith::AddIOp::create(
          b, loc, firstRow, index(fragment * kWarpgroupRows));
      rows.push_back(loadEpilogueRows());
    }
    SmallVector<Value> sums =
        consumeFragments(SmallVector<Value>(config.rowFragments(), Value()));
    // The next tile's K loop runs beside this epilogue.
    nvgpu::MBarrierArriveOp::create(b, loc,
                                    nvgpu::MBarrierTokenType::get(context()),
                                    rings.mathOrder, index(0));
    for (auto [fragment, sum] : llvm::enumerate(sums))
      storeEpilogue(sum, rows[fragment]);
    thisThread.fragmentRow = firstRow;
  });
}

SmallVector<Value>
KernelBuilder::multistageStep(const MultistageRing &ring, Value step,
                              Value stage, Value round, Value nextStage,
                              std::optional<int64_t> knownStep,
                              ValueRange carried, bool drainsWgmmas) {
  // The step's block or group scales are loaded first: their latency
  // hides behind the waits and the wgmma.
  SmallVector<Value> scales;
  if (config.hasBlockScales())
    scales = moe.blockScales(step, thisThread.scaleRows);
  SmallVector<Value> nextScales;
  if (ring.scalesAhead > 0) {
    // Loaded `scalesAhead` steps earlier; the load for that many steps on
    // overlaps this one's waits, decode and wgmma and those of the steps
    // between (the last steps load their own again).
    ValueRange carriedScales = carried.drop_front(ring.numSums);
    int64_t perStep = carriedScales.size() / ring.scalesAhead;
    scales.assign(carriedScales.begin(), carriedScales.begin() + perStep);
    nextScales.assign(carriedScales.begin() + perStep, carriedScales.end());
    llvm::append_range(nextScales,
                       groupScalesUpTo(arith::AddIOp::create(
                           b, loc, step, index(ring.scalesAhead))));
  } else if (config.isWeightOnly()) {
    scales = weightOnly->loadScales(step);
  }
  Value next = arith::AddIOp::create(b, loc, step, index(ring.prefetch));
  if (!config.inputTma) {
    // This thread's cp.async group of `step` is done when at most the
    // younger ones (prefetch − 1 of them; every step commits one) are
    // pending.
    NVVM::CpAsyncWaitGroupOp::create(b, loc, ring.prefetch - 1);
    // cp.async wrote through the generic proxy; wgmma reads through the
    // async one.
    hopper.fenceAsyncProxy();
  }
  // Every thread's rows are in, and every thread's wgmma of step
  // − 1 − wgmmaInFlight is done: that stage, `next`'s, may be refilled.
  gpu::BarrierOp::create(b, loc);
  if (config.clusterM > 1)
    freeStageInPair(step, next);
  Value inRange =
      knownStep
          ? arith::ConstantOp::create(
                b, loc,
                b.getBoolAttr(*knownStep + ring.prefetch < ring.kSteps))
                .getResult()
          : arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, next,
                                  index(ring.kSteps))
                .getResult();
  issueStage(next, inRange, nextStage);
  if (config.registerOperand) {
    // Every thread's codes and slot rows are in (the barrier above): each
    // decodes its elements of the A fragment, and the wgmmas read the slot
    // rows through the async proxy (fenced above).
    SmallVector<SmallVector<Value, 16>> operandA =
        weightOnly->decodeOperandA(stage, scales);
    SmallVector<Value> results = hopper.wgmmaRegisterStage(
        SmallVector<Value>(carried.take_front(ring.numSums)), operandA,
        hopper.wgmmaDescriptor(hopper.addressOf(tileA(stage))),
        hopper::WgmmaFragmentLayout{config.mmaColumns()}, accumulatorType,
        ring.wgmmaInFlight);
    llvm::append_range(results, nextScales);
    return results;
  }
  if (config.isWeightOnly()) {
    // Every thread's codes are in (the barrier above): dequantize them
    // into the B tile, through the generic proxy, then make the tile
    // visible to the wgmma's async proxy.
    weightOnly->dequantize(stage, scales);
    hopper.fenceAsyncProxy();
    gpu::BarrierOp::create(b, loc);
  } else if (!config.copiesWeights) {
    // Copied weights landed with the A rows (the wait and barrier above).
    hopper.waitForRoundPhase(rings.full, stage, round,
                             /*previousRound=*/false);
  }
  if (!config.promotesEachStage())
    return wgmmaStep(SmallVector<Value>(carried.take_front(ring.numSums)),
                     stage, ring.wgmmaInFlight);
  // The K block's partial sum, scaled and added in f32 (as DeepGEMM
  // promotes its fp8 accumulators). Once this step's wgmma is issued and
  // the previous one's is done, the previous partial is promoted. The
  // fresh sum's first wgmma ignores its input (scale-d 0): no zeros to
  // write into registers a wgmma may still own.
  Value partial = wgmmaStep(LLVM::PoisonOp::create(b, loc, accumulatorType),
                            stage, ring.wgmmaInFlight, /*fresh=*/true);
  if (!ring.promotesLate)
    return {promote(carried[0], partial, scales)};
  SmallVector<Value> results = {
      promote(carried[0], carried[1],
              SmallVector<Value>(carried.drop_front(2))),
      partial};
  llvm::append_range(results, scales);
  // The previous partial was promoted under this step's wgmmas; they are
  // done before the back edge.
  if (drainsWgmmas)
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  return results;
}

SmallVector<Value>
KernelBuilder::multistageLoop(ArrayRef<Value> accumulators) {
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
  // Promoting formats keep one accumulator (no swapped operands).
  assert((!config.promotesEachStage() || accumulators.size() == 1) &&
         "promoted sums are built for one accumulator");
  // The register operand's decode waits for its group scales: they are
  // loaded steps ahead, so that no step waits for a global load of its own
  // (at decode nothing else hides it).
  MultistageRing ring{kSteps,
                      prefetch,
                      wgmmaInFlight,
                      promotesLate,
                      static_cast<int64_t>(accumulators.size()),
                      config.registerOperand ? kScalesAhead : 0};
  SmallVector<Value> initial(accumulators);
  for (int64_t step = 0; step < ring.scalesAhead; ++step)
    llvm::append_range(initial, groupScalesUpTo(index(step)));
  if (promotesLate) {
    initial.push_back(accumulators.front());
    int64_t numScales =
        config.hasBlockScales() ? 2 * (config.blockN / 64) : 0;
    initial.append(numScales, arith::ConstantOp::create(
                                  b, loc, b.getF32FloatAttr(0.0f)));
  }
  // Without promotion or dequantization, an iteration is a round of the
  // ring: its steps' stages are constants of the kernel (their addresses
  // and descriptors fold) and their barriers' phase is the round's parity.
  // Promoting fp8 partial sums, an iteration is two steps, so that the
  // partial sums alternate between two register sets (a round's worth of
  // unrolled steps with their scales spilled there). Each partial is
  // promoted while the next step's wgmmas run; the second step waits for
  // its own before the back edge, so that no group is in flight across it:
  // ptxas 13 cannot tell which group a wait(1) after the next step's wgmmas
  // leaves pending, and serialized every wgmma of the kernel (C7514) while
  // the second partial stayed in flight into the next iteration.
  // Weight-only rings are two stages deep: one step per iteration.
  bool constantStages = !config.promotesEachStage() &&
                        (!config.isWeightOnly() || config.registerOperand);
  int64_t stepsPerIteration = constantStages ? stages : promotesLate ? 2 : 1;
  int64_t iterations = kSteps / stepsPerIteration;
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(iterations), index(1), initial,
      [&](OpBuilder &, Location, Value iteration, ValueRange carried) {
        SmallVector<Value> values(carried);
        Value first =
            arith::MulIOp::create(b, loc, iteration, index(stepsPerIteration));
        for (int64_t j = 0; j < stepsPerIteration; ++j) {
          Value step = arith::AddIOp::create(b, loc, first, index(j));
          if (constantStages) {
            values = multistageStep(ring, step, index(j), iteration,
                                    index((j + prefetch) % stages),
                                    std::nullopt, values);
            continue;
          }
          values = multistageStep(
              ring, step, stageOf(step),
              arith::DivUIOp::create(b, loc, step, index(stages)),
              stageOf(arith::AddIOp::create(b, loc, step, index(prefetch))),
              std::nullopt, values,
              /*drainsWgmmas=*/promotesLate && j + 1 == stepsPerIteration);
        }
        scf::YieldOp::create(b, loc, values);
      });
  // The steps left over, each known when the kernel is built.
  SmallVector<Value> values(loop.getResults());
  for (int64_t step = iterations * stepsPerIteration; step < kSteps; ++step)
    values = multistageStep(ring, index(step), index(step % stages),
                            index(step / stages),
                            index((step + prefetch) % stages), step, values);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  if (!config.promotesEachStage())
    return SmallVector<Value>(
        ArrayRef<Value>(values).take_front(ring.numSums));
  Value total = values[0];
  if (promotesLate)
    total = promote(total, values[1],
                    SmallVector<Value>(ArrayRef<Value>(values).drop_front(2)));
  return {total};
}

void KernelBuilder::bindArguments(Block &entry) {
  unsigned argument = 0;
  args.x = entry.getArgument(argument++);
  args.slots = entry.getArgument(argument++);
  args.blocks = entry.getArgument(argument++);
  args.padded = entry.getArgument(argument++);
  if (config.isWeightOnly()) {
    args.packedWeights = entry.getArgument(argument++);
    args.weightScales = entry.getArgument(argument++);
    if (config.zeroPoint)
      args.weightZeros = entry.getArgument(argument++);
  } else if (config.copiesWeights) {
    args.weights = entry.getArgument(argument++);
  } else {
    args.weightsPointer = entry.getArgument(argument++);
  }
  if (config.isW8A8()) {
    args.inputScales = entry.getArgument(argument++);
    args.weightScales = entry.getArgument(argument++);
  }
  if (config.bias)
    args.biases = entry.getArgument(argument++);
  if (config.combine && !config.unpermute)
    args.routingWeights = entry.getArgument(argument++);
  args.out = entry.getArgument(argument++);
  if (config.persistent)
    args.tileCounter = entry.getArgument(argument++);
  if (config.fusedAlignAssignments > 0) {
    args.ids = entry.getArgument(argument++);
    args.alignErrors = entry.getArgument(argument++);
  }
  if (config.zeroedSumsWidth > 0)
    args.zeroedSums = entry.getArgument(argument++);
}

void KernelBuilder::createTypes() {
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  // The tiles hold bf16, or the bytes of the w8a8 codes.
  Type element = config.isW8A8() ? Type(b.getI8Type()) : Type(b.getBF16Type());
  // A stage's tile is `spans` swizzled [rows, 128 bytes] blocks in a
  // column; a TMA box is one span wide.
  int64_t span = config.spanElements();
  shared.tileAType =
      MemRefType::get({config.spans * config.blockM, span}, element,
                      MemRefLayoutAttrInterface(), workgroup);
  shared.tileBType =
      MemRefType::get({config.spans * config.blockN, span}, element,
                      MemRefLayoutAttrInterface(), workgroup);
  shared.boxType = MemRefType::get({config.boxRows(), span}, element,
                                   MemRefLayoutAttrInterface(), workgroup);
  rings.barrierType =
      nvgpu::MBarrierGroupType::get(context(), workgroup, config.stages);
  accumulatorType = LLVM::LLVMStructType::getLiteral(
      context(), SmallVector<Type>(config.mmaColumns() / 2, sumType()));
  tileAccumulatorType = LLVM::LLVMStructType::getLiteral(
      context(), SmallVector<Type>(config.blockN / 2, sumType()));

  // A descriptor travels as a pointer (a tensor-map type in a gpu.func
  // signature breaks the NVVM pipeline): the 128B-swizzled map of `box`.
  auto mapOf = [&](Value pointer, MemRefType box) {
    auto mapType = nvgpu::TensorMapDescriptorType::get(
        context(), box, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
        nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
        nvgpu::TensorMapOOBKind::OOB_ZERO,
        nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
    return UnrealizedConversionCastOp::create(b, loc, mapType, pointer)
        .getResult(0);
  };
  if (args.weightsPointer)
    weightsMap = mapOf(args.weightsPointer, shared.boxType);
  if (!config.inputTma)
    return;
  // input_tma: the first argument is the input's descriptor, whose box is
  // one span of a whole slot block.
  shared.inputBoxType = MemRefType::get({config.blockM, span}, element,
                                        MemRefLayoutAttrInterface(), workgroup);
  inputMap = mapOf(args.x, shared.inputBoxType);
}

void KernelBuilder::publishTile(Value position,
                                function_ref<Value()> tileOf) {
  hopper.waitForPhase(rings.tileEmpty, position, kTileRingDepth,
                      /*previousRound=*/true);
  Value slot = arith::RemUIOp::create(b, loc, position, index(kTileRingDepth));
  ifThen(thisThread.leader, [&] {
    memref::StoreOp::create(
        b, loc, arith::IndexCastOp::create(b, loc, b.getI32Type(), tileOf()),
        rings.tileSlots, ValueRange{slot});
    // The arrive releases the store to the threads that wait on the phase.
    nvgpu::MBarrierArriveOp::create(
        b, loc, nvgpu::MBarrierTokenType::get(context()), rings.tileFull, slot);
  });
}

Value KernelBuilder::receiveTile(Value position) {
  hopper.waitForPhase(rings.tileFull, position, kTileRingDepth,
                      /*previousRound=*/false);
  Value slot = arith::RemUIOp::create(b, loc, position, index(kTileRingDepth));
  Value tile =
      memref::LoadOp::create(b, loc, rings.tileSlots, ValueRange{slot});
  nvgpu::MBarrierArriveOp::create(
      b, loc, nvgpu::MBarrierTokenType::get(context()), rings.tileEmpty, slot);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), tile);
}

Value KernelBuilder::forEachTile(bool publishes, function_ref<void()> body) {
  // The tiles of the padded schedule (a multiple of block_m slots), in the
  // raster order.
  Value slotBlocks =
      arith::DivUIOp::create(b, loc, tile.paddedCount, index(config.blockM));
  Value columnTiles = index(config.columnTiles());
  Value tiles = arith::MulIOp::create(b, loc, slotBlocks, columnTiles);
  if (publishes)
    publishTile(index(0), [&] {
      return gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
    });
  Type indexType = b.getIndexType();
  // Carried: the count of tiles received, and of those done (local); the
  // body also gets the tile.
  auto walk = scf::WhileOp::create(
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
      [&](OpBuilder &, Location, ValueRange carried) {
        Value received = carried[0], done = carried[1], tileIndex = carried[2];
        Value next = arith::AddIOp::create(b, loc, received, index(1));
        if (publishes)
          publishTile(next, [&] {
            // Tiles past the grid's first ones, in the order asked for.
            Value taken = memref::AtomicRMWOp::create(
                b, loc, arith::AtomicRMWKind::addi,
                arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1)),
                args.tileCounter, ValueRange{index(0)});
            return arith::AddIOp::create(
                b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x),
                arith::IndexCastOp::create(b, loc, indexType, taken));
          });
        Value block, columnTile;
        if (config.groupM > 0) {
          std::tie(block, columnTile) =
              moe.rasterizeLinear(tileIndex, slotBlocks, columnTiles);
        } else {
          block = arith::RemUIOp::create(b, loc, tileIndex, slotBlocks);
          columnTile = arith::DivUIOp::create(b, loc, tileIndex, slotBlocks);
        }
        tile.firstSlot =
            arith::MulIOp::create(b, loc, block, index(config.blockM));
        tile.tileColumn = arith::MulIOp::create(b, loc, columnTile,
                                                index(config.outputTile()));
        tile.kBase = index(0);
        // Tiles of another device's experts are skipped by both roles
        // alike, and take no ring steps.
        tile.expert = arith::IndexCastOp::create(
            b, loc, indexType,
            memref::LoadOp::create(b, loc, args.blocks, ValueRange{block}));
        Value local = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                            tile.expert, index(0));
        auto localIf = scf::IfOp::create(b, loc, TypeRange{indexType}, local,
                                         /*withElse=*/true);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(localIf.thenBlock());
          rings.tilesDone = done;
          rings.stepBase =
              arith::MulIOp::create(b, loc, done, index(config.kSteps()));
          tile.weightsRow = moe.firstWeightRow();
          body();
          scf::YieldOp::create(
              b, loc,
              ValueRange{arith::AddIOp::create(b, loc, done, index(1))});
          b.setInsertionPointToStart(localIf.elseBlock());
          scf::YieldOp::create(b, loc, done);
        }
        scf::YieldOp::create(b, loc, ValueRange{next, localIf.getResult(0)});
      });
  return walk.getResult(1);
}

void KernelBuilder::buildPersistent() {
  initRings();
  splitRoles([&] { forEachTile(/*publishes=*/true, [&] { produce(); }); },
             [&] {
               planDecoding();
               planFragmentRows();
               Value tilesDone = forEachTile(/*publishes=*/false, [&] {
                 if (config.pingpong) {
                   consumePingpong();
                   return;
                 }
                 SmallVector<EpilogueRow, 2> rows = loadEpilogueRows();
                 findOwnRows();
                 if (config.swapAB) {
                   consumeSwapped(rows);
                   return;
                 }
                 if (config.stagesInTurn)
                   storeEpilogueInTurn(consume(), rows);
                 else
                   storeEpilogue(consume(), rows);
               });
               if (config.stagesInTurn)
                 finishTurns(tilesDone);
             });
}

void KernelBuilder::build(gpu::GPUFuncOp func, LLVM::GlobalOp sharedMemory) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bindArguments(entry);
  createTypes();
  createSharedState(sharedMemory);
  placeThread();
  if (config.persistent) {
    createTileRing();
    std::tie(tile.paddedCount, tile.assignments) = moe.loadScheduleSize();
    buildPersistent();
  } else {
    buildOneTile();
  }
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

void KernelBuilder::createSharedState(LLVM::GlobalOp sharedMemory) {
  shared.memory.bytes =
      hopper.dynamicSharedMemory(sharedMemory, config.sharedBytes());
  if (config.clusterM > 1 || config.reducesSplitsInCluster())
    shared.pointer = LLVM::AddressOfOp::create(b, loc, sharedMemory);
  Value baseAddress = hopper.addressOf(shared.memory.bytes);
  Value misalignment = arith::AndIOp::create(b, loc, baseAddress,
                                             i64(kSwizzleAlignment - 1));
  shared.memory.shift = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      arith::AndIOp::create(
          b, loc,
          arith::SubIOp::create(b, loc, i64(kSwizzleAlignment), misalignment),
          i64(kSwizzleAlignment - 1)));
  // Weights copied by cp.async land with the A rows: no TMA barriers.
  if (!config.copiesWeights)
    rings.full = nvgpu::MBarrierCreateOp::create(b, loc, rings.barrierType);
  // A cluster's empty ring is its stage-free barriers, which the other
  // block reaches through mapa.
  if (config.warpSpecialized && config.clusterM == 1)
    rings.empty = nvgpu::MBarrierCreateOp::create(b, loc, rings.barrierType);
}

void KernelBuilder::placeThread() {
  thisThread.tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  thisThread.warpgroup =
      arith::DivUIOp::create(b, loc, thisThread.tid, index(kWarpgroupThreads));
  // A consumer warpgroup's rows of the wgmma's A operand: its own 64 slot
  // rows, with swapped operands its own weight rows, or with pingpong all
  // of them (in descriptor units of 16 bytes).
  int64_t ownRows =
      config.swapAB ? config.swappedRowsPerWarpgroup() : kWarpgroupRows;
  thisThread.warpgroupOffset =
      config.pingpong
          ? i64(0)
          : arith::IndexCastOp::create(
                b, loc, b.getI64Type(),
                arith::MulIOp::create(b, loc, thisThread.warpgroup,
                                      index(ownRows * kRowBytes / 16)))
                .getResult();
}

void KernelBuilder::createTileRing() {
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  auto tileRingType =
      nvgpu::MBarrierGroupType::get(context(), workgroup, kTileRingDepth);
  rings.tileFull = nvgpu::MBarrierCreateOp::create(b, loc, tileRingType);
  rings.tileEmpty = nvgpu::MBarrierCreateOp::create(b, loc, tileRingType);
  if (config.pingpong)
    rings.mathOrder = nvgpu::MBarrierCreateOp::create(
        b, loc, nvgpu::MBarrierGroupType::get(context(), workgroup, 1));
  rings.tileSlots = memref::ViewOp::create(
      b, loc,
      MemRefType::get({kTileRingDepth}, b.getI32Type(),
                      MemRefLayoutAttrInterface(), workgroup),
      shared.memory.bytes,
      arith::AddIOp::create(b, loc, shared.memory.shift,
                            index(config.ringBytes())),
      ValueRange{});
}

void KernelBuilder::buildOneTile() {
  auto [block, columnTile] = blockAndColumnTile();
  Value split = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  tile.firstSlot = arith::MulIOp::create(b, loc, block, index(config.blockM));
  tile.tileColumn =
      arith::MulIOp::create(b, loc, columnTile, index(config.outputTile()));
  tile.kBase = arith::MulIOp::create(b, loc, split,
                                     index(config.kSteps() * config.blockK()));
  if (config.zeroedSumsWidth > 0)
    zeroSums();
  Value ownExpert;
  if (config.fusedAlignAssignments > 0) {
    ownExpert = alignOwnSlotBlock(block, columnTile, split);
  } else {
    std::tie(tile.paddedCount, tile.assignments) = moe.loadScheduleSize();
  }
  if (config.clusterM > 1)
    decideSharing(block);

  // Blocks past the padded count (the grid is sized for the upper bound)
  // and blocks of another device's experts exit at once (in a cluster, after
  // the pair's first synchronization, and then only unshared).
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        tile.firstSlot, tile.paddedCount);
  auto rangeIf = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(rangeIf.thenBlock());
  tile.expert = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      ownExpert ? ownExpert
                : memref::LoadOp::create(b, loc, args.blocks, ValueRange{block})
                      .getResult());
  Value local = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                      tile.expert, index(0));
  auto localIf = scf::IfOp::create(b, loc, local, /*withElse=*/false);
  b.setInsertionPointToStart(localIf.thenBlock());
  if (config.warpSpecialized)
    buildWarpSpecialized();
  else
    buildMultistage();
}

Value KernelBuilder::alignOwnSlotBlock(Value block, Value columnTile,
                                       Value split) {
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  int64_t offset = config.fusedAlignOffset();
  auto sharedArray = [&](int64_t words) {
    Value view = memref::ViewOp::create(
        b, loc,
        MemRefType::get({words}, b.getI32Type(), MemRefLayoutAttrInterface(),
                        workgroup),
        shared.memory.bytes,
        arith::AddIOp::create(b, loc, shared.memory.shift, index(offset)),
        ValueRange{});
    offset += 4 * words;
    return view;
  };
  FusedAlignArrays arrays;
  arrays.counts = sharedArray(config.numExperts);
  arrays.slots = sharedArray(config.blockM);
  arrays.warpSums = sharedArray(moe_gpu::hopper::kFusedAlignWarpSums);
  arrays.facts = sharedArray(moe_gpu::hopper::kFusedAlignFacts);
  tile.ownSlots = arrays.slots;
  tile.assignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, args.ids, 0), index(config.topK));
  Value fits =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, tile.assignments,
                            index(config.fusedAlignAssignments));
  Type i32 = b.getI32Type();
  auto fitsIf = scf::IfOp::create(b, loc, TypeRange{i32, b.getIndexType()},
                                  fits, /*withElse=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(fitsIf.thenBlock());
    OwnSlotBlock own = FusedAlignEmitter(b, loc, config.numExperts, config.topK,
                                         config.blockM, config.threads())
                           .build(args.ids, block, thisThread.tid, arrays);
    publishSchedule(own, block, columnTile, split);
    scf::YieldOp::create(b, loc, ValueRange{own.expert, own.paddedCount});

    // More assignments: the align kernel ran; the block copies its slots.
    b.setInsertionPointToStart(fitsIf.elseBlock());
    Value padded = arith::IndexCastOp::create(
        b, loc, b.getIndexType(),
        memref::LoadOp::create(b, loc, args.padded, ValueRange{index(0)}));
    Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                          tile.firstSlot, padded);
    Value scheduledBlock =
        arith::SelectOp::create(b, loc, inRange, block, index(0));
    Value expert = arith::SelectOp::create(
        b, loc, inRange,
        memref::LoadOp::create(b, loc, args.blocks, ValueRange{scheduledBlock}),
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(-1)));
    ifThen(inRange, [&] {
      scf::ForOp::create(
          b, loc, thisThread.tid, index(config.blockM), index(config.threads()),
          ValueRange{}, [&](OpBuilder &, Location, Value row, ValueRange) {
            Value slot = arith::AddIOp::create(b, loc, tile.firstSlot, row);
            memref::StoreOp::create(
                b, loc, memref::LoadOp::create(b, loc, args.slots, slot),
                arrays.slots, row);
            scf::YieldOp::create(b, loc);
          });
    });
    scf::YieldOp::create(b, loc, ValueRange{expert, padded});
  }
  // The copied slots, before any thread reads them.
  gpu::BarrierOp::create(b, loc);
  tile.paddedCount = fitsIf.getResult(1);
  return fitsIf.getResult(0);
}

void KernelBuilder::zeroSums() {
  Value bx = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value by = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value bz = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value gx = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
  Value gy = gpu::GridDimOp::create(b, loc, gpu::Dimension::y);
  Value gz = gpu::GridDimOp::create(b, loc, gpu::Dimension::z);
  Value linear = arith::AddIOp::create(
      b, loc, bx,
      arith::MulIOp::create(
          b, loc, gx,
          arith::AddIOp::create(b, loc, by,
                                arith::MulIOp::create(b, loc, gy, bz))));
  Value blocks =
      arith::MulIOp::create(b, loc, gx, arith::MulIOp::create(b, loc, gy, gz));
  int64_t threads = config.threads();
  int64_t width = config.zeroedSumsWidth;
  int64_t vectorsPerRow = width / kZeroVectorWidth;
  Value vectors = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, args.zeroedSums, 0),
      index(vectorsPerRow));
  auto vectorType = VectorType::get({kZeroVectorWidth}, b.getF32Type());
  Value zeros = LLVM::ConstantOp::create(
      b, loc, vectorType,
      DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0.0f)));
  Value first = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, linear, index(threads)),
      thisThread.tid);
  Value step = arith::MulIOp::create(b, loc, blocks, index(threads));
  scf::ForOp::create(
      b, loc, first, vectors, step, ValueRange{},
      [&](OpBuilder &, Location, Value vector, ValueRange) {
        Value row =
            arith::DivUIOp::create(b, loc, vector, index(vectorsPerRow));
        Value column = arith::MulIOp::create(
            b, loc,
            arith::RemUIOp::create(b, loc, vector, index(vectorsPerRow)),
            index(kZeroVectorWidth));
        LLVM::StoreOp::create(
            b, loc, zeros,
            globalElementPointer(b, loc, args.zeroedSums, row, column, width),
            /*alignment=*/16);
        scf::YieldOp::create(b, loc);
      });
}

void KernelBuilder::publishSchedule(const OwnSlotBlock &own, Value block,
                                    Value columnTile, Value split) {
  Value zero = index(0);
  Value publishes = arith::AndIOp::create(
      b, loc,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, columnTile, zero),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, split, zero));
  Value scheduled = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::sge, own.expert,
      arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)));
  Value leader = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                       thisThread.tid, zero);
  ifThen(arith::AndIOp::create(b, loc, publishes, scheduled), [&] {
    scf::ForOp::create(
        b, loc, thisThread.tid, index(config.blockM), index(config.threads()),
        ValueRange{}, [&](OpBuilder &, Location, Value row, ValueRange) {
          memref::StoreOp::create(
              b, loc, memref::LoadOp::create(b, loc, tile.ownSlots, row),
              args.slots,
              ValueRange{arith::AddIOp::create(b, loc, tile.firstSlot, row)});
          scf::YieldOp::create(b, loc);
        });
    ifThen(leader, [&] {
      memref::StoreOp::create(b, loc, own.expert, args.blocks, block);
    });
  });
  Value firstBlock =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, block, zero);
  ifThen(
      arith::AndIOp::create(
          b, loc, arith::AndIOp::create(b, loc, publishes, firstBlock), leader),
      [&] {
        memref::StoreOp::create(
            b, loc,
            arith::IndexCastOp::create(b, loc, b.getI32Type(), own.paddedCount),
            args.padded, zero);
        memref::StoreOp::create(b, loc, own.invalidIds, args.alignErrors, zero);
      });
}

void KernelBuilder::buildMultistage() {
  thisThread.leader = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            thisThread.tid, index(0));
  // Weights copied by cp.async need no TMA barriers.
  if (config.clusterM == 1 && !config.copiesWeights) {
    ifThen(thisThread.leader, [&] {
      for (int64_t s = 0; s < config.stages; ++s)
        nvgpu::MBarrierInitOp::create(b, loc, rings.full, index(1), index(s),
                                      Value());
    });
    gpu::BarrierOp::create(b, loc);
  }
  tile.weightsRow = moe.firstWeightRow();
  if (!config.inputTma)
    planInputChunks(thisThread.tid, config.threads());
  if (config.copiesWeights)
    planWeightChunks(thisThread.tid, config.threads());

  if (config.isWeightOnly()) {
    weightOnly.emplace(b, loc, config, tile, moe, shared.memory);
    weightOnly->plan(thisThread.tid);
  }

  planFragmentRows();
  SmallVector<EpilogueRow, 2> rows = loadEpilogueRows();
  findOwnRows();
  SmallVector<Value> sums = multistageLoop(
      SmallVector<Value>(config.mmaFragments(), zeroAccumulator()));
  // A shared pair leaves together: every multicast into this block was
  // waited for, but this block's last multicast may still be landing in the
  // other block.
  if (config.clusterM > 1)
    ifThen(cluster.sharesWeights, [&] { hopper.syncCluster(); });
  if (!config.swapAB) {
    if (stagesMultistageEpilogue())
      storeStagedEpilogue(sums.front(), rows);
    else
      storeEpilogue(sums.front(), rows);
    return;
  }
  storeSwappedEpilogue(sums, rows);
}

bool KernelBuilder::stagesMultistageEpilogue() const {
  // Only K loops short enough for the epilogue to weigh take it.
  return moe.stagesEpilogue() &&
         config.kSteps() <= moe_gpu::hopper::kMaxStagedEpilogueSteps &&
         config.clusterM == 1 && config.mmaFragments() == 1 &&
         config.epilogueTableBytes(config.blockM) <= config.ringBytes() &&
         (config.blockM * config.outputTile() / 8) % config.threads() == 0;
}

void KernelBuilder::storeStagedEpilogue(Value sums,
                                        ArrayRef<EpilogueRow> rows) {
  // The table lies over the stages, as the swapped epilogue's does: every
  // wgmma and every copy is done once all threads are past the barrier.
  // (With input_tma every stage the loop loaded was waited for, and the
  // steps past the end loaded nothing.)
  if (!config.inputTma)
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  syncConsumers();
  EpilogueTable table = viewEpilogueTable(shared.memory.shift, config.blockM);
  moe.stageEpilogue(sums, rows, thisThread.tid, thisThread.scaleRows,
                    thisThread.fragmentRow, table);
  syncConsumers();
  moe.copyEpilogueTable(table, config.blockM, /*firstRow=*/Value(),
                        thisThread.tid, config.threads());
}

EpilogueTable KernelBuilder::viewEpilogueTable(Value start, int64_t rows) {
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  EpilogueTable table;
  table.pairs = memref::ViewOp::create(
      b, loc,
      MemRefType::get({rows, config.epilogueTablePitch() / 4}, b.getI32Type(),
                      MemRefLayoutAttrInterface(), workgroup),
      shared.memory.bytes, start, ValueRange{});
  // Only a combine's rows go elsewhere than their slots.
  if (config.combine)
    table.destinations = memref::ViewOp::create(
        b, loc,
        MemRefType::get({rows}, b.getI32Type(), MemRefLayoutAttrInterface(),
                        workgroup),
        shared.memory.bytes,
        arith::AddIOp::create(b, loc, start,
                              index(rows * config.epilogueTablePitch())),
        ValueRange{});
  return table;
}

void KernelBuilder::storeEpilogueInTurn(Value sums,
                                        ArrayRef<EpilogueRow> rows) {
  // Warpgroup 0 writes the table once warpgroup 1 has copied the previous
  // tile's rows out of it (from its second tile on), warpgroup 1 once
  // warpgroup 0 has copied this tile's; each copies its own rows once its
  // 128 threads wrote them. Warpgroup 0 then runs ahead into the next
  // tile's stages while warpgroup 1 stores.
  Value second = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                       thisThread.warpgroup, index(1));
  auto waitIf = scf::IfOp::create(b, loc, second, /*withElse=*/true);
  b.setInsertionPointToStart(waitIf.thenBlock());
  syncTurn(kFirstTurnDoneBarrier);
  b.setInsertionPointToStart(waitIf.elseBlock());
  ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt,
                               rings.tilesDone, index(0)),
         [&] { syncTurn(kSecondTurnDoneBarrier); });
  b.setInsertionPointAfter(waitIf);

  EpilogueTable table =
      viewEpilogueTable(arith::AddIOp::create(b, loc, shared.memory.shift,
                                              index(config.turnTableOffset())),
                        kWarpgroupRows);
  Value ownFirstRow = arith::MulIOp::create(b, loc, thisThread.warpgroup,
                                            index(kWarpgroupRows));
  moe.stageEpilogue(
      sums, rows, thisThread.tid, thisThread.scaleRows,
      arith::SubIOp::create(b, loc, thisThread.fragmentRow, ownFirstRow),
      table);
  // The warpgroup's own barrier: 2 + its index, its 128 threads. bar.sync
  // and bar.arrive are .aligned: each warp reconverges after the
  // epilogue's and the copy's per-lane branches first.
  NVVM::SyncWarpOp::create(
      b, loc, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(-1)));
  NVVM::BarrierOp::create(
      b, loc, Type(),
      arith::IndexCastOp::create(b, loc, b.getI32Type(),
                                 arith::AddIOp::create(b, loc,
                                                       thisThread.warpgroup,
                                                       index(kOwnTurnBarrier))),
      i32(kWarpgroupThreads), NVVM::BarrierReductionAttr(), Value());
  moe.copyEpilogueTable(
      table, kWarpgroupRows, ownFirstRow,
      arith::RemUIOp::create(b, loc, thisThread.tid, index(kWarpgroupThreads)),
      kWarpgroupThreads);
  // The copies read the table before the arrival (bar.arrive orders this
  // thread's earlier accesses before the barrier completes).
  Value doneBarrier = arith::SelectOp::create(
      b, loc, second, i32(kSecondTurnDoneBarrier), i32(kFirstTurnDoneBarrier));
  NVVM::SyncWarpOp::create(
      b, loc, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(-1)));
  NVVM::BarrierArriveOp::create(b, loc, doneBarrier,
                                i32(config.consumerThreads()));
}

void KernelBuilder::syncTurn(int64_t barrier) {
  NVVM::BarrierOp::create(b, loc, Type(), i32(barrier),
                          i32(config.consumerThreads()),
                          NVVM::BarrierReductionAttr(), Value());
}

void KernelBuilder::finishTurns(Value tilesDone) {
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      thisThread.warpgroup, index(0));
  Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt,
                                    tilesDone, index(0));
  ifThen(arith::AndIOp::create(b, loc, first, any),
         [&] { syncTurn(kSecondTurnDoneBarrier); });
}

void KernelBuilder::storeSwappedEpilogue(ArrayRef<Value> sums,
                                         ArrayRef<EpilogueRow> rows) {
  // The warps whose 16 fragment rows lie in the block store them; the
  // others read duplicates and store nothing.
  auto storePass = [&](Value total, int64_t pass) {
    Value warp = arith::DivUIOp::create(b, loc, thisThread.tid, index(32));
    ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, warp,
                                 index(config.swappedPassRows() / 16)),
           [&] { storeEpilogue(total, rows.slice(2 * pass, 2)); });
  };
  for (int64_t pass = 0; pass < config.swappedPasses(); ++pass) {
    Value table = writeSwappedTable(sums, pass);
    if (!config.reducesSplitsInCluster()) {
      storePass(readSwappedTable(table), pass);
      continue;
    }
    // Every split's table is written before split 0 reads them, and stays
    // until it has (a block's shared memory ends with it; the next pass
    // rewrites it).
    hopper.syncCluster();
    Value firstSplit = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        gpu::BlockIdOp::create(b, loc, gpu::Dimension::z), index(0));
    ifThen(firstSplit, [&] { storePass(readSwappedTable(table), pass); });
    hopper.syncCluster();
  }
}

void KernelBuilder::syncConsumers() {
  if (!config.warpSpecialized) {
    gpu::BarrierOp::create(b, loc);
    return;
  }
  // Barrier 0 is the block's; the producer warpgroup is not at this one.
  NVVM::BarrierOp::create(b, loc, Type(), i32(kConsumerBarrier),
                          i32(config.consumerThreads()),
                          NVVM::BarrierReductionAttr(), Value());
}

Value KernelBuilder::writeSwappedTable(ArrayRef<Value> sums, int64_t pass) {
  // The stages' memory is reused: every wgmma is done (the loop's last
  // wait) and every cp.async group too (those past the last K step still
  // zero-fill their chunks; warp-specialized, the consumers waited for
  // every stage the producer filled). A later pass reuses the table once
  // every consumer read the previous one's.
  if (!config.warpSpecialized)
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  syncConsumers();
  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  // Four floats of padding per row: the slot rows 2·(t%4) (+1) that a
  // store's lanes hold then fall in distinct banks.
  int64_t pitch = config.blockN + 4;
  int64_t passRows = config.swappedPassRows();
  auto tableType = MemRefType::get({passRows, pitch}, sumType(),
                                   MemRefLayoutAttrInterface(), workgroup);
  Value table = memref::ViewOp::create(
      b, loc, tableType, shared.memory.bytes,
      arith::AddIOp::create(b, loc, shared.memory.shift,
                            index(config.swappedTableOffset())),
      ValueRange{});
  // Thread t of warpgroup w's place in the swapped m64nN fragments: weight
  // rows w · (block_n / warpgroups) + 16·(t/32 mod 4) + (t%32)/4 (+8) of
  // each 64, columns (slot rows) 8g + 2·(t%4) (+1). Unlike
  // thisThread.fragmentRow, every warp's own rows: all warps hold weight
  // rows.
  Value lane = arith::RemUIOp::create(b, loc, thisThread.tid, index(32));
  Value warpInGroup = arith::RemUIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, thisThread.tid, index(32)),
      index(4));
  Value groupRows = arith::MulIOp::create(
      b, loc, thisThread.warpgroup, index(config.swappedRowsPerWarpgroup()));
  Value warpRows = arith::AddIOp::create(
      b, loc, groupRows,
      arith::MulIOp::create(b, loc, warpInGroup, index(16)));
  Value fragmentRow = arith::AddIOp::create(
      b, loc, warpRows, arith::DivUIOp::create(b, loc, lane, index(4)));
  Value laneColumn =
      fragmentTarget.laneColumnOffset(b, loc, thisThread.tid);
  auto at = [&](Value base, int64_t offset) {
    return arith::AddIOp::create(b, loc, base, index(offset)).getResult();
  };
  hopper::WgmmaFragmentLayout swapped{config.blockM};
  int64_t passGroups = passRows / 8;
  for (auto [fragment, sum] : llvm::enumerate(sums))
    for (int64_t group = 0; group < passGroups; ++group)
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t pair = 0; pair < 2; ++pair) {
          Value value = LLVM::ExtractValueOp::create(
              b, loc, sum,
              swapped.registerOf(pass * passGroups + group, half, pair));
          memref::StoreOp::create(
              b, loc, value, table,
              ValueRange{at(laneColumn, 8 * group + pair),
                         at(fragmentRow, kWarpgroupRows * fragment +
                                             8 * half)});
        }
  syncConsumers();
  return table;
}

Value KernelBuilder::readSwappedTable(Value table) {
  auto at = [&](Value base, int64_t offset) {
    return arith::AddIOp::create(b, loc, base, index(offset)).getResult();
  };
  Value laneColumn = fragmentTarget.laneColumnOffset(b, loc, thisThread.tid);
  // The other splits' tables, at the same offset of their blocks' shared
  // memory, as cluster addresses.
  SmallVector<Value> otherTables;
  if (config.reducesSplitsInCluster()) {
    Value tableOffset = arith::AddIOp::create(
        b, loc, shared.memory.shift, index(config.swappedTableOffset()));
    Value ownTable = LLVM::GEPOp::create(
        b, loc, shared.pointer.getType(), b.getI8Type(), shared.pointer,
        ValueRange{
            arith::IndexCastOp::create(b, loc, b.getI64Type(), tableOffset)});
    for (int64_t split = 1; split < config.splitK; ++split)
      otherTables.push_back(hopper.clusterAddress(ownTable, i32(split)));
  }
  int64_t pitch = cast<MemRefType>(table.getType()).getDimSize(1);
  hopper::WgmmaFragmentLayout unswapped{config.blockN};
  Value total = LLVM::PoisonOp::create(b, loc, tileAccumulatorType);
  for (int64_t group = 0; group < config.blockN / 8; ++group)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t pair = 0; pair < 2; ++pair) {
        Value row = at(thisThread.fragmentRow, 8 * half);
        Value column = at(laneColumn, 8 * group + pair);
        Value value =
            memref::LoadOp::create(b, loc, table, ValueRange{row, column});
        Value element;
        if (!otherTables.empty())
          element = arith::IndexCastOp::create(
              b, loc, b.getI64Type(),
              arith::AddIOp::create(
                  b, loc, arith::MulIOp::create(b, loc, row, index(pitch)),
                  column));
        for (Value otherTable : otherTables) {
          Value address = LLVM::GEPOp::create(b, loc, otherTable.getType(),
                                              sumType(), otherTable, element);
          Value other = LLVM::LoadOp::create(b, loc, sumType(), address);
          value = sumType().isInteger()
                      ? arith::AddIOp::create(b, loc, value, other).getResult()
                      : arith::AddFOp::create(b, loc, value, other).getResult();
        }
        total = LLVM::InsertValueOp::create(
            b, loc, total, value, unswapped.registerOf(group, half, pair));
      }
  return total;
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

/// The shapes and format of `op` as a ExpertMatmulPlan, or a remark where the
/// emitter does not cover them.
static FailureOr<ExpertMatmulPlan> describeMatmul(OpBuilder &b,
                                                  ExpertMatmulOp op) {
  auto weightsType = op.getWeights().getType();
  auto bf16 = b.getBF16Type();
  ExpertMatmulPlan config;
  config.numExperts = weightsType.getDimSize(0);
  config.outFeatures = weightsType.getDimSize(1);
  config.inFeatures = weightsType.getDimSize(2);
  config.topK = op.getK();
  config.gather = op.getGather();
  // Unpermuted rows are a combine into f32 rows of assignments, unweighted.
  config.unpermute = op.getUnpermute();
  config.combine = op.isCombine() || config.unpermute;
  config.activation = op.getActivation();
  config.gateUpInterleaved = op.getGateUpInterleaved();
  config.bias = static_cast<bool>(op.getBias());
  config.blockM = op.getBlockM().value_or(0);
  if (!op.isAligned())
    return op.emitRemark("no GPU kernel yet: only the aligned schedule is "
                         "covered");
  if (config.combine && config.activation)
    return op.emitRemark("no GPU kernel yet for an activation before the "
                         "combine or the unpermute");
  if (config.unpermute &&
      !cast<RankedTensorType>(op.getResult().getType())
           .getElementType()
           .isF32())
    return op.emitRemark("no GPU kernel yet: unpermuted rows must be f32");
  QuantizationAttr quantization = op.getQuantization();
  if (quantization.getFormat() != QuantFormat::None) {
    config.format = quantization.getFormat();
    if (quantization.isW8A8()) {
      config.scales = *quantization.getScales();
    } else {
      config.group = quantization.getGroupSize();
      config.zeroPoint = quantization.getZeroPoint();
      config.packedCodes = quantization.getPacked().has_value();
      // The stored K is halved for two codes per byte.
      config.inFeatures = op.getInput().getType().getDimSize(1);
    }
  }
  bool operandsCovered =
      config.isW8A8() ||
      (op.getInput().getType().getElementType() == bf16 &&
       (config.isWeightOnly() || weightsType.getElementType() == bf16));
  if (!operandsCovered || config.inFeatures % config.blockK() != 0 ||
      config.width() % 8 != 0)
    return op.emitRemark("no GPU kernel yet: needs bf16 or w8a8 operands, "
                         "K a multiple of 128 bytes and an output width that "
                         "is a multiple of 8");
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

/// The slot block of `kernelConfig` (the aligned schedule's, as the
/// dialect verifies) into `config`: 64 or 128 rows, or with swapped
/// operands (bf16, weight-only, or w8a8 without promotion) 16 or 32 over
/// one or two warpgroups, or on the register operand 64, 128 or (with a
/// producer warpgroup) 256; and the weight load. A remark otherwise.
static LogicalResult applySlotBlock(ExpertMatmulOp op,
                                    moe_gpu::KernelConfigAttr kernelConfig,
                                    ExpertMatmulPlan &config) {
  config.swapAB = kernelConfig.getSwapAb();
  if (config.swapAB)
    config.swappedWarpgroups = kernelConfig.getConsumerWarpgroups();
  config.copiesWeights =
      kernelConfig.getWeightLoad() == moe_gpu::WeightLoad::CpAsync;
  // The register operand is built for 4-bit codes (int4, mxfp4) in groups
  // of whole 32-column halves of a stage (the attribute's verifier has the
  // rest).
  config.registerOperand =
      kernelConfig.getWeightLoad() == moe_gpu::WeightLoad::Registers;
  if (config.registerOperand && (!config.isFourBit() || config.group % 32 != 0))
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": weight_load = registers is built for int4_weight and mxfp4 "
              "codes in groups of a multiple of 32";
  // Packed codes: every thread copies whole chunks of 64-row groups, each
  // 16-row slab of the tile from one 64-row group of the weights (gate and
  // up rows in halves, not interleaved).
  int64_t packedChunks = config.blockN / kWarpgroupRows * 128;
  // The threads that copy codes: every thread in the multistage schedule,
  // else the producer warpgroup.
  int64_t copyThreads =
      config.warpSpecialized ? kWarpgroupThreads : config.threads();
  // (A register operand's consumer thread decodes one chunk per 64-row
  // fragment, which multistage it also copies: decodeOperandA reads chunk i
  // as fragment i.)
  assert((!config.registerOperand ||
          packedChunks / config.consumerThreads() == config.mmaFragments()) &&
         "one packed chunk per fragment and consumer thread");
  if (config.packedCodes &&
      (config.gateUpInterleaved || packedChunks % copyThreads != 0))
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": codes packed as wgmma_a_4bit are read with gate and up "
              "rows in halves, by threads that share each 64-row group's "
              "128 chunks evenly";
  // Swapped w8a8 is built where nothing is promoted (int8, fp8 with
  // fast_accumulation): the sums are transposed once, after the K loop.
  // The register operand also takes prefill's slot blocks of 64 and 128
  // rows, and with a producer warpgroup of 256 (m64n256 wgmmas whose sums
  // are transposed in two passes of 128 rows).
  bool swappedHeight = config.blockM == 16 || config.blockM == 32 ||
                       (config.registerOperand &&
                        (config.blockM == 64 || config.blockM == 128 ||
                         (config.blockM == 256 && config.warpSpecialized)));
  // Three consumer warpgroups (192 rows) are built for the bf16 multistage
  // schedule without a cluster: 384 threads, no producer to give registers.
  bool tallBuilt = config.blockM == moe_gpu::hopper::kTallBlockRows &&
                   config.format == QuantFormat::None &&
                   !config.warpSpecialized && kernelConfig.getClusterM() == 1;
  bool built = config.swapAB
                   ? swappedHeight && !config.promotesEachStage() &&
                         config.swappedWarpgroups <= 2
                   : config.blockM == 64 || config.blockM == 128 || tallBuilt;
  if (!built)
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": slot blocks of 64 or 128 rows (192 for bf16 on the "
              "multistage schedule without a cluster), or with swapped "
              "operands of 16 or 32 rows over one or two warpgroups (bf16, "
              "weight-only, or w8a8 sums without promotion: int8, or fp8 "
              "with fast_accumulation), or of 64 or 128 rows (256 with a "
              "producer warpgroup) with weight_load = registers";
  if (config.copiesWeights &&
      (config.format != QuantFormat::None || config.warpSpecialized))
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": weights are copied by cp.async for bf16 in the multistage "
              "schedule only";
  // Multistage: every thread copies the same number of 16-byte chunks of
  // each tile it copies (the slot rows', and the weights' where cp.async
  // loads them).
  int64_t threads = config.threads();
  int64_t rowChunks = 8 * config.spans;
  bool evenCopies = config.blockM * rowChunks % threads == 0 &&
                    (!config.copiesWeights ||
                     config.blockN * rowChunks % threads == 0);
  if (!config.warpSpecialized && !evenCopies)
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig << ": its " << threads
           << " threads cannot share the 16-byte chunks of a stage's tiles "
              "evenly";
  return success();
}

/// Takes the schedule, its roles and the K span of `kernelConfig` into
/// `config`; a remark where this emitter does not build them.
static LogicalResult applySchedule(ExpertMatmulOp op,
                                   moe_gpu::KernelConfigAttr kernelConfig,
                                   ExpertMatmulPlan &config) {
  // Warp specialization is built for one producer warpgroup, bf16 or w8a8
  // operands, or the weight-only register operand. (The dialect verifies
  // that swapped operands take the multistage schedule except on the
  // register operand.) Persistence is built on it, for bf16 and the
  // register operand.
  config.pingpong = kernelConfig.getSchedule() == moe_gpu::Schedule::Pingpong;
  config.persistent =
      config.pingpong ||
      kernelConfig.getSchedule() == moe_gpu::Schedule::Persistent;
  config.warpSpecialized =
      config.persistent ||
      kernelConfig.getSchedule() == moe_gpu::Schedule::WarpSpecialized;
  // Weight-only, it is built for the register operand.
  bool registerOperand =
      kernelConfig.getWeightLoad() == moe_gpu::WeightLoad::Registers;
  bool scheduleBuilt =
      kernelConfig.getSchedule() == moe_gpu::Schedule::Multistage ||
      (config.warpSpecialized &&
       (config.format == QuantFormat::None ||
        (config.isW8A8() && !config.persistent) ||
        (registerOperand && !config.pingpong)) &&
       kernelConfig.getProducerWarpgroups() == 1);
  // Read before anything asks promotesEachStage. (The dialect verifies
  // that block scales, applied as each K block's sums are promoted, keep
  // the promotion.)
  config.fastAccumulation = kernelConfig.getFastAccumulation();
  assert(!(config.fastAccumulation && config.hasBlockScales()) &&
         "verified: block-scaled fp8 promotes");
  // A warp-specialized fp8 consumer keeps its promoted sums and a partial,
  // two 64 x block_n accumulators, in the 208 registers setmaxnreg gives it.
  if (config.warpSpecialized && config.promotesEachStage() &&
      kernelConfig.getBlockN() > 128)
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": warp-specialized fp8 is built for block_n "
                              "up to 128";
  // A pingpong thread keeps two 64 x block_n accumulators beside its
  // addresses: 128 registers of the 208 setmaxnreg gives it.
  if (config.pingpong && kernelConfig.getBlockN() > 128)
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": pingpong is built for block_n up to 128";
  // block_k of one or two 128-byte spans; two only for the bf16 multistage
  // schedule without a cluster.
  int64_t blockK = kernelConfig.getBlockK();
  config.spans = blockK / config.spanElements();
  bool spansBuilt =
      blockK % config.spanElements() == 0 &&
      (config.spans == 1 ||
       (config.spans == 2 && config.format == QuantFormat::None &&
        kernelConfig.getSchedule() == moe_gpu::Schedule::Multistage &&
        kernelConfig.getClusterM() == 1));
  if (!scheduleBuilt || !spansBuilt ||
      !llvm::is_contained({64, 128, 256}, kernelConfig.getBlockN()) ||
      kernelConfig.getStages() < 2 || kernelConfig.getStages() > kMaxStages ||
      kernelConfig.getClusterN() != 1 || kernelConfig.getClusterM() > 2 ||
      (kernelConfig.getClusterM() == 2 &&
       (config.persistent || config.format != QuantFormat::None ||
        kernelConfig.getSplitK() != 1)))
    return op.emitRemark()
           << "no GPU kernel yet for " << kernelConfig
           << ": the emitter builds the multistage schedule, the "
              "warp-specialized one for bf16, w8a8 and the register "
              "operand, the persistent one for bf16 and the register "
              "operand and the pingpong one for bf16, each with one producer "
              "warpgroup, with 128 bytes of K per stage "
              "(256 for the bf16 multistage schedule without a cluster), "
              "block_n 64, 128 or 256, 2 to "
           << kMaxStages
           << " stages and no cluster but pairs along M (cluster_m = 2) of "
              "the bf16 multistage and warp-specialized schedules without "
              "split-K";
  return success();
}

/// Checks what `config` needs beside its tiles: the slots of a fused
/// align, the combine's zeroed sums, whole split-K steps and the shared
/// memory of a block; a remark where one does not hold.
static LogicalResult checkKernelNeeds(ExpertMatmulOp op,
                                      moe_gpu::KernelConfigAttr kernelConfig,
                                      ExpertMatmulPlan &config) {
  // Aligning its own slot block, a kernel reads the ids the schedule was
  // aligned from: its slots must be a moe.align's (the verifier allows the
  // attribute before moe-align, where they are not yet).
  config.fusedAlignAssignments = kernelConfig.getFusedAlignAssignments();
  if (config.fusedAlignAssignments > 0 &&
      !op.getSlots().getDefiningOp<AlignOp>())
    return op.emitRemark() << "no GPU kernel for " << kernelConfig
                           << ": fused_align_assignments needs the op's "
                              "slots to come from a moe.align";
  if (ExpertMatmulOp combine = moe_gpu::getSumsZeroedBy(op)) {
    config.zeroedSumsWidth = combine.getOutputWidth();
    if (config.zeroedSumsWidth % kZeroVectorWidth != 0)
      return op.emitRemark()
             << "no GPU kernel for " << kernelConfig
             << ": the combine's sums it zeroes must be a "
                "multiple of "
             << kZeroVectorWidth << " wide, got " << config.zeroedSumsWidth;
  }
  // Split-K of a matmul that stores its products reduces in a cluster
  // (the dialect verifies its size): built where the sums pass through a
  // shared table anyway, the swapped multistage schedule.
  if (config.reducesSplitsInCluster() &&
      (!config.swapAB || config.warpSpecialized))
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": split-K of a matmul without a combine is "
                              "built for the swapped multistage schedule";
  // The turns are those of two consumer warpgroups; a combine's products
  // are staged only as the rows of combine_rows.
  if (config.stagesInTurn &&
      (config.consumerThreads() != 2 * kWarpgroupThreads ||
       (config.combine && !config.combineRows)))
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": staged_epilogue is built for two consumer "
                              "warpgroups storing bf16 rows (a matmul "
                              "without a combine, or combine_rows)";
  // The A rows by TMA share the full barrier with the weights' TMA boxes
  // (the dialect verifies the configuration and the op; this is what the
  // multistage kernel builds it for).
  if (config.inputTma &&
      (config.format != QuantFormat::None || config.copiesWeights ||
       config.warpSpecialized || config.swapAB || config.clusterM != 1 ||
       config.gather))
    return op.emitRemark() << "no GPU kernel yet for " << kernelConfig
                           << ": input_tma is built for the bf16 multistage "
                              "schedule over an input in slot order, weights "
                              "by TMA, unswapped and without a cluster";
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

/// Takes every decision of `op`'s #moe_gpu.kernel_config (moe-gpu-configure)
/// into `config`; a remark where this emitter does not build it.
static LogicalResult applyExpertMatmulPlan(ExpertMatmulOp op,
                                           ExpertMatmulPlan &config) {
  auto kernelConfig = op->getAttrOfType<moe_gpu::KernelConfigAttr>(
      moe_gpu::MoeGPUDialect::getConfigAttrName());
  if (!kernelConfig)
    return op.emitRemark("no GPU kernel: the op has no kernel configuration "
                         "(moe_gpu.config); run moe-gpu-configure first");
  if (failed(applySchedule(op, kernelConfig, config)))
    return failure();
  config.blockN = kernelConfig.getBlockN();
  if (failed(applySlotBlock(op, kernelConfig, config)))
    return failure();
  config.clusterM = kernelConfig.getClusterM();
  config.stages = kernelConfig.getStages();
  config.splitK = kernelConfig.getSplitK();
  config.groupM = kernelConfig.getGroupM();
  config.producerRegisters = kernelConfig.getProducerRegisters();
  config.consumerRegisters = kernelConfig.getConsumerRegisters();
  config.combineRows = kernelConfig.getCombineRows();
  config.stagesInTurn = kernelConfig.getStagedEpilogue();
  config.inputTma = kernelConfig.getInputTma();
  return checkKernelNeeds(op, kernelConfig, config);
}

/// The kernel's parameters (see buildExpertMatmulKernel in MoeGpuKernels.h).
static SmallVector<Type> kernelArguments(OpBuilder &b, ExpertMatmulOp op,
                                         const ExpertMatmulPlan &config) {
  auto weightsType = op.getWeights().getType();
  auto bf16 = b.getBF16Type();
  MLIRContext *context = b.getContext();
  auto dynamic = ShapedType::kDynamic;
  auto i32 = b.getI32Type();
  // w8a8 codes travel as bytes: the wgmma reads them by descriptor.
  Type inputElement = config.isW8A8() ? Type(b.getI8Type()) : Type(bf16);
  // With input_tma the input's rows travel as a TMA descriptor too.
  Type input =
      config.inputTma
          ? Type(LLVM::LLVMPointerType::get(context))
          : Type(MemRefType::get({dynamic, config.inFeatures}, inputElement));
  SmallVector<Type> arguments = {
      input, MemRefType::get({dynamic}, i32), MemRefType::get({dynamic}, i32),
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
  } else if (config.copiesWeights) {
    // The bf16 weights as the TMA descriptor would view them: [E·N, K], or
    // interleaved gate/up rows as [E·N/2, 2K] row pairs.
    int64_t pairs = config.gateUpInterleaved ? 2 : 1;
    arguments.back() = MemRefType::get(
        {config.numExperts * config.outFeatures / pairs,
         config.inFeatures * pairs},
        bf16);
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
    if (!config.unpermute)
      arguments.push_back(
          MemRefType::get({dynamic, config.topK}, b.getF32Type()));
    // With combine_rows the bf16 rows of the assignments [M·k, N], else the
    // f32 sums [M, N].
    arguments.push_back(MemRefType::get(
        {dynamic, config.outFeatures},
        config.combineRows ? Type(bf16) : Type(b.getF32Type())));
  } else {
    arguments.push_back(MemRefType::get({dynamic, op.getOutputWidth()}, bf16));
  }
  // Persistent: the counter the blocks take their next tiles from (zeroed
  // by the host).
  if (config.persistent)
    arguments.push_back(MemRefType::get({1}, b.getI32Type()));
  // A block that aligns its own slot block: the ids, and the word counting
  // the invalid ones (written by block 0).
  if (config.fusedAlignAssignments > 0) {
    arguments.push_back(MemRefType::get({dynamic, config.topK}, i32));
    arguments.push_back(MemRefType::get({1}, i32));
  }
  if (config.zeroedSumsWidth > 0)
    arguments.push_back(
        MemRefType::get({dynamic, config.zeroedSumsWidth}, b.getF32Type()));
  return arguments;
}

/// How the host launches `func` and which parameter is a grid constant.
static void setLaunchAttributes(OpBuilder &b, gpu::GPUFuncOp func,
                                const ExpertMatmulPlan &config,
                                ArrayRef<Type> arguments) {
  // setmaxnreg needs a register cap at entry: at most `threads` threads and
  // one block per SM. So do more than two warpgroups: without it ptxas may
  // take more registers than 65536 / threads, and the launch fails.
  if (config.warpSpecialized || config.threads() > 2 * kWarpgroupThreads) {
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
          b.getNamedAttr("box_cols",
                         b.getI64IntegerAttr(config.spanElements())),
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
  // The K splits of a tile without a combine form a cluster along z, whose
  // first block adds the others' sums.
  if (config.reducesSplitsInCluster())
    func->setAttr(
        NVVM::NVVMDialect::getClusterDimAttrName(),
        b.getDenseI32ArrayAttr({1, 1, static_cast<int32_t>(config.splitK)}));
  // A persistent kernel is launched on at most one block per SM instead.
  if (config.persistent) {
    NamedAttrList facts(func->getAttrOfType<DictionaryAttr>("moe.launch"));
    facts.set("persistent", b.getI64IntegerAttr(1));
    func->setAttr("moe.launch", facts.getDictionary(b.getContext()));
  }
  // The descriptors' positions among the lowered arguments (a memref of
  // rank r lowers to 3 + 2r of them, a pointer to one):
  // moe-nvvm-grid-constant-args passes them by value.
  int64_t llvmPosition = 0;
  for (Type type : ArrayRef<Type>(arguments).take_front(4)) {
    auto memref = dyn_cast<MemRefType>(type);
    llvmPosition += memref ? 3 + 2 * memref.getRank() : 1;
  }
  SmallVector<int64_t, 2> descriptors;
  if (config.inputTma)
    descriptors.push_back(0);
  if (!config.isWeightOnly() && !config.copiesWeights)
    descriptors.push_back(llvmPosition);
  if (!descriptors.empty())
    func->setAttr("moe.grid_constant_args", b.getI64ArrayAttr(descriptors));
  // The input's rows by TMA: the host encodes a descriptor of the input as
  // [rows, K] with boxes of block_m rows of one 128-byte span.
  if (config.inputTma) {
    NamedAttrList facts(func->getAttrOfType<DictionaryAttr>("moe.launch"));
    facts.set("input_box_rows", b.getI64IntegerAttr(config.blockM));
    func->setAttr("moe.launch", facts.getDictionary(b.getContext()));
  }
  // The weights copied by cp.async: the host passes them as memory, not as
  // a TMA descriptor.
  if (config.copiesWeights) {
    NamedAttrList facts(func->getAttrOfType<DictionaryAttr>("moe.launch"));
    facts.set("copies_weights", b.getI64IntegerAttr(1));
    func->setAttr("moe.launch", facts.getDictionary(b.getContext()));
  }
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildExpertMatmulKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                   ExpertMatmulOp op, StringRef name) {
  FailureOr<ExpertMatmulPlan> config = describeMatmul(b, op);
  if (failed(config) || failed(applyExpertMatmulPlan(op, *config)))
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
