//===- MoeCanonicalize.cpp - moe canonicalization patterns ----------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Unpermuting the rows of a permute by that same permute's source indices
/// puts every row back where it came from: result[m, j] = input[m] for every
/// slot j. Replace the pair by a broadcast of the input over k, which drops
/// the gather and the scatter entirely.
struct UnpermuteOfPermute : public OpRewritePattern<UnpermuteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(UnpermuteOp unpermuteOp,
                                PatternRewriter &rewriter) const override {
    auto permuteOp = unpermuteOp.getRows().getDefiningOp<PermuteOp>();
    if (!permuteOp || unpermuteOp.getRows() != permuteOp.getRows() ||
        unpermuteOp.getSource() != permuteOp.getSource())
      return rewriter.notifyMatchFailure(unpermuteOp,
                                         "not the rows of one permute");
    RankedTensorType resultType = unpermuteOp.getResult().getType();
    if (resultType.getDimSize(1) != permuteOp.getIds().getType().getDimSize(1))
      return rewriter.notifyMatchFailure(unpermuteOp, "k differs from permute");

    Location loc = unpermuteOp.getLoc();
    Value input = permuteOp.getInput();
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, input, 0),
        rewriter.getIndexAttr(resultType.getDimSize(1)),
        rewriter.getIndexAttr(resultType.getDimSize(2))};
    Value init = tensor::EmptyOp::create(rewriter, loc, sizes,
                                         resultType.getElementType());
    auto broadcast = linalg::BroadcastOp::create(rewriter, loc, input, init,
                                                 /*dimensions=*/{1});
    Value replacement = broadcast->getResult(0);
    if (replacement.getType() != resultType)
      replacement =
          tensor::CastOp::create(rewriter, loc, resultType, replacement);
    rewriter.replaceOp(unpermuteOp, replacement);
    return success();
  }
};

/// A routed scaling factor of exactly 1 is the same as none.
struct DropUnitScalingFactor : public OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CombineOp combineOp,
                                PatternRewriter &rewriter) const override {
    std::optional<APFloat> scale = combineOp.getRoutedScalingFactor();
    if (!scale || !scale->isExactlyValue(1.0))
      return failure();
    rewriter.modifyOpInPlace(
        combineOp, [&] { combineOp.removeRoutedScalingFactorAttr(); });
    return success();
  }
};

} // namespace

void UnpermuteOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<UnpermuteOfPermute>(context);
}

void CombineOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                            MLIRContext *context) {
  results.add<DropUnitScalingFactor>(context);
}
