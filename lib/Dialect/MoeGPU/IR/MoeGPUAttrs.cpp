//===- MoeGPUAttrs.cpp - moe_gpu attributes -------------------------------===//

#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/HopperLimits.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe_gpu;

#include "moe/Dialect/MoeGPU/IR/MoeGPUEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.cpp.inc"

void MoeGPUDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.cpp.inc"
      >();
}

using hopper::kMaxClusterBlocks;
using hopper::kMaxFusedAlignAssignments;
using hopper::kMaxSharedBytes;
using hopper::kWarpgroupRows;
using hopper::kWarpgroupThreads;

namespace {
/// What one sm_90a thread block can have.
constexpr int64_t kMaxThreads = 1024;
constexpr int64_t kRegistersPerSM = 64 * 1024;
constexpr int64_t kMaxRegistersPerThread = 255;
} // namespace

MmaKind mlir::moe_gpu::getMmaKind(moe::QuantFormat format) {
  switch (format) {
  case moe::QuantFormat::Fp8:
    return MmaKind::WgmmaE4m3;
  case moe::QuantFormat::Int8:
    return MmaKind::WgmmaS8;
  default:
    return MmaKind::WgmmaBf16;
  }
}

static int64_t elementBytesOf(MmaKind mma) {
  return mma == MmaKind::WgmmaBf16 ? 2 : 1;
}

int64_t KernelConfigAttr::getElementBytes() const {
  return elementBytesOf(getMma());
}

LogicalResult KernelConfigAttr::verifyContract(
    function_ref<InFlightDiagnostic()> emitError) const {
  return verify(emitError, getMma(), getSchedule(), getBlockM(), getBlockN(),
                getBlockK(), getStages(), getConsumerWarpgroups(),
                getProducerWarpgroups(), getProducerRegisters(),
                getConsumerRegisters(), getSplitK(), getClusterM(),
                getClusterN(), getGroupM(), getSwapAb(), getWeightLoad(),
                getFastAccumulation(), getFusedAlignAssignments(),
                getCombineRows(), getStagedEpilogue(), getInputTma());
}

/// Whether `n` is an N of the dense wgmma of `mma`: a multiple of 8 up to
/// 256; for s8, multiples of 16 past 32.
static bool isWgmmaN(MmaKind mma, int64_t n) {
  if (n < 8 || n > 256 || n % 8 != 0)
    return false;
  return mma != MmaKind::WgmmaS8 || n <= 32 || n % 16 == 0;
}

/// Whether `count` is a per-thread register count `setmaxnreg` takes.
static bool isSetmaxnregCount(int64_t count) {
  return count >= 24 && count <= 256 && count % 8 == 0;
}

static LogicalResult
verifyRoles(function_ref<InFlightDiagnostic()> emitError, Schedule schedule,
            int64_t consumers, int64_t producers, int64_t producerRegisters,
            int64_t consumerRegisters) {
  if (consumers < 1 || producers < 0)
    return emitError() << "needs at least one consumer warpgroup and no "
                          "negative producer count, got "
                       << consumers << " consumers and " << producers
                       << " producers";
  if ((consumers + producers) * kWarpgroupThreads > kMaxThreads)
    return emitError() << (consumers + producers)
                       << " warpgroups exceed the 1024 threads of a block";
  bool specialized = schedule != Schedule::Multistage;
  if (specialized != (producers > 0))
    return emitError() << "schedule " << stringifySchedule(schedule)
                       << (specialized ? " needs a producer warpgroup"
                                       : " has no producer warpgroups")
                       << ", got " << producers;
  bool rebalanced = producerRegisters != 0 || consumerRegisters != 0;
  if (rebalanced && !specialized)
    return emitError() << "register rebalancing (setmaxnreg) needs a "
                          "warp-specialized schedule";
  if (rebalanced && (!isSetmaxnregCount(producerRegisters) ||
                     !isSetmaxnregCount(consumerRegisters)))
    return emitError() << "setmaxnreg counts must be multiples of 8 in "
                          "[24, 256], got producer_registers = "
                       << producerRegisters
                       << " and consumer_registers = " << consumerRegisters;
  // setmaxnreg moves registers between the block's warps: the block keeps
  // what it was given at launch, the SM's 65536 over its threads, rounded
  // down to a multiple of 8 per thread. More, and setmaxnreg.inc waits
  // forever for registers no warp gives back.
  int64_t threads = (consumers + producers) * kWarpgroupThreads;
  int64_t perThread = kRegistersPerSM / threads / 8 * 8;
  int64_t registers = kWarpgroupThreads * (producers * producerRegisters +
                                           consumers * consumerRegisters);
  if (rebalanced && registers > threads * perThread)
    return emitError() << "the roles need " << registers
                       << " registers, more than the " << threads * perThread
                       << " a block of " << threads << " threads starts with ("
                       << perThread << " each)";
  // The producers give registers back (setmaxnreg.dec), the consumers take
  // them (setmaxnreg.inc).
  if (rebalanced &&
      (producerRegisters > perThread || consumerRegisters < perThread))
    return emitError() << "setmaxnreg moves producers down and consumers up "
                          "from the "
                       << perThread << " registers a thread starts with, got "
                       << producerRegisters << " and " << consumerRegisters;
  return success();
}

/// Swapped operands: the weights are the wgmma's M side (64 weight rows per
/// accumulator) and the slot block's rows its N, so `block_m` must be an N
/// of the wgmma, and each consumer warpgroup multiplies whole groups of 64
/// weight rows: a thread holds `block_n / 64 / consumers` accumulators of
/// `block_m / 2` registers. The sums are transposed after the K loop, 64
/// slot rows per consumer warpgroup at a time, so block_m is at most 64
/// per consumer warpgroup, or 256 over two consumer warpgroups on the
/// register operand with a producer warpgroup (two passes of 128; the
/// consumers' registers hold the wider sums).
/// Every thread loads and multiplies (the multistage schedule), or with
/// the register operand a producer warpgroup loads (warp_specialized, or
/// persistent); no cluster.
static LogicalResult
verifySwappedOperands(function_ref<InFlightDiagnostic()> emitError, MmaKind mma,
                      Schedule schedule, WeightLoad weightLoad, int64_t blockM,
                      int64_t blockN, int64_t consumers, int64_t clusterM,
                      int64_t clusterN) {
  bool specializedRegisters = (schedule == Schedule::WarpSpecialized ||
                               schedule == Schedule::Persistent) &&
                              weightLoad == WeightLoad::Registers;
  if (schedule != Schedule::Multistage && !specializedRegisters)
    return emitError() << "swapped operands need the multistage schedule, "
                          "or warp_specialized or persistent with "
                          "weight_load = registers, got "
                       << stringifySchedule(schedule) << " with weight_load = "
                       << stringifyWeightLoad(weightLoad);
  bool twoPasses = specializedRegisters && consumers == 2 &&
                   blockM == 2 * kWarpgroupRows * consumers;
  if ((blockM > kWarpgroupRows * consumers && !twoPasses) ||
      !isWgmmaN(mma, blockM))
    return emitError() << "with swapped operands block_m is the wgmma's N: "
                          "an N that "
                       << stringifyMmaKind(mma)
                       << " takes, at most 64 per consumer warpgroup ("
                       << kWarpgroupRows * consumers
                       << "), or 256 over two with weight_load = registers "
                          "and a producer warpgroup, got "
                       << blockM;
  if (blockN % (kWarpgroupRows * consumers) != 0)
    return emitError() << "with swapped operands block_n must be a multiple "
                          "of the wgmma's 64 rows per consumer warpgroup ("
                       << kWarpgroupRows * consumers << "), got " << blockN;
  int64_t accumulatorRegisters =
      blockN / (kWarpgroupRows * consumers) * (blockM / 2);
  if (accumulatorRegisters >= kMaxRegistersPerThread)
    return emitError() << "with swapped operands a consumer thread would hold "
                       << blockN / (kWarpgroupRows * consumers)
                       << " accumulators of block_m / 2 = " << blockM / 2
                       << " registers, more than the " << kMaxRegistersPerThread
                       << " a thread has";
  if (clusterM != 1 || clusterN != 1)
    return emitError() << "swapped operands take no cluster, got " << clusterM
                       << "x" << clusterN;
  return success();
}

/// A kernel that aligns its own slot block does it once, before its one
/// tile, for at most kMaxFusedAlignAssignments ids (a few rounds of one
/// id per thread).
static LogicalResult
verifyFusedAlign(function_ref<InFlightDiagnostic()> emitError,
                 Schedule schedule, int64_t clusterM, int64_t clusterN,
                 int64_t assignments) {
  if (assignments == 0)
    return success();
  if (assignments < 0 || assignments > kMaxFusedAlignAssignments)
    return emitError() << "fused_align_assignments must be in [0, "
                       << kMaxFusedAlignAssignments << "], got " << assignments;
  if (schedule != Schedule::Multistage && schedule != Schedule::WarpSpecialized)
    return emitError() << "fused_align_assignments needs a schedule of one "
                          "tile per block (multistage or warp_specialized), "
                          "got "
                       << stringifySchedule(schedule);
  if (clusterM != 1 || clusterN != 1)
    return emitError() << "fused_align_assignments takes no cluster, got "
                       << clusterM << "x" << clusterN;
  return success();
}

/// The persistent schedule's staged epilogue: a table after the ring that
/// the consumer warpgroups fill in turn while the producer loads the next
/// tile (whose tiles have no K split); the multistage schedule stages over
/// its own ring by itself.
static LogicalResult
verifyStagedEpilogue(function_ref<InFlightDiagnostic()> emitError,
                     Schedule schedule, int64_t clusterM, int64_t clusterN,
                     bool swapAB, bool stagedEpilogue) {
  if (!stagedEpilogue)
    return success();
  if (schedule != Schedule::Persistent)
    return emitError() << "staged_epilogue needs schedule = persistent, got "
                       << stringifySchedule(schedule);
  if (swapAB)
    return emitError() << "staged_epilogue stages the rows of unswapped "
                          "tiles, got swap_ab = true";
  if (clusterM != 1 || clusterN != 1)
    return emitError() << "staged_epilogue takes no cluster, got " << clusterM
                       << "x" << clusterN;
  return success();
}

/// A rows by TMA: boxes of whole slot blocks of a contiguous input, on the
/// multistage ring's full barriers beside the weights' boxes.
static LogicalResult
verifyInputTma(function_ref<InFlightDiagnostic()> emitError, MmaKind mma,
               Schedule schedule, WeightLoad weightLoad, bool swapAB,
               int64_t clusterM, int64_t clusterN, bool inputTma) {
  if (!inputTma)
    return success();
  if (mma != MmaKind::WgmmaBf16)
    return emitError() << "input_tma loads bf16 rows, got mma = "
                       << stringifyMmaKind(mma);
  if (schedule != Schedule::Multistage)
    return emitError() << "input_tma needs schedule = multistage, got "
                       << stringifySchedule(schedule);
  if (weightLoad != WeightLoad::Tma)
    return emitError() << "input_tma shares the stage's full barrier with "
                          "the weights' TMA boxes: weight_load must be tma, "
                          "got "
                       << stringifyWeightLoad(weightLoad);
  if (swapAB)
    return emitError() << "input_tma loads the A rows of unswapped tiles, "
                          "got swap_ab = true";
  if (clusterM != 1 || clusterN != 1)
    return emitError() << "input_tma takes no cluster, got " << clusterM << "x"
                       << clusterN;
  return success();
}

LogicalResult KernelConfigAttr::verify(
    function_ref<InFlightDiagnostic()> emitError, MmaKind mma,
    Schedule schedule, int64_t blockM, int64_t blockN, int64_t blockK,
    int64_t stages, int64_t consumerWarpgroups, int64_t producerWarpgroups,
    int64_t producerRegisters, int64_t consumerRegisters, int64_t splitK,
    int64_t clusterM, int64_t clusterN, int64_t groupM, bool swapAB,
    WeightLoad weightLoad, bool fastAccumulation, int64_t fusedAlignAssignments,
    bool combineRows, bool stagedEpilogue, bool inputTma) {
  if (failed(verifyRoles(emitError, schedule, consumerWarpgroups,
                         producerWarpgroups, producerRegisters,
                         consumerRegisters)))
    return failure();
  if (swapAB) {
    if (failed(verifySwappedOperands(emitError, mma, schedule, weightLoad,
                                     blockM, blockN, consumerWarpgroups,
                                     clusterM, clusterN)))
      return failure();
  } else if (blockM != kWarpgroupRows * consumerWarpgroups) {
    return emitError() << "block_m must be 64 rows per consumer warpgroup ("
                       << kWarpgroupRows * consumerWarpgroups << "), got "
                       << blockM;
  }
  if (!isWgmmaN(mma, blockN))
    return emitError() << "block_n = " << blockN << " is not an N of "
                       << stringifyMmaKind(mma);
  int64_t instructionK = 32 / elementBytesOf(mma);
  if (blockK < instructionK || blockK % instructionK != 0)
    return emitError() << "block_k must be a positive multiple of "
                       << stringifyMmaKind(mma) << "'s K of " << instructionK
                       << ", got " << blockK;
  if (stages < 1 || stages > hopper::kMaxRingStages)
    return emitError() << "stages must be in [1, " << hopper::kMaxRingStages
                       << "], got " << stages;
  int64_t ringBytes =
      stages * (blockM + blockN) * blockK * elementBytesOf(mma);
  if (ringBytes > kMaxSharedBytes)
    return emitError() << "a ring of " << stages << " stages takes "
                       << ringBytes << " bytes of shared memory, more than "
                       << "the " << kMaxSharedBytes << " of a block";
  if (splitK < 1)
    return emitError() << "split_k must be positive, got " << splitK;
  bool persistent =
      schedule == Schedule::Persistent || schedule == Schedule::Pingpong;
  if (persistent && splitK != 1)
    return emitError() << "a persistent schedule walks whole tiles: split_k "
                          "must be 1, got "
                       << splitK;
  // A thread keeps an m64nN f32 (s32) accumulator in N / 2 registers; a
  // pingpong warpgroup keeps one per 64 rows of its tiles.
  int64_t fragments = schedule == Schedule::Pingpong ? blockM / kWarpgroupRows
                                                     : 1;
  if (fragments * blockN / 2 >= kMaxRegistersPerThread)
    return emitError() << "a consumer thread would hold " << fragments
                       << " accumulators of block_n / 2 = " << blockN / 2
                       << " registers, more than the "
                       << kMaxRegistersPerThread << " a thread has";
  int64_t clusterBlocks = clusterM * clusterN;
  if (clusterM < 1 || clusterN < 1 || clusterBlocks > kMaxClusterBlocks ||
      !llvm::isPowerOf2_64(clusterBlocks))
    return emitError() << "cluster must hold 1, 2, 4 or 8 blocks, got "
                       << clusterM << "x" << clusterN;
  if (groupM < 0)
    return emitError() << "group_m must not be negative, got " << groupM;
  // A cluster shares its weight tiles by TMA multicast.
  if (weightLoad == WeightLoad::CpAsync && clusterBlocks != 1)
    return emitError() << "weight_load = cp_async takes no cluster (a "
                          "cluster's blocks share weight tiles by TMA "
                          "multicast), got "
                       << clusterM << "x" << clusterN;
  // The register operand is the weights' (A) fragment of a bf16 wgmma,
  // decoded by the warpgroup that multiplies it, one 64-wide K step of
  // codes per stage.
  if (weightLoad == WeightLoad::Registers &&
      (!swapAB || mma != MmaKind::WgmmaBf16 || blockK != 64))
    return emitError() << "weight_load = registers needs swap_ab, "
                          "wgmma_bf16 and block_k = 64, got swap_ab = "
                       << (swapAB ? "true" : "false")
                       << ", mma = " << stringifyMmaKind(mma)
                       << ", block_k = " << blockK;
  // Only e4m3 sums lose precision in the wgmma's accumulator; bf16 and s8
  // have nothing to promote.
  if (fastAccumulation && mma != MmaKind::WgmmaE4m3)
    return emitError() << "fast_accumulation is an e4m3 choice, got mma = "
                       << stringifyMmaKind(mma);
  if (failed(verifyFusedAlign(emitError, schedule, clusterM, clusterN,
                              fusedAlignAssignments)))
    return failure();
  // The swapped epilogue transposes its sums through shared memory into
  // reductions; it has no row stores of a combine.
  if (combineRows && swapAB)
    return emitError() << "combine_rows stores the rows of unswapped tiles, "
                          "got swap_ab = true";
  // Each row is stored once: K splits have no sums to add their parts into.
  if (combineRows && splitK != 1)
    return emitError() << "combine_rows stores each row once: split_k must "
                          "be 1, got "
                       << splitK;
  if (failed(verifyStagedEpilogue(emitError, schedule, clusterM, clusterN,
                                  swapAB, stagedEpilogue)))
    return failure();
  return verifyInputTma(emitError, mma, schedule, weightLoad, swapAB, clusterM,
                        clusterN, inputTma);
}
