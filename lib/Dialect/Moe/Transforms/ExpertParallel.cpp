//===- ExpertParallel.cpp - moe-expert-parallel ---------------------------===//
//
// Turns a layer into the program one rank of an expert-parallel group runs:
// the expert block is fused, then one pattern replaces its schedule by a
// dispatch to the serving ranks, a schedule over the local experts and a
// return to the source ranks. The expert arguments become the rank's local
// slices around that pattern, so that the IR stays valid at every step.
//
//===----------------------------------------------------------------------===//

#include "ExpertMatmulSpec.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/ADT/SetVector.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEXPERTPARALLEL
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Padding granule of the local schedule when no tile gives one (as
/// moe-align's).
static constexpr int64_t kDefaultBlockM = 16;

namespace {
/// The fused expert block of one schedule: the chain of expert matmuls that
/// gathers token rows in `head` and combines in `tail`, in program order.
struct ExpertBlock {
  SortOp sort;
  SmallVector<ExpertMatmulOp> chain;
  ExpertMatmulOp head() const { return chain.front(); }
  ExpertMatmulOp tail() const { return chain.back(); }
};
} // namespace

/// The expert-indexed operands of `matmul`: the weights and their scales,
/// zeros and bias, each `[E, ...]`.
static SmallVector<OpOperand *> expertOperands(ExpertMatmulOp matmul) {
  SmallVector<OpOperand *> operands = {&matmul.getWeightsMutable()};
  for (OpOperand &operand : matmul.getWeightScalesMutable())
    operands.push_back(&operand);
  for (OpOperand &operand : matmul.getWeightZerosMutable())
    operands.push_back(&operand);
  for (OpOperand &operand : matmul.getBiasMutable())
    operands.push_back(&operand);
  return operands;
}

/// Matches the fused expert block of `sort`, or says why it is not one.
static FailureOr<ExpertBlock> matchExpertBlock(SortOp sort,
                                               std::string &reason) {
  ExpertBlock block{sort, {}};
  llvm::SetVector<Operation *> users;
  for (Value result : sort->getResults())
    for (Operation *user : result.getUsers())
      users.insert(user);
  for (Operation *user : users) {
    auto matmul = dyn_cast<ExpertMatmulOp>(user);
    if (!matmul || matmul.getOffsets() != sort.getOffsets() ||
        matmul.getSlots() != sort.getSource())
      return reason = "its schedule has users other than fused matmuls",
             failure();
    if (matmul.getInputScales())
      return reason = "w8a8 activations (input scales) cannot be dispatched",
             failure();
    block.chain.push_back(matmul);
  }
  if (block.chain.empty())
    return reason = "its schedule has no fused matmul", failure();
  llvm::sort(block.chain, [](ExpertMatmulOp a, ExpertMatmulOp b) {
    return a->isBeforeInBlock(b);
  });
  if (!block.head().getGather() || !block.tail().isCombine())
    return reason = "its first matmul must gather token rows and its last "
                    "combine them",
           failure();
  for (auto [index, matmul] : llvm::enumerate(block.chain)) {
    if (index > 0 && (matmul.getGather() ||
                      matmul.getInput() != block.chain[index - 1].getResult()))
      return reason = "its matmuls must form one chain", failure();
    if (index + 1 < block.chain.size() &&
        (matmul.isCombine() || matmul.getUnpermute() ||
         !matmul.getResult().hasOneUse()))
      return reason = "rows in schedule order leave the chain", failure();
  }
  return block;
}

namespace {
/// sort + fused expert matmuls over the global experts -> ep_dispatch,
/// align over the local experts, the matmuls on the received rows (one
/// expert each, results in received order) and ep_combine.
struct DistributeExpertBlock : public OpRewritePattern<SortOp> {
  DistributeExpertBlock(MLIRContext *context, PlacementAttr placement,
                        EpRealization realization,
                        const DenseMap<Value, Value> &localOf)
      : OpRewritePattern(context), placement(placement),
        realization(realization), localOf(localOf) {}

  LogicalResult matchAndRewrite(SortOp sort,
                                PatternRewriter &rewriter) const override {
    std::string reason;
    FailureOr<ExpertBlock> block = matchExpertBlock(sort, reason);
    if (failed(block))
      return rewriter.notifyMatchFailure(sort, reason);
    for (ExpertMatmulOp matmul : block->chain)
      for (OpOperand *operand : expertOperands(matmul))
        if (!localOf.count(operand->get()))
          return rewriter.notifyMatchFailure(sort, "no local expert slice");

    Location loc = sort.getLoc();
    rewriter.setInsertionPoint(block->head());
    Value rows = block->head().getInput();
    auto rowsType = cast<RankedTensorType>(rows.getType());
    auto received = [&](ArrayRef<int64_t> trailing, Type element) {
      SmallVector<int64_t> shape = {ShapedType::kDynamic};
      shape.append(trailing.begin(), trailing.end());
      return RankedTensorType::get(shape, element);
    };
    Type i32 = rewriter.getI32Type();
    auto dispatch = EpDispatchOp::create(
        rewriter, loc, received(rowsType.getDimSize(1), rowsType.getElementType()),
        received(1, i32), received({}, i32), rows, sort.getIds(), realization,
        placement);
    int64_t blockM = kDefaultBlockM;
    if (TileAttr tile = block->head().getTileAttr())
      blockM = tile.getBlockM();
    auto align = AlignOp::create(
        rewriter, loc, received({}, i32), received({}, i32),
        RankedTensorType::get({1}, i32), dispatch.getLocalIds(),
        rewriter.getI64IntegerAttr(blockM),
        rewriter.getI64IntegerAttr(placement.getSlotsPerRank()));

    Value previous = dispatch.getRows();
    ExpertMatmulOp tail = block->tail();
    for (ExpertMatmulOp matmul : block->chain) {
      ExpertMatmulSpec spec = ExpertMatmulSpec::of(matmul);
      spec.input = previous;
      spec.k = 1;
      spec.slots = align.getSortedIds();
      spec.offsets = Value();
      spec.blockExperts = align.getBlockExperts();
      spec.numPadded = align.getNumPadded();
      spec.blockM = rewriter.getI64IntegerAttr(blockM);
      spec.weights = localOf.lookup(spec.weights);
      if (spec.weightScales)
        spec.weightScales = localOf.lookup(spec.weightScales);
      if (spec.weightZeros)
        spec.weightZeros = localOf.lookup(spec.weightZeros);
      if (spec.bias)
        spec.bias = localOf.lookup(spec.bias);
      // Rows in the local schedule: as many as it has, whatever the
      // global count was.
      auto globalType = cast<RankedTensorType>(matmul.getResult().getType());
      Type resultType = received(globalType.getShape().drop_front(),
                                 globalType.getElementType());
      if (matmul == tail) {
        // Each received row's result in its received place, kept in f32
        // until the weighted sum on its source rank.
        spec.routingWeights = Value();
        spec.routedScalingFactor = FloatAttr();
        spec.unpermute = true;
        resultType = received({1, matmul.getOutputWidth()},
                              rewriter.getF32Type());
      }
      rewriter.setInsertionPoint(matmul);
      previous = spec.create(rewriter, matmul.getLoc(), resultType).getResult();
    }
    Value perRow = tensor::CollapseShapeOp::create(
        rewriter, loc, previous, SmallVector<ReassociationIndices>{{0, 1}, {2}});
    auto combine = EpCombineOp::create(
        rewriter, loc, tail.getResult().getType(), perRow, dispatch.getOrigin(),
        tail.getRoutingWeights(), realization,
        rewriter.getI64IntegerAttr(placement.getRanks()),
        tail.getRoutedScalingFactorAttr());
    rewriter.replaceOp(tail, combine.getResult());
    for (ExpertMatmulOp matmul : llvm::reverse(ArrayRef(block->chain).drop_back()))
      rewriter.eraseOp(matmul);
    rewriter.eraseOp(sort);
    return success();
  }

  PlacementAttr placement;
  EpRealization realization;
  const DenseMap<Value, Value> &localOf;
};
} // namespace

//===----------------------------------------------------------------------===//
// Placement and local arguments
//===----------------------------------------------------------------------===//

/// Reads a placement plan `{"ranks": R, "slots": [[e, ...], ...]}` for
/// `experts` experts; diagnostics go to `op`.
static FailureOr<PlacementAttr> readPlacementPlan(Operation *op,
                                                  StringRef path,
                                                  int64_t experts) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return op->emitError() << "moe-expert-parallel: cannot read the placement "
                           << "plan '" << path << "': "
                           << buffer.getError().message();
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*buffer)->getBuffer());
  if (!json)
    return op->emitError() << "moe-expert-parallel: '" << path
                           << "' is not JSON: "
                           << llvm::toString(json.takeError());
  auto fail = [&]() {
    return op->emitError() << "moe-expert-parallel: '" << path
                           << "' is not a plan {\"ranks\": R, \"slots\": "
                              "[[expert, ...] per rank]}";
  };
  const llvm::json::Object *object = json->getAsObject();
  std::optional<int64_t> ranks = object ? object->getInteger("ranks") : std::nullopt;
  const llvm::json::Array *rankList = object ? object->getArray("slots") : nullptr;
  if (!ranks || !rankList)
    return fail();
  SmallVector<DenseI64ArrayAttr> slots;
  for (const llvm::json::Value &rank : *rankList) {
    const llvm::json::Array *experts = rank.getAsArray();
    if (!experts)
      return fail();
    SmallVector<int64_t> rankSlots;
    for (const llvm::json::Value &expert : *experts) {
      std::optional<int64_t> id = expert.getAsInteger();
      if (!id)
        return fail();
      rankSlots.push_back(*id);
    }
    slots.push_back(DenseI64ArrayAttr::get(op->getContext(), rankSlots));
  }
  PlacementAttr placement = PlacementAttr::getChecked(
      [&] { return op->emitError() << "moe-expert-parallel: plan '" << path
                                   << "': "; },
      op->getContext(), *ranks, experts, ArrayRef<DenseI64ArrayAttr>(slots));
  if (!placement)
    return failure();
  return placement;
}

/// Replaces every argument of `function` that `isExpertArgument` selects,
/// `[E, ...]`, by a `[L, ...]` argument at the same position, after the
/// patterns have moved its uses: first adds the local arguments and maps
/// them in `localOf`, returning the global ones to erase.
static FailureOr<SmallVector<unsigned>>
addLocalArguments(func::FuncOp function, int64_t experts, int64_t perRank,
                  DenseMap<Value, Value> &localOf) {
  llvm::SetVector<BlockArgument> globals;
  for (SortOp sort : function.getOps<SortOp>())
    for (Operation *user : sort.getSource().getUsers())
      if (auto matmul = dyn_cast<ExpertMatmulOp>(user))
        for (OpOperand *operand : expertOperands(matmul)) {
          auto argument = dyn_cast<BlockArgument>(operand->get());
          auto type = cast<RankedTensorType>(operand->get().getType());
          if (!argument || argument.getOwner() != &function.front() ||
              type.getDimSize(0) != experts)
            return function.emitError()
                   << "moe-expert-parallel: the expert operand #"
                   << operand->getOperandNumber() << " of '"
                   << matmul->getName() << "'"
                   << " must be a function argument [" << experts
                   << ", ...], so that each rank takes its local slice";
          globals.insert(argument);
        }
  SmallVector<BlockArgument> ordered(globals.begin(), globals.end());
  llvm::sort(ordered, [](BlockArgument a, BlockArgument b) {
    return a.getArgNumber() < b.getArgNumber();
  });
  // Last first, so that inserting leaves the earlier positions as they are.
  for (BlockArgument global : llvm::reverse(ordered)) {
    auto type = cast<RankedTensorType>(global.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = perRank;
    unsigned index = global.getArgNumber() + 1;
    NamedAttrList attrs(function.getArgAttrDict(index - 1));
    attrs.set(kLocalExpertsAttrName, UnitAttr::get(function.getContext()));
    if (failed(function.insertArgument(index, type.clone(shape),
                                       attrs.getDictionary(function.getContext()),
                                       global.getLoc())))
      return failure();
    localOf[global] = function.getArgument(index);
  }
  SmallVector<unsigned> erased;
  for (BlockArgument global : ordered)
    erased.push_back(global.getArgNumber());
  return erased;
}

namespace {
struct MoeExpertParallelPass
    : public moe::impl::MoeExpertParallelBase<MoeExpertParallelPass> {
  using MoeExpertParallelBase::MoeExpertParallelBase;

  void runOnOperation() override;
  FailureOr<PlacementAttr> choosePlacement(int64_t experts);
};
} // namespace

FailureOr<PlacementAttr>
MoeExpertParallelPass::choosePlacement(int64_t experts) {
  func::FuncOp function = getOperation();
  if (placement == "contiguous")
    return PlacementAttr::getContiguous(&getContext(), ranks, experts);
  FailureOr<PlacementAttr> plan =
      readPlacementPlan(function, placement, experts);
  if (succeeded(plan) && plan->getRanks() != ranks)
    return function.emitError()
           << "moe-expert-parallel: the plan '" << placement << "' places "
           << plan->getRanks() << " ranks, but ranks="
           << static_cast<int64_t>(ranks);
  return plan;
}

void MoeExpertParallelPass::runOnOperation() {
  func::FuncOp function = getOperation();
  std::optional<EpRealization> kind = symbolizeEpRealization(realization);
  if (ranks < 1 || !kind) {
    function.emitError() << "moe-expert-parallel: expects ranks >= 1 and "
                            "realization=allgather|all_to_all, got ranks="
                         << static_cast<int64_t>(ranks)
                         << " realization=" << realization;
    return signalPassFailure();
  }
  RewritePatternSet fusion(&getContext());
  populateFuseExpertsPatterns(fusion);
  if (failed(applyPatternsGreedily(function, std::move(fusion))))
    return signalPassFailure();

  auto sorts = llvm::to_vector(function.getOps<SortOp>());
  if (sorts.empty())
    return; // No expert block: nothing to distribute.
  if (sorts.size() > 1) {
    function.emitError() << "moe-expert-parallel: expects one expert block "
                            "per function, found "
                         << sorts.size();
    return signalPassFailure();
  }
  std::string reason;
  if (failed(matchExpertBlock(sorts.front(), reason))) {
    sorts.front().emitError() << "moe-expert-parallel: cannot distribute this "
                                 "expert block: "
                              << reason;
    return signalPassFailure();
  }
  int64_t experts = sorts.front().getNumExperts();
  FailureOr<PlacementAttr> chosen = choosePlacement(experts);
  if (failed(chosen))
    return signalPassFailure();
  DenseMap<Value, Value> localOf;
  FailureOr<SmallVector<unsigned>> globals = addLocalArguments(
      function, experts, chosen->getSlotsPerRank(), localOf);
  if (failed(globals))
    return signalPassFailure();

  RewritePatternSet patterns(&getContext());
  patterns.add<DistributeExpertBlock>(&getContext(), *chosen, *kind, localOf);
  if (failed(applyPatternsGreedily(function, std::move(patterns))))
    return signalPassFailure();

  llvm::BitVector erase(function.getNumArguments());
  for (unsigned index : *globals) {
    if (!function.getArgument(index).use_empty()) {
      function.emitError() << "moe-expert-parallel: the expert argument #"
                           << index << " has uses outside the expert block";
      return signalPassFailure();
    }
    erase.set(index);
  }
  if (failed(function.eraseArguments(erase)))
    return signalPassFailure();
}
