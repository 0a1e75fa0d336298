//===- CostModel.cpp - analytic model of grouped matmul tiles -------------===//
//
// The model, per grouped matmul of R = M·k rows over E experts, [E, N, K]
// weights, under a tile (BM, BN, BK, split-K S, swap, group G):
//
//   touched experts  T = E · (1 − (1 − 1/E)^R), rows per expert r = R / T
//   row blocks       b = ceil(r / BM) per expert, column blocks c = ceil(N/BN)
//   thread blocks    B · c · S with B = T · b row blocks, in waves of #SMs
//   FLOPs executed   2 · B · BM · N · K   (padded rows included)
//   bytes            weights T · N · K · ceil(b / G)  (a swizzle group of G
//                    row blocks shares a weight tile through L2)
//   With H shared experts (every token picks them), each of them has M rows,
//   ceil(M / BM) row blocks, in B and in the weight bytes, and R, E above
//   count the routed rows and experts only.
//                    + A R · K + C (rows · columns stored) (+ f32 partials
//                    when S > 1)
//   compute          FLOPs / (peak · wave efficiency · MMA fraction), the
//                    fraction below 1 where a single warpgroup per SM
//                    issues MMAs (one 64-row block fits per SM)
//   memory           bytes / (bandwidth · min(1, 2 · active SMs / #SMs)):
//                    an SM pulls about twice its share of the bandwidth, so a
//                    grid of few blocks cannot saturate memory
//   time             max(compute, memory) + loss · min(compute, memory)
//                    + waves · per-wave overhead (overlap is never perfect)
//
// The tile's data reuse, 2 / (1 / min(BM, r) + 1 / BN), is the seed's
// traffic model: with one row per expert no tile reuses a weight more than
// twice, which is why decode is bound by weight bandwidth whatever the tile.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/CostModel.h"

#include "llvm/Support/Format.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace mlir::moe;

static int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// The share of the MMA peak the SM reaches: full with two or more
/// warpgroups issuing MMAs (one per 64 rows of a slot block, over the thread
/// blocks that fit in shared memory), else the target's single-warpgroup
/// fraction. Rows, not the swapped MMA M: the Hopper kernels have no
/// swapped form (moe-gpu-configure runs a swapped tile unswapped).
static double mmaFraction(const GroupedMatmulShape &shape,
                          const TileChoice &tile, const GpuTarget &target) {
  int64_t mmaRows = tile.blockM;
  auto stageBytes = static_cast<int64_t>(
      (tile.blockM * shape.inputBytes + tile.blockN * shape.weightBytes) *
      tile.blockK);
  int64_t blockBytes = std::max<int64_t>(1, tile.stages * stageBytes);
  int64_t blocksPerSM = std::max<int64_t>(1, target.sharedMemoryBytes / blockBytes);
  int64_t warpgroups = std::max<int64_t>(1, mmaRows / target.mmaM) * blocksPerSM;
  return warpgroups >= 2 ? 1.0 : target.singleWarpgroupMmaFraction;
}

TilePrediction mlir::moe::predictTile(const GroupedMatmulShape &shape,
                                      const TileChoice &tile,
                                      const GpuTarget &target) {
  TilePrediction p;
  double rows = static_cast<double>(shape.numRows);
  double n = static_cast<double>(shape.outFeatures);
  double k = static_cast<double>(shape.inFeatures);
  // The shared experts' rows are known; the rest spread over the routed.
  p.sharedExperts = std::clamp<int64_t>(shape.numSharedExperts, 0,
                                        shape.numExperts - 1);
  p.rowsPerSharedExpert = p.sharedExperts ? std::max<int64_t>(shape.numTokens, 0) : 0;
  double routedRows = std::max(
      0.0, rows - static_cast<double>(p.sharedExperts * p.rowsPerSharedExpert));
  double routedExperts = static_cast<double>(shape.numExperts - p.sharedExperts);
  p.touchedExperts = routedRows <= 0 ? 0.0
                                     : routedExperts *
                                           (1.0 - std::pow(1.0 - 1.0 / routedExperts,
                                                           routedRows));
  if (p.touchedExperts <= 0 && p.rowsPerSharedExpert == 0)
    return p;
  p.rowsPerExpert = p.touchedExperts > 0 ? routedRows / p.touchedExperts : 0.0;
  int64_t rowBlocks = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(p.rowsPerExpert / tile.blockM)));
  int64_t sharedRowBlocks = ceilDiv(p.rowsPerSharedExpert, tile.blockM);
  int64_t colBlocks = ceilDiv(shape.outFeatures, tile.blockN);
  double touched = std::ceil(p.touchedExperts);
  double allRowBlocks = touched * rowBlocks +
                        static_cast<double>(p.sharedExperts * sharedRowBlocks);
  p.threadBlocks =
      static_cast<int64_t>(allRowBlocks) * colBlocks * tile.splitK;
  p.waves = ceilDiv(p.threadBlocks, target.numSMs);
  p.waveEfficiency = static_cast<double>(p.threadBlocks) /
                     static_cast<double>(p.waves * target.numSMs);

  p.usefulFlops = 2.0 * rows * n * k;
  p.executedFlops = 2.0 * allRowBlocks * tile.blockM * n * k;
  double weightReads =
      touched * static_cast<double>(ceilDiv(rowBlocks, tile.groupM)) +
      static_cast<double>(p.sharedExperts *
                          ceilDiv(sharedRowBlocks, tile.groupM));
  double weightBytes = weightReads * n * k * shape.weightBytes;
  double inputBytes = rows * k * shape.inputBytes;
  double storedRows = shape.storedRows ? shape.storedRows : rows;
  double storedColumns = shape.storedColumns ? shape.storedColumns : n;
  double outputBytes = storedRows * storedColumns * shape.outputBytes;
  double partialBytes =
      tile.splitK > 1 ? 2.0 * rows * n * 4.0 * tile.splitK : 0.0;
  p.bytes = weightBytes + inputBytes + outputBytes + partialBytes;
  double realRows = std::min<double>(tile.blockM, p.rowsPerExpert);
  p.reuse = 2.0 / (1.0 / realRows + 1.0 / tile.blockN);

  double activeSMs =
      std::min<double>(static_cast<double>(p.threadBlocks), target.numSMs);
  double bandwidthShare = std::min(1.0, 2.0 * activeSMs / target.numSMs);
  p.computeSeconds = p.executedFlops / (target.peakFlops * p.waveEfficiency *
                                        mmaFraction(shape, tile, target));
  p.memorySeconds = p.bytes / (target.bandwidthBytes * bandwidthShare);
  p.memoryBound = p.memorySeconds >= p.computeSeconds;
  p.seconds = std::max(p.computeSeconds, p.memorySeconds) +
              target.overlapLoss * std::min(p.computeSeconds, p.memorySeconds) +
              p.waves * target.waveOverheadSeconds;
  return p;
}

bool mlir::moe::isFeasibleTile(const GroupedMatmulShape &shape,
                               const TileChoice &tile,
                               const GpuTarget &target) {
  // The MMA's M dimension is the rows, or the weights' output features when
  // the operands are swapped; its N dimension is the other one.
  int64_t mmaM = tile.swapAB ? tile.blockN : tile.blockM;
  int64_t mmaN = tile.swapAB ? tile.blockM : tile.blockN;
  if (mmaM % target.mmaM != 0 || mmaN % target.mmaN != 0 || mmaN > 256)
    return false;
  if (shape.inFeatures % (tile.blockK * tile.splitK) != 0)
    return false;
  if (tile.splitK > 1 &&
      shape.inFeatures / (tile.blockK * tile.splitK) < target.minKStepsPerSplit)
    return false;
  auto stageBytes = static_cast<int64_t>(
      (tile.blockM * shape.inputBytes + tile.blockN * shape.weightBytes) *
      tile.blockK);
  int64_t epilogueBytes = tile.blockM * tile.blockN * shape.outputBytes;
  if (tile.stages * stageBytes + epilogueBytes > target.sharedMemoryBytes)
    return false;
  // The f32 accumulator may take at most half the register file.
  int64_t accumulatorRegisters = tile.blockM * tile.blockN;
  return accumulatorRegisters <= target.registersPerSM / 2;
}

TileChoice mlir::moe::chooseTile(const GroupedMatmulShape &shape,
                                 const GpuTarget &target) {
  TileChoice best;
  double bestSeconds = std::numeric_limits<double>::infinity();
  int64_t bestBlocks = 0;
  bool found = false;
  for (bool swapAB : {false, true})
    for (int64_t blockM : {8, 16, 32, 64, 128, 256})
      for (int64_t blockN : {64, 128, 256})
        for (int64_t blockK : {64, 128})
          for (int64_t splitK : {1, 2, 4, 8, 16}) {
            TileChoice tile;
            tile.blockM = blockM;
            tile.blockN = blockN;
            tile.blockK = blockK;
            tile.splitK = splitK;
            tile.swapAB = swapAB;
            // The deepest pipeline that fits, up to 5 stages.
            tile.stages = 0;
            for (int64_t stages = 5; stages >= 2 && !tile.stages; --stages) {
              tile.stages = stages;
              if (!isFeasibleTile(shape, tile, target))
                tile.stages = 0;
            }
            if (!tile.stages)
              continue;
            TilePrediction p = predictTile(shape, tile, target);
            // Within 1%, prefer fewer thread blocks (larger tiles).
            bool better = p.seconds < bestSeconds * 0.99 ||
                          (p.seconds <= bestSeconds * 1.01 &&
                           p.threadBlocks < bestBlocks);
            if (!found || better) {
              best = tile;
              bestSeconds = p.seconds;
              bestBlocks = p.threadBlocks;
              found = true;
            }
          }
  if (!found) {
    // No candidate divides K: a conservative tile the lowering can mask.
    best = TileChoice{64, 64, 64, 2, 1, false, 8};
  }
  return best;
}

void mlir::moe::printPrediction(llvm::raw_ostream &os,
                                const TilePrediction &p) {
  os << llvm::format("%.1f experts x %.2f rows, ", p.touchedExperts,
                     p.rowsPerExpert);
  if (p.sharedExperts)
    os << p.sharedExperts << " shared x " << p.rowsPerSharedExpert
       << " rows, ";
  os << llvm::format("reuse %.1f, ", p.reuse)
     << llvm::format("%.3g GFLOP (%.3g executed), %.3g MB, ",
                     p.usefulFlops * 1e-9, p.executedFlops * 1e-9,
                     p.bytes * 1e-6)
     << p.threadBlocks << " blocks in " << p.waves << " waves ("
     << llvm::format("%.0f%% of SM slots), ", p.waveEfficiency * 100)
     << (p.memoryBound ? "memory" : "compute") << " bound, "
     << llvm::format("%.1f us (compute %.1f us, memory %.1f us)",
                     p.seconds * 1e6, p.computeSeconds * 1e6,
                     p.memorySeconds * 1e6);
}
