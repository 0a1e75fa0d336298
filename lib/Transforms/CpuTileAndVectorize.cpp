//===- CpuTileAndVectorize.cpp - moe-cpu-tile-and-vectorize ---------------===//

#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Vector/Transforms/VectorRewritePatterns.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CPUTILEANDVECTORIZE
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

/// Marks a tile produced by this pass, so that it is vectorized and never
/// tiled again.
static constexpr llvm::StringLiteral kTileMarker = "moe.cpu_tile";

static bool hasStaticShapes(linalg::LinalgOp op) {
  return llvm::all_of(op->getOperandTypes(), [](Type type) {
    auto shaped = dyn_cast<ShapedType>(type);
    return !shaped || shaped.hasStaticShape();
  });
}

/// Returns true if any operand of `op` holds 16-bit floats.
static bool hasHalfPrecisionOperands(linalg::LinalgOp op) {
  return llvm::any_of(op->getOperandTypes(), [](Type type) {
    auto shaped = dyn_cast<ShapedType>(type);
    return shaped && isa<FloatType>(shaped.getElementType()) &&
           shaped.getElementType().getIntOrFloatBitWidth() == 16;
  });
}

/// Only floating-point tensors are vectorized: vectors of i1 would be stored
/// bit-packed, unlike the byte-sized scalars other code reads back.
static bool hasFloatResults(linalg::LinalgOp op) {
  return llvm::all_of(op->getResultTypes(), [](Type type) {
    return isa<FloatType>(cast<ShapedType>(type).getElementType());
  });
}

namespace {

/// Tiles a static linalg op of type `OpTy` with the tile sizes that
/// `tileSizesFor` gives for it (one per loop; 0 leaves a loop untiled).
template <typename OpTy> struct TileStaticOp : public OpRewritePattern<OpTy> {
  TileStaticOp(MLIRContext *context, SmallVector<int64_t> tileSizes)
      : OpRewritePattern<OpTy>(context), tileSizes(std::move(tileSizes)) {}

  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    auto linalgOp = cast<linalg::LinalgOp>(op.getOperation());
    if (op->hasAttr(kTileMarker) || !hasStaticShapes(linalgOp) ||
        !linalgOp.hasPureTensorSemantics() || !hasFloatResults(linalgOp))
      return rewriter.notifyMatchFailure(op, "not a static untiled op");
    SmallVector<int64_t> loopSizes = linalgOp.getStaticLoopRanges();
    if (loopSizes.size() != tileSizes.size())
      return rewriter.notifyMatchFailure(op, "unexpected loop count");
    // Every tile gets a static shape: a tile size that does not divide its
    // loop shrinks to the largest divisor below it, and a tile never exceeds
    // the op, so small ops become one tile.
    // The x86 backend cannot legalize every odd-sized vector of 16-bit
    // floats, so their tiles keep whole multiples of 8 lanes in every
    // dimension but the row dimension of a matmul, or stay scalar.
    bool halfPrecision = hasHalfPrecisionOperands(linalgOp);
    SmallVector<OpFoldResult> sizes;
    for (auto [loop, sizePair] :
         llvm::enumerate(llvm::zip_equal(loopSizes, tileSizes))) {
      auto [loopSize, tileSize] = sizePair;
      bool needsWholeLanes =
          halfPrecision && !(isa<linalg::MatmulOp>(op) && loop == 0);
      int64_t size = std::min(tileSize == 0 ? loopSize : tileSize, loopSize);
      while (size > 1 &&
             (loopSize % size != 0 || (needsWholeLanes && size % 8 != 0)))
        --size;
      if (needsWholeLanes && size % 8 != 0)
        return rewriter.notifyMatchFailure(op, "16-bit lanes do not fit");
      sizes.push_back(rewriter.getIndexAttr(size == loopSize ? 0 : size));
    }
    if (llvm::all_of(sizes, isZeroInteger)) {
      rewriter.modifyOpInPlace(
          op, [&] { op->setAttr(kTileMarker, rewriter.getUnitAttr()); });
      return success();
    }
    scf::SCFTilingOptions options;
    options.setTileSizes(sizes);
    FailureOr<scf::SCFTilingResult> tiled = scf::tileUsingSCF(
        rewriter, cast<TilingInterface>(op.getOperation()), options);
    if (failed(tiled))
      return rewriter.notifyMatchFailure(op, "tiling failed");
    for (Operation *tiledOp : tiled->tiledOps)
      tiledOp->setAttr(kTileMarker, rewriter.getUnitAttr());
    rewriter.replaceOp(op, tiled->replacements);
    return success();
  }

  SmallVector<int64_t> tileSizes;
};

/// Vectorizes a marked tile whose shapes are static.
struct VectorizeTile : public OpInterfaceRewritePattern<linalg::LinalgOp> {
  using OpInterfaceRewritePattern::OpInterfaceRewritePattern;

  LogicalResult matchAndRewrite(linalg::LinalgOp op,
                                PatternRewriter &rewriter) const override {
    if (!op->hasAttr(kTileMarker) || !hasStaticShapes(op) ||
        !hasFloatResults(op) || failed(linalg::vectorizeOpPrecondition(op)))
      return rewriter.notifyMatchFailure(op, "not a static tile");
    // Named contractions become one vector.contract with the op's own
    // indexing maps, which lowers to outer products; the generic path would
    // broadcast both operands to the full iteration space instead.
    FailureOr<linalg::VectorizationResult> result = linalg::vectorize(
        rewriter, op, /*inputVectorSizes=*/{}, /*inputScalableVecDims=*/{},
        /*vectorizeNDExtract=*/false, /*flatten1DDepthwiseConv=*/false,
        /*assumeDynamicDimsMatchVecSizes=*/false,
        /*createNamedContraction=*/
        isa<linalg::ContractionOpInterface>(op.getOperation()));
    if (failed(result))
      return rewriter.notifyMatchFailure(op, "vectorization failed");
    rewriter.replaceOp(op, result->replacements);
    return success();
  }
};

struct CpuTileAndVectorizePass
    : public moe::impl::CpuTileAndVectorizeBase<CpuTileAndVectorizePass> {
  using CpuTileAndVectorizeBase::CpuTileAndVectorizeBase;

  void runOnOperation() override {
    if (tileM < 1 || tileN < 1 || tileK < 1) {
      getOperation()->emitError(
          "moe-cpu-tile-and-vectorize: tile sizes must be positive");
      return signalPassFailure();
    }
    MLIRContext *context = &getContext();
    RewritePatternSet tiling(context);
    // Loops: matmul (m, n, k); transpose result (k, n); fill (m, n).
    tiling.add<TileStaticOp<linalg::MatmulOp>>(
        context, SmallVector<int64_t>{tileM, tileN, tileK});
    tiling.add<TileStaticOp<linalg::TransposeOp>>(
        context, SmallVector<int64_t>{tileK, tileN});
    tiling.add<TileStaticOp<linalg::FillOp>>(
        context, SmallVector<int64_t>{tileM, tileN});
    if (failed(applyPatternsGreedily(getOperation(), std::move(tiling))))
      return signalPassFailure();

    RewritePatternSet vectorization(context);
    vectorization.add<VectorizeTile>(context);
    vector::populateVectorReductionToContractPatterns(vectorization);
    if (failed(applyPatternsGreedily(getOperation(), std::move(vectorization))))
      return signalPassFailure();
    // The markers have served their purpose.
    getOperation()->walk([](Operation *op) { op->removeAttr(kTileMarker); });
  }
};
} // namespace
