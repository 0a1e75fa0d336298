//===- Tile.cpp - moe-tile ------------------------------------------------===//

#include "TileUtils.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/CostModel.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETILE
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// Attaches the cost model's tile to a grouped matmul that has none.
template <typename MatmulOp>
struct AttachTile : public OpRewritePattern<MatmulOp> {
  AttachTile(MLIRContext *context, const GpuTarget &target, int64_t numTokens)
      : OpRewritePattern<MatmulOp>(context), target(target),
        numTokens(numTokens) {}

  LogicalResult matchAndRewrite(MatmulOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getTileAttr())
      return rewriter.notifyMatchFailure(op, "already tiled");
    std::optional<GroupedMatmulShape> shape =
        getGroupedMatmulShape(op, numTokens);
    rewriter.modifyOpInPlace(op, [&] {
      op.setTileAttr(chooseTileAttr(rewriter.getContext(), *shape, target));
    });
    return success();
  }

  GpuTarget target;
  int64_t numTokens;
};

struct MoeTilePass : public moe::impl::MoeTileBase<MoeTilePass> {
  using MoeTileBase::MoeTileBase;

  void runOnOperation() override {
    if (numTokens < 1 || numSMs < 1 || sharedMemoryBytes < 1 || l2Bytes < 1 ||
        peakTflops <= 0 || bandwidthGBps <= 0) {
      getOperation()->emitError("moe-tile: every option must be positive");
      return signalPassFailure();
    }
    GpuTarget target;
    target.numSMs = numSMs;
    target.sharedMemoryBytes = sharedMemoryBytes;
    target.peakFlops = peakTflops * 1e12;
    target.bandwidthBytes = bandwidthGBps * 1e9;
    target.l2Bytes = l2Bytes;
    RewritePatternSet patterns(&getContext());
    patterns.add<AttachTile<GroupedMatmulOp>, AttachTile<ExpertMatmulOp>>(
        &getContext(), target, numTokens);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
