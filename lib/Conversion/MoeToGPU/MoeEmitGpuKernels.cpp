//===- MoeEmitGpuKernels.cpp - moe-emit-gpu-kernels -----------------------===//

#include "ExpertMatmulKernel.h"

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

struct MoeEmitGpuKernelsPass
    : public moe::impl::MoeEmitGpuKernelsBase<MoeEmitGpuKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<ExpertMatmulOp> matmuls;
    module.walk([&](ExpertMatmulOp op) { matmuls.push_back(op); });
    if (matmuls.empty())
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
    for (ExpertMatmulOp op : matmuls) {
      std::string name = "expert_matmul";
      for (unsigned suffix = 0; symbols.lookup(name); ++suffix)
        name = "expert_matmul_" + std::to_string(suffix);
      FailureOr<gpu::GPUFuncOp> kernel =
          buildExpertMatmulKernel(b, kernels, op, name);
      if (failed(kernel))
        continue;
      symbols.insert(*kernel);
      // Where the launch lowering will find the kernel.
      op->setAttr("moe.gpu_kernel",
                  SymbolRefAttr::get(b.getStringAttr(kKernelModuleName),
                                     {FlatSymbolRefAttr::get(*kernel)}));
    }
    // No kernel was covered: leave the module as it was.
    if (created && kernels.getBody()->empty()) {
      kernels.erase();
      module->removeAttr(gpu::GPUDialect::getContainerModuleAttrName());
    }
  }
};
} // namespace
