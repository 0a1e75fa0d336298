//===- Align.cpp - moe-align ----------------------------------------------===//

#include "ExpertMatmulSpec.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/ADT/SetVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEALIGN
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Padding granule when neither the option nor a tile gives one.
static constexpr int64_t kDefaultBlockM = 16;

namespace {
/// sort + expert_matmuls on its offsets schedule -> align + expert_matmuls on
/// the aligned schedule.
struct AlignSchedule : public OpRewritePattern<SortOp> {
  AlignSchedule(MLIRContext *context, int64_t blockM)
      : OpRewritePattern(context), blockM(blockM) {}

  LogicalResult matchAndRewrite(SortOp sort,
                                PatternRewriter &rewriter) const override {
    // Every user of the schedule must be a fused matmul in the offsets form.
    llvm::SetVector<ExpertMatmulOp> users;
    for (Value result : sort->getResults())
      for (Operation *user : result.getUsers()) {
        auto matmul = dyn_cast<ExpertMatmulOp>(user);
        if (!matmul || matmul.isAligned() ||
            matmul.getOffsets() != sort.getOffsets() ||
            (matmul.getSlots() && matmul.getSlots() != sort.getSource()))
          return rewriter.notifyMatchFailure(sort, "schedule used elsewhere");
        users.insert(matmul);
      }
    if (users.empty())
      return rewriter.notifyMatchFailure(sort, "no fused matmul");

    // Rows in schedule order change layout with the schedule: they must only
    // flow between these matmuls, possibly through a moe.quantize (which
    // works row by row, or on the whole tensor whose padding rows are 0).
    auto isScheduleReader = [&](Operation *user) {
      auto consumer = dyn_cast<ExpertMatmulOp>(user);
      return consumer && users.contains(consumer) && !consumer.getGather();
    };
    for (ExpertMatmulOp matmul : users) {
      if (!matmul.getGather()) {
        Value rows = matmul.getInput();
        auto quantize = rows.getDefiningOp<QuantizeOp>();
        if (quantize) {
          if (matmul.getInputScales() != quantize.getScales())
            return rewriter.notifyMatchFailure(
                sort, "scales in schedule order come from outside");
          rows = quantize.getInput();
        }
        if (!users.contains(rows.getDefiningOp<ExpertMatmulOp>()))
          return rewriter.notifyMatchFailure(
              sort, "rows in schedule order come from outside");
      }
      if (matmul.getUnpermute() || matmul.isCombine())
        continue;
      if (!cast<RankedTensorType>(matmul.getResult().getType()).isDynamicDim(0))
        return rewriter.notifyMatchFailure(sort, "static row count");
      for (Operation *user : matmul.getResult().getUsers()) {
        if (isScheduleReader(user))
          continue;
        auto quantize = dyn_cast<QuantizeOp>(user);
        if (!quantize || !llvm::all_of(quantize->getUsers(), isScheduleReader))
          return rewriter.notifyMatchFailure(
              sort, "rows in schedule order leave the fused matmuls");
      }
    }

    int64_t granule = blockM;
    for (ExpertMatmulOp matmul : users) {
      TileAttr tile = matmul.getTileAttr();
      if (granule == 0 && tile)
        granule = tile.getBlockM();
      else if (!blockM && tile && tile.getBlockM() != granule)
        return rewriter.notifyMatchFailure(sort, "tiles disagree on block_m");
    }
    if (granule == 0)
      granule = kDefaultBlockM;

    rewriter.setInsertionPoint(sort);
    auto dynamicI32 =
        RankedTensorType::get({ShapedType::kDynamic}, rewriter.getI32Type());
    auto align =
        AlignOp::create(rewriter, sort.getLoc(), dynamicI32, dynamicI32,
                        RankedTensorType::get({1}, rewriter.getI32Type()),
                        sort.getIds(), rewriter.getI64IntegerAttr(granule),
                        rewriter.getI64IntegerAttr(sort.getNumExperts()));
    SmallVector<ExpertMatmulOp> ordered(users.begin(), users.end());
    llvm::sort(ordered, [](ExpertMatmulOp a, ExpertMatmulOp b) {
      return a->isBeforeInBlock(b);
    });
    for (ExpertMatmulOp matmul : ordered) {
      ExpertMatmulSpec spec = ExpertMatmulSpec::of(matmul);
      spec.slots = align.getSortedIds();
      spec.offsets = Value();
      spec.blockExperts = align.getBlockExperts();
      spec.numPadded = align.getNumPadded();
      spec.blockM = rewriter.getI64IntegerAttr(granule);
      rewriter.setInsertionPoint(matmul);
      ExpertMatmulOp aligned =
          spec.create(rewriter, matmul.getLoc(), matmul.getResult().getType());
      rewriter.replaceOp(matmul, aligned.getResult());
    }
    rewriter.eraseOp(sort);
    return success();
  }

  int64_t blockM;
};

struct MoeAlignPass : public moe::impl::MoeAlignBase<MoeAlignPass> {
  using MoeAlignBase::MoeAlignBase;

  void runOnOperation() override {
    if (blockM < 0) {
      getOperation()->emitError("moe-align: block-m must not be negative");
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<AlignSchedule>(&getContext(), blockM);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
