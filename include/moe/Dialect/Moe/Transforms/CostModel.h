//===- CostModel.h - analytic model of grouped matmul tiles -----*- C++ -*-===//
//
// Predicts the time of a grouped matmul under a tiling on a GPU, from the
// bytes and FLOPs the tiling really moves and the waves it runs in.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_COSTMODEL_H
#define MOE_DIALECT_MOE_TRANSFORMS_COSTMODEL_H

#include "moe/Target/GpuTarget.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>

namespace mlir::moe {

/// The problem one grouped matmul solves.
struct GroupedMatmulShape {
  /// Assignments (rows) in all: M · k.
  int64_t numRows = 0;
  int64_t numExperts = 1;
  /// Of the experts, the shared ones (moe.add_shared_experts), which every
  /// token picks: each receives `numTokens` rows, and only the other rows
  /// spread over the routed experts.
  int64_t numSharedExperts = 0;
  int64_t numTokens = 0;
  /// Output features N (weights [E, N, K]) and reduction depth K: the
  /// rows' K, of which 4-bit weights store K/2 bytes a row.
  int64_t outFeatures = 0;
  int64_t inFeatures = 0;
  /// Bytes per element of the A rows, the weights (stored bytes per K
  /// element: 0.5 for codes packed two per byte) and the stored result.
  int64_t inputBytes = 2;
  double weightBytes = 2;
  int64_t outputBytes = 2;
  /// Rows and columns the epilogue stores: fewer rows when it reduces over
  /// k (combine), half the columns after a gated activation. 0 means R or N.
  int64_t storedRows = 0;
  int64_t storedColumns = 0;
};

/// One candidate tiling.
struct TileChoice {
  int64_t blockM = 64, blockN = 128, blockK = 64;
  int64_t stages = 3;
  int64_t splitK = 1;
  bool swapAB = false;
  int64_t groupM = 8;
};

/// What the model predicts for a shape under a tiling.
struct TilePrediction {
  /// Routed experts expected to receive at least one row, and rows per
  /// such expert; shared experts, and rows of each.
  double touchedExperts = 0, rowsPerExpert = 0;
  int64_t sharedExperts = 0, rowsPerSharedExpert = 0;
  /// Useful FLOPs, and FLOPs executed including the padded rows.
  double usefulFlops = 0, executedFlops = 0;
  /// Bytes read and written by all thread blocks.
  double bytes = 0;
  /// Data reuse of a tile: the harmonic mean of the rows it really holds
  /// and its columns; a tile with one real row caps at 2.
  double reuse = 0;
  /// Thread blocks, waves over the SMs and the fraction of SM slots used.
  int64_t threadBlocks = 0, waves = 0;
  double waveEfficiency = 0;
  double computeSeconds = 0, memorySeconds = 0, seconds = 0;
  bool memoryBound = false;
};

/// Evaluates `tile` for `shape` on `target`.
TilePrediction predictTile(const GroupedMatmulShape &shape,
                           const TileChoice &tile, const GpuTarget &target);

/// Returns true if `tile` fits the target: shared memory for its pipeline,
/// registers for its accumulator, and MMA shape constraints.
bool isFeasibleTile(const GroupedMatmulShape &shape, const TileChoice &tile,
                    const GpuTarget &target);

/// Picks the feasible candidate with the smallest predicted time.
TileChoice chooseTile(const GroupedMatmulShape &shape, const GpuTarget &target);

/// Prints a one-line explanation of `prediction`.
void printPrediction(llvm::raw_ostream &os, const TilePrediction &prediction);

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_COSTMODEL_H
