//===- FuseExperts.cpp - moe-fuse-experts ---------------------------------===//
//
// Each pattern folds one neighbour into a moe.expert_matmul (lifting a plain
// moe.grouped_matmul on the way), so that any partial chain fuses as far as
// it is legal. A producer is folded only into its single user.
//
//===----------------------------------------------------------------------===//

#include "ExpertMatmulSpec.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEEXPERTS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Returns true if `source` lists the slots of the schedule whose expert
/// ranges are `offsets`: both are results of one moe.sort or moe.permute.
static bool isSourceOfSchedule(Value source, Value offsets) {
  if (auto sort = source.getDefiningOp<SortOp>())
    return sort.getSource() == source && sort.getOffsets() == offsets;
  if (auto permute = source.getDefiningOp<PermuteOp>())
    return permute.getSource() == source && permute.getOffsets() == offsets;
  return false;
}

namespace {

/// matmul(permute(x).rows) -> expert_matmul(x) {gather}: the matmul reads
/// its A rows from x through the permutation, and moe.permute, whose rows
/// are no longer needed, becomes moe.sort. A w8a8 matmul of
/// quantize(permute(x).rows) gathers from quantize(x) instead, which is the
/// same for the row-wise scale layouts (per token, 1x128 blocks) and, since
/// permute takes every token, for per-tensor scales.
template <typename MatmulOp>
struct FoldGatherIntoMatmul : public OpRewritePattern<MatmulOp> {
  using OpRewritePattern<MatmulOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(MatmulOp matmul,
                                PatternRewriter &rewriter) const override {
    ExpertMatmulSpec spec = ExpertMatmulSpec::of(matmul);
    if (spec.gather || !spec.offsets)
      return rewriter.notifyMatchFailure(matmul, "already gathers");
    // A w8a8 matmul reads the codes of quantized permuted rows: the
    // quantization moves before the gather, onto the token rows.
    auto quantize = spec.input.template getDefiningOp<QuantizeOp>();
    if (quantize) {
      if (quantize.getScales() != spec.inputScales)
        return rewriter.notifyMatchFailure(
            matmul, "input scales of another quantization");
      if (!quantize.getCodes().hasOneUse() || !quantize.getScales().hasOneUse())
        return rewriter.notifyMatchFailure(
            matmul, "quantized rows or scales have another use");
    }
    Value rows = quantize ? quantize.getInput() : spec.input;
    auto permute = rows.getDefiningOp<PermuteOp>();
    if (!permute || rows != permute.getRows())
      return rewriter.notifyMatchFailure(matmul, "A is not permuted rows");
    if (!permute.getRows().hasOneUse())
      return rewriter.notifyMatchFailure(matmul, "permuted rows have another "
                                                 "use");
    // A per-tensor scale is the amax of the rows gathered. moe.permute
    // takes every token k >= 1 times (its verifier; its ids are all in
    // range), so that is the amax of all token rows.
    if (spec.offsets != permute.getOffsets() ||
        (spec.slots && spec.slots != permute.getSource()))
      return rewriter.notifyMatchFailure(matmul, "another schedule");

    rewriter.setInsertionPoint(permute);
    auto sort = SortOp::create(rewriter, permute.getLoc(),
                               permute.getOffsets().getType(),
                               permute.getSource().getType(), permute.getIds());
    rewriter.replaceAllUsesWith(permute.getOffsets(), sort.getOffsets());
    rewriter.replaceAllUsesWith(permute.getSource(), sort.getSource());

    spec.input = permute.getInput();
    if (quantize) {
      // The same quantization of the token rows: one scale row per token
      // (one scale for per-tensor).
      auto tokenRows = cast<RankedTensorType>(spec.input.getType());
      auto codesType = quantize.getCodes().getType();
      auto scalesType = cast<RankedTensorType>(quantize.getScales().getType());
      SmallVector<int64_t> scalesShape(scalesType.getShape());
      if (quantize.getQuantization().getScales() != ScaleLayout::PerTensor)
        scalesShape[0] = tokenRows.getDimSize(0);
      rewriter.setInsertionPoint(quantize);
      auto tokenQuantize = QuantizeOp::create(
          rewriter, quantize.getLoc(),
          RankedTensorType::get(tokenRows.getShape(),
                                codesType.getElementType()),
          RankedTensorType::get(scalesShape, scalesType.getElementType()),
          spec.input, quantize.getQuantizationAttr());
      spec.input = tokenQuantize.getCodes();
      spec.inputScales = tokenQuantize.getScales();
    }
    spec.gather = true;
    spec.k = permute.getIds().getType().getDimSize(1);
    spec.slots = sort.getSource();
    spec.offsets = sort.getOffsets();
    rewriter.setInsertionPoint(matmul);
    ExpertMatmulOp fused =
        spec.create(rewriter, matmul.getLoc(), matmul->getResult(0).getType());
    rewriter.replaceOp(matmul, fused.getResult());
    if (quantize)
      rewriter.eraseOp(quantize);
    rewriter.eraseOp(permute);
    return success();
  }
};

/// activation(matmul) -> expert_matmul {activation}: GEMM1 stores the I
/// activated columns instead of the 2I gate and up columns.
struct FoldActivationIntoMatmul : public OpRewritePattern<ActivationOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ActivationOp activation,
                                PatternRewriter &rewriter) const override {
    std::optional<ExpertMatmulSpec> spec =
        ExpertMatmulSpec::ofRowsProducer(activation.getInput());
    if (!spec || spec->activation)
      return rewriter.notifyMatchFailure(activation, "no matmul to fold into");
    if (!activation.getInput().hasOneUse())
      return rewriter.notifyMatchFailure(activation,
                                         "matmul result has another use");
    spec->activation =
        ActivationKindAttr::get(rewriter.getContext(), activation.getKind());
    spec->gateUpInterleaved = activation.getGateUpInterleaved();
    spec->alpha = activation.getAlphaAttr();
    spec->limit = activation.getLimitAttr();
    Operation *producer = activation.getInput().getDefiningOp();
    ExpertMatmulOp fused = spec->create(
        rewriter,
        rewriter.getFusedLoc({producer->getLoc(), activation.getLoc()}),
        activation.getResult().getType());
    rewriter.replaceOp(activation, fused.getResult());
    rewriter.eraseOp(producer);
    return success();
  }
};

/// unpermute(matmul, source) -> expert_matmul {unpermute}: GEMM2 writes
/// each row straight to its (token, slot) place.
struct FoldUnpermuteIntoMatmul : public OpRewritePattern<UnpermuteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(UnpermuteOp unpermute,
                                PatternRewriter &rewriter) const override {
    std::optional<ExpertMatmulSpec> spec =
        ExpertMatmulSpec::ofRowsProducer(unpermute.getRows());
    if (!spec)
      return rewriter.notifyMatchFailure(unpermute, "no matmul to fold into");
    if (!unpermute.getRows().hasOneUse())
      return rewriter.notifyMatchFailure(unpermute,
                                         "matmul result has another use");
    Value source = unpermute.getSource();
    if (spec->slots ? spec->slots != source
                    : !isSourceOfSchedule(source, spec->offsets))
      return rewriter.notifyMatchFailure(unpermute,
                                         "source of another schedule");
    spec->slots = source;
    spec->unpermute = true;
    spec->k = unpermute.getResult().getType().getDimSize(1);
    Operation *producer = unpermute.getRows().getDefiningOp();
    ExpertMatmulOp fused = spec->create(
        rewriter,
        rewriter.getFusedLoc({producer->getLoc(), unpermute.getLoc()}),
        unpermute.getResult().getType());
    rewriter.replaceOp(unpermute, fused.getResult());
    rewriter.eraseOp(producer);
    return success();
  }
};

/// combine(expert_matmul {unpermute}) -> expert_matmul combine(weights):
/// the routed weight multiplies each row in the epilogue, which adds it into
/// its token's output row.
struct FoldCombineIntoMatmul : public OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CombineOp combine,
                                PatternRewriter &rewriter) const override {
    auto producer = combine.getInput().getDefiningOp<ExpertMatmulOp>();
    if (!producer || !producer.getUnpermute())
      return rewriter.notifyMatchFailure(combine, "no scattering matmul");
    if (!combine.getInput().hasOneUse())
      return rewriter.notifyMatchFailure(combine,
                                         "scattered rows have another use");
    ExpertMatmulSpec spec = ExpertMatmulSpec::of(producer);
    spec.unpermute = false;
    spec.routingWeights = combine.getWeights();
    spec.routedScalingFactor = combine.getRoutedScalingFactorAttr();
    ExpertMatmulOp fused = spec.create(
        rewriter, rewriter.getFusedLoc({producer.getLoc(), combine.getLoc()}),
        combine.getResult().getType());
    rewriter.replaceOp(combine, fused.getResult());
    rewriter.eraseOp(producer);
    return success();
  }
};

/// A permute whose rows nobody reads only sorts: moe.sort.
struct PermuteWithoutRowsToSort : public OpRewritePattern<PermuteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(PermuteOp permute,
                                PatternRewriter &rewriter) const override {
    if (!permute.getRows().use_empty())
      return rewriter.notifyMatchFailure(permute, "rows are used");
    auto sort = SortOp::create(rewriter, permute.getLoc(),
                               permute.getOffsets().getType(),
                               permute.getSource().getType(), permute.getIds());
    rewriter.replaceAllUsesWith(permute.getOffsets(), sort.getOffsets());
    rewriter.replaceAllUsesWith(permute.getSource(), sort.getSource());
    rewriter.eraseOp(permute);
    return success();
  }
};

struct MoeFuseExpertsPass
    : public moe::impl::MoeFuseExpertsBase<MoeFuseExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateFuseExpertsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void mlir::moe::populateFuseExpertsPatterns(RewritePatternSet &patterns) {
  patterns.add<FoldGatherIntoMatmul<GroupedMatmulOp>,
               FoldGatherIntoMatmul<ExpertMatmulOp>, FoldActivationIntoMatmul,
               FoldUnpermuteIntoMatmul, FoldCombineIntoMatmul,
               PermuteWithoutRowsToSort>(patterns.getContext());
}
