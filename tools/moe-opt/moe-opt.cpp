//===- moe-opt.cpp - moe optimizer driver ---------------------------------===//
//
// Parses, verifies, transforms and prints IR that mixes the moe dialect with
// the upstream dialects.
//
//===----------------------------------------------------------------------===//

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
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::moe::registerMoeConversionPasses();
  mlir::moe::registerCpuPipeline();
  mlir::moe::registerGpuPipeline();
  mlir::moe::registerMoeTransformsPasses();
  mlir::moe::registerMoeDialectTransformsPasses();
  mlir::moe_gpu::registerMoeGPUTransformsPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // GPU modules serialize through LLVM IR (gpu-module-to-binary).
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<mlir::moe::MoeDialect, mlir::moe_gpu::MoeGPUDialect>();

  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "moe optimizer driver\n", registry));
}
