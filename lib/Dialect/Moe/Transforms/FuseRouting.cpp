//===- FuseRouting.cpp - moe-fuse-routing ---------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEROUTING
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// topk(router(x)) -> route(x) when the logits have no other use.
struct FuseRouterIntoTopk : public OpRewritePattern<TopkOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(TopkOp topk,
                                PatternRewriter &rewriter) const override {
    auto router = topk.getLogits().getDefiningOp<RouterOp>();
    if (!router)
      return rewriter.notifyMatchFailure(topk, "logits not from moe.router");
    if (!router.getLogits().hasOneUse())
      return rewriter.notifyMatchFailure(topk, "logits have another use");
    auto route = RouteOp::create(
        rewriter, rewriter.getFusedLoc({router.getLoc(), topk.getLoc()}),
        topk.getWeights().getType(), topk.getIds().getType(), router.getInput(),
        router.getGateWeight(), router.getBias(), topk.getBias(),
        topk.getScoring(), topk.getKAttr(), topk.getNumGroupsAttr(),
        topk.getTopkGroupsAttr(), topk.getRenormalizeAttr(),
        topk.getRoutedScalingFactorAttr());
    rewriter.replaceOp(topk, route.getResults());
    rewriter.eraseOp(router);
    return success();
  }
};

struct MoeFuseRoutingPass
    : public moe::impl::MoeFuseRoutingBase<MoeFuseRoutingPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateFuseRoutingPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void mlir::moe::populateFuseRoutingPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseRouterIntoTopk>(patterns.getContext());
}
