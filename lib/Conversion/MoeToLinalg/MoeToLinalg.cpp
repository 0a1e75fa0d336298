//===- MoeToLinalg.cpp - lower moe ops to upstream dialects ---------------===//
//
// Each moe op becomes linalg/tensor/scf/arith/math ops with the same tensor
// semantics as the float64 reference in python/moe_compiler/reference.py:
// arithmetic in f32, converted to the result element type at the end.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/DialectConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {
using BodyFn = function_ref<void(OpBuilder &, Location, ValueRange)>;
constexpr utils::IteratorType kParallel = utils::IteratorType::parallel;
constexpr utils::IteratorType kReduction = utils::IteratorType::reduction;
} // namespace

static Value f32Constant(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
}

static Value indexConstant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

/// Converts a scalar float to `type` (extension or truncation).
static Value convertFloat(OpBuilder &b, Location loc, Value value, Type type) {
  unsigned from = value.getType().getIntOrFloatBitWidth();
  unsigned to = type.getIntOrFloatBitWidth();
  if (value.getType() == type)
    return value;
  if (from < to)
    return arith::ExtFOp::create(b, loc, type, value);
  return arith::TruncFOp::create(b, loc, type, value);
}

/// Returns the sizes of a tensor of type `type` whose dynamic dimensions are
/// taken, in order, from `dynamicSources` (pairs of value and dimension).
static SmallVector<OpFoldResult>
mixedSizes(OpBuilder &b, Location loc, RankedTensorType type,
           ArrayRef<std::pair<Value, int64_t>> dynamicSources) {
  SmallVector<OpFoldResult> sizes;
  for (auto [dim, size] : llvm::enumerate(type.getShape())) {
    if (!ShapedType::isDynamic(size)) {
      sizes.push_back(b.getIndexAttr(size));
      continue;
    }
    auto [source, sourceDim] = dynamicSources[dim];
    sizes.push_back(tensor::getMixedSize(b, loc, source, sourceDim));
  }
  return sizes;
}

/// Creates a tensor of `sizes` filled with the f32/element constant `value`.
static Value createFilled(OpBuilder &b, Location loc,
                          ArrayRef<OpFoldResult> sizes, Type elementType,
                          double value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, elementType);
  Value scalar = arith::ConstantOp::create(
      b, loc, b.getFloatAttr(elementType, value));
  return linalg::FillOp::create(b, loc, scalar, empty).getResult(0);
}

/// Creates a tensor of `sizes` filled with the scalar `value`.
static Value createFilledWith(OpBuilder &b, Location loc,
                              ArrayRef<OpFoldResult> sizes, Value value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, value.getType());
  return linalg::FillOp::create(b, loc, value, empty).getResult(0);
}

static Value createEmpty(OpBuilder &b, Location loc,
                         ArrayRef<OpFoldResult> sizes, Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

/// Builds a linalg.generic over `numLoops` loops with affine maps given as
/// lists of loop dimensions (one list per input, then one per output).
static Value buildGeneric(OpBuilder &b, Location loc, ValueRange inputs,
                          Value output,
                          ArrayRef<SmallVector<unsigned>> operandDims,
                          ArrayRef<utils::IteratorType> iterators,
                          BodyFn body) {
  unsigned numLoops = iterators.size();
  SmallVector<AffineMap> maps;
  for (ArrayRef<unsigned> dims : operandDims) {
    SmallVector<AffineExpr> exprs;
    for (unsigned d : dims)
      exprs.push_back(b.getAffineDimExpr(d));
    maps.push_back(AffineMap::get(numLoops, 0, exprs, b.getContext()));
  }
  auto generic = linalg::GenericOp::create(
      b, loc, output.getType(), inputs, output, maps, iterators,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        body(nested, nestedLoc, args);
      });
  return generic.getResult(0);
}

static Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Value one = f32Constant(b, loc, 1.0);
  Value negExp = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one,
                               arith::AddFOp::create(b, loc, one, negExp));
}

/// Softmax along dimension 1 of a [M, X] f32 tensor. A NaN in a row makes
/// the whole row NaN, as in the reference.
static Value buildRowSoftmax(OpBuilder &b, Location loc, Value input) {
  auto type = cast<RankedTensorType>(input.getType());
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> rowSizes = {tensor::getMixedSize(b, loc, input, 0)};
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> full = {0, 1}, row = {0};

  Value rowMax = buildGeneric(
      b, loc, input,
      createFilled(b, loc, rowSizes, f32,
                   -std::numeric_limits<double>::infinity()),
      {full, row}, {kParallel, kReduction},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::MaximumFOp::create(nb, nl, args[0], args[1])));
      });
  Value exps = buildGeneric(
      b, loc, {input, rowMax}, createEmpty(b, loc, sizes, f32), {full, row, full},
      {kParallel, kParallel}, [](OpBuilder &nb, Location nl, ValueRange args) {
        Value shifted = arith::SubFOp::create(nb, nl, args[0], args[1]);
        linalg::YieldOp::create(nb, nl,
                                Value(math::ExpOp::create(nb, nl, shifted)));
      });
  Value rowSum = buildGeneric(
      b, loc, exps, createFilled(b, loc, rowSizes, f32, 0.0), {full, row},
      {kParallel, kReduction}, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::AddFOp::create(nb, nl, args[0], args[1])));
      });
  (void)type;
  return buildGeneric(
      b, loc, {exps, rowSum}, createEmpty(b, loc, sizes, f32), {full, row, full},
      {kParallel, kParallel}, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::DivFOp::create(nb, nl, args[0], args[1])));
      });
}

/// Divides each row of a [M, X] f32 tensor by its sum.
static Value buildRowNormalize(OpBuilder &b, Location loc, Value input) {
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> rowSizes = {tensor::getMixedSize(b, loc, input, 0)};
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> full = {0, 1}, row = {0};
  Value rowSum = buildGeneric(
      b, loc, input, createFilled(b, loc, rowSizes, f32, 0.0), {full, row},
      {kParallel, kReduction}, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::AddFOp::create(nb, nl, args[0], args[1])));
      });
  return buildGeneric(
      b, loc, {input, rowSum}, createEmpty(b, loc, sizes, f32),
      {full, row, full}, {kParallel, kParallel},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::DivFOp::create(nb, nl, args[0], args[1])));
      });
}

/// Multiplies every element of an f32 tensor of rank 2 by `scale`.
static Value buildScale(OpBuilder &b, Location loc, Value input, double scale) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  Value factor = f32Constant(b, loc, scale);
  return buildGeneric(
      b, loc, input, createEmpty(b, loc, sizes, b.getF32Type()), {{0, 1}, {0, 1}},
      {kParallel, kParallel}, [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::MulFOp::create(nb, nl, args[0], factor)));
      });
}

/// Converts every element of a rank-`rank` float tensor to `elementType`.
static Value buildConvert(OpBuilder &b, Location loc, Value input,
                          RankedTensorType resultType) {
  auto inputType = cast<RankedTensorType>(input.getType());
  if (inputType.getElementType() == resultType.getElementType())
    return input;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> identity;
  SmallVector<utils::IteratorType> iterators;
  for (unsigned d = 0; d < inputType.getRank(); ++d) {
    identity.push_back(d);
    iterators.push_back(kParallel);
  }
  Type elementType = resultType.getElementType();
  return buildGeneric(
      b, loc, input, createEmpty(b, loc, sizes, elementType),
      {identity, identity}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl,
                                convertFloat(nb, nl, args[0], elementType));
      });
}

/// Makes a value's static shape agree with the op result it replaces.
static Value castToType(OpBuilder &b, Location loc, Value value, Type type) {
  if (value.getType() == type)
    return value;
  return tensor::CastOp::create(b, loc, type, value);
}

/// Returns `index` as a value of type index from an i32 tensor element.
static Value extractIndex(OpBuilder &b, Location loc, Value tensor,
                          ValueRange indices) {
  Value element = tensor::ExtractOp::create(b, loc, tensor, indices);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), element);
}

/// Returns the declaration of the runtime error hook, inserting it into the
/// enclosing module on first use.
static func::FuncOp getOrInsertReportFunction(OpBuilder &b, Operation *op) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(kReportRuntimeErrorFn))
    return existing;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  Type i64 = b.getI64Type();
  auto fn = func::FuncOp::create(b, op->getLoc(), kReportRuntimeErrorFn,
                                 b.getFunctionType({i64, i64, i64}, {}));
  fn.setPrivate();
  return fn;
}

/// Reports `code` with `value` and `bound` (index values) when `invalid`.
static void emitRuntimeCheck(OpBuilder &b, Location loc, func::FuncOp reportFn,
                             Value invalid, RuntimeErrorCode code, Value value,
                             Value bound) {
  auto ifOp = scf::IfOp::create(b, loc, invalid, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  Type i64 = b.getI64Type();
  Value codeValue = arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(i64, static_cast<int64_t>(code)));
  func::CallOp::create(
      b, loc, reportFn,
      ValueRange{codeValue, arith::IndexCastOp::create(b, loc, i64, value),
                 arith::IndexCastOp::create(b, loc, i64, bound)});
}

/// Checks `lower <= value < upper` (index values), reporting `code` when not,
/// and returns `value` clamped into that range.
static Value emitCheckedIndex(OpBuilder &b, Location loc, func::FuncOp reportFn,
                              Value value, Value lower, Value upper,
                              RuntimeErrorCode code) {
  Value below =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, value, lower);
  Value above =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, value, upper);
  emitRuntimeCheck(b, loc, reportFn, arith::OrIOp::create(b, loc, below, above),
                   code, value, upper);
  Value last = arith::SubIOp::create(b, loc, upper, indexConstant(b, loc, 1));
  return arith::MinSIOp::create(b, loc,
                                arith::MaxSIOp::create(b, loc, value, lower),
                                last);
}

//===----------------------------------------------------------------------===//
// RouterOp
//===----------------------------------------------------------------------===//

namespace {
struct RouterOpLowering : public OpConversionPattern<RouterOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(RouterOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType logitsType = op.getLogits().getType();
    Type f32 = rewriter.getF32Type();
    SmallVector<OpFoldResult> sizes =
        mixedSizes(rewriter, loc, logitsType,
                   {{adaptor.getInput(), 0}, {adaptor.getGateWeight(), 0}});
    // logits[m, e] = sum_h x[m, h] * w[e, h]; loops (m, e, h).
    Value logits = buildGeneric(
        rewriter, loc, {adaptor.getInput(), adaptor.getGateWeight()},
        createFilled(rewriter, loc, sizes, f32, 0.0), {{0, 2}, {1, 2}, {0, 1}},
        {kParallel, kParallel, kReduction},
        [&](OpBuilder &b, Location l, ValueRange args) {
          Value product =
              arith::MulFOp::create(b, l, convertFloat(b, l, args[0], f32),
                                    convertFloat(b, l, args[1], f32));
          linalg::YieldOp::create(
              b, l, Value(arith::AddFOp::create(b, l, args[2], product)));
        });
    if (Value bias = adaptor.getBias()) {
      logits = buildGeneric(
          rewriter, loc, {logits, bias}, createEmpty(rewriter, loc, sizes, f32),
          {{0, 1}, {1}, {0, 1}}, {kParallel, kParallel},
          [&](OpBuilder &b, Location l, ValueRange args) {
            linalg::YieldOp::create(
                b, l, Value(arith::AddFOp::create(b, l, args[0], args[1])));
          });
    }
    rewriter.replaceOp(op, castToType(rewriter, loc, logits, logitsType));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// TopkOp
//===----------------------------------------------------------------------===//

struct TopkOpLowering : public OpConversionPattern<TopkOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(TopkOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value logits = adaptor.getLogits();
    Type f32 = rewriter.getF32Type();
    Type i1 = rewriter.getI1Type();
    Type i32 = rewriter.getI32Type();
    int64_t numExperts = op.getNumExperts();
    int64_t k = op.getK();
    int64_t numGroups = op.getNumGroupsOrOne();
    int64_t topkGroups = op.getTopkGroupsOrAll();
    int64_t groupSize = numExperts / numGroups;
    SmallVector<OpFoldResult> scoreSizes =
        tensor::getMixedSizes(rewriter, loc, logits);

    // Scores for all tokens at once.
    Value scores = logits;
    switch (op.getScoring()) {
    case ScoringFunc::Softmax:
      scores = buildRowSoftmax(rewriter, loc, logits);
      break;
    case ScoringFunc::Sigmoid:
      scores = buildGeneric(
          rewriter, loc, logits, createEmpty(rewriter, loc, scoreSizes, f32),
          {{0, 1}, {0, 1}}, {kParallel, kParallel},
          [&](OpBuilder &b, Location l, ValueRange args) {
            linalg::YieldOp::create(b, l, sigmoid(b, l, args[0]));
          });
      break;
    case ScoringFunc::TopkSoftmax:
      break;
    }

    // Selection keys: biased scores with NaN replaced by -inf, so that every
    // comparison below is total and ids stay in range.
    Value bias = adaptor.getBias();
    SmallVector<Value> keyInputs = {scores};
    SmallVector<SmallVector<unsigned>> keyMaps = {{0, 1}};
    if (bias) {
      keyInputs.push_back(bias);
      keyMaps.push_back({1});
    }
    keyMaps.push_back({0, 1});
    Value keys = buildGeneric(
        rewriter, loc, keyInputs, createEmpty(rewriter, loc, scoreSizes, f32),
        keyMaps, {kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange args) {
          Value key = args[0];
          if (bias)
            key = arith::AddFOp::create(b, l, key, args[1]);
          Value isNan = arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO,
                                              key, key);
          Value negInf =
              f32Constant(b, l, -std::numeric_limits<double>::infinity());
          linalg::YieldOp::create(
              b, l, Value(arith::SelectOp::create(b, l, isNan, negInf, key)));
        });

    // Per-token selection.
    OpFoldResult numTokens = tensor::getMixedSize(rewriter, loc, logits, 0);
    SmallVector<OpFoldResult> resultSizes = {numTokens,
                                             rewriter.getIndexAttr(k)};
    Value weightsInit = createEmpty(rewriter, loc, resultSizes, f32);
    Value idsInit = createEmpty(rewriter, loc, resultSizes, i32);
    Value zero = indexConstant(rewriter, loc, 0);
    Value one = indexConstant(rewriter, loc, 1);
    Value tokenCount = getValueOrCreateConstantIndexOp(rewriter, loc, numTokens);
    auto tokenLoop = scf::ForOp::create(
        rewriter, loc, zero, tokenCount, one, ValueRange{weightsInit, idsInit},
        [&](OpBuilder &b, Location l, Value token, ValueRange iterArgs) {
          Value available = buildAvailableExperts(b, l, keys, token,
                                                  numExperts, numGroups,
                                                  topkGroups, groupSize);
          Value kUpper = indexConstant(b, l, k);
          Value c0 = indexConstant(b, l, 0);
          Value c1 = indexConstant(b, l, 1);
          auto slotLoop = scf::ForOp::create(
              b, l, c0, kUpper, c1,
              ValueRange{available, iterArgs[0], iterArgs[1]},
              [&](OpBuilder &sb, Location sl, Value slot, ValueRange slotArgs) {
                Value best = buildArgmax(sb, sl, keys, token, slotArgs[0],
                                         numExperts);
                Value weight =
                    tensor::ExtractOp::create(sb, sl, scores, {token, best});
                Value bestId =
                    arith::IndexCastOp::create(sb, sl, i32, best);
                Value newWeights = tensor::InsertOp::create(
                    sb, sl, weight, slotArgs[1], ValueRange{token, slot});
                Value newIds = tensor::InsertOp::create(
                    sb, sl, bestId, slotArgs[2], ValueRange{token, slot});
                Value taken = arith::ConstantOp::create(
                    sb, sl, sb.getIntegerAttr(i1, 0));
                Value newAvailable = tensor::InsertOp::create(
                    sb, sl, taken, slotArgs[0], ValueRange{best});
                scf::YieldOp::create(
                    sb, sl, ValueRange{newAvailable, newWeights, newIds});
              });
          scf::YieldOp::create(b, l, slotLoop.getResults().drop_front());
        });
    Value weights = tokenLoop.getResult(0);
    Value ids = tokenLoop.getResult(1);

    if (op.getScoring() == ScoringFunc::TopkSoftmax)
      weights = buildRowSoftmax(rewriter, loc, weights);
    if (op.getRenormalize())
      weights = buildRowNormalize(rewriter, loc, weights);
    if (std::optional<APFloat> scale = op.getRoutedScalingFactor())
      weights = buildScale(rewriter, loc, weights, scale->convertToDouble());

    rewriter.replaceOp(
        op, {castToType(rewriter, loc, weights, op.getWeights().getType()),
             castToType(rewriter, loc, ids, op.getIds().getType())});
    return success();
  }

private:
  /// Returns the index of the largest key of row `token` among the experts
  /// still `available`; the lower index wins ties. At least one expert is
  /// available whenever this runs, by the verifier's bound on k.
  static Value buildArgmax(OpBuilder &b, Location loc, Value keys, Value token,
                           Value available, int64_t numExperts) {
    Value c0 = indexConstant(b, loc, 0);
    Value c1 = indexConstant(b, loc, 1);
    Value upper = indexConstant(b, loc, numExperts);
    Value noneYet = indexConstant(b, loc, -1);
    Value negInf = f32Constant(b, loc, -std::numeric_limits<double>::infinity());
    auto loop = scf::ForOp::create(
        b, loc, c0, upper, c1, ValueRange{noneYet, negInf},
        [&](OpBuilder &lb, Location l, Value expert, ValueRange args) {
          Value isAvailable =
              tensor::ExtractOp::create(lb, l, available, expert);
          Value key = tensor::ExtractOp::create(lb, l, keys, {token, expert});
          Value isFirst = arith::CmpIOp::create(
              lb, l, arith::CmpIPredicate::slt, args[0],
              indexConstant(lb, l, 0));
          Value isGreater = arith::CmpFOp::create(
              lb, l, arith::CmpFPredicate::OGT, key, args[1]);
          Value better = arith::AndIOp::create(
              lb, l, isAvailable,
              arith::OrIOp::create(lb, l, isFirst, isGreater));
          Value newBest =
              arith::SelectOp::create(lb, l, better, expert, args[0]);
          Value newKey = arith::SelectOp::create(lb, l, better, key, args[1]);
          scf::YieldOp::create(lb, l, ValueRange{newBest, newKey});
        });
    return loop.getResult(0);
  }

  /// Returns an [E] i1 tensor of the experts that row `token` may select:
  /// all of them, or those of the `topkGroups` best groups, where a group's
  /// score is the sum of its two largest keys.
  static Value buildAvailableExperts(OpBuilder &b, Location loc, Value keys,
                                     Value token, int64_t numExperts,
                                     int64_t numGroups, int64_t topkGroups,
                                     int64_t groupSize) {
    Type i1 = b.getI1Type();
    Type f32 = b.getF32Type();
    Value trueValue = arith::ConstantOp::create(b, loc, b.getIntegerAttr(i1, 1));
    Value falseValue =
        arith::ConstantOp::create(b, loc, b.getIntegerAttr(i1, 0));
    SmallVector<OpFoldResult> expertSizes = {b.getIndexAttr(numExperts)};
    Value allExperts = createFilledWith(b, loc, expertSizes, trueValue);
    if (numGroups == 1 || topkGroups == numGroups)
      return allExperts;

    Value c0 = indexConstant(b, loc, 0);
    Value c1 = indexConstant(b, loc, 1);
    Value negInf = f32Constant(b, loc, -std::numeric_limits<double>::infinity());
    Value groupUpper = indexConstant(b, loc, numGroups);
    Value memberUpper = indexConstant(b, loc, groupSize);
    Value groupSizeValue = indexConstant(b, loc, groupSize);

    // groupScores[g] = best + second best key of group g.
    SmallVector<OpFoldResult> groupSizes = {b.getIndexAttr(numGroups)};
    Value groupScoresInit = tensor::EmptyOp::create(b, loc, groupSizes, f32);
    auto groupLoop = scf::ForOp::create(
        b, loc, c0, groupUpper, c1, ValueRange{groupScoresInit},
        [&](OpBuilder &gb, Location l, Value group, ValueRange groupArgs) {
          Value base = arith::MulIOp::create(gb, l, group, groupSizeValue);
          auto memberLoop = scf::ForOp::create(
              gb, l, c0, memberUpper, c1, ValueRange{negInf, negInf},
              [&](OpBuilder &mb, Location ml, Value member, ValueRange best) {
                Value expert = arith::AddIOp::create(mb, ml, base, member);
                Value key =
                    tensor::ExtractOp::create(mb, ml, keys, {token, expert});
                Value aboveFirst = arith::CmpFOp::create(
                    mb, ml, arith::CmpFPredicate::OGT, key, best[0]);
                Value aboveSecond = arith::CmpFOp::create(
                    mb, ml, arith::CmpFPredicate::OGT, key, best[1]);
                Value newFirst =
                    arith::SelectOp::create(mb, ml, aboveFirst, key, best[0]);
                Value secondCandidate =
                    arith::SelectOp::create(mb, ml, aboveSecond, key, best[1]);
                Value newSecond = arith::SelectOp::create(
                    mb, ml, aboveFirst, best[0], secondCandidate);
                scf::YieldOp::create(mb, ml, ValueRange{newFirst, newSecond});
              });
          Value score = memberLoop.getResult(0);
          if (groupSize >= 2)
            score = arith::AddFOp::create(gb, l, score, memberLoop.getResult(1));
          Value updated = tensor::InsertOp::create(gb, l, score, groupArgs[0],
                                                   ValueRange{group});
          scf::YieldOp::create(gb, l, updated);
        });
    Value groupScores = groupLoop.getResult(0);

    // Choose the topkGroups best groups, lower index first on ties.
    Value noGroups = createFilledWith(b, loc, groupSizes, falseValue);
    Value pickUpper = indexConstant(b, loc, topkGroups);
    auto pickLoop = scf::ForOp::create(
        b, loc, c0, pickUpper, c1, ValueRange{noGroups},
        [&](OpBuilder &pb, Location l, Value, ValueRange chosenArgs) {
          Value noneYet = indexConstant(pb, l, -1);
          auto scan = scf::ForOp::create(
              pb, l, c0, groupUpper, c1, ValueRange{noneYet, negInf},
              [&](OpBuilder &sb, Location sl, Value group, ValueRange best) {
                Value chosen =
                    tensor::ExtractOp::create(sb, sl, chosenArgs[0], group);
                Value score =
                    tensor::ExtractOp::create(sb, sl, groupScores, group);
                Value isFirst = arith::CmpIOp::create(
                    sb, sl, arith::CmpIPredicate::slt, best[0],
                    indexConstant(sb, sl, 0));
                Value isGreater = arith::CmpFOp::create(
                    sb, sl, arith::CmpFPredicate::OGT, score, best[1]);
                Value notChosen =
                    arith::XOrIOp::create(sb, sl, chosen, trueValue);
                Value better = arith::AndIOp::create(
                    sb, sl, notChosen,
                    arith::OrIOp::create(sb, sl, isFirst, isGreater));
                scf::YieldOp::create(
                    sb, sl,
                    ValueRange{
                        arith::SelectOp::create(sb, sl, better, group, best[0]),
                        arith::SelectOp::create(sb, sl, better, score,
                                                best[1])});
              });
          Value updated = tensor::InsertOp::create(
              pb, l, trueValue, chosenArgs[0], ValueRange{scan.getResult(0)});
          scf::YieldOp::create(pb, l, updated);
        });
    Value chosenGroups = pickLoop.getResult(0);

    // available[e] = chosen[e / groupSize].
    Value expertUpper = indexConstant(b, loc, numExperts);
    auto expandLoop = scf::ForOp::create(
        b, loc, c0, expertUpper, c1, ValueRange{allExperts},
        [&](OpBuilder &eb, Location l, Value expert, ValueRange args) {
          Value group = arith::DivUIOp::create(eb, l, expert, groupSizeValue);
          Value chosen = tensor::ExtractOp::create(eb, l, chosenGroups, group);
          Value updated = tensor::InsertOp::create(eb, l, chosen, args[0],
                                                   ValueRange{expert});
          scf::YieldOp::create(eb, l, updated);
        });
    return expandLoop.getResult(0);
  }
};

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
    Type i32 = rewriter.getI32Type();
    Value c0 = indexConstant(rewriter, loc, 0);
    Value c1 = indexConstant(rewriter, loc, 1);
    Value kValue = indexConstant(rewriter, loc, k);
    Value numExpertsValue = indexConstant(rewriter, loc, numExperts);
    Value numTokens = tensor::DimOp::create(rewriter, loc, ids, 0);
    Value numAssignments = arith::MulIOp::create(rewriter, loc, numTokens, kValue);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);

    // Reads the expert of assignment `a`, reporting and clamping bad ids.
    auto readExpert = [&](OpBuilder &b, Location l, Value assignment) {
      Value token = arith::DivUIOp::create(b, l, assignment, kValue);
      Value slot = arith::RemUIOp::create(b, l, assignment, kValue);
      Value expert = extractIndex(b, l, ids, {token, slot});
      return emitCheckedIndex(b, l, reportFn, expert, c0, numExpertsValue,
                              RuntimeErrorCode::InvalidExpertId);
    };

    // Count the assignments of each expert.
    SmallVector<OpFoldResult> countSizes = {
        rewriter.getIndexAttr(numExperts + 1)};
    Value zeroI32 = arith::ConstantOp::create(rewriter, loc,
                                              rewriter.getI32IntegerAttr(0));
    Value oneI32 = arith::ConstantOp::create(rewriter, loc,
                                             rewriter.getI32IntegerAttr(1));
    Value zeros = createFilledWith(rewriter, loc, countSizes, zeroI32);
    // counts[e + 1] holds expert e's count, so that a prefix sum in place
    // turns the buffer into offsets.
    auto countLoop = scf::ForOp::create(
        rewriter, loc, c0, numAssignments, c1, ValueRange{zeros},
        [&](OpBuilder &b, Location l, Value assignment, ValueRange args) {
          Value expert = readExpert(b, l, assignment);
          Value slot = arith::AddIOp::create(b, l, expert, c1);
          Value count = tensor::ExtractOp::create(b, l, args[0], slot);
          Value incremented = arith::AddIOp::create(b, l, count, oneI32);
          scf::YieldOp::create(
              b, l,
              Value(tensor::InsertOp::create(b, l, incremented, args[0], slot)));
        });
    auto prefixLoop = scf::ForOp::create(
        rewriter, loc, c1, indexConstant(rewriter, loc, numExperts + 1), c1,
        ValueRange{countLoop.getResult(0)},
        [&](OpBuilder &b, Location l, Value expertPlusOne, ValueRange args) {
          Value previous = tensor::ExtractOp::create(
              b, l, args[0],
              ValueRange{arith::SubIOp::create(b, l, expertPlusOne, c1)});
          Value current =
              tensor::ExtractOp::create(b, l, args[0], expertPlusOne);
          Value sum = arith::AddIOp::create(b, l, previous, current);
          scf::YieldOp::create(
              b, l,
              Value(tensor::InsertOp::create(b, l, sum, args[0], expertPlusOne)));
        });
    Value offsets = prefixLoop.getResult(0);

    // Scatter assignment indices to their slots, in assignment order, so
    // that each expert's rows stay in token order (a stable sort).
    SmallVector<OpFoldResult> sourceSizes = {OpFoldResult(numAssignments)};
    Value sourceInit = tensor::EmptyOp::create(rewriter, loc, sourceSizes, i32);
    auto scatterLoop = scf::ForOp::create(
        rewriter, loc, c0, numAssignments, c1, ValueRange{offsets, sourceInit},
        [&](OpBuilder &b, Location l, Value assignment, ValueRange args) {
          Value expert = readExpert(b, l, assignment);
          Value cursor = tensor::ExtractOp::create(b, l, args[0], expert);
          Value position =
              arith::IndexCastOp::create(b, l, b.getIndexType(), cursor);
          Value assignmentI32 = arith::IndexCastOp::create(b, l, i32, assignment);
          Value newSource =
              tensor::InsertOp::create(b, l, assignmentI32, args[1], position);
          Value advanced = arith::AddIOp::create(b, l, cursor, oneI32);
          Value newCursors =
              tensor::InsertOp::create(b, l, advanced, args[0], expert);
          scf::YieldOp::create(b, l, ValueRange{newCursors, newSource});
        });
    Value source = scatterLoop.getResult(1);

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
          linalg::YieldOp::create(
              b, l,
              Value(tensor::ExtractOp::create(b, l, input,
                                              ValueRange{token, column})));
        });

    rewriter.replaceOp(
        op, {castToType(rewriter, loc, rows, op.getRows().getType()),
             castToType(rewriter, loc, offsets, op.getOffsets().getType()),
             castToType(rewriter, loc, source, op.getSource().getType())});
    return success();
  }

};

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
          Value end = extractIndex(
              b, l, offsets, ValueRange{arith::AddIOp::create(b, l, expert, c1)});
          Value beginBad = arith::OrIOp::create(
              b, l,
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, begin, c0),
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, begin,
                                    numRowsTotal));
          Value endBad = arith::OrIOp::create(
              b, l,
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, end, begin),
              arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, end,
                                    numRowsTotal));
          emitRuntimeCheck(b, l, reportFn,
                           arith::OrIOp::create(b, l, beginBad, endBad),
                           RuntimeErrorCode::InvalidOffsets, expert,
                           numRowsTotal);
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
                Value acc = buildRowBlockLoop(tb, tl, rows, transposed,
                                              expertArgs[0], begin, fullEnd,
                                              rowBlock, elementType);
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
    rewriter.replaceOp(op, castToType(rewriter, loc, expertLoop.getResult(0),
                                      resultType));
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

    // out[r, c] = act(input[r, c]) * input[r, c + width], read through two
    // views of the input.
    Value result = buildGeneric(
        rewriter, loc, {}, createEmpty(rewriter, loc, sizes, elementType),
        {{0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange) {
          Value row = linalg::IndexOp::create(b, l, 0);
          Value column = linalg::IndexOp::create(b, l, 1);
          Value upColumn =
              arith::AddIOp::create(b, l, column, indexConstant(b, l, width));
          Value gate = convertFloat(
              b, l, tensor::ExtractOp::create(b, l, input, {row, column}), f32);
          Value up = convertFloat(
              b, l, tensor::ExtractOp::create(b, l, input, {row, upColumn}),
              f32);
          Value out;
          switch (kind) {
          case ActivationKind::SiluAndMul:
            out = arith::MulFOp::create(
                b, l, arith::MulFOp::create(b, l, gate, sigmoid(b, l, gate)),
                up);
            break;
          case ActivationKind::GeluAndMul: {
            Value scaled = arith::MulFOp::create(
                b, l, gate, f32Constant(b, l, 1.0 / std::sqrt(2.0)));
            Value erf = math::ErfOp::create(b, l, scaled);
            Value cdf = arith::MulFOp::create(
                b, l, f32Constant(b, l, 0.5),
                arith::AddFOp::create(b, l, f32Constant(b, l, 1.0), erf));
            out = arith::MulFOp::create(
                b, l, arith::MulFOp::create(b, l, gate, cdf), up);
            break;
          }
          case ActivationKind::Swiglu: {
            Value limitValue = f32Constant(b, l, limit);
            Value negLimit = f32Constant(b, l, -limit);
            Value clampedGate = arith::MinimumFOp::create(b, l, gate, limitValue);
            Value clampedUp = arith::MinimumFOp::create(
                b, l, arith::MaximumFOp::create(b, l, up, negLimit), limitValue);
            Value glu = arith::MulFOp::create(
                b, l, clampedGate,
                sigmoid(b, l,
                        arith::MulFOp::create(b, l, f32Constant(b, l, alpha),
                                              clampedGate)));
            out = arith::MulFOp::create(
                b, l, glu,
                arith::AddFOp::create(b, l, clampedUp, f32Constant(b, l, 1.0)));
            break;
          }
          }
          linalg::YieldOp::create(b, l, convertFloat(b, l, out, elementType));
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, resultType));
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
          Value repeated = arith::CmpIOp::create(
              b, l, arith::CmpIPredicate::ne, previous, minusOne);
          emitRuntimeCheck(b, l, reportFn, repeated,
                           RuntimeErrorCode::InvalidSourceIndex, assignment,
                           numRows);
          Value rowI32 = arith::IndexCastOp::create(b, l, i32, row);
          scf::YieldOp::create(
              b, l,
              Value(tensor::InsertOp::create(b, l, rowI32, args[0], assignment)));
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
              b, l, Value(tensor::ExtractOp::create(b, l, rows, {row, column})));
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

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

void mlir::moe::populateMoeToLinalgConversionPatterns(
    RewritePatternSet &patterns, int64_t rowBlock) {
  MLIRContext *context = patterns.getContext();
  patterns.add<RouterOpLowering, TopkOpLowering, PermuteOpLowering,
               ActivationOpLowering, UnpermuteOpLowering, CombineOpLowering>(
      context);
  patterns.add<GroupedMatmulOpLowering>(context, rowBlock);
}

namespace {
struct ConvertMoeToLinalgPass
    : public moe::impl::ConvertMoeToLinalgBase<ConvertMoeToLinalgPass> {
  using ConvertMoeToLinalgBase::ConvertMoeToLinalgBase;

  void runOnOperation() override {
    if (rowBlock < 1) {
      getOperation()->emitError("convert-moe-to-linalg: row-block must be >= 1");
      return signalPassFailure();
    }
    MLIRContext *context = &getContext();
    ConversionTarget target(*context);
    target.addIllegalDialect<MoeDialect>();
    target.addLegalDialect<arith::ArithDialect, func::FuncDialect,
                           linalg::LinalgDialect, math::MathDialect,
                           scf::SCFDialect, tensor::TensorDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(context);
    populateMoeToLinalgConversionPatterns(patterns, rowBlock);
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
