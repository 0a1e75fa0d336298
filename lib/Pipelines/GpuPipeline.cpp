//===- GpuPipeline.cpp - moe-gpu-pipeline ---------------------------------===//

#include "moe/Pipelines/Pipelines.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/LLVM.h"

using namespace mlir;

void mlir::moe::buildGpuPipeline(OpPassManager &pm,
                                 const GpuPipelineOptions &options) {
  // moe-optimize, with each matmul's kernel chosen before the schedule is
  // aligned to its block height.
  OptimizePipelineOptions optimizeOptions;
  optimizeOptions.numTokens = options.numTokens;
  optimizeOptions.sharedExperts = options.sharedExperts;
  moe_gpu::MoeGpuConfigureOptions configureOptions;
  configureOptions.blockN = options.blockN;
  configureOptions.stages = options.stages;
  configureOptions.blockK = options.blockK;
  configureOptions.warpSpecialize = options.warpSpecialize;
  configureOptions.persistent = options.persistent;
  configureOptions.persistentMaxRows = options.persistentMaxRows;
  configureOptions.shortSplitK = options.shortSplitK;
  configureOptions.combineRows = options.combineRows;
  configureOptions.combineRowsMaxK = options.combineRowsMaxK;
  configureOptions.tallBlocks = options.tallBlocks;
  configureOptions.stagedEpilogue = options.stagedEpilogue;
  configureOptions.inputTma = options.inputTma;
  configureOptions.pingpong = options.pingpong;
  configureOptions.clusterM = options.clusterM;
  configureOptions.swapAb = options.swapAb;
  configureOptions.swappedWarpgroups = options.swappedWarpgroups;
  configureOptions.swappedWeightLoad = options.swappedWeightLoad;
  configureOptions.weightOnlyRegisters = options.weightOnlyRegisters;
  configureOptions.weightOnlyWarpSpecialize = options.weightOnlyWarpSpecialize;
  configureOptions.fp8FastAccumulation = options.fp8FastAccumulation;
  configureOptions.w8a8SwapAb = options.w8a8SwapAb;
  configureOptions.fusedAlignAssignments = options.fusedAlignAssignments;
  configureOptions.numTokens = options.numTokens;
  buildOptimizePipeline(pm, optimizeOptions, [&](OpPassManager &nested) {
    nested.addPass(moe_gpu::createMoeGpuConfigure(configureOptions));
  });
  pm.addPass(createMoeEmitGpuKernels());
}

LogicalResult
mlir::moe::buildGpuKernelsToBinaryPipeline(OpPassManager &pm,
                                          const GpuBinaryPipelineOptions &options) {
  // The steps of upstream's gpu-lower-to-nvvm-pipeline that a module of
  // moe kernels needs, with moe-nvvm-grid-constant-args after the NVVM
  // conversion (the upstream pipeline has no place for it).
  std::string pipeline =
      "nvvm-attach-target{chip=sm_90a features=+ptx81 O=3},"
      "gpu.module(convert-nvgpu-to-nvvm,convert-scf-to-cf,"
      "expand-strided-metadata,lower-affine,convert-gpu-to-nvvm,"
      "convert-nvvm-to-llvm,moe-nvvm-grid-constant-args,canonicalize,cse,"
      "reconcile-unrealized-casts),"
      "gpu-module-to-binary{format=" +
      options.format.getValue() +
      (options.toolkit.empty() ? std::string()
                               : " toolkit=" + options.toolkit.getValue()) +
      "}";
  return parsePassPipeline(pipeline, pm);
}

void mlir::moe::registerGpuPipeline() {
  PassPipelineRegistration<GpuPipelineOptions>(
      "moe-gpu-pipeline",
      "Optimize for the GPU and emit the Hopper kernels of every op",
      buildGpuPipeline);
  PassPipelineRegistration<GpuBinaryPipelineOptions>(
      "moe-gpu-kernels-to-binary",
      "Lower a module holding only gpu.module @moe_kernels to an sm_90a "
      "binary (TMA descriptors by value)",
      [](OpPassManager &pm, const GpuBinaryPipelineOptions &options) {
        (void)buildGpuKernelsToBinaryPipeline(pm, options);
      });
}
