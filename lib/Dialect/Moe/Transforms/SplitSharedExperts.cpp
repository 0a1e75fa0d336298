//===- SplitSharedExperts.cpp - moe-split-shared-experts ------------------===//
//
// Moves the shared experts of a fused expert block out of the routed
// schedule into one of their own, where the cost model says that is faster.
//
//===----------------------------------------------------------------------===//

#include "ExpertMatmulSpec.h"
#include "TileUtils.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/CostModel.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESPLITSHAREDEXPERTS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The fused block this pass rewrites: GEMM1 (gather, activation) and GEMM2
/// (combine) over one moe.sort of the ids of a moe.add_shared_experts.
struct SharedExpertBlock {
  ExpertMatmulOp gemm1, gemm2;
  AddSharedExpertsOp shared;
  SortOp sort;
  int64_t routedK = 0;
};

/// Returns true if `op` is an unquantized, bias-free, untiled expert matmul
/// in the offsets form over `sort`'s schedule.
bool isPlainMatmulOver(ExpertMatmulOp op, SortOp sort) {
  return op && op.getOffsets() == sort.getOffsets() &&
         op.getSlots() == sort.getSource() &&
         op.getQuantization().getFormat() == QuantFormat::None &&
         !op.getBias() && !op.getTileAttr() && !op.getAccumulate();
}

FailureOr<SharedExpertBlock> matchSharedExpertBlock(ExpertMatmulOp gemm2) {
  SharedExpertBlock block;
  block.gemm2 = gemm2;
  if (!gemm2.isCombine())
    return failure();
  block.shared = gemm2.getRoutingWeights().getDefiningOp<AddSharedExpertsOp>();
  block.sort = gemm2.getOffsets() ? gemm2.getOffsets().getDefiningOp<SortOp>()
                                  : SortOp();
  if (!block.shared || !block.sort ||
      block.sort.getIds() != block.shared.getIds() ||
      !isPlainMatmulOver(gemm2, block.sort))
    return failure();
  block.gemm1 = gemm2.getInput().getDefiningOp<ExpertMatmulOp>();
  if (!isPlainMatmulOver(block.gemm1, block.sort) || !block.gemm1.getGather() ||
      block.gemm1.isCombine() || block.gemm1.getUnpermute() ||
      !block.gemm1->hasOneUse())
    return failure();
  int64_t numExperts =
      block.shared.getNumExperts() + block.shared.getNumShared();
  if (block.gemm1.getNumExperts() != numExperts ||
      gemm2.getNumExperts() != numExperts)
    return failure();
  block.routedK = block.shared.getRoutedIds().getType().getDimSize(1);
  return block;
}

/// `shape` restricted to the routed experts (`routed` true) or to the
/// shared ones.
GroupedMatmulShape restrictShape(GroupedMatmulShape shape, int64_t numTokens,
                                 int64_t routedK, int64_t numShared,
                                 bool routed) {
  int64_t numExperts = shape.numExperts - numShared;
  shape.numRows = numTokens * (routed ? routedK : numShared);
  shape.numExperts = routed ? numExperts : numShared;
  shape.numSharedExperts = routed ? 0 : numShared;
  return shape;
}

struct SplitSharedExperts : public OpRewritePattern<ExpertMatmulOp> {
  SplitSharedExperts(MLIRContext *context, const GpuTarget &target,
                     int64_t numTokens, int64_t minRowBlocks, int64_t tallRows,
                     double minorShare, StringRef policy)
      : OpRewritePattern<ExpertMatmulOp>(context), target(target),
        numTokens(numTokens), minRowBlocks(minRowBlocks), tallRows(tallRows),
        minorShare(minorShare), policy(policy.str()) {}

  LogicalResult matchAndRewrite(ExpertMatmulOp gemm2,
                                PatternRewriter &rewriter) const override {
    FailureOr<SharedExpertBlock> block = matchSharedExpertBlock(gemm2);
    if (failed(block))
      return rewriter.notifyMatchFailure(gemm2, "not a fused shared block");
    if (policy == "fused" || (policy == "cost" && !isSplitFaster(*block)))
      return rewriter.notifyMatchFailure(
          gemm2, "fused measured faster for such blocks");
    rewriter.replaceOp(gemm2, buildSplit(*block, rewriter));
    return success();
  }

private:
  /// The policy measured on an H200 (docs/checkpoint-features.md): the
  /// split pays where the shared experts' rows would fill at least
  /// `minRowBlocks` of the routed schedule's row blocks, each of which
  /// streams their weights again, unless those blocks are already tall and
  /// the shared experts a large share of the rows (there the one fused
  /// grid balances them better than two).
  bool isSplitFaster(SharedExpertBlock block) const {
    int64_t routedHeight =
        tileOfPart(block.gemm1, block, /*routed=*/true).getBlockM();
    int64_t numShared = block.shared.getNumShared();
    double sharedShare = double(numShared) / double(block.routedK + numShared);
    return numTokens >= minRowBlocks * routedHeight &&
           (routedHeight < tallRows || sharedShare <= minorShare);
  }

  /// The last `numShared` experts of `weights`.
  Value sliceSharedExperts(PatternRewriter &rewriter, Location loc,
                           Value weights, int64_t numShared) const {
    auto type = cast<RankedTensorType>(weights.getType());
    SmallVector<int64_t> offsets(type.getRank(), 0), sizes(type.getShape()),
        strides(type.getRank(), 1);
    offsets[0] = type.getDimSize(0) - numShared;
    sizes[0] = numShared;
    MLIRContext *context = rewriter.getContext();
    return tensor::ExtractSliceOp::create(
        rewriter, loc, weights, getAsIndexOpFoldResult(context, offsets),
        getAsIndexOpFoldResult(context, sizes),
        getAsIndexOpFoldResult(context, strides));
  }

  /// The tile moe-tile would give `op`'s routed (`routed` true) or shared
  /// part: the one the split was priced with. Attached here because the
  /// routed schedule keeps the whole weights, whose shared experts moe-tile
  /// would count among the routed ones.
  TileAttr tileOfPart(ExpertMatmulOp op, SharedExpertBlock block,
                      bool routed) const {
    GroupedMatmulShape shape =
        restrictShape(*getGroupedMatmulShape(op, numTokens), numTokens,
                      block.routedK, block.shared.getNumShared(), routed);
    return chooseTileAttr(op.getContext(), shape, target);
  }

  Value buildSplit(SharedExpertBlock block, PatternRewriter &rewriter) const {
    Location loc = block.gemm2.getLoc();
    AddSharedExpertsOp shared = block.shared;
    int64_t numShared = shared.getNumShared();
    Type i32 = rewriter.getI32Type();
    auto sortOf = [&](Value ids, int64_t numExperts) {
      return SortOp::create(rewriter, loc,
                            RankedTensorType::get({numExperts + 1}, i32),
                            block.sort.getSource().getType(), ids);
    };
    auto resultType = cast<RankedTensorType>(block.gemm2.getType());

    // The routed experts: the same weights, whose shared experts get no
    // rows; the combine keeps its f32 sums.
    SortOp routedSort =
        sortOf(shared.getRoutedIds(), block.gemm1.getNumExperts());
    ExpertMatmulSpec gemm1 = ExpertMatmulSpec::of(block.gemm1);
    gemm1.slots = routedSort.getSource();
    gemm1.offsets = routedSort.getOffsets();
    gemm1.k = block.routedK;
    gemm1.tile = tileOfPart(block.gemm1, block, /*routed=*/true);
    Value routedRows = gemm1.create(rewriter, loc, block.gemm1.getType());
    ExpertMatmulSpec gemm2 = ExpertMatmulSpec::of(block.gemm2);
    gemm2.input = routedRows;
    gemm2.slots = routedSort.getSource();
    gemm2.offsets = routedSort.getOffsets();
    gemm2.routingWeights = shared.getRoutedWeights();
    gemm2.k = block.routedK;
    gemm2.tile = tileOfPart(block.gemm2, block, /*routed=*/true);
    Value routedSums = gemm2.create(
        rewriter, loc,
        RankedTensorType::get(resultType.getShape(), rewriter.getF32Type()));

    // The shared experts: their own schedule over their weight slices,
    // accumulating into the routed sums.
    auto routing = SharedExpertRoutingOp::create(
        rewriter, loc,
        shared.getRoutedWeights().getType().clone(
            {ShapedType::kDynamic, numShared}),
        RankedTensorType::get({ShapedType::kDynamic, numShared}, i32),
        shared.getRoutedWeights(), shared.getGate(),
        rewriter.getI64IntegerAttr(numShared));
    SortOp sharedSort = sortOf(routing.getIds(), numShared);
    gemm1.weights =
        sliceSharedExperts(rewriter, loc, block.gemm1.getWeights(), numShared);
    gemm1.slots = sharedSort.getSource();
    gemm1.offsets = sharedSort.getOffsets();
    gemm1.k = numShared;
    gemm1.tile = tileOfPart(block.gemm1, block, /*routed=*/false);
    gemm2.input = gemm1.create(rewriter, loc, block.gemm1.getType());
    gemm2.weights =
        sliceSharedExperts(rewriter, loc, block.gemm2.getWeights(), numShared);
    gemm2.slots = sharedSort.getSource();
    gemm2.offsets = sharedSort.getOffsets();
    gemm2.routingWeights = routing.getWeights();
    gemm2.accumulate = routedSums;
    gemm2.k = numShared;
    gemm2.tile = tileOfPart(block.gemm2, block, /*routed=*/false);
    return gemm2.create(rewriter, loc, resultType);
  }

  GpuTarget target;
  int64_t numTokens;
  int64_t minRowBlocks, tallRows;
  double minorShare;
  /// "cost", "split" or "fused" (the pass option).
  std::string policy;
};

struct MoeSplitSharedExpertsPass
    : public moe::impl::MoeSplitSharedExpertsBase<MoeSplitSharedExpertsPass> {
  using MoeSplitSharedExpertsBase::MoeSplitSharedExpertsBase;

  void runOnOperation() override {
    if (numTokens < 1 || numSMs < 1 || peakTflops <= 0 || bandwidthGBps <= 0 ||
        l2Bytes < 1 || sharedMemoryBytes < 1 || minRowBlocks < 1 ||
        tallRows < 1) {
      getOperation()->emitError(
          "moe-split-shared-experts: the target options, min-row-blocks "
          "and tall-rows must be positive");
      return signalPassFailure();
    }
    if (!(minorShare >= 0.0 && minorShare <= 1.0)) {
      getOperation()->emitError(
          "moe-split-shared-experts: minor-share must be in [0, 1], got ")
          << minorShare.getValue();
      return signalPassFailure();
    }
    if (policy != "cost" && policy != "split" && policy != "fused") {
      getOperation()->emitError("moe-split-shared-experts: policy must be "
                                "cost, split or fused, got '")
          << policy << "'";
      return signalPassFailure();
    }
    GpuTarget target;
    target.numSMs = numSMs;
    target.peakFlops = peakTflops * 1e12;
    target.bandwidthBytes = bandwidthGBps * 1e9;
    target.l2Bytes = l2Bytes;
    target.sharedMemoryBytes = sharedMemoryBytes;
    RewritePatternSet patterns(&getContext());
    patterns.add<SplitSharedExperts>(&getContext(), target, numTokens,
                                     minRowBlocks, tallRows, minorShare,
                                     policy);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
