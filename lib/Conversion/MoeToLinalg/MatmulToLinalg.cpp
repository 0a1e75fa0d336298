//===- MatmulToLinalg.cpp - grouped matmul lowering ---===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {
//===----------------------------------------------------------------------===//
// GroupedMatmulOp
//===----------------------------------------------------------------------===//

struct GroupedMatmulOpLowering : public OpConversionPattern<GroupedMatmulOp> {
  GroupedMatmulOpLowering(MLIRContext *context, int64_t rowBlock)
      : OpConversionPattern(context), rowBlock(rowBlock) {}

  LogicalResult
  matchAndRewrite(GroupedMatmulOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (op.getQuantization().getFormat() != QuantFormat::None)
      return rewriter.notifyMatchFailure(op, "quantized formats not lowered");
    Location loc = op.getLoc();
    Value rows = adaptor.getRows();
    Value weights = adaptor.getWeights();
    Value offsets = adaptor.getOffsets();
    RankedTensorType weightsType = op.getWeights().getType();
    RankedTensorType resultType = op.getResult().getType();
    int64_t numExperts = weightsType.getDimSize(0);
    int64_t outFeatures = weightsType.getDimSize(1);
    int64_t inFeatures = weightsType.getDimSize(2);
    Type elementType = resultType.getElementType();

    SmallVector<OpFoldResult> resultSizes = {
        tensor::getMixedSize(rewriter, loc, rows, 0),
        rewriter.getIndexAttr(outFeatures)};
    Value resultInit = createEmpty(rewriter, loc, resultSizes, elementType);
    Value c0 = indexConstant(rewriter, loc, 0);
    Value c1 = indexConstant(rewriter, loc, 1);
    Value blockValue = indexConstant(rewriter, loc, rowBlock);
    Value numRowsTotal = tensor::DimOp::create(rewriter, loc, rows, 0);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);
    auto expertLoop = scf::ForOp::create(
        rewriter, loc, c0, indexConstant(rewriter, loc, numExperts), c1,
        ValueRange{resultInit},
        [&](OpBuilder &b, Location l, Value expert, ValueRange expertArgs) {
          // A non-decreasing partition of [0, rows) is the contract; clamp
          // each range into [previous end, rows] after reporting a breach.
          Value begin = extractIndex(b, l, offsets, expert);
          Value end =
              extractIndex(b, l, offsets,
                           ValueRange{arith::AddIOp::create(b, l, expert, c1)});
          Value beginBad = arith::OrIOp::create(
              b, l,
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, begin, c0),
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, begin,
                                    numRowsTotal));
          Value endBad = arith::OrIOp::create(
              b, l,
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, end,
                                    begin),
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, end,
                                    numRowsTotal));
          emitRuntimeCheck(
              b, l, reportFn, arith::OrIOp::create(b, l, beginBad, endBad),
              RuntimeErrorCode::InvalidOffsets, expert, numRowsTotal);
          begin = arith::MinSIOp::create(
              b, l, arith::MaxSIOp::create(b, l, begin, c0), numRowsTotal);
          end = arith::MinSIOp::create(
              b, l, arith::MaxSIOp::create(b, l, end, begin), numRowsTotal);
          // Experts without rows cost nothing, not even their weights.
          Value numRows = arith::SubIOp::create(b, l, end, begin);
          Value hasRows = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt,
                                                numRows, c0);
          auto ifOp = scf::IfOp::create(
              b, l, hasRows,
              [&](OpBuilder &tb, Location tl) {
                // The expert's weights, transposed once to [K, N] so that the
                // row blocks are plain matmuls whose N dimension is
                // contiguous in memory and vectorizes.
                auto expertWeightsType = RankedTensorType::get(
                    {outFeatures, inFeatures}, weightsType.getElementType());
                Value expertWeights = tensor::ExtractSliceOp::create(
                    tb, tl, expertWeightsType, weights,
                    ArrayRef<OpFoldResult>{expert, tb.getIndexAttr(0),
                                           tb.getIndexAttr(0)},
                    ArrayRef<OpFoldResult>{tb.getIndexAttr(1),
                                           tb.getIndexAttr(outFeatures),
                                           tb.getIndexAttr(inFeatures)},
                    ArrayRef<OpFoldResult>{tb.getIndexAttr(1),
                                           tb.getIndexAttr(1),
                                           tb.getIndexAttr(1)});
                SmallVector<OpFoldResult> transposedSizes = {
                    tb.getIndexAttr(inFeatures), tb.getIndexAttr(outFeatures)};
                Value transposed =
                    linalg::TransposeOp::create(
                        tb, tl, expertWeights,
                        createEmpty(tb, tl, transposedSizes,
                                    weightsType.getElementType()),
                        ArrayRef<int64_t>{1, 0})
                        ->getResult(0);
                // Full row blocks, then the remaining rows one at a time;
                // every matmul has a static shape.
                Value fullRows = arith::MulIOp::create(
                    tb, tl, arith::DivUIOp::create(tb, tl, numRows, blockValue),
                    blockValue);
                Value fullEnd = arith::AddIOp::create(tb, tl, begin, fullRows);
                Value acc =
                    buildRowBlockLoop(tb, tl, rows, transposed, expertArgs[0],
                                      begin, fullEnd, rowBlock, elementType);
                acc = buildRowBlockLoop(tb, tl, rows, transposed, acc, fullEnd,
                                        end, /*blockRows=*/1, elementType);
                scf::YieldOp::create(tb, tl, acc);
              },
              [&](OpBuilder &eb, Location el) {
                scf::YieldOp::create(eb, el, expertArgs[0]);
              });
          Value acc = ifOp.getResult(0);
          scf::YieldOp::create(b, l, acc);
        });
    rewriter.replaceOp(
        op, castToType(rewriter, loc, expertLoop.getResult(0), resultType));
    return success();
  }

private:
  /// Emits `for r in [begin, end) step blockRows: result[r:r+blockRows] =
  /// rows[r:r+blockRows] · transposedWeights`, accumulating in f32.
  static Value buildRowBlockLoop(OpBuilder &b, Location loc, Value rows,
                                 Value transposedWeights, Value result,
                                 Value begin, Value end, int64_t blockRows,
                                 Type elementType) {
    auto weightsType = cast<RankedTensorType>(transposedWeights.getType());
    int64_t inFeatures = weightsType.getDimSize(0);
    int64_t outFeatures = weightsType.getDimSize(1);
    Type rowElementType =
        cast<RankedTensorType>(rows.getType()).getElementType();
    Type f32 = b.getF32Type();
    Value step = indexConstant(b, loc, blockRows);
    auto loop = scf::ForOp::create(
        b, loc, begin, end, step, ValueRange{result},
        [&](OpBuilder &lb, Location l, Value row, ValueRange args) {
          auto blockType =
              RankedTensorType::get({blockRows, inFeatures}, rowElementType);
          Value block = tensor::ExtractSliceOp::create(
              lb, l, blockType, rows,
              ArrayRef<OpFoldResult>{row, lb.getIndexAttr(0)},
              ArrayRef<OpFoldResult>{lb.getIndexAttr(blockRows),
                                     lb.getIndexAttr(inFeatures)},
              ArrayRef<OpFoldResult>{lb.getIndexAttr(1), lb.getIndexAttr(1)});
          SmallVector<OpFoldResult> outSizes = {lb.getIndexAttr(blockRows),
                                                lb.getIndexAttr(outFeatures)};
          // linalg.matmul extends bf16/f16 operands to the f32 accumulator.
          Value product =
              linalg::MatmulOp::create(
                  lb, l, ValueRange{block, transposedWeights},
                  ValueRange{createFilled(lb, l, outSizes, f32, 0.0)})
                  .getResult(0);
          Value converted = buildConvert(
              lb, l, product,
              RankedTensorType::get({blockRows, outFeatures}, elementType));
          Value updated = tensor::InsertSliceOp::create(
              lb, l, converted, args[0],
              ArrayRef<OpFoldResult>{row, lb.getIndexAttr(0)}, outSizes,
              ArrayRef<OpFoldResult>{lb.getIndexAttr(1), lb.getIndexAttr(1)});
          scf::YieldOp::create(lb, l, updated);
        });
    return loop.getResult(0);
  }

  int64_t rowBlock;
};

} // namespace

void mlir::moe::lowering::populateMatmulLoweringPatterns(
    RewritePatternSet &patterns, int64_t rowBlock) {
  patterns.add<GroupedMatmulOpLowering>(patterns.getContext(), rowBlock);
}
