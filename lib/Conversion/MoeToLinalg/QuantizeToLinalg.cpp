//===- QuantizeToLinalg.cpp - moe.quantize and moe.prepack lowering -------===//
//
// amax per group (a reduction over the whole tensor, a row, or 128 columns of
// a row through an expand_shape), the f32 scale, then the codes: x / scale
// rounded to nearest even and saturated. e4m3 codes are built from the bits
// of the f32 quotient (the CPU has no f8 conversion instruction), exactly as
// python/moe_compiler/quant.py rounds them. moe.prepack is a transpose of a
// reshaped view (see PrepackOpLowering).
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {
constexpr int64_t kBlock = 128;

/// The e4m3 bits of f32 `value` (nearest even, saturating at ±448, NaN to
/// 0x7F), as an i8.
Value buildFp8Bits(OpBuilder &b, Location loc, Value value) {
  Type i32 = b.getI32Type();
  auto f32Constant = [&](double v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  };
  auto i32Constant = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  };
  Value bits = arith::BitcastOp::create(b, loc, i32, value);
  Value sign = arith::AndIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, bits, i32Constant(24)),
      i32Constant(0x80));
  Value magnitude = arith::MinimumFOp::create(
      b, loc, math::AbsFOp::create(b, loc, value), f32Constant(448.0));
  // Subnormals (below 2^-6) step by 2^-9; rounding 2^-6 - ε up gives 8,
  // which is the code of 2^-6.
  Value subnormal = arith::FPToUIOp::create(
      b, loc, i32,
      math::RoundEvenOp::create(
          b, loc, arith::MulFOp::create(b, loc, magnitude, f32Constant(512.0))));
  // Normals: exponent e from the f32 bits, 3 mantissa bits rounded from
  // magnitude / 2^e in [1, 2); a carry moves to the next exponent.
  Value magnitudeBits = arith::BitcastOp::create(b, loc, i32, magnitude);
  Value exponent = arith::SubIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, magnitudeBits, i32Constant(23)),
      i32Constant(127));
  Value inversePower = arith::BitcastOp::create(
      b, loc, b.getF32Type(),
      arith::ShLIOp::create(
          b, loc, arith::SubIOp::create(b, loc, i32Constant(127), exponent),
          i32Constant(23)));
  Value fraction = arith::MulFOp::create(b, loc, magnitude, inversePower);
  Value mantissa = arith::FPToUIOp::create(
      b, loc, i32,
      math::RoundEvenOp::create(
          b, loc,
          arith::MulFOp::create(
              b, loc, arith::SubFOp::create(b, loc, fraction, f32Constant(1.0)),
              f32Constant(8.0))));
  // (e + 7) << 3 | m, where m = 8 carries into the exponent by itself.
  Value normal = arith::AddIOp::create(
      b, loc,
      arith::ShLIOp::create(
          b, loc, arith::AddIOp::create(b, loc, exponent, i32Constant(7)),
          i32Constant(3)),
      mantissa);
  Value isSubnormal = arith::CmpFOp::create(
      b, loc, arith::CmpFPredicate::OLT, magnitude, f32Constant(1.0 / 64.0));
  Value code = arith::OrIOp::create(
      b, loc, arith::SelectOp::create(b, loc, isSubnormal, subnormal, normal),
      sign);
  Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO,
                                      value, value);
  code = arith::SelectOp::create(b, loc, isNan, i32Constant(0x7F), code);
  return arith::TruncIOp::create(b, loc, b.getI8Type(), code);
}

/// The amax of each group of `input` ([M, K]) in the scales' shape, and the
/// map from an element (d0, d1) to its group's scale.
struct GroupAmax {
  Value amax;
  AffineMap scaleMap;
};

GroupAmax buildGroupAmax(OpBuilder &b, Location loc, Value input,
                         ScaleLayout layout) {
  MLIRContext *context = b.getContext();
  Type f32 = b.getF32Type();
  OpFoldResult rowSize = tensor::getMixedSize(b, loc, input, 0);
  AffineExpr d0, d1;
  bindDims(context, d0, d1);
  auto maxBody = [&](OpBuilder &nested, Location l, ValueRange args) {
    Value magnitude =
        math::AbsFOp::create(nested, l, convertFloat(nested, l, args[0], f32));
    linalg::YieldOp::create(
        nested, l,
        arith::MaximumFOp::create(nested, l, args[1], magnitude).getResult());
  };
  auto reduce = [&](Value source, ArrayRef<OpFoldResult> outSizes,
                    AffineMap outMap, ArrayRef<utils::IteratorType> iterators) {
    Value init = createFilled(b, loc, outSizes, f32, 0.0);
    unsigned rank = cast<RankedTensorType>(source.getType()).getRank();
    return linalg::GenericOp::create(
               b, loc, TypeRange{init.getType()}, ValueRange{source},
               ValueRange{init},
               ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), outMap},
               iterators, maxBody)
        .getResult(0);
  };
  switch (layout) {
  case ScaleLayout::PerTensor: {
    Value whole = reduce(input, {}, AffineMap::get(2, 0, {}, context),
                         {kReduction, kReduction});
    Value amax =
        tensor::ExpandShapeOp::create(b, loc, RankedTensorType::get({1}, f32),
                                      whole, ArrayRef<ReassociationIndices>{});
    return {amax,
            AffineMap::get(2, 0, {getAffineConstantExpr(0, context)}, context)};
  }
  case ScaleLayout::PerTokenChannel:
    return {reduce(input, {rowSize}, AffineMap::get(2, 0, {d0}, context),
                   {kParallel, kReduction}),
            AffineMap::get(2, 0, {d0}, context)};
  case ScaleLayout::Block: {
    // Rows viewed as [M, K/128, 128], reduced over the last dimension.
    auto inputType = cast<RankedTensorType>(input.getType());
    int64_t columns = inputType.getDimSize(1);
    auto groupedType = RankedTensorType::get(
        {inputType.getDimSize(0), columns / kBlock, kBlock},
        inputType.getElementType());
    Value grouped = tensor::ExpandShapeOp::create(
        b, loc, groupedType, input, ArrayRef<ReassociationIndices>{{0}, {1, 2}},
        ArrayRef<OpFoldResult>{rowSize, b.getIndexAttr(columns / kBlock),
                               b.getIndexAttr(kBlock)});
    return {reduce(grouped, {rowSize, b.getIndexAttr(columns / kBlock)},
                   AffineMap::get(3, 0, {d0, d1}, context),
                   {kParallel, kParallel, kReduction}),
            AffineMap::get(2, 0, {d0, d1.floorDiv(kBlock)}, context)};
  }
  }
  llvm_unreachable("unknown scale layout");
}

/// scale = amax / `qmax`, or 1 for an all-zero group (or a NaN amax).
Value buildScales(OpBuilder &b, Location loc, Value amax, double qmax) {
  int64_t rank = cast<RankedTensorType>(amax.getType()).getRank();
  return buildGeneric(
      b, loc, {}, amax, {llvm::to_vector(llvm::seq<unsigned>(0, rank))},
      SmallVector<utils::IteratorType>(rank, kParallel),
      [&](OpBuilder &nested, Location l, ValueRange args) {
        auto constant = [&](double value) {
          return arith::ConstantOp::create(nested, l,
                                           nested.getF32FloatAttr(value));
        };
        Value quotient =
            arith::DivFOp::create(nested, l, args[0], constant(qmax));
        Value positive = arith::CmpFOp::create(
            nested, l, arith::CmpFPredicate::OGT, args[0], constant(0.0));
        linalg::YieldOp::create(nested, l,
                                arith::SelectOp::create(nested, l, positive,
                                                        quotient, constant(1.0))
                                    .getResult());
      });
}

/// The code of f32 `quotient` (x / scale): e4m3 bits for fp8, else the
/// int8 value rounded to nearest even and saturated at ±127.
Value buildCode(OpBuilder &b, Location loc, Value quotient, Type codeType,
                bool fp8) {
  if (fp8)
    return arith::BitcastOp::create(b, loc, codeType,
                                    buildFp8Bits(b, loc, quotient));
  Value bound = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(127.0));
  Value rounded = arith::MinimumFOp::create(
      b, loc,
      arith::MaximumFOp::create(b, loc,
                                math::RoundEvenOp::create(b, loc, quotient),
                                arith::NegFOp::create(b, loc, bound)),
      bound);
  return arith::FPToSIOp::create(b, loc, codeType, rounded);
}

struct QuantizeOpLowering : public OpConversionPattern<QuantizeOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(QuantizeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    QuantizationAttr quantization = op.getQuantization();
    bool fp8 = quantization.getFormat() == QuantFormat::Fp8;
    Value input = adaptor.getInput();
    GroupAmax group =
        buildGroupAmax(rewriter, loc, input, *quantization.getScales());
    Value scales = buildScales(rewriter, loc, group.amax, fp8 ? 448.0 : 127.0);

    Type f32 = rewriter.getF32Type();
    Type codeType = op.getCodes().getType().getElementType();
    Value codesInit = createEmpty(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, input), codeType);
    AffineMap identity = rewriter.getMultiDimIdentityMap(2);
    Value codes =
        linalg::GenericOp::create(
            rewriter, loc, TypeRange{codesInit.getType()},
            ValueRange{input, scales}, ValueRange{codesInit},
            ArrayRef<AffineMap>{identity, group.scaleMap, identity},
            {kParallel, kParallel},
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value quotient = arith::DivFOp::create(
                  b, l, convertFloat(b, l, args[0], f32), args[1]);
              linalg::YieldOp::create(b, l,
                                      buildCode(b, l, quotient, codeType, fp8));
            })
            .getResult(0);
    auto scalesType = cast<RankedTensorType>(op.getScales().getType());
    rewriter.replaceOp(op, {castToType(rewriter, loc, codes,
                                       op.getCodes().getType()),
                            castToType(rewriter, loc, scales, scalesType)});
    return success();
  }
};

/// moe.prepack wgmma_a_4bit as a transpose: codes [E, N, K/2] viewed as
/// [E, nt, w, h, r, kt, s, g, q] (n = 64 nt + 16 w + 8 h + r, p = 32 kt +
/// 8 s + 4 g + q) are permuted to [E, nt, kt, w, r, q, s, g, h] and viewed
/// as [E, N/64, K/64, 2048]: a permutation of bytes, nothing computed.
struct PrepackOpLowering : public OpConversionPattern<PrepackOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(PrepackOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType codesType = op.getCodes().getType();
    int64_t experts = codesType.getDimSize(0);
    int64_t rowTiles = codesType.getDimSize(1) / 64;
    int64_t kTiles = codesType.getDimSize(2) / 32;
    Type byte = codesType.getElementType();
    // [E, nt, w, h, r, kt, s, g, q]
    SmallVector<int64_t> fragmentShape = {experts, rowTiles, 4, 2, 8,
                                          kTiles,  4,        2, 4};
    SmallVector<ReassociationIndices> byRowsAndPairs = {
        {0}, {1, 2, 3, 4}, {5, 6, 7, 8}};
    Value fragments = tensor::ExpandShapeOp::create(
        rewriter, loc, RankedTensorType::get(fragmentShape, byte),
        adaptor.getCodes(), byRowsAndPairs);
    SmallVector<int64_t> permutation = {0, 1, 5, 2, 4, 8, 6, 7, 3};
    SmallVector<OpFoldResult> threadSizes;
    for (int64_t dim : permutation)
      threadSizes.push_back(rewriter.getIndexAttr(fragmentShape[dim]));
    Value init = tensor::EmptyOp::create(rewriter, loc, threadSizes, byte);
    Value byThread =
        linalg::TransposeOp::create(rewriter, loc, fragments, init, permutation)
            .getResult()
            .front();
    SmallVector<ReassociationIndices> byTile = {
        {0}, {1}, {2}, {3, 4, 5, 6, 7, 8}};
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
        op, op.getPacked().getType(), byThread, byTile);
    return success();
  }
};
} // namespace

void mlir::moe::lowering::populateQuantizeLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<PrepackOpLowering, QuantizeOpLowering>(patterns.getContext());
}
