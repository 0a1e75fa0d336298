//===- InitAllMoe.cpp - register every moe dialect, pass and pipeline -----===//

#include "moe/InitAllMoe.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

#include <mutex>

void mlir::moe::registerAllDialects(DialectRegistry &registry) {
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<MoeDialect, moe_gpu::MoeGPUDialect>();
}

void mlir::moe::registerAllPasses() {
  // The global registry refuses a second registration of a name.
  static std::once_flag once;
  std::call_once(once, [] {
    mlir::registerAllPasses();
    registerMoeConversionPasses();
    registerCpuPipeline();
    registerGpuPipeline();
    registerMoeTransformsPasses();
    registerMoeDialectTransformsPasses();
    moe_gpu::registerMoeGPUTransformsPasses();
  });
}
