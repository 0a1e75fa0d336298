//===- RouteKernel.cpp - the GPU kernels of moe.route and moe.topk --------===//
//
// One thread block per token. Its threads copy the token's logits (given to
// moe.topk, or moe.route's from its router kernel, GateLogitsKernel.cpp)
// into shared memory; then one thread scores them and selects the k experts
// exactly as moe.topk defines it: NaN ranks as -inf, the lower expert wins a
// tie, groups by the sum of their two best biased scores, weights from the
// unbiased scores, top-k softmax, renormalization and the scaling factor.
// The selection favours being obviously right.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kRouteThreads = 128;

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
  /// NaN as -inf: how a score ranks.
  Value rank(Value score) {
    Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO,
                                        score, score);
    return arith::SelectOp::create(
        b, loc, isNan, f32(-std::numeric_limits<double>::infinity()), score);
  }
  /// for (i = lower; i < upper; ++i) with loop-carried `init`.
  scf::ForOp loop(Value lower, Value upper, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return scf::ForOp::create(
        b, loc, lower, upper, index(1), init,
        [&](OpBuilder &, Location, Value i, ValueRange args) {
          scf::YieldOp::create(b, loc, body(i, args));
        });
  }
  /// The best (highest rank, lowest index) of `count` candidates starting at
  /// `first` with `stride`, among those `eligible` says; returns (index,
  /// rank) with index -1 when none is eligible.
  std::pair<Value, Value>
  argmax(Value first, int64_t count, int64_t stride,
         function_ref<Value(Value)> key, function_ref<Value(Value)> eligible);

  /// Names the kernel's arguments.
  void bindArguments(Block &entry);
  /// Every thread: the token's logits of its experts into shared memory.
  void copyLogits(Value tid);
  /// The scores (softmax, sigmoid or the logits) and, biased, the
  /// selection keys of every expert.
  void computeScores();
  /// The groups the experts may come from: all, or the best topk_groups by
  /// the sum of their two best selection keys.
  void chooseGroups();
  /// k rounds of argmax over the allowed experts not chosen yet: the ids
  /// and their scores.
  void chooseExperts(SmallVector<Value> &chosen, SmallVector<Value> &weights);
  /// The routing weights: top-k softmax, renormalization, scaling factor.
  void weigh(SmallVector<Value> &weights);
  /// Whether the i32 at `position` of `memref` is not zero.
  Value isSet(Value memref, Value position);

  OpBuilder &b;
  Location loc;
  const RoutingFacts &facts;
  Value tokenLogits, scoreBias, weightsOut, idsOut;
  /// Shared memory: logits (then group scores), scores, selection keys, and
  /// the allowed groups.
  Value logits, scores, selection, allowedGroups;
  Value token, zeroI32;
};
} // namespace

std::pair<Value, Value>
RouteBuilder::argmax(Value first, int64_t count, int64_t stride,
                     function_ref<Value(Value)> key,
                     function_ref<Value(Value)> eligible) {
  Value none = index(-1);
  Value lowest = f32(-std::numeric_limits<double>::infinity());
  auto search = loop(index(0), index(count), ValueRange{none, lowest},
                     [&](Value i, ValueRange args) -> SmallVector<Value> {
                       Value candidate = arith::AddIOp::create(
                           b, loc, first,
                           arith::MulIOp::create(b, loc, i, index(stride)));
                       Value value = rank(key(candidate));
                       // Strictly greater keeps the lower index on ties; the
                       // first eligible candidate is taken even at -inf.
                       Value better = arith::OrIOp::create(
                           b, loc,
                           arith::CmpIOp::create(b, loc,
                                                 arith::CmpIPredicate::eq,
                                                 args[0], none),
                           arith::CmpFOp::create(b, loc,
                                                 arith::CmpFPredicate::OGT,
                                                 value, args[1]));
                       Value take = arith::AndIOp::create(
                           b, loc, better, eligible(candidate));
                       return {arith::SelectOp::create(b, loc, take, candidate,
                                                       args[0]),
                               arith::SelectOp::create(b, loc, take, value,
                                                       args[1])};
                     });
  return {search.getResult(0), search.getResult(1)};
}

void RouteBuilder::build(gpu::GPUFuncOp func, ArrayRef<StringRef> sharedNames,
                         MemRefType sharedType, MemRefType groupType) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bindArguments(entry);
  logits = memref::GetGlobalOp::create(b, loc, sharedType, sharedNames[0]);
  scores = memref::GetGlobalOp::create(b, loc, sharedType, sharedNames[1]);
  selection = memref::GetGlobalOp::create(b, loc, sharedType, sharedNames[2]);
  allowedGroups =
      memref::GetGlobalOp::create(b, loc, groupType, sharedNames[3]);
  token = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  copyLogits(tid);

  Value leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  auto leaderIf = scf::IfOp::create(b, loc, leader, /*withElse=*/false);
  b.setInsertionPointToStart(leaderIf.thenBlock());
  computeScores();
  chooseGroups();
  SmallVector<Value> chosen, weights;
  chooseExperts(chosen, weights);
  weigh(weights);
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

void RouteBuilder::copyLogits(Value tid) {
  // Expert e = tid, tid + threads, ...
  scf::ForOp::create(
      b, loc, tid, index(facts.numExperts), index(kRouteThreads), ValueRange{},
      [&](OpBuilder &, Location, Value expert, ValueRange) {
        memref::StoreOp::create(
            b, loc,
            memref::LoadOp::create(b, loc, tokenLogits,
                                   ValueRange{token, expert}),
            logits, expert);
        scf::YieldOp::create(b, loc);
      });
  gpu::BarrierOp::create(b, loc);
}

void RouteBuilder::computeScores() {
  Value expertCount = index(facts.numExperts);
  Value maximum, denominator;
  if (facts.scoring == ScoringFunc::Softmax) {
    maximum = loop(index(0), expertCount,
                   ValueRange{f32(-std::numeric_limits<double>::infinity())},
                   [&](Value e, ValueRange args) -> SmallVector<Value> {
                     return {arith::MaximumFOp::create(
                         b, loc, args[0],
                         memref::LoadOp::create(b, loc, logits, e))};
                   })
                  .getResult(0);
    denominator =
        loop(index(0), expertCount, ValueRange{f32(0.0)},
             [&](Value e, ValueRange args) -> SmallVector<Value> {
               Value shifted = arith::SubFOp::create(
                   b, loc, memref::LoadOp::create(b, loc, logits, e), maximum);
               return {arith::AddFOp::create(
                   b, loc, args[0], math::ExpOp::create(b, loc, shifted))};
             })
            .getResult(0);
  }
  loop(index(0), expertCount, ValueRange{},
       [&](Value e, ValueRange) -> SmallVector<Value> {
         Value logit = memref::LoadOp::create(b, loc, logits, e);
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
                   math::ExpOp::create(b, loc,
                                       arith::NegFOp::create(b, loc, logit))));
         memref::StoreOp::create(b, loc, score, scores, e);
         Value selected = score;
         if (scoreBias)
           selected = arith::AddFOp::create(
               b, loc, score, memref::LoadOp::create(b, loc, scoreBias, e));
         memref::StoreOp::create(b, loc, selected, selection, e);
         return {};
       });
}

Value RouteBuilder::isSet(Value memref, Value position) {
  return arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      memref::LoadOp::create(b, loc, memref, position), zeroI32);
}

void RouteBuilder::chooseGroups() {
  // Groups: rank each by the sum of its two best selection scores, allow
  // the best topk_groups of them.
  int64_t numGroups = facts.numGroups, topkGroups = facts.topkGroups;
  int64_t groupSize = facts.numExperts / numGroups;
  zeroI32 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
  Value oneI32 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1));
  // allowedGroups[g] != 0 for the chosen groups (all of them without
  // grouping). The group scores reuse `logits`, no longer needed.
  loop(index(0), index(numGroups), ValueRange{},
       [&](Value g, ValueRange) -> SmallVector<Value> {
         memref::StoreOp::create(b, loc,
                                 numGroups == topkGroups ? oneI32 : zeroI32,
                                 allowedGroups, g);
         return {};
       });
  if (numGroups == topkGroups)
    return;
  Value groupScores = logits;
  loop(index(0), index(numGroups), ValueRange{},
       [&](Value g, ValueRange) -> SmallVector<Value> {
         Value first = arith::MulIOp::create(b, loc, g, index(groupSize));
         auto key = [&](Value e) -> Value {
           return memref::LoadOp::create(b, loc, selection, e);
         };
         auto [best, bestRank] = argmax(
             first, groupSize, 1, key, [&](Value) -> Value {
               return arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
             });
         Value sum = bestRank;
         if (groupSize > 1) {
           Value bestIndex = best;
           auto [second, secondRank] = argmax(
               first, groupSize, 1, key, [&](Value e) -> Value {
                 return arith::CmpIOp::create(
                     b, loc, arith::CmpIPredicate::ne, e, bestIndex);
               });
           (void)second;
           sum = arith::AddFOp::create(b, loc, bestRank, secondRank);
         }
         memref::StoreOp::create(b, loc, sum, groupScores, g);
         return {};
       });
  loop(index(0), index(topkGroups), ValueRange{},
       [&](Value, ValueRange) -> SmallVector<Value> {
         auto [best, bestRank] = argmax(
             index(0), numGroups, 1,
             [&](Value g) -> Value {
               return memref::LoadOp::create(b, loc, groupScores, g);
             },
             [&](Value g) -> Value {
               return arith::XOrIOp::create(
                   b, loc, isSet(allowedGroups, g),
                   arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
             });
         (void)bestRank;
         memref::StoreOp::create(b, loc, oneI32, allowedGroups, best);
         return {};
       });
}

void RouteBuilder::chooseExperts(SmallVector<Value> &chosen,
                                 SmallVector<Value> &weights) {
  // Top-k: k rounds of argmax over the allowed experts not yet chosen (the
  // chosen ids stay in registers).
  int64_t groupSize = facts.numExperts / facts.numGroups;
  for (int64_t j = 0; j < facts.topK; ++j) {
    auto [best, bestRank] = argmax(
        index(0), facts.numExperts, 1,
        [&](Value e) -> Value {
          return memref::LoadOp::create(b, loc, selection, e);
        },
        [&](Value e) -> Value {
          Value group = arith::DivUIOp::create(b, loc, e, index(groupSize));
          Value eligible = isSet(allowedGroups, group);
          for (Value previous : chosen)
            eligible = arith::AndIOp::create(
                b, loc, eligible,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, e,
                                      previous));
          return eligible;
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
  auto groupType = MemRefType::get({facts.numGroups}, b.getI32Type(),
                                   MemRefLayoutAttrInterface(), workgroup);
  b.setInsertionPointToStart(module.getBody());
  SmallVector<std::string> names;
  for (StringRef suffix : {"_logits", "_scores", "_selection", "_groups"})
    names.push_back((name + suffix).str());
  for (auto [index, global] : llvm::enumerate(names))
    memref::GlobalOp::create(b, loc, global, b.getStringAttr("private"),
                             index == 3 ? groupType : sharedType, Attribute(),
                             /*constant=*/false,
                             b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());

  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments(inputs);
  if (facts.scoreBias)
    arguments.push_back(MemRefType::get({facts.numExperts}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getI32Type()));
  // Grid (M), one block of `threads` per token.
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
