//===- RouteKernel.cpp - the GPU kernels of moe.route and moe.topk --------===//
//
// One thread block per token. Its warps compute the token's E logits (a warp
// per expert at a time, lanes along H, f32 sums) into shared memory, or, for
// moe.topk, its threads copy the given logits there; then one thread scores
// them and selects the k experts exactly as moe.topk defines it: NaN ranks
// as -inf, the lower expert wins a tie, groups by the sum of their two best
// biased scores, weights from the unbiased scores, top-k softmax,
// renormalization and the scaling factor. The selection favours being
// obviously right; the logits, which read the whole gate per token, are
// where the time goes.
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
/// moe.route: more warps, each computing whole logits, keep more of the gate
/// weights in flight.
constexpr int64_t kRouterLogitThreads = 256;
constexpr int64_t kWarpSize = 32;

/// What the kernel computes: moe.topk's selection, after moe.route's router
/// (x · W_gateᵀ + gate bias) or on given logits.
struct RoutingFacts {
  int64_t numExperts = 0, topK = 0, numGroups = 1, topkGroups = 1;
  ScoringFunc scoring = ScoringFunc::Softmax;
  bool renormalize = false, scoreBias = false;
  std::optional<double> routedScalingFactor;
  /// The router (moe.route): hidden size H and its gate bias; H is 0 for
  /// moe.topk, whose first argument is the logits.
  int64_t hidden = 0;
  bool gateBias = false;

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
    facts.hidden = op.getGateWeight().getType().getDimSize(1);
    facts.gateBias = static_cast<bool>(op.getGateBias());
    facts.scoreBias = static_cast<bool>(op.getScoreBias());
    return facts;
  }
  static RoutingFacts of(TopkOp op) {
    RoutingFacts facts = selection(op);
    facts.numExperts = op.getLogits().getType().getDimSize(1);
    facts.scoreBias = static_cast<bool>(op.getBias());
    return facts;
  }
  bool fromLogits() const { return hidden == 0; }
  /// The threads of a block.
  int64_t threads() const {
    return fromLogits() ? kRouteThreads : kRouterLogitThreads;
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
  void computeLogits(Value tid);
  /// Warp `warp`'s logits (experts warp, warp + warps, ...) from x · W_gateᵀ.
  void multiplyGate(Value warp, Value lane);
  int64_t threads() const { return facts.threads(); }
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
  Value x, gate, gateBias, scoreBias, weightsOut, idsOut;
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
  computeLogits(tid);

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
  // x and the gate weights, or the logits.
  x = entry.getArgument(argument++);
  gate = facts.fromLogits() ? Value() : entry.getArgument(argument++);
  gateBias = facts.gateBias ? entry.getArgument(argument++) : Value();
  scoreBias = facts.scoreBias ? entry.getArgument(argument++) : Value();
  weightsOut = entry.getArgument(argument++);
  idsOut = entry.getArgument(argument++);
}

void RouteBuilder::computeLogits(Value tid) {
  if (!facts.fromLogits()) {
    Value warp = arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
    Value lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
    multiplyGate(warp, lane);
    gpu::BarrierOp::create(b, loc);
    return;
  }
  // Given logits: expert e = tid, tid + threads, ...
  scf::ForOp::create(
      b, loc, tid, index(facts.numExperts), index(threads()), ValueRange{},
      [&](OpBuilder &, Location, Value expert, ValueRange) {
        memref::StoreOp::create(
            b, loc, memref::LoadOp::create(b, loc, x, ValueRange{token, expert}),
            logits, expert);
        scf::YieldOp::create(b, loc);
      });
  gpu::BarrierOp::create(b, loc);
}

void RouteBuilder::multiplyGate(Value warp, Value lane) {
  // A warp per expert: its lanes read x and the gate row at h = lane,
  // lane + 32, ... (64-byte coalesced reads, where a thread per expert
  // walking a whole row alone was bound by one load's latency at a time),
  // into `unroll` independent f32 sums, added across the warp by butterfly
  // shuffles.
  auto f32Type = b.getF32Type();
  int64_t unroll = facts.hidden % (4 * kWarpSize) == 0   ? 4
                   : facts.hidden % (2 * kWarpSize) == 0 ? 2
                                                         : 1;
  auto product = [&](Value expert, Value h) -> Value {
    Value xv = memref::LoadOp::create(b, loc, x, ValueRange{token, h});
    Value wv = memref::LoadOp::create(b, loc, gate, ValueRange{expert, h});
    return arith::MulFOp::create(b, loc,
                                 arith::ExtFOp::create(b, loc, f32Type, xv),
                                 arith::ExtFOp::create(b, loc, f32Type, wv));
  };
  scf::ForOp::create(
      b, loc, warp, index(facts.numExperts), index(threads() / kWarpSize),
      ValueRange{}, [&](OpBuilder &, Location, Value expert, ValueRange) {
        auto dot = scf::ForOp::create(
            b, loc, lane, index(facts.hidden), index(unroll * kWarpSize),
            SmallVector<Value>(unroll, f32(0.0)),
            [&](OpBuilder &, Location, Value h, ValueRange sums) {
              SmallVector<Value> next;
              for (int64_t u = 0; u < unroll; ++u)
                next.push_back(arith::AddFOp::create(
                    b, loc, sums[u],
                    product(expert, arith::AddIOp::create(
                                        b, loc, h, index(u * kWarpSize)))));
              scf::YieldOp::create(b, loc, next);
            });
        Value sum = dot.getResult(0);
        for (int64_t u = 1; u < unroll; ++u)
          sum = arith::AddFOp::create(b, loc, sum, dot.getResult(u));
        for (int32_t offset = kWarpSize / 2; offset > 0; offset /= 2)
          sum = arith::AddFOp::create(
              b, loc, sum,
              gpu::ShuffleOp::create(b, loc, sum, offset, kWarpSize,
                                     gpu::ShuffleMode::XOR)
                  .getShuffleResult());
        if (gateBias)
          sum = arith::AddFOp::create(
              b, loc, sum, memref::LoadOp::create(b, loc, gateBias, expert));
        Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            lane, index(0));
        auto store = scf::IfOp::create(b, loc, first, /*withElse=*/false);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(store.thenBlock());
          memref::StoreOp::create(b, loc, sum, logits, expert);
        }
        scf::YieldOp::create(b, loc);
      });
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
  if (ShapedType::isDynamic(facts.numExperts) ||
      ShapedType::isDynamic(facts.hidden))
    return op->emitRemark(
        "no GPU kernel: the expert count and hidden size must be static");
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
  if (facts.gateBias)
    arguments.push_back(MemRefType::get({facts.numExperts}, b.getF32Type()));
  if (facts.scoreBias)
    arguments.push_back(MemRefType::get({facts.numExperts}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getF32Type()));
  arguments.push_back(MemRefType::get({dynamic, facts.topK}, b.getI32Type()));
  // Grid (M), one block of `threads` per token.
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(facts.threads()))});
  SmallVector<StringRef> nameRefs(names.begin(), names.end());
  RouteBuilder(b, loc, facts).build(func, nameRefs, sharedType, groupType);
  return func;
}

FailureOr<gpu::GPUFuncOp> mlir::moe::buildRouteKernel(OpBuilder &b,
                                                      gpu::GPUModuleOp module,
                                                      RouteOp op,
                                                      StringRef name) {
  auto gateType = op.getGateWeight().getType();
  RoutingFacts facts = RoutingFacts::of(op);
  Type input = MemRefType::get({ShapedType::kDynamic, facts.hidden},
                               op.getInput().getType().getElementType());
  Type gate = MemRefType::get({facts.numExperts, facts.hidden},
                              gateType.getElementType());
  return buildRoutingKernel(b, module, op, facts, {input, gate}, name);
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

/// Thread `tid`'s share of x[token] · gate[expert]: the products at h =
/// tid, tid + kRouteThreads, ..., in f32.
static Value buildStridedDot(OpBuilder &b, Location loc, Value x, Value gate,
                             Value token, Value expert, Value tid,
                             int64_t hidden) {
  Type f32 = b.getF32Type();
  auto toF32 = [&](Value value) -> Value {
    if (value.getType() == f32)
      return value;
    return arith::ExtFOp::create(b, loc, f32, value);
  };
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
  auto dot = scf::ForOp::create(
      b, loc, tid, arith::ConstantIndexOp::create(b, loc, hidden),
      arith::ConstantIndexOp::create(b, loc, kRouteThreads), ValueRange{zero});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(dot.getBody());
  Value h = dot.getInductionVar();
  Value xv = toF32(memref::LoadOp::create(b, loc, x, ValueRange{token, h}));
  Value wv = toF32(memref::LoadOp::create(b, loc, gate, ValueRange{expert, h}));
  scf::YieldOp::create(b, loc,
                       ValueRange{arith::AddFOp::create(
                           b, loc, dot.getRegionIterArg(0),
                           arith::MulFOp::create(b, loc, xv, wv))});
  return dot.getResult(0);
}

/// The f32 sum of the first `count` values of `values`, in order.
static Value buildSum(OpBuilder &b, Location loc, Value values, int64_t count) {
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
  auto sum = scf::ForOp::create(
      b, loc, arith::ConstantIndexOp::create(b, loc, 0),
      arith::ConstantIndexOp::create(b, loc, count),
      arith::ConstantIndexOp::create(b, loc, 1), ValueRange{zero});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(sum.getBody());
  scf::YieldOp::create(
      b, loc,
      ValueRange{arith::AddFOp::create(
          b, loc, sum.getRegionIterArg(0),
          memref::LoadOp::create(b, loc, values, sum.getInductionVar()))});
  return sum.getResult(0);
}

FailureOr<gpu::GPUFuncOp> mlir::moe::buildRouterKernel(OpBuilder &b,
                                                       gpu::GPUModuleOp module,
                                                       RouterOp op,
                                                       StringRef name) {
  auto gateType = op.getGateWeight().getType();
  int64_t numExperts = gateType.getDimSize(0), hidden = gateType.getDimSize(1);
  if (ShapedType::isDynamic(numExperts) || ShapedType::isDynamic(hidden))
    return op.emitRemark(
        "no GPU kernel: the expert count and hidden size must be static");
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(),
                                              gpu::AddressSpace::Workgroup);
  auto partialType = MemRefType::get({kRouteThreads}, b.getF32Type(),
                                     MemRefLayoutAttrInterface(), workgroup);
  std::string partialName = (name + "_partials").str();
  b.setInsertionPointToStart(module.getBody());
  memref::GlobalOp::create(b, loc, partialName, b.getStringAttr("private"),
                           partialType, Attribute(), /*constant=*/false,
                           b.getI64IntegerAttr(kSharedArrayAlignment));
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  Type f32 = b.getF32Type();
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, hidden},
                      op.getInput().getType().getElementType()),
      MemRefType::get({numExperts, hidden}, gateType.getElementType())};
  if (op.getBias())
    arguments.push_back(MemRefType::get({numExperts}, f32));
  arguments.push_back(MemRefType::get({dynamic, numExperts}, f32));
  // Grid (M): a block per token; its threads split each expert's dot
  // product along H, and the first thread adds up their partial sums.
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kRouteThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value x = entry.getArgument(0), gate = entry.getArgument(1);
  Value bias = op.getBias() ? entry.getArgument(2) : Value();
  Value logits = entry.getArguments().back();
  auto index = [&](int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value).getResult();
  };
  Value partials =
      memref::GetGlobalOp::create(b, loc, partialType, partialName);
  Value token = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  auto expertLoop =
      scf::ForOp::create(b, loc, index(0), index(numExperts), index(1));
  b.setInsertionPointToStart(expertLoop.getBody());
  Value expert = expertLoop.getInductionVar();
  Value partial = buildStridedDot(b, loc, x, gate, token, expert, tid, hidden);
  memref::StoreOp::create(b, loc, partial, partials, tid);
  gpu::BarrierOp::create(b, loc);
  auto leaderIf = scf::IfOp::create(b, loc, leader, /*withElse=*/false);
  {
    OpBuilder::InsertionGuard leaderGuard(b);
    b.setInsertionPointToStart(leaderIf.thenBlock());
    Value logit = buildSum(b, loc, partials, kRouteThreads);
    if (bias)
      logit = arith::AddFOp::create(
          b, loc, logit, memref::LoadOp::create(b, loc, bias, expert));
    memref::StoreOp::create(b, loc, logit, logits, ValueRange{token, expert});
  }
  // The partial sums are reused by the next expert.
  gpu::BarrierOp::create(b, loc);
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  return func;
}
