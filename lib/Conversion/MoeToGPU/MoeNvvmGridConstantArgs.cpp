//===- MoeNvvmGridConstantArgs.cpp - moe-nvvm-grid-constant-args ----------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOENVVMGRIDCONSTANTARGS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
constexpr llvm::StringLiteral kGridConstantArgs = "moe.grid_constant_args";
/// sizeof(CUtensorMap) and its alignment.
constexpr int64_t kDescriptorBytes = 128, kDescriptorAlignment = 64;

struct MoeNvvmGridConstantArgsPass
    : public moe::impl::MoeNvvmGridConstantArgsBase<
          MoeNvvmGridConstantArgsPass> {
  void runOnOperation() override {
    Builder b(&getContext());
    auto byvalType =
        LLVM::LLVMArrayType::get(b.getI8Type(), kDescriptorBytes);
    WalkResult result = getOperation().walk([&](LLVM::LLVMFuncOp func) {
      auto positions = func->getAttrOfType<ArrayAttr>(kGridConstantArgs);
      if (!positions)
        return WalkResult::advance();
      for (Attribute position : positions) {
        auto index = dyn_cast<IntegerAttr>(position);
        if (!index || index.getInt() < 0 ||
            index.getInt() >= func.getNumArguments() ||
            !isa<LLVM::LLVMPointerType>(
                func.getArgumentTypes()[index.getInt()])) {
          func.emitError("moe.grid_constant_args: not a pointer argument: ")
              << position;
          return WalkResult::interrupt();
        }
        unsigned argument = index.getInt();
        func.setArgAttr(argument, LLVM::LLVMDialect::getByValAttrName(),
                        TypeAttr::get(byvalType));
        func.setArgAttr(argument, LLVM::LLVMDialect::getAlignAttrName(),
                        b.getI64IntegerAttr(kDescriptorAlignment));
        func.setArgAttr(argument, NVVM::NVVMDialect::getGridConstantAttrName(),
                        b.getUnitAttr());
      }
      func->removeAttr(kGridConstantArgs);
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace
