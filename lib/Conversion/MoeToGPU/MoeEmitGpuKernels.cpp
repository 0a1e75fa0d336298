//===- MoeEmitGpuKernels.cpp - moe-emit-gpu-kernels -----------------------===//

#include "MoeGpuKernels.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEMITGPUKERNELS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr llvm::StringLiteral kKernelModuleName = "moe_kernels";

/// A fresh symbol in `symbols` starting with `base`.
std::string uniqueName(SymbolTable &symbols, StringRef base) {
  std::string name = base.str();
  for (unsigned suffix = 0; symbols.lookup(name); ++suffix)
    name = (base + "_" + Twine(suffix)).str();
  return name;
}

/// Builds the kernels of the ops of one module into its `moe_kernels`
/// module and records on each op where the launch lowering finds them.
class KernelRecorder {
public:
  KernelRecorder(OpBuilder &b, gpu::GPUModuleOp kernels)
      : b(b), kernels(kernels), symbols(kernels) {}
  /// The kernels of `op`.
  void emit(Operation *op);

private:
  /// Records `kernel` as `op`'s `attribute`, if it was built (a builder
  /// that declines has left a remark).
  bool record(Operation *op, StringRef attribute,
              FailureOr<gpu::GPUFuncOp> kernel) {
    if (failed(kernel))
      return false;
    symbols.insert(*kernel);
    op->setAttr(attribute,
                SymbolRefAttr::get(b.getStringAttr(kKernelModuleName),
                                   {FlatSymbolRefAttr::get(*kernel)}));
    return true;
  }
  /// The two tilings of a router's logits kernel: `attribute` names the
  /// decode one, `attribute` with "_many_tokens" before "_kernel" the
  /// other.
  bool recordGateLogits(Operation *op, Value input, Value gateWeight,
                        bool bias, StringRef attribute, StringRef base) {
    if (!record(op, attribute,
                buildGateLogitsKernel(b, kernels, op, input, gateWeight, bias,
                                      /*manyTokens=*/false,
                                      uniqueName(symbols, base))))
      return false;
    std::string manyTokens =
        (attribute.drop_back(strlen("_kernel")) + "_many_tokens_kernel").str();
    return record(op, manyTokens,
                  buildGateLogitsKernel(
                      b, kernels, op, input, gateWeight, bias,
                      /*manyTokens=*/true,
                      uniqueName(symbols, (base + "_many_tokens").str())));
  }

  OpBuilder &b;
  gpu::GPUModuleOp kernels;
  SymbolTable symbols;
};

void KernelRecorder::emit(Operation *op) {
  if (auto route = dyn_cast<RouteOp>(op)) {
    // The router's logits (a decode and a many-token tiling, chosen by
    // the host at run time), then the selection on them.
    if (recordGateLogits(op, route.getInput(), route.getGateWeight(),
                         static_cast<bool>(route.getGateBias()),
                         "moe.gpu_logits_kernel", "route_gate_logits"))
      record(op, "moe.gpu_kernel",
             buildRouteKernel(b, kernels, route,
                              uniqueName(symbols, "route")));
    return;
  }
  if (auto topk = dyn_cast<TopkOp>(op)) {
    record(op, "moe.gpu_kernel",
           buildTopkKernel(b, kernels, topk, uniqueName(symbols, "topk")));
    return;
  }
  if (auto router = dyn_cast<RouterOp>(op)) {
    recordGateLogits(op, router.getInput(), router.getGateWeight(),
                     static_cast<bool>(router.getBias()), "moe.gpu_kernel",
                     "router");
    return;
  }
  if (auto shared = dyn_cast<AddSharedExpertsOp>(op)) {
    record(op, "moe.gpu_kernel",
           buildSharedExpertsKernel(
               b, kernels, shared, uniqueName(symbols, "add_shared_experts")));
    return;
  }
  if (auto shared = dyn_cast<SharedExpertRoutingOp>(op)) {
    record(
        op, "moe.gpu_kernel",
        buildSharedExpertRoutingKernel(
            b, kernels, shared, uniqueName(symbols, "shared_expert_routing")));
    return;
  }
  if (auto align = dyn_cast<AlignOp>(op)) {
    if (!record(op, "moe.gpu_kernel",
                buildAlignKernel(b, kernels, align,
                                 uniqueName(symbols, "align"))))
      return;
    // Many assignments take the two kernels over many blocks.
    if (align.getNumExperts() > kMaxAlignManyBlocksExperts)
      return;
    record(op, "moe.gpu_count_kernel",
           buildAlignCountKernel(b, kernels, align,
                                 uniqueName(symbols, "align_count")));
    record(op, "moe.gpu_scatter_kernel",
           buildAlignScatterKernel(b, kernels, align,
                                   uniqueName(symbols, "align_scatter")));
    return;
  }
  if (auto dispatch = dyn_cast<EpDispatchOp>(op)) {
    if (record(op, "moe.gpu_kernel",
               buildEpDispatchIdsKernel(b, kernels, dispatch,
                                        uniqueName(symbols,
                                                   "ep_dispatch_ids"))))
      record(op, "moe.gpu_rows_kernel",
             buildEpDispatchRowsKernel(
                 b, kernels, dispatch,
                 uniqueName(symbols, "ep_dispatch_rows")));
    return;
  }
  if (auto combine = dyn_cast<EpCombineOp>(op)) {
    if (record(op, "moe.gpu_kernel",
               buildEpReturnKernel(b, kernels, combine,
                                   uniqueName(symbols, "ep_return"))))
      record(op, "moe.gpu_finalize_kernel",
             buildEpFinalizeKernel(b, kernels, combine,
                                   uniqueName(symbols, "ep_finalize")));
    return;
  }
  if (auto quantize = dyn_cast<QuantizeOp>(op)) {
    if (!record(op, "moe.gpu_kernel",
                buildQuantizeKernel(b, kernels, quantize,
                                    uniqueName(symbols, "quantize"))) ||
        quantize.getQuantization().getScales() != ScaleLayout::PerTensor)
      return;
    record(op, "moe.gpu_amax_kernel",
           buildQuantizeAmaxKernel(b, kernels, quantize,
                                   uniqueName(symbols, "quantize_amax")));
    return;
  }
  auto matmul = cast<ExpertMatmulOp>(op);
  // A combine with an f32 result keeps its sums (for another combine to
  // accumulate into): it needs no finalize.
  bool keepsSums = getElementTypeOrSelf(matmul.getType()).isF32();
  if (!record(op, "moe.gpu_kernel",
              buildExpertMatmulKernel(b, kernels, matmul,
                                      uniqueName(symbols, "expert_matmul"))) ||
      !matmul.isCombine() || keepsSums)
    return;
  auto config = matmul->getAttrOfType<moe_gpu::KernelConfigAttr>(
      moe_gpu::MoeGPUDialect::getConfigAttrName());
  if (config && config.getCombineRows()) {
    record(op, "moe.gpu_finalize_kernel",
           buildCombineRowsKernel(b, kernels, matmul,
                                  uniqueName(symbols, "combine_rows")));
    return;
  }
  record(op, "moe.gpu_finalize_kernel",
         buildCombineFinalizeKernel(
             b, kernels, matmul, uniqueName(symbols, "combine_finalize")));
}

struct MoeEmitGpuKernelsPass
    : public moe::impl::MoeEmitGpuKernelsBase<MoeEmitGpuKernelsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<Operation *> ops;
    module.walk([&](Operation *op) {
      if (isa<AddSharedExpertsOp, AlignOp, EpCombineOp, EpDispatchOp,
              ExpertMatmulOp, QuantizeOp, RouteOp, RouterOp,
              SharedExpertRoutingOp, TopkOp>(op))
        ops.push_back(op);
    });
    if (ops.empty())
      return;
    OpBuilder b(module.getContext());
    auto kernels = module.lookupSymbol<gpu::GPUModuleOp>(kKernelModuleName);
    bool created = !kernels;
    if (!kernels) {
      b.setInsertionPointToEnd(module.getBody());
      kernels = gpu::GPUModuleOp::create(b, module.getLoc(), kKernelModuleName);
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                      b.getUnitAttr());
    }
    KernelRecorder recorder(b, kernels);
    for (Operation *op : ops)
      recorder.emit(op);
    // No kernel was covered: leave the module as it was.
    if (created && kernels.getBody()->empty()) {
      kernels.erase();
      module->removeAttr(gpu::GPUDialect::getContainerModuleAttrName());
    }
  }
};
} // namespace
