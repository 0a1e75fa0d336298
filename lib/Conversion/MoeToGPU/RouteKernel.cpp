//===- RouteKernel.cpp - the GPU kernels of moe.route and moe.topk --------===//
//
// One warp per token, as a block. Its lanes score the token's experts
// (expert e on lane e mod 32) from the logits (given to moe.topk, or
// moe.route's from its router kernel, GateLogitsKernel.cpp) into shared
// memory, and select the k experts together, exactly as moe.topk defines
// it: NaN ranks as -inf, the lower expert wins a tie, groups by the sum of
// their two best biased scores, weights from the unbiased scores, top-k
// softmax, renormalization and the scaling factor. Each argmax is a lane's
// own over its experts, then a butterfly over the warp that keeps the
// (higher rank, lower index) candidate, so every lane holds the same
// choice; lane 0 stores it. One thread doing it all took 36-77 µs per token
// for 128-256 experts.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// A block is one warp.
constexpr int64_t kRouteThreads = kWarpSize;

/// What the kernel computes: moe.topk's selection.
struct RoutingFacts {
  int64_t numExperts = 0, topK = 0, numGroups = 1, topkGroups = 1;
  ScoringFunc scoring = ScoringFunc::Softmax;
  bool renormalize = false, scoreBias = false;
  std::optional<double> routedScalingFactor;

  template <typename OpTy> static RoutingFacts selection(OpTy op) {
    RoutingFacts facts;
    facts.topK = op.getK();
    facts.numGroups = op.getNumGroups().value_or(1);
    facts.topkGroups = op.getTopkGroups().value_or(facts.numGroups);
    facts.scoring = op.getScoring();
    facts.renormalize = op.getRenormalize();
    if (auto factor = op.getRoutedScalingFactor())
      facts.routedScalingFactor = factor->convertToDouble();
    return facts;
  }
  static RoutingFacts of(RouteOp op) {
    RoutingFacts facts = selection(op);
    facts.numExperts = op.getGateWeight().getType().getDimSize(0);
    facts.scoreBias = static_cast<bool>(op.getScoreBias());
    return facts;
  }
  static RoutingFacts of(TopkOp op) {
    RoutingFacts facts = selection(op);
    facts.numExperts = op.getLogits().getType().getDimSize(1);
    facts.scoreBias = static_cast<bool>(op.getBias());
    return facts;
  }
};

/// Builds the body; holds what the steps share.
class RouteBuilder {
public:
  RouteBuilder(OpBuilder &b, Location loc, const RoutingFacts &facts)
      : b(b), loc(loc), facts(facts) {}
  void build(gpu::GPUFuncOp func, ArrayRef<StringRef> sharedNames,
             MemRefType sharedType, MemRefType groupType);

private:
  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value f32(double value) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
  }
  Value lowest() { return f32(-std::numeric_limits<double>::infinity()); }
  /// NaN as -inf: how a score ranks.
  Value rank(Value score) {
    Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO,
                                        score, score);
    return arith::SelectOp::create(b, loc, isNan, lowest(), score);
  }
  /// for (i = lower; i < upper; i += step) with loop-carried `init`.
  scf::ForOp loop(Value lower, Value upper, int64_t step, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return scf::ForOp::create(
        b, loc, lower, upper, index(step), init,
        [&](OpBuilder &, Location, Value i, ValueRange args) {
          scf::YieldOp::create(b, loc, body(i, args));
        });
  }
  /// The lane's candidates of `count`: lane, lane + 32, ...
  scf::ForOp laneLoop(int64_t count, ValueRange init,
                      function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return loop(lane, index(count), kWarpSize, init, body);
  }
  /// `value` combined over the warp by `combine`, in every lane.
  Value acrossWarp(Value value, function_ref<Value(Value, Value)> combine);
  /// Whether (index, rank) `candidate` beats `best`: higher rank, or the
  /// same and a lower index; an index -1 is no candidate and beats nothing.
  Value beats(Value candidate, Value candidateRank, Value best,
              Value bestRank);
  /// The best (highest rank, lowest index) of `count` candidates starting
  /// at `first` with `stride`, among those `eligible` says, searched by
  /// this lane alone; returns (index, rank) with index -1 when none is
  /// eligible.
  std::pair<Value, Value>
  argmax(Value first, int64_t count, int64_t stride,
         function_ref<Value(Value)> key, function_ref<Value(Value)> eligible);
  /// The same over candidates 0 .. count - 1 by the whole warp: the same
  /// result in every lane.
  std::pair<Value, Value> warpArgmax(int64_t count,
                                     function_ref<Value(Value)> key,
                                     function_ref<Value(Value)> eligible);

  /// Names the kernel's arguments.
  void bindArguments(Block &entry);
  /// The scores (softmax, sigmoid or the logits) and, biased, the
  /// selection keys of every expert, into shared memory.
  void computeScores();
  /// The groups the experts may come from, in `chosenGroups`: none (all
  /// allowed), or the best topk_groups by the sum of their two best
  /// selection keys.
  void chooseGroups();
  /// k rounds of argmax over the allowed experts not chosen yet: the ids
  /// and their scores.
  void chooseExperts(SmallVector<Value> &chosen, SmallVector<Value> &weights);
  /// The routing weights: top-k softmax, renormalization, scaling factor.
  void weigh(SmallVector<Value> &weights);
  /// Whether `value` differs from every one of `others`.
  Value noneOf(Value value, ArrayRef<Value> others);

  OpBuilder &b;
  Location loc;
  const RoutingFacts &facts;
  Value tokenLogits, scoreBias, weightsOut, idsOut;
  /// Shared memory: scores, selection keys, group scores.
  Value scores, selection, groupScores;
  Value token, lane;
  SmallVector<Value> chosenGroups;
};
} // namespace

Value RouteBuilder::acrossWarp(Value value,
                               function_ref<Value(Value, Value)> combine) {
  return warpButterfly(b, loc, value, combine);
}

Value RouteBuilder::beats(Value candidate, Value candidateRank, Value best,
                          Value bestRank) {
  // One op per statement, so the IR does not depend on the order in which
  // the compiler evaluates arguments.
  Value none = index(-1);
  Value higher = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                       candidateRank, bestRank);
  Value tie = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                    candidateRank, bestRank);
  Value lower = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                      candidate, best);
  Value tieLower = arith::AndIOp::create(b, loc, tie, lower);
  Value noBest =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, best, none);
  Value better = arith::OrIOp::create(
      b, loc, noBest, arith::OrIOp::create(b, loc, higher, tieLower));
  Value real =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, candidate, none);
  return arith::AndIOp::create(b, loc, real, better);
}

std::pair<Value, Value>
RouteBuilder::argmax(Value first, int64_t count, int64_t stride,
                     function_ref<Value(Value)> key,
                     function_ref<Value(Value)> eligible) {
  Value none = index(-1);
  auto search = loop(index(0), index(count), 1, ValueRange{none, lowest()},
                     [&](Value i, ValueRange args) -> SmallVector<Value> {
                       Value candidate = arith::AddIOp::create(
                           b, loc, first,
                           arith::MulIOp::create(b, loc, i, index(stride)));
                       Value value = rank(key(candidate));
                       // Candidates come in increasing order: strictly
                       // greater keeps the lower index on ties, and the
                       // first eligible one is taken even at -inf.
                       Value noneYet = arith::CmpIOp::create(
                           b, loc, arith::CmpIPredicate::eq, args[0], none);
                       Value greater = arith::CmpFOp::create(
                           b, loc, arith::CmpFPredicate::OGT, value, args[1]);
                       Value better =
                           arith::OrIOp::create(b, loc, noneYet, greater);
                       Value allowed = eligible(candidate);
                       Value take =
                           arith::AndIOp::create(b, loc, better, allowed);
                       return {arith::SelectOp::create(b, loc, take, candidate,
                                                       args[0]),
                               arith::SelectOp::create(b, loc, take, value,
                                                       args[1])};
                     });
  return {search.getResult(0), search.getResult(1)};
}

std::pair<Value, Value>
RouteBuilder::warpArgmax(int64_t count, function_ref<Value(Value)> key,
                         function_ref<Value(Value)> eligible) {
  Value none = index(-1);
  auto own = laneLoop(count, ValueRange{none, lowest()},
                      [&](Value candidate, ValueRange args)
                          -> SmallVector<Value> {
                        Value value = rank(key(candidate));
                        Value allowed = eligible(candidate);
                        Value better =
                            beats(candidate, value, args[0], args[1]);
                        Value take =
                            arith::AndIOp::create(b, loc, allowed, better);
                        return {arith::SelectOp::create(b, loc, take,
                                                        candidate, args[0]),
                                arith::SelectOp::create(b, loc, take, value,
                                                        args[1])};
                      });
  Value best = arith::IndexCastOp::create(b, loc, b.getI32Type(),
                                          own.getResult(0));
  Value bestRank = own.getResult(1);
  for (int32_t offset = kWarpSize / 2; offset > 0; offset /= 2) {
    auto shuffle = [&](Value value) {
      return gpu::ShuffleOp::create(b, loc, value, offset, kWarpSize,
                                    gpu::ShuffleMode::XOR)
          .getShuffleResult();
    };
    Value other = shuffle(best), otherRank = shuffle(bestRank);
    auto asIndex = [&](Value value) -> Value {
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), value);
    };
    Value otherIndex = asIndex(other);
    Value bestIndex = asIndex(best);
    Value take = beats(otherIndex, otherRank, bestIndex, bestRank);
    best = arith::SelectOp::create(b, loc, take, other, best);
    bestRank = arith::SelectOp::create(b, loc, take, otherRank, bestRank);
  }
  return {arith::IndexCastOp::create(b, loc, b.getIndexType(), best),
          bestRank};
}

void RouteBuilder::build(gpu::GPUFuncOp func, ArrayRef<StringRef> sharedNames,
                         MemRefType sharedType, MemRefType groupType) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bindArguments(entry);
  scores = memref::GetGlobalOp::create(b, loc, sharedType, sharedNames[0]);
  selection = memref::GetGlobalOp::create(b, loc, sharedType, sharedNames[1]);
  groupScores = memref::GetGlobalOp::create(b, loc, groupType, sharedNames[2]);
  token = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  lane = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  computeScores();
  // The block is the warp: a barrier makes every lane's scores visible.
  gpu::BarrierOp::create(b, loc);
  chooseGroups();
  SmallVector<Value> chosen, weights;
  chooseExperts(chosen, weights);
  weigh(weights);
  Value first =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, index(0));
  auto store = scf::IfOp::create(b, loc, first, /*withElse=*/false);
  b.setInsertionPointToStart(store.thenBlock());
  for (int64_t j = 0; j < facts.topK; ++j) {
    memref::StoreOp::create(b, loc, weights[j], weightsOut,
                            ValueRange{token, index(j)});
    memref::StoreOp::create(
        b, loc, arith::IndexCastOp::create(b, loc, b.getI32Type(), chosen[j]),
        idsOut, ValueRange{token, index(j)});
  }
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

void RouteBuilder::bindArguments(Block &entry) {
  unsigned argument = 0;
  tokenLogits = entry.getArgument(argument++);
  scoreBias = facts.scoreBias ? entry.getArgument(argument++) : Value();
  weightsOut = entry.getArgument(argument++);
  idsOut = entry.getArgument(argument++);
}

void RouteBuilder::computeScores() {
  auto logitOf = [&](Value e) -> Value {
    return memref::LoadOp::create(b, loc, tokenLogits, ValueRange{token, e});
  };
  Value maximum, denominator;
  if (facts.scoring == ScoringFunc::Softmax) {
    maximum = laneLoop(facts.numExperts, ValueRange{lowest()},
                       [&](Value e, ValueRange args) -> SmallVector<Value> {
                         return {arith::MaximumFOp::create(b, loc, args[0],
                                                           logitOf(e))};
                       })
                  .getResult(0);
    maximum = acrossWarp(maximum, [&](Value lhs, Value rhs) -> Value {
      return arith::MaximumFOp::create(b, loc, lhs, rhs);
    });
    denominator =
        laneLoop(facts.numExperts, ValueRange{f32(0.0)},
                 [&](Value e, ValueRange args) -> SmallVector<Value> {
                   Value shifted =
                       arith::SubFOp::create(b, loc, logitOf(e), maximum);
                   return {arith::AddFOp::create(
                       b, loc, args[0], math::ExpOp::create(b, loc, shifted))};
                 })
            .getResult(0);
    denominator = acrossWarp(denominator, [&](Value lhs, Value rhs) -> Value {
      return arith::AddFOp::create(b, loc, lhs, rhs);
    });
  }
  laneLoop(facts.numExperts, ValueRange{},
           [&](Value e, ValueRange) -> SmallVector<Value> {
             Value logit = logitOf(e);
             Value score = logit;
             if (facts.scoring == ScoringFunc::Softmax)
               score = arith::DivFOp::create(
                   b, loc,
                   math::ExpOp::create(
                       b, loc, arith::SubFOp::create(b, loc, logit, maximum)),
                   denominator);
             else if (facts.scoring == ScoringFunc::Sigmoid)
               score = arith::DivFOp::create(
                   b, loc, f32(1.0),
                   arith::AddFOp::create(
                       b, loc, f32(1.0),
                       math::ExpOp::create(
                           b, loc, arith::NegFOp::create(b, loc, logit))));
             memref::StoreOp::create(b, loc, score, scores, e);
             Value selected = score;
             if (scoreBias)
               selected = arith::AddFOp::create(
                   b, loc, score,
                   memref::LoadOp::create(b, loc, scoreBias, e));
             memref::StoreOp::create(b, loc, selected, selection, e);
             return {};
           });
}

Value RouteBuilder::noneOf(Value value, ArrayRef<Value> others) {
  Value result = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  for (Value other : others)
    result = arith::AndIOp::create(
        b, loc, result,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, value, other));
  return result;
}

void RouteBuilder::chooseGroups() {
  int64_t numGroups = facts.numGroups, topkGroups = facts.topkGroups;
  if (numGroups == topkGroups)
    return;
  // Each lane ranks its groups by the sum of their two best selection keys.
  int64_t groupSize = facts.numExperts / numGroups;
  auto key = [&](Value e) -> Value {
    return memref::LoadOp::create(b, loc, selection, e);
  };
  laneLoop(numGroups, ValueRange{},
           [&](Value g, ValueRange) -> SmallVector<Value> {
             Value first = arith::MulIOp::create(b, loc, g, index(groupSize));
             auto [best, bestRank] =
                 argmax(first, groupSize, 1, key, [&](Value) -> Value {
                   return arith::ConstantOp::create(b, loc,
                                                    b.getBoolAttr(true));
                 });
             Value sum = bestRank;
             if (groupSize > 1) {
               Value bestIndex = best;
               auto [second, secondRank] =
                   argmax(first, groupSize, 1, key, [&](Value e) -> Value {
                     return arith::CmpIOp::create(
                         b, loc, arith::CmpIPredicate::ne, e, bestIndex);
                   });
               (void)second;
               sum = arith::AddFOp::create(b, loc, bestRank, secondRank);
             }
             memref::StoreOp::create(b, loc, sum, groupScores, g);
             return {};
           });
  gpu::BarrierOp::create(b, loc);
  // The best topk_groups of them, in registers.
  for (int64_t j = 0; j < topkGroups; ++j) {
    auto [best, bestRank] = warpArgmax(
        numGroups,
        [&](Value g) -> Value {
          return memref::LoadOp::create(b, loc, groupScores, g);
        },
        [&](Value g) -> Value { return noneOf(g, chosenGroups); });
    (void)bestRank;
    chosenGroups.push_back(best);
  }
}

void RouteBuilder::chooseExperts(SmallVector<Value> &chosen,
                                 SmallVector<Value> &weights) {
  // Top-k: k rounds of argmax over the allowed experts not yet chosen (the
  // chosen ids stay in registers, the same in every lane).
  int64_t groupSize = facts.numExperts / facts.numGroups;
  for (int64_t j = 0; j < facts.topK; ++j) {
    auto [best, bestRank] = warpArgmax(
        facts.numExperts,
        [&](Value e) -> Value {
          return memref::LoadOp::create(b, loc, selection, e);
        },
        [&](Value e) -> Value {
          Value eligible = noneOf(e, chosen);
          if (chosenGroups.empty())
            return eligible;
          Value group = arith::DivUIOp::create(b, loc, e, index(groupSize));
          return arith::AndIOp::create(
              b, loc, eligible,
              arith::XOrIOp::create(
                  b, loc, noneOf(group, chosenGroups),
                  arith::ConstantOp::create(b, loc, b.getBoolAttr(true))));
        });
    (void)bestRank;
    chosen.push_back(best);
    weights.push_back(memref::LoadOp::create(b, loc, scores, best));
  }
}

void RouteBuilder::weigh(SmallVector<Value> &weights) {
  if (facts.scoring == ScoringFunc::TopkSoftmax) {
    Value top = weights[0];
    for (Value w : ArrayRef<Value>(weights).drop_front())
      top = arith::MaximumFOp::create(b, loc, top, w);
    Value sum = f32(0.0);
    for (Value &w : weights) {
      w = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, w, top));
      sum = arith::AddFOp::create(b, loc, sum, w);
    }
    for (Value &w : weights)
      w = arith::DivFOp::create(b, loc, w, sum);
  }
  if (facts.renormalize) {
    Value sum = f32(0.0);
    for (Value w : weights)
      sum = arith::AddFOp::create(b, loc, sum, w);
    for (Value &w : weights)
      w = arith::DivFOp::create(b, loc, w, sum);
  }
  if (facts.routedScalingFactor)
    for (Value &w : weights)
      w = arith::MulFOp::create(b, loc, w, f32(*facts.routedScalingFactor));
}

/// The kernel of `op` (moe.route or moe.topk): `inputs` are its arguments
/// before the optional biases.
static FailureOr<gpu::GPUFuncOp>
buildRoutingKernel(OpBuilder &b, gpu::GPUModuleOp module, Operation *op,
                   const RoutingFacts &facts, ArrayRef<Type> inputs,
                   StringRef name) {
  if (ShapedType::isDynamic(facts.numExperts))
    return op->emitRemark("no GPU kernel: the expert count must be static");
  if (facts.topK > 32)
    return op->emitRemark("no GPU kernel: k above 32");
  OpBuilder::InsertionGuard guard(b);
  MLIRContext *context = b.getContext();
  Location loc = op->getLoc();
  auto workgroup =
      gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup);
  auto sharedType = MemRefType::get({facts.numExperts}, b.getF32Type(),
                                    MemRefLayoutAttrInterface(), workgroup);
  auto groupType = MemRefType::get({facts.numGroups}, b.getF32Type(),
                                   MemRefLayoutAttrInterface(), workgroup);
  b.setInsertionPointToStart(module.getBody());
  SmallVector<std::string> names;
  for (StringRef suffix : {"_scores", "_selection", "_group_scores"})
    names.push_back((name + suffix).str());
  for (auto [index, global] : llvm::enumerate(names))
    memref::GlobalOp::create(b, loc, global, b.getStringAttr("private"),
                             index == 2 ? groupType : sharedType, Attribute(),
                             /*constant=*/false,
                             b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());

  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments(inputs);
  if (facts.scoreBias)
    arguments.push_back(MemRefType::get({facts.numExperts}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getI32Type()));
  // Grid (M), one warp per token.
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kRouteThreads))});
  SmallVector<StringRef> nameRefs(names.begin(), names.end());
  RouteBuilder(b, loc, facts).build(func, nameRefs, sharedType, groupType);
  return func;
}

FailureOr<gpu::GPUFuncOp> mlir::moe::buildRouteKernel(OpBuilder &b,
                                                      gpu::GPUModuleOp module,
                                                      RouteOp op,
                                                      StringRef name) {
  RoutingFacts facts = RoutingFacts::of(op);
  Type logits = MemRefType::get({ShapedType::kDynamic, facts.numExperts},
                                b.getF32Type());
  return buildRoutingKernel(b, module, op, facts, {logits}, name);
}

FailureOr<gpu::GPUFuncOp> mlir::moe::buildTopkKernel(OpBuilder &b,
                                                     gpu::GPUModuleOp module,
                                                     TopkOp op,
                                                     StringRef name) {
  RoutingFacts facts = RoutingFacts::of(op);
  Type logits = MemRefType::get({ShapedType::kDynamic, facts.numExperts},
                                b.getF32Type());
  return buildRoutingKernel(b, module, op, facts, {logits}, name);
}
