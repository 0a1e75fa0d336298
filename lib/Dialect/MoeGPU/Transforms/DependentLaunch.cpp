//===- DependentLaunch.cpp - moe-gpu-dependent-launch ---------------------===//
//
// Launches the kernels of a host function as programmatic dependents of the
// kernels before them (Hopper's PDL): the kernels wait for their
// prerequisites first thing, the launches say so, and zeroing moves ahead
// of the kernels so that they follow one another directly.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe_gpu {
#define GEN_PASS_DEF_MOEGPUDEPENDENTLAUNCH
#include "moe/Dialect/MoeGPU/Transforms/Passes.h.inc"
} // namespace mlir::moe_gpu

using namespace mlir;
using namespace mlir::moe_gpu;

namespace {
StringRef dependentLaunchAttrName() {
  return MoeGPUDialect::getDependentLaunchAttrName();
}

/// A kernel starts by waiting for the kernels before it on its stream, then
/// lets the next one be scheduled.
struct WaitForPrerequisites : public OpRewritePattern<gpu::GPUFuncOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(gpu::GPUFuncOp kernel,
                                PatternRewriter &rewriter) const override {
    if (!kernel.isKernel() || kernel->hasAttr(dependentLaunchAttrName()))
      return failure();
    rewriter.setInsertionPointToStart(&kernel.getBody().front());
    NVVM::GriddepcontrolOp::create(rewriter, kernel.getLoc(),
                                   NVVM::GridDepActionKind::wait);
    NVVM::GriddepcontrolOp::create(rewriter, kernel.getLoc(),
                                   NVVM::GridDepActionKind::launch_dependents);
    rewriter.modifyOpInPlace(kernel, [&] {
      kernel->setAttr(dependentLaunchAttrName(), rewriter.getUnitAttr());
    });
    return success();
  }
};

/// A launch of a kernel that waits is a dependent launch.
struct LaunchAsDependent : public OpRewritePattern<gpu::LaunchFuncOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(gpu::LaunchFuncOp launch,
                                PatternRewriter &rewriter) const override {
    if (launch->hasAttr(dependentLaunchAttrName()))
      return failure();
    auto kernel = SymbolTable::lookupNearestSymbolFrom<gpu::GPUFuncOp>(
        launch, launch.getKernel());
    if (!kernel || !kernel->hasAttr(dependentLaunchAttrName()))
      return failure();
    rewriter.modifyOpInPlace(launch, [&] {
      launch->setAttr(dependentLaunchAttrName(), rewriter.getUnitAttr());
    });
    return success();
  }
};

/// The memory a host value stands for: the source of views and of a TMA
/// descriptor; null for a value that is not memory (sizes, scalars).
Value memoryRoot(Value value) {
  while (true) {
    Operation *def = value.getDefiningOp();
    if (auto view = dyn_cast_or_null<ViewLikeOpInterface>(def)) {
      value = view.getViewSource();
      continue;
    }
    if (auto map = dyn_cast_or_null<TensorMapOp>(def)) {
      value = map.getSource();
      continue;
    }
    break;
  }
  if (isa<BaseMemRefType, LLVM::LLVMPointerType>(value.getType()))
    return value;
  return Value();
}

/// Whether `memory` (the root of a value) may overlap workspace buffer
/// `buffer`: the buffers of one layout follow one another, and the caller's
/// tensors lie outside the workspace.
bool mayOverlap(Value memory, WorkspaceBufferOp buffer) {
  if (!memory)
    return false;
  if (memory == buffer.getWorkspace())
    return true;
  if (auto other = memory.getDefiningOp<WorkspaceBufferOp>())
    return other.getLayout() != buffer.getLayout() ||
           other.getIndex() == buffer.getIndex();
  if (auto argument = dyn_cast<BlockArgument>(memory))
    return !isa<FunctionOpInterface>(argument.getOwner()->getParentOp());
  return true;
}

/// Whether `op` (with what it nests) may read or write `buffer`, as far as
/// the host ops tell: a launch through its operands, a zero through its
/// buffer, pure ops never; anything else may.
bool mayTouch(Operation *op, WorkspaceBufferOp buffer) {
  WalkResult result = op->walk([&](Operation *nested) {
    if (auto launch = dyn_cast<gpu::LaunchFuncOp>(nested)) {
      for (Value operand : launch.getKernelOperands())
        if (mayOverlap(memoryRoot(operand), buffer))
          return WalkResult::interrupt();
      return WalkResult::advance();
    }
    if (auto zero = dyn_cast<ZeroOp>(nested))
      return mayOverlap(memoryRoot(zero.getBuffer()), buffer)
                 ? WalkResult::interrupt()
                 : WalkResult::advance();
    if (isPure(nested) || nested->hasTrait<OpTrait::IsTerminator>() ||
        isa<RegionBranchOpInterface>(nested))
      return WalkResult::advance();
    return WalkResult::interrupt();
  });
  return result.wasInterrupted();
}

/// Moves the zeroing of a workspace buffer (with the buffer's own
/// definition, when that comes right before it) above the op before it,
/// unless that op may use the buffer, defines what the zeroing needs, is
/// another zeroing (which keeps the order of zeroings as written) or a
/// constant (constants stay first, where the canonicalizer put them).
struct HoistZeroing : public OpRewritePattern<ZeroOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ZeroOp zero,
                                PatternRewriter &rewriter) const override {
    auto buffer = zero.getBuffer().getDefiningOp<WorkspaceBufferOp>();
    if (!buffer || buffer->getBlock() != zero->getBlock())
      return failure();
    // What moves: the zeroing, and its buffer's definition if adjacent.
    Operation *first = zero;
    if (zero->getPrevNode() == buffer)
      first = buffer;
    Operation *above = first->getPrevNode();
    if (!above || isa<ZeroOp>(above) ||
        above->hasTrait<OpTrait::ConstantLike>() || mayTouch(above, buffer))
      return failure();
    auto definesOperandOf = [&](Operation *op) {
      return llvm::any_of(op->getOperands(), [&](Value operand) {
        return operand.getDefiningOp() == above;
      });
    };
    if (definesOperandOf(first) || definesOperandOf(zero))
      return failure();
    rewriter.moveOpBefore(first, above);
    if (first != zero)
      rewriter.moveOpAfter(zero, first);
    return success();
  }
};

struct MoeGpuDependentLaunchPass
    : public moe_gpu::impl::MoeGpuDependentLaunchBase<
          MoeGpuDependentLaunchPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<WaitForPrerequisites, LaunchAsDependent, HoistZeroing>(
        &getContext());
    // Nothing but these rewrites: no folding, no constant hoisting, no
    // region simplification of the kernels.
    GreedyRewriteConfig config;
    config.enableFolding(false)
        .enableConstantCSE(false)
        .setRegionSimplificationLevel(GreedySimplifyRegionLevel::Disabled);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns),
                                     config)))
      return signalPassFailure();
  }
};
} // namespace
