//===- TileUtils.h - shared by moe-tile and moe-tile-report -----*- C++ -*-===//

#ifndef MOE_LIB_DIALECT_MOE_TRANSFORMS_TILEUTILS_H
#define MOE_LIB_DIALECT_MOE_TRANSFORMS_TILEUTILS_H

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/CostModel.h"

namespace mlir::moe {

static inline int64_t elementBytes(Type type) {
  return std::max<int64_t>(
      1, cast<ShapedType>(type).getElementType().getIntOrFloatBitWidth() / 8);
}

/// The experts per token of a plain grouped matmul: the k of the ids its
/// offsets were sorted from, or 1 when that is unknown.
static inline int64_t expertsPerToken(GroupedMatmulOp op) {
  Value offsets = op.getOffsets();
  if (auto permute = offsets.getDefiningOp<PermuteOp>())
    return permute.getIds().getType().getDimSize(1);
  if (auto sort = offsets.getDefiningOp<SortOp>())
    return sort.getIds().getType().getDimSize(1);
  return 1;
}

/// The shared experts among the experts of a matmul whose schedule
/// (offsets, slots or block experts) comes from ids that
/// moe.add_shared_experts or moe.shared_expert_routing made; 0 otherwise.
static inline int64_t sharedExpertsOf(Value schedule) {
  if (!schedule)
    return 0;
  Value ids;
  if (auto permute = schedule.getDefiningOp<PermuteOp>())
    ids = permute.getIds();
  else if (auto sort = schedule.getDefiningOp<SortOp>())
    ids = sort.getIds();
  else if (auto align = schedule.getDefiningOp<AlignOp>())
    ids = align.getIds();
  if (!ids)
    return 0;
  if (auto shared = ids.getDefiningOp<AddSharedExpertsOp>())
    return shared.getNumShared();
  // A schedule of the shared experts alone.
  if (auto shared = ids.getDefiningOp<SharedExpertRoutingOp>())
    return shared.getNumShared();
  return 0;
}

/// Stored bytes of `weights` ([E, N, stored K]) per element of the
/// `inFeatures` they multiply: 0.5 where 4-bit codes are packed two per byte.
static inline double storedBytesPerElement(ShapedType weights,
                                           int64_t inFeatures) {
  return double(weights.getDimSize(2) * elementBytes(weights)) /
         double(inFeatures);
}

/// The problem `op` solves for `numTokens` tokens, if it is a grouped matmul.
static inline std::optional<GroupedMatmulShape>
getGroupedMatmulShape(Operation *op, int64_t numTokens) {
  GroupedMatmulShape shape;
  if (auto gmm = dyn_cast<GroupedMatmulOp>(op)) {
    auto weights = gmm.getWeights().getType();
    shape.numRows = numTokens * expertsPerToken(gmm);
    shape.numExperts = weights.getDimSize(0);
    shape.outFeatures = weights.getDimSize(1);
    shape.inFeatures = gmm.getRows().getType().getDimSize(1);
    shape.inputBytes = elementBytes(gmm.getRows().getType());
    shape.weightBytes = storedBytesPerElement(weights, shape.inFeatures);
    shape.outputBytes = elementBytes(gmm.getResult().getType());
    shape.numSharedExperts = sharedExpertsOf(gmm.getOffsets());
    shape.numTokens = numTokens;
    return shape;
  }
  if (auto fused = dyn_cast<ExpertMatmulOp>(op)) {
    auto weights = fused.getWeights().getType();
    shape.numRows = numTokens * fused.getK();
    shape.numExperts = weights.getDimSize(0);
    shape.outFeatures = weights.getDimSize(1);
    shape.inFeatures = fused.getInput().getType().getDimSize(1);
    shape.inputBytes = elementBytes(fused.getInput().getType());
    shape.weightBytes = storedBytesPerElement(weights, shape.inFeatures);
    shape.outputBytes = elementBytes(fused.getResult().getType());
    shape.storedColumns = fused.getOutputWidth();
    if (fused.isCombine())
      shape.storedRows = numTokens;
    for (Value schedule :
         {fused.getOffsets(), fused.getBlockExperts(), fused.getSlots()})
      shape.numSharedExperts =
          std::max(shape.numSharedExperts, sharedExpertsOf(schedule));
    shape.numTokens = numTokens;
    return shape;
  }
  return std::nullopt;
}

/// The tile's `group_m`: see the moe-tile description.
static inline int64_t chooseRaster(const GroupedMatmulShape &shape,
                                   const TileChoice &tile,
                                   const GpuTarget &target) {
  TilePrediction prediction = predictTile(shape, tile, target);
  double rowsPerExpert = prediction.rowsPerExpert;
  if (rowsPerExpert > tile.blockM)
    return tile.groupM;
  // About one row block per expert: column tiles first reuse a block's
  // rows from L2, unless many experts spill into a second block whose sweep
  // would read weights that L2 cannot hold again, while the rows fit there
  // anyway.
  int64_t expertWeightBytes = static_cast<int64_t>(
      shape.outFeatures * shape.inFeatures * shape.weightBytes);
  int64_t inputBytes = shape.numRows * shape.inFeatures * shape.inputBytes;
  bool spills = 4 * rowsPerExpert > 3 * tile.blockM;
  if (!spills || expertWeightBytes <= target.l2Bytes ||
      inputBytes > target.l2Bytes)
    return 1;
  // Every row block of the schedule, M·k / block_m + E at most, before the
  // next column tile.
  return llvm::divideCeil(shape.numRows, tile.blockM) + shape.numExperts;
}

/// The cost model's tile for `shape`, with its raster.
static inline TileAttr chooseTileAttr(MLIRContext *context,
                                      const GroupedMatmulShape &shape,
                                      const GpuTarget &target) {
  TileChoice tile = chooseTile(shape, target);
  tile.groupM = chooseRaster(shape, tile, target);
  return TileAttr::get(context, tile.blockM, tile.blockN, tile.blockK,
                       tile.stages, tile.splitK, tile.swapAB, tile.groupM);
}

static inline TileChoice toTileChoice(TileAttr tile) {
  TileChoice choice;
  choice.blockM = tile.getBlockM();
  choice.blockN = tile.getBlockN();
  choice.blockK = tile.getBlockK();
  choice.stages = tile.getStages();
  choice.splitK = tile.getSplitK();
  choice.swapAB = tile.getSwapAb();
  choice.groupM = tile.getGroupM();
  return choice;
}

} // namespace mlir::moe

#endif // MOE_LIB_DIALECT_MOE_TRANSFORMS_TILEUTILS_H
