//===- ElementwiseToLinalg.cpp - activation and combine lowering ---===//

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
// ActivationOp
//===----------------------------------------------------------------------===//

struct ActivationOpLowering : public OpConversionPattern<ActivationOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ActivationOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType resultType = op.getResult().getType();
    Type elementType = resultType.getElementType();
    Type f32 = rewriter.getF32Type();
    int64_t width = resultType.getDimSize(1);
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, input, 0),
        rewriter.getIndexAttr(width)};
    ActivationKind kind = op.getKind();
    double alpha = op.getAlpha() ? op.getAlpha()->convertToDouble() : 0.0;
    double limit = op.getLimit() ? op.getLimit()->convertToDouble() : 0.0;

    // out[r, c] = act(input[r, gate(c)]) * input[r, up(c)], read through
    // two views of the input.
    bool interleaved = op.getGateUpInterleaved();
    Value result = buildGeneric(
        rewriter, loc, {}, createEmpty(rewriter, loc, sizes, elementType),
        {{0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange) {
          Value row = linalg::IndexOp::create(b, l, 0);
          Value column = linalg::IndexOp::create(b, l, 1);
          auto [gateColumn, upColumn] =
              gateUpColumns(b, l, column, width, interleaved);
          Value gate = convertFloat(
              b, l, tensor::ExtractOp::create(b, l, input, {row, gateColumn}),
              f32);
          Value up = convertFloat(
              b, l, tensor::ExtractOp::create(b, l, input, {row, upColumn}),
              f32);
          Value out = buildGatedActivation(b, l, kind, gate, up, alpha, limit);
          linalg::YieldOp::create(b, l, convertFloat(b, l, out, elementType));
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, resultType));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

struct CombineOpLowering : public OpConversionPattern<CombineOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(CombineOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType resultType = op.getResult().getType();
    Type f32 = rewriter.getF32Type();
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, input, 0),
        rewriter.getIndexAttr(resultType.getDimSize(1))};
    // out[m, h] = sum_j w[m, j] * in[m, j, h]; loops (m, h, j).
    Value sum = buildGeneric(
        rewriter, loc, {input, adaptor.getWeights()},
        createFilled(rewriter, loc, sizes, f32, 0.0),
        {{0, 2, 1}, {0, 2}, {0, 1}}, {kParallel, kParallel, kReduction},
        [&](OpBuilder &b, Location l, ValueRange args) {
          Value product = arith::MulFOp::create(
              b, l, convertFloat(b, l, args[0], f32), args[1]);
          linalg::YieldOp::create(
              b, l, Value(arith::AddFOp::create(b, l, args[2], product)));
        });
    if (std::optional<APFloat> scale = op.getRoutedScalingFactor())
      sum = buildScale(rewriter, loc, sum, scale->convertToDouble());
    Value result = buildConvert(rewriter, loc, sum, resultType);
    rewriter.replaceOp(op, castToType(rewriter, loc, result, resultType));
    return success();
  }
};
} // namespace

void mlir::moe::lowering::populateElementwiseLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<ActivationOpLowering, CombineOpLowering>(patterns.getContext());
}
