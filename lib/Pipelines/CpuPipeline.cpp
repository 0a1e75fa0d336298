//===- CpuPipeline.cpp - moe-cpu-pipeline ---------------------------------===//

#include "moe/Pipelines/Pipelines.h"

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::moe::buildOptimizePipeline(
    OpPassManager &pm, const OptimizePipelineOptions &options,
    function_ref<void(OpPassManager &)> beforeAlign) {
  pm.addPass(createMoeFuseRouting());
  pm.addPass(createMoeFuseExperts());
  MoeSplitSharedExpertsOptions splitOptions;
  splitOptions.policy = options.sharedExperts;
  splitOptions.numTokens = options.numTokens;
  pm.addPass(createMoeSplitSharedExperts(splitOptions));
  MoeTileOptions tileOptions;
  tileOptions.numTokens = options.numTokens;
  pm.addPass(createMoeTile(tileOptions));
  if (beforeAlign)
    beforeAlign(pm);
  MoeAlignOptions alignOptions;
  alignOptions.blockM = options.blockM;
  pm.addPass(createMoeAlign(alignOptions));
  pm.addPass(createCanonicalizerPass());
}

void mlir::moe::buildCpuPipeline(OpPassManager &pm,
                                 const CpuPipelineOptions &options) {
  if (options.fuse) {
    OptimizePipelineOptions optimizeOptions;
    optimizeOptions.numTokens = options.numTokens;
    optimizeOptions.sharedExperts = options.sharedExperts;
    buildOptimizePipeline(pm, optimizeOptions);
  }
  ConvertMoeToLinalgOptions toLinalg;
  toLinalg.rowBlock = options.rowBlock;
  pm.addPass(createConvertMoeToLinalg(toLinalg));
  pm.addPass(createCanonicalizerPass());
  CpuTileAndVectorizeOptions vectorizeOptions;
  vectorizeOptions.tileM = options.rowBlock;
  pm.addPass(createCpuTileAndVectorize(vectorizeOptions));
  // The rest is upstream passes but one; spelled as textual pipelines so
  // that they read like the mlir-opt invocation they are equivalent to.
  constexpr llvm::StringLiteral kUpstreamBufferization =
      "canonicalize,cse,"
      "one-shot-bufferize{bufferize-function-boundaries "
      "function-boundary-type-conversion=identity-layout-map},"
      // Tiles inserted back into the slice they were extracted from leave
      // copies between identical subviews; CSE makes them self-copies and
      // canonicalization drops them.
      "canonicalize,cse,canonicalize,"
      "buffer-deallocation-pipeline";
  constexpr llvm::StringLiteral kUpstreamLowering =
      "func.func(convert-linalg-to-loops),"
      // expand-strided-metadata emits affine.apply: lower affine after it.
      "convert-vector-to-scf{full-unroll=true},expand-strided-metadata,lower-"
      "affine,"
      "convert-scf-to-cf,"
      "convert-math-to-libm,"
      "convert-vector-to-llvm{vector-contract-lowering=outerproduct},"
      // Heap buffers come from the host's _mlir_memref_to_llvm_alloc,
      // _mlir_memref_to_llvm_aligned_alloc and _mlir_memref_to_llvm_free,
      // not from malloc directly, so that a failed allocation is the host's
      // to report (moe-run prints an error and exits).
      "finalize-memref-to-llvm{use-generic-functions=true},"
      "convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,"
      "convert-func-to-llvm,convert-cf-to-llvm,convert-ub-to-llvm,"
      "reconcile-unrealized-casts";
  if (failed(parsePassPipeline(kUpstreamBufferization, pm)))
    llvm::report_fatal_error("moe-cpu-pipeline: malformed upstream pipeline");
  // A buffer whose byte count overflows stops the program before it is
  // allocated (finalize-memref-to-llvm multiplies sizes in wrapping
  // arithmetic).
  pm.addPass(createCheckAllocSizes());
  if (failed(parsePassPipeline(kUpstreamLowering, pm)))
    llvm::report_fatal_error("moe-cpu-pipeline: malformed upstream pipeline");
}

void mlir::moe::registerCpuPipeline() {
  PassPipelineRegistration<OptimizePipelineOptions>(
      "moe-optimize",
      "Fuse routing and experts, choose tiles and align the schedule",
      [](OpPassManager &pm, const OptimizePipelineOptions &options) {
        buildOptimizePipeline(pm, options);
      });
  PassPipelineRegistration<CpuPipelineOptions>(
      "moe-cpu-pipeline",
      "Lower moe ops to the LLVM dialect for execution on the host CPU",
      buildCpuPipeline);
}
