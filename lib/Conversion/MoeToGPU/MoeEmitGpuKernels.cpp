//===- MoeEmitGpuKernels.cpp - moe-emit-gpu-kernels -----------------------===//

#include "MoeGpuKernels.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

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

struct MoeEmitGpuKernelsPass
    : public moe::impl::MoeEmitGpuKernelsBase<MoeEmitGpuKernelsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<Operation *> ops;
    module.walk([&](Operation *op) {
      if (isa<AddSharedExpertsOp, AlignOp, ExpertMatmulOp, QuantizeOp,
              RouteOp, RouterOp, TopkOp>(op))
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
    SymbolTable symbols(kernels);
    // Records where the launch lowering finds a kernel of `op`.
    auto record = [&](Operation *op, StringRef attribute,
                      gpu::GPUFuncOp kernel) {
      symbols.insert(kernel);
      op->setAttr(attribute,
                  SymbolRefAttr::get(b.getStringAttr(kKernelModuleName),
                                     {FlatSymbolRefAttr::get(kernel)}));
    };
    for (Operation *op : ops) {
      if (auto route = dyn_cast<RouteOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel =
            buildRouteKernel(b, kernels, route, uniqueName(symbols, "route"));
        if (succeeded(kernel))
          record(op, "moe.gpu_kernel", *kernel);
        continue;
      }
      if (auto topk = dyn_cast<TopkOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel =
            buildTopkKernel(b, kernels, topk, uniqueName(symbols, "topk"));
        if (succeeded(kernel))
          record(op, "moe.gpu_kernel", *kernel);
        continue;
      }
      if (auto router = dyn_cast<RouterOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel = buildRouterKernel(
            b, kernels, router, uniqueName(symbols, "router"));
        if (succeeded(kernel))
          record(op, "moe.gpu_kernel", *kernel);
        continue;
      }
      if (auto shared = dyn_cast<AddSharedExpertsOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel = buildSharedExpertsKernel(
            b, kernels, shared, uniqueName(symbols, "add_shared_experts"));
        if (succeeded(kernel))
          record(op, "moe.gpu_kernel", *kernel);
        continue;
      }
      if (auto align = dyn_cast<AlignOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel =
            buildAlignKernel(b, kernels, align, uniqueName(symbols, "align"));
        if (failed(kernel))
          continue;
        record(op, "moe.gpu_kernel", *kernel);
        // Many assignments take the two kernels over many blocks.
        if (align.getNumExperts() > kMaxAlignManyBlocksExperts)
          continue;
        FailureOr<gpu::GPUFuncOp> count = buildAlignCountKernel(
            b, kernels, align, uniqueName(symbols, "align_count"));
        if (succeeded(count))
          record(op, "moe.gpu_count_kernel", *count);
        FailureOr<gpu::GPUFuncOp> scatter = buildAlignScatterKernel(
            b, kernels, align, uniqueName(symbols, "align_scatter"));
        if (succeeded(scatter))
          record(op, "moe.gpu_scatter_kernel", *scatter);
        continue;
      }
      if (auto quantize = dyn_cast<QuantizeOp>(op)) {
        FailureOr<gpu::GPUFuncOp> kernel = buildQuantizeKernel(
            b, kernels, quantize, uniqueName(symbols, "quantize"));
        if (failed(kernel))
          continue;
        record(op, "moe.gpu_kernel", *kernel);
        if (quantize.getQuantization().getScales() != ScaleLayout::PerTensor)
          continue;
        FailureOr<gpu::GPUFuncOp> amax = buildQuantizeAmaxKernel(
            b, kernels, quantize, uniqueName(symbols, "quantize_amax"));
        if (succeeded(amax))
          record(op, "moe.gpu_amax_kernel", *amax);
        continue;
      }
      auto matmul = cast<ExpertMatmulOp>(op);
      FailureOr<gpu::GPUFuncOp> kernel = buildExpertMatmulKernel(
          b, kernels, matmul, uniqueName(symbols, "expert_matmul"));
      if (failed(kernel))
        continue;
      record(op, "moe.gpu_kernel", *kernel);
      if (!matmul.isCombine())
        continue;
      FailureOr<gpu::GPUFuncOp> finalize = buildCombineFinalizeKernel(
          b, kernels, matmul, uniqueName(symbols, "combine_finalize"));
      if (succeeded(finalize))
        record(op, "moe.gpu_finalize_kernel", *finalize);
    }
    // No kernel was covered: leave the module as it was.
    if (created && kernels.getBody()->empty()) {
      kernels.erase();
      module->removeAttr(gpu::GPUDialect::getContainerModuleAttrName());
    }
  }
};
} // namespace
