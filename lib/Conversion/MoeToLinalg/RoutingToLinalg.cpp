//===- RoutingToLinalg.cpp - router and top-k lowering ---===//

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
// RouterOp
//===----------------------------------------------------------------------===//

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
          Value isNan =
              arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, key, key);
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
    Value tokenCount =
        getValueOrCreateConstantIndexOp(rewriter, loc, numTokens);
    auto tokenLoop = scf::ForOp::create(
        rewriter, loc, zero, tokenCount, one, ValueRange{weightsInit, idsInit},
        [&](OpBuilder &b, Location l, Value token, ValueRange iterArgs) {
          Value available = buildAvailableExperts(
              b, l, keys, token, numExperts, numGroups, topkGroups, groupSize);
          Value kUpper = indexConstant(b, l, k);
          Value c0 = indexConstant(b, l, 0);
          Value c1 = indexConstant(b, l, 1);
          auto slotLoop = scf::ForOp::create(
              b, l, c0, kUpper, c1,
              ValueRange{available, iterArgs[0], iterArgs[1]},
              [&](OpBuilder &sb, Location sl, Value slot, ValueRange slotArgs) {
                Value best =
                    buildArgmax(sb, sl, keys, token, slotArgs[0], numExperts);
                Value weight =
                    tensor::ExtractOp::create(sb, sl, scores, {token, best});
                Value bestId = arith::IndexCastOp::create(sb, sl, i32, best);
                Value newWeights = tensor::InsertOp::create(
                    sb, sl, weight, slotArgs[1], ValueRange{token, slot});
                Value newIds = tensor::InsertOp::create(
                    sb, sl, bestId, slotArgs[2], ValueRange{token, slot});
                Value taken =
                    arith::ConstantOp::create(sb, sl, sb.getIntegerAttr(i1, 0));
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
    Value negInf =
        f32Constant(b, loc, -std::numeric_limits<double>::infinity());
    auto loop = scf::ForOp::create(
        b, loc, c0, upper, c1, ValueRange{noneYet, negInf},
        [&](OpBuilder &lb, Location l, Value expert, ValueRange args) {
          Value isAvailable =
              tensor::ExtractOp::create(lb, l, available, expert);
          Value key = tensor::ExtractOp::create(lb, l, keys, {token, expert});
          Value isFirst =
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::slt, args[0],
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
    Value trueValue =
        arith::ConstantOp::create(b, loc, b.getIntegerAttr(i1, 1));
    Value falseValue =
        arith::ConstantOp::create(b, loc, b.getIntegerAttr(i1, 0));
    SmallVector<OpFoldResult> expertSizes = {b.getIndexAttr(numExperts)};
    Value allExperts = createFilledWith(b, loc, expertSizes, trueValue);
    if (numGroups == 1 || topkGroups == numGroups)
      return allExperts;

    Value c0 = indexConstant(b, loc, 0);
    Value c1 = indexConstant(b, loc, 1);
    Value negInf =
        f32Constant(b, loc, -std::numeric_limits<double>::infinity());
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
            score =
                arith::AddFOp::create(gb, l, score, memberLoop.getResult(1));
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
                Value isFirst =
                    arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::slt,
                                          best[0], indexConstant(sb, sl, 0));
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

/// moe.route is moe.router then moe.topk; on the CPU the two lowerings
/// compose (the logits stay a temporary of the function).
struct RouteOpLowering : public OpConversionPattern<RouteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(RouteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    RankedTensorType weightsType = op.getWeights().getType();
    auto logitsType = RankedTensorType::get(
        {weightsType.getDimSize(0), op.getNumExperts()}, rewriter.getF32Type());
    Value logits =
        RouterOp::create(rewriter, op.getLoc(), logitsType, adaptor.getInput(),
                         adaptor.getGateWeight(), adaptor.getGateBias());
    auto topk = TopkOp::create(
        rewriter, op.getLoc(), weightsType, op.getIds().getType(), logits,
        adaptor.getScoreBias(), op.getScoring(), op.getKAttr(),
        op.getNumGroupsAttr(), op.getTopkGroupsAttr(), op.getRenormalizeAttr(),
        op.getRoutedScalingFactorAttr());
    rewriter.replaceOp(op, topk.getResults());
    return success();
  }
};

/// A shared expert's weight for token `row`: 1, or the sigmoid of the
/// token's logit in `gate` ([M, 1]) where there is one.
Value sharedExpertWeight(OpBuilder &b, Location loc, Value gate, Value row) {
  if (!gate)
    return f32Constant(b, loc, 1.0);
  return sigmoid(b, loc,
                 tensor::ExtractOp::create(
                     b, loc, gate, ValueRange{row, indexConstant(b, loc, 0)}));
}

/// moe.add_shared_experts: the [M, k + S] weights and ids, column by
/// column: a routed column copies its input, a shared one holds its expert
/// and a weight of 1 or the sigmoid of the token's gate logit.
struct AddSharedExpertsOpLowering
    : public OpConversionPattern<AddSharedExpertsOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(AddSharedExpertsOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value gate = adaptor.getGate();
    int64_t k = op.getRoutedIds().getType().getDimSize(1);
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, adaptor.getRoutedIds(), 0),
        rewriter.getIndexAttr(k + op.getNumShared())};
    // [M, k + S] of `elementType`: routed[row, column] in the routed
    // columns, sharedValue(row, column) in the others (a shared column reads
    // routed column 0, which every token has, and drops it).
    auto appendColumns = [&](Value routed, Type elementType,
                             function_ref<Value(OpBuilder &, Location, Value,
                                                Value)>
                                 sharedValue) {
      return buildGeneric(
          rewriter, loc, {}, createEmpty(rewriter, loc, sizes, elementType),
          {{0, 1}}, {kParallel, kParallel},
          [&](OpBuilder &b, Location l, ValueRange) {
            Value row = linalg::IndexOp::create(b, l, 0);
            Value column = linalg::IndexOp::create(b, l, 1);
            Value isRouted =
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::ult, column,
                                      indexConstant(b, l, k));
            Value source = arith::SelectOp::create(b, l, isRouted, column,
                                                   indexConstant(b, l, 0));
            Value routedValue = tensor::ExtractOp::create(
                b, l, routed, ValueRange{row, source});
            linalg::YieldOp::create(
                b, l,
                Value(arith::SelectOp::create(b, l, isRouted, routedValue,
                                              sharedValue(b, l, row, column))));
          });
    };
    // Shared column k + s holds expert num_experts + s.
    Value ids = appendColumns(
        adaptor.getRoutedIds(), rewriter.getI32Type(),
        [&](OpBuilder &b, Location l, Value, Value column) -> Value {
          return arith::IndexCastOp::create(
              b, l, b.getI32Type(),
              arith::AddIOp::create(
                  b, l, column, indexConstant(b, l, op.getNumExperts() - k)));
        });
    Value weights =
        appendColumns(adaptor.getRoutedWeights(), rewriter.getF32Type(),
                      [&](OpBuilder &b, Location l, Value row, Value) {
                        return sharedExpertWeight(b, l, gate, row);
                      });
    rewriter.replaceOp(
        op, {castToType(rewriter, loc, weights, op.getWeights().getType()),
             castToType(rewriter, loc, ids, op.getIds().getType())});
    return success();
  }
};

/// moe.shared_expert_routing: [M, S] ids s, and weights of 1 or the
/// sigmoid of the token's gate logit.
struct SharedExpertRoutingOpLowering
    : public OpConversionPattern<SharedExpertRoutingOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(SharedExpertRoutingOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value gate = adaptor.getGate();
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, adaptor.getRoutedWeights(), 0),
        rewriter.getIndexAttr(op.getNumShared())};
    auto fill =
        [&](Type elementType,
            function_ref<Value(OpBuilder &, Location, Value, Value)> value) {
          return buildGeneric(
              rewriter, loc, {}, createEmpty(rewriter, loc, sizes, elementType),
              {{0, 1}}, {kParallel, kParallel},
              [&](OpBuilder &b, Location l, ValueRange) {
                linalg::YieldOp::create(
                    b, l,
                    value(b, l, linalg::IndexOp::create(b, l, 0),
                          linalg::IndexOp::create(b, l, 1)));
              });
        };
    Value ids = fill(rewriter.getI32Type(), [&](OpBuilder &b, Location l, Value,
                                                Value column) {
      return Value(arith::IndexCastOp::create(b, l, b.getI32Type(), column));
    });
    Value weights = fill(rewriter.getF32Type(),
                         [&](OpBuilder &b, Location l, Value row, Value) {
                           return sharedExpertWeight(b, l, gate, row);
                         });
    rewriter.replaceOp(
        op, {castToType(rewriter, loc, weights, op.getWeights().getType()),
             castToType(rewriter, loc, ids, op.getIds().getType())});
    return success();
  }
};

} // namespace

void mlir::moe::lowering::populateRoutingLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<RouterOpLowering, TopkOpLowering, RouteOpLowering,
               AddSharedExpertsOpLowering, SharedExpertRoutingOpLowering>(
      patterns.getContext());
}
