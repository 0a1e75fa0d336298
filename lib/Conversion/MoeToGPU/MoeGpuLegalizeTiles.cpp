//===- MoeGpuLegalizeTiles.cpp - moe-gpu-legalize-tiles -------------------===//

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPULEGALIZETILES
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// The slot-block heights and wgmma widths the Hopper kernel has.
constexpr int64_t kSmallBlockM = 64, kLargeBlockM = 128;
constexpr int64_t kMinBlockN = 64, kMaxBlockN = 256;

struct MoeGpuLegalizeTilesPass
    : public moe::impl::MoeGpuLegalizeTilesBase<MoeGpuLegalizeTilesPass> {
  void runOnOperation() override {
    // One block_m per schedule: the smallest any of its matmuls can take.
    llvm::MapVector<Value, SmallVector<ExpertMatmulOp>> bySchedule;
    getOperation().walk([&](ExpertMatmulOp op) {
      if (op.getTileAttr())
        bySchedule[op.getSlots()].push_back(op);
    });
    for (auto &[slots, ops] : bySchedule) {
      int64_t blockM = kLargeBlockM;
      for (ExpertMatmulOp op : ops)
        if (op.getTileAttr().getBlockM() < kLargeBlockM)
          blockM = kSmallBlockM;
      for (ExpertMatmulOp op : ops) {
        TileAttr tile = op.getTileAttr();
        int64_t blockN = std::clamp<int64_t>(
            int64_t(1) << llvm::Log2_64(std::max<int64_t>(tile.getBlockN(), 1)),
            kMinBlockN, kMaxBlockN);
        op.setTileAttr(TileAttr::get(
            op.getContext(), blockM, blockN, tile.getBlockK(),
            tile.getStages(), tile.getSplitK(), tile.getSwapAb(),
            tile.getGroupM()));
      }
    }
  }
};
} // namespace
