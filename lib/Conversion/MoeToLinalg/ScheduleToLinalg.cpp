//===- ScheduleToLinalg.cpp - permute and unpermute lowering ---===//

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
// PermuteOp
//===----------------------------------------------------------------------===//

struct PermuteOpLowering : public OpConversionPattern<PermuteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(PermuteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    Value ids = adaptor.getIds();
    int64_t numExperts = op.getNumExperts();
    int64_t k = op.getIds().getType().getDimSize(1);
    Value kValue = indexConstant(rewriter, loc, k);
    Value numTokens = tensor::DimOp::create(rewriter, loc, ids, 0);
    Value numAssignments =
        arith::MulIOp::create(rewriter, loc, numTokens, kValue);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);
    auto [offsets, source] =
        buildSortAssignments(rewriter, loc, ids, numExperts, reportFn);

    // rows[i, h] = input[source[i] / k, h].
    RankedTensorType inputType = op.getInput().getType();
    SmallVector<OpFoldResult> rowSizes = {
        OpFoldResult(numAssignments),
        rewriter.getIndexAttr(inputType.getDimSize(1))};
    Value rows = buildGeneric(
        rewriter, loc, source,
        createEmpty(rewriter, loc, rowSizes, inputType.getElementType()),
        {{0}, {0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange args) {
          Value assignment =
              arith::IndexCastOp::create(b, l, b.getIndexType(), args[0]);
          Value token = arith::DivUIOp::create(b, l, assignment, kValue);
          Value column = linalg::IndexOp::create(b, l, 1);
          linalg::YieldOp::create(b, l,
                                  Value(tensor::ExtractOp::create(
                                      b, l, input, ValueRange{token, column})));
        });

    rewriter.replaceOp(
        op, {castToType(rewriter, loc, rows, op.getRows().getType()),
             castToType(rewriter, loc, offsets, op.getOffsets().getType()),
             castToType(rewriter, loc, source, op.getSource().getType())});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// UnpermuteOp
//===----------------------------------------------------------------------===//

struct UnpermuteOpLowering : public OpConversionPattern<UnpermuteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(UnpermuteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value rows = adaptor.getRows();
    Value source = adaptor.getSource();
    RankedTensorType resultType = op.getResult().getType();
    int64_t k = resultType.getDimSize(1);
    int64_t width = resultType.getDimSize(2);
    Type i32 = rewriter.getI32Type();
    Value c0 = indexConstant(rewriter, loc, 0);
    Value c1 = indexConstant(rewriter, loc, 1);
    Value kValue = indexConstant(rewriter, loc, k);
    Value numRows = tensor::DimOp::create(rewriter, loc, source, 0);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);

    // rowOf[a] = i such that source[i] = a: the inverse permutation, so that
    // the result is a gather that every output element computes on its own.
    // Entries start at -1 so that a repeated source index is caught; with
    // no repeats and every index in range, all entries get written.
    SmallVector<OpFoldResult> inverseSizes = {OpFoldResult(numRows)};
    Value minusOne = arith::ConstantOp::create(rewriter, loc,
                                               rewriter.getI32IntegerAttr(-1));
    Value inverseInit = createFilledWith(rewriter, loc, inverseSizes, minusOne);
    auto inverseLoop = scf::ForOp::create(
        rewriter, loc, c0, numRows, c1, ValueRange{inverseInit},
        [&](OpBuilder &b, Location l, Value row, ValueRange args) {
          Value assignment = emitCheckedIndex(
              b, l, reportFn, extractIndex(b, l, source, row), c0, numRows,
              RuntimeErrorCode::InvalidSourceIndex);
          Value previous = tensor::ExtractOp::create(b, l, args[0], assignment);
          Value repeated = arith::CmpIOp::create(b, l, arith::CmpIPredicate::ne,
                                                 previous, minusOne);
          emitRuntimeCheck(b, l, reportFn, repeated,
                           RuntimeErrorCode::InvalidSourceIndex, assignment,
                           numRows);
          Value rowI32 = arith::IndexCastOp::create(b, l, i32, row);
          scf::YieldOp::create(b, l,
                               Value(tensor::InsertOp::create(
                                   b, l, rowI32, args[0], assignment)));
        });
    Value rowOf = inverseLoop.getResult(0);

    Value numTokens = arith::DivUIOp::create(rewriter, loc, numRows, kValue);
    SmallVector<OpFoldResult> sizes = {OpFoldResult(numTokens),
                                       rewriter.getIndexAttr(k),
                                       rewriter.getIndexAttr(width)};
    Value result = buildGeneric(
        rewriter, loc, {},
        createEmpty(rewriter, loc, sizes, resultType.getElementType()),
        {{0, 1, 2}}, {kParallel, kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange) {
          Value token = linalg::IndexOp::create(b, l, 0);
          Value slot = linalg::IndexOp::create(b, l, 1);
          Value column = linalg::IndexOp::create(b, l, 2);
          Value assignment = arith::AddIOp::create(
              b, l, arith::MulIOp::create(b, l, token, kValue), slot);
          // Clamped: only reached with -1 after a reported error.
          Value row = arith::MaxSIOp::create(
              b, l, extractIndex(b, l, rowOf, assignment),
              indexConstant(b, l, 0));
          linalg::YieldOp::create(
              b, l,
              Value(tensor::ExtractOp::create(b, l, rows, {row, column})));
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, resultType));
    return success();
  }
};

} // namespace

void mlir::moe::lowering::populateScheduleLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<PermuteOpLowering, UnpermuteOpLowering>(patterns.getContext());
}
