//===- CompileLayer.cpp - compile a moe layer for the GPU -----------------===//

#include "moe/Target/CompileLayer.h"

#include "moe/Dialect/MoeGPU/Transforms/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Target/GpuHost.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include <cstdlib>

using namespace mlir;

namespace {
constexpr llvm::StringLiteral kKernelModule = "moe_kernels";

std::string toolkitPath(const moe::GpuCompileOptions &options) {
  if (!options.toolkitPath.empty())
    return options.toolkitPath;
  for (const char *variable : {"CUDA_HOME", "CUDA_ROOT", "CUDA_PATH"})
    if (const char *value = std::getenv(variable); value && *value)
      return value;
  return "/usr/local/cuda";
}

/// The bytes of the one object of `gpu.binary @moe_kernels` in `module`.
FailureOr<std::string> objectOf(ModuleOp module) {
  auto binary = module.lookupSymbol<gpu::BinaryOp>(kKernelModule);
  if (!binary || binary.getObjects().size() != 1)
    return module.emitError("no serialized kernel module");
  return cast<gpu::ObjectAttr>(binary.getObjects()[0])
      .getObject()
      .getValue()
      .str();
}

/// Runs the passes `populate` adds on `module`, in a pass manager with the
/// caller's configuration applied.
LogicalResult runPasses(ModuleOp module, const moe::GpuCompileOptions &options,
                        function_ref<LogicalResult(PassManager &)> populate) {
  PassManager pm(module.getContext());
  if ((options.configurePassManager &&
       failed(options.configurePassManager(pm))) ||
      failed(populate(pm)))
    return failure();
  return pm.run(module);
}

/// Serializes the kernels of `module` in place in `format` (`bin`, `isa`).
FailureOr<std::string> serialize(ModuleOp module, StringRef format,
                                 const moe::GpuCompileOptions &options) {
  moe::GpuBinaryPipelineOptions binaryOptions;
  binaryOptions.format = format.str();
  binaryOptions.toolkit = toolkitPath(options);
  if (failed(runPasses(module, options, [&](PassManager &pm) {
        return moe::buildGpuKernelsToBinaryPipeline(pm, binaryOptions);
      })))
    return failure();
  return objectOf(module);
}

/// The kernels' PTX, from a module holding a copy of them only.
FailureOr<std::string> ptxOf(ModuleOp program,
                             const moe::GpuCompileOptions &options) {
  OpBuilder b(program.getContext());
  OwningOpRef<ModuleOp> copy = ModuleOp::create(program.getLoc());
  (*copy)->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                   b.getUnitAttr());
  b.setInsertionPointToEnd(copy->getBody());
  b.clone(*program.lookupSymbol<gpu::GPUModuleOp>(kKernelModule));
  return serialize(*copy, "isa", options);
}

/// Runs moe-gpu-pipeline and checks that every moe op got a kernel.
LogicalResult emitKernels(ModuleOp program,
                          const moe::GpuCompileOptions &options) {
  moe::GpuPipelineOptions pipelineOptions;
  pipelineOptions.numTokens = options.numTokens;
  pipelineOptions.blockN = options.blockN;
  pipelineOptions.stages = options.stages;
  pipelineOptions.blockK = options.blockK;
  pipelineOptions.warpSpecialize = options.warpSpecialize;
  pipelineOptions.persistent = options.persistent;
  pipelineOptions.persistentMaxRows = options.persistentMaxRows;
  pipelineOptions.shortSplitK = options.shortSplitK;
  pipelineOptions.combineRows = options.combineRows;
  pipelineOptions.combineRowsMaxK = options.combineRowsMaxK;
  pipelineOptions.tallBlocks = options.tallBlocks;
  pipelineOptions.stagedEpilogue = options.stagedEpilogue;
  pipelineOptions.inputTma = options.inputTma;
  pipelineOptions.pingpong = options.pingpong;
  pipelineOptions.clusterM = options.clusterM;
  pipelineOptions.swapAb = options.swapAB;
  pipelineOptions.swappedWarpgroups = options.swappedWarpgroups;
  pipelineOptions.swappedWeightLoad = options.swappedWeightLoad;
  pipelineOptions.weightOnlyRegisters = options.weightOnlyRegisters;
  pipelineOptions.weightOnlyWarpSpecialize = options.weightOnlyWarpSpecialize;
  pipelineOptions.fp8FastAccumulation = options.fp8FastAccumulation;
  pipelineOptions.w8a8SwapAb = options.w8a8SwapAB;
  pipelineOptions.fusedAlignAssignments = options.fusedAlignAssignments;
  pipelineOptions.sharedExperts = options.sharedExperts;
  if (failed(runPasses(program, options, [&](PassManager &pm) {
        moe::buildGpuPipeline(pm, pipelineOptions);
        return success();
      })))
    return failure();
  WalkResult uncovered = program.walk([](Operation *op) {
    if (op->getDialect() && op->getDialect()->getNamespace() == "moe" &&
        !op->hasAttr("moe.gpu_kernel")) {
      op->emitError("no GPU lowering for this op yet");
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (uncovered.wasInterrupted())
    return failure();
  if (!program.lookupSymbol<gpu::GPUModuleOp>(kKernelModule))
    return program.emitError("no op of this program has a GPU kernel");
  return success();
}

/// moe-gpu-outline-host, then a tidy-up of the host functions only (the
/// kernels are final).
LogicalResult outlineHost(ModuleOp program, StringRef name,
                          const moe::GpuCompileOptions &options) {
  moe_gpu::MoeGpuOutlineHostOptions outlineOptions;
  outlineOptions.layerName = name.str();
  outlineOptions.alignManyBlocksAbove = options.alignManyBlocksAbove;
  return runPasses(program, options, [&](PassManager &pm) {
    pm.addPass(moe_gpu::createMoeGpuOutlineHost(outlineOptions));
    pm.addNestedPass<func::FuncOp>(createCanonicalizerPass());
    pm.addNestedPass<func::FuncOp>(createCSEPass());
    if (options.dependentLaunch)
      pm.addPass(moe_gpu::createMoeGpuDependentLaunch());
    return success();
  });
}

/// Compiles `program` (a clone of the caller's module) for
/// `options.numTokens` in place, down to its host IR and serialized
/// kernels, and appends its host IR, PTX and cubin to `layer`'s.
LogicalResult compileProgram(ModuleOp program, StringRef name,
                             const moe::GpuCompileOptions &options,
                             moe::GpuCompiledLayer &layer) {
  if (failed(emitKernels(program, options)) ||
      failed(outlineHost(program, name, options)))
    return failure();
  llvm::raw_string_ostream hostIR(layer.hostIR);
  program->print(hostIR);
  if (options.emitPtx) {
    FailureOr<std::string> ptx = ptxOf(program, options);
    if (failed(ptx))
      return failure();
    layer.ptx += *ptx;
  }
  FailureOr<std::string> cubin = serialize(program, "bin", options);
  if (failed(cubin))
    return failure();
  layer.cubin += *cubin;
  return success();
}

/// One variant per token-count bucket, each compiled as its own layer
/// `<name>_m<bucket>`, and one source that dispatches between them.
LogicalResult compileBuckets(ModuleOp module,
                             const moe::GpuCompileOptions &options,
                             moe::GpuCompiledLayer &layer) {
  SmallVector<int64_t> buckets(options.tokenBuckets);
  llvm::sort(buckets);
  buckets.erase(llvm::unique(buckets), buckets.end());
  if (buckets.front() < 1)
    return module.emitError("token-count buckets must be positive, got ")
           << buckets.front();
  SmallVector<OwningOpRef<ModuleOp>> programs;
  SmallVector<std::pair<int64_t, ModuleOp>> variants;
  for (int64_t bucket : buckets) {
    moe::GpuCompileOptions variant = options;
    variant.numTokens = bucket;
    programs.push_back(cast<ModuleOp>(module->clone()));
    // The PTX and host IR of the variants follow each other; the cubins
    // are embedded in the source, not returned.
    layer.hostIR += "// token-count bucket " + std::to_string(bucket) + "\n";
    if (variant.emitPtx)
      layer.ptx += "// token-count bucket " + std::to_string(bucket) + "\n";
    if (failed(compileProgram(*programs.back(),
                              layer.name + "_m" + std::to_string(bucket),
                              variant, layer)))
      return failure();
    variants.emplace_back(bucket, *programs.back());
  }
  layer.cubin.clear();
  llvm::raw_string_ostream source(layer.source), header(layer.header);
  return moe::emitBucketedGpuHostSource(variants, layer.name, source, header);
}
} // namespace

FailureOr<moe::GpuCompiledLayer>
moe::compileLayerForGpu(ModuleOp module, const GpuCompileOptions &options) {
  SmallVector<func::FuncOp> layers;
  for (auto func : module.getOps<func::FuncOp>())
    if (!func.isExternal())
      layers.push_back(func);
  if (layers.size() != 1)
    return module.emitError("a GPU layer needs exactly one function, found ")
           << layers.size() << " (moe-compile --entry picks one)";
  GpuCompiledLayer layer;
  layer.name =
      options.name.empty() ? layers.front().getName().str() : options.name;
  if (!options.tokenBuckets.empty()) {
    if (failed(compileBuckets(module, options, layer)))
      return failure();
    return layer;
  }
  OwningOpRef<ModuleOp> program = cast<ModuleOp>(module->clone());
  if (failed(compileProgram(*program, layer.name, options, layer)))
    return failure();
  llvm::raw_string_ostream source(layer.source), header(layer.header);
  if (failed(emitGpuHostSource(*program, layer.name, source, header)))
    return failure();
  return layer;
}
