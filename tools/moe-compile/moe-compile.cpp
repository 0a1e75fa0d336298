//===- moe-compile.cpp - ahead-of-time compiler of moe layers for GPUs ----===//
//
//   moe-compile layer.mlir -o DIR [--name NAME] [--num-tokens M]
//               [--ptx FILE] [--kernels FILE]
//
// Runs moe-gpu-pipeline and moe-gpu-outline-host, serializes the kernels to
// an sm_90a cubin (ptxas from the CUDA toolkit), and writes DIR/NAME.cpp and
// DIR/NAME.h: the host code of the layer, lowered from its host IR through
// EmitC, with the cubin embedded (see moe/Target/GpuHost.h).
// Build it with the runtime into a shared library (scripts/compile-layer.sh).
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"
#include "moe/Dialect/MoeGPU/Transforms/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Target/GpuHost.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "llvm/Support/CommandLine.h"

#include <cstdlib>
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;

namespace {
llvm::cl::opt<std::string> inputFile(llvm::cl::Positional,
                                     llvm::cl::desc("<layer.mlir>"),
                                     llvm::cl::Required);
llvm::cl::opt<std::string> outputDir("o", llvm::cl::desc("Output directory"),
                                     llvm::cl::value_desc("dir"),
                                     llvm::cl::Required);
llvm::cl::opt<std::string>
    layerName("name",
              llvm::cl::desc("Layer name (default: the function's name)"));
llvm::cl::opt<int64_t>
    numTokens("num-tokens",
              llvm::cl::desc("Token count the tiles are chosen for"),
              llvm::cl::init(256));
llvm::cl::opt<int64_t>
    blockN("block-n",
           llvm::cl::desc("Override the grouped GEMMs' wgmma N (64, 128, "
                          "256; 0: moe-gpu-configure's choice)"),
           llvm::cl::init(0));
llvm::cl::opt<int64_t>
    stages("stages",
           llvm::cl::desc("Override the shared-memory ring depth (2-5; 0: "
                          "moe-gpu-configure's choice)"),
           llvm::cl::init(0));
llvm::cl::opt<bool> warpSpecialize(
    "warp-specialize",
    llvm::cl::desc("Warp-specialize the bf16 GEMMs of 128-row blocks (a "
                   "producer warpgroup and two consumers)"),
    llvm::cl::init(false));
llvm::cl::opt<int64_t> alignManyBlocksAbove(
    "align-many-blocks-above",
    llvm::cl::desc("Assignment count (M·k) above which moe.align runs over "
                   "many blocks (moe-gpu-outline-host)"),
    llvm::cl::init(4096));
llvm::cl::opt<std::string>
    cudaPath("cuda-path",
             llvm::cl::desc("CUDA toolkit with ptxas and libdevice (default: "
                            "CUDA_HOME, CUDA_ROOT or CUDA_PATH, else "
                            "/usr/local/cuda)"));
llvm::cl::opt<std::string> ptxFile("ptx",
                                   llvm::cl::desc("Also write the PTX here"));
llvm::cl::opt<std::string>
    cubinFile("cubin", llvm::cl::desc("Also write the cubin here (for "
                                      "cuobjdump and ncu)"));
llvm::cl::opt<std::string>
    kernelsFile("kernels",
                llvm::cl::desc("Also write the program with its kernels "
                               "and its host functions (after "
                               "moe-gpu-outline-host) here"));

LogicalResult writeFile(StringRef path, StringRef contents) {
  std::string error;
  auto file = openOutputFile(path, &error);
  if (!file) {
    llvm::errs() << "moe-compile: error: " << error << "\n";
    return failure();
  }
  file->os() << contents;
  file->keep();
  return success();
}

/// The CUDA toolkit: --cuda-path, the usual environment variables, or the
/// toolkit's default install location.
std::string toolkitPath() {
  if (!cudaPath.empty())
    return cudaPath;
  for (const char *variable : {"CUDA_HOME", "CUDA_ROOT", "CUDA_PATH"})
    if (const char *value = std::getenv(variable); value && *value)
      return value;
  return "/usr/local/cuda";
}

/// Lowers a copy of the kernel module to NVVM and serializes it in `format`
/// (`bin` or `isa`); returns the object's bytes.
FailureOr<std::string> serializeCopy(ModuleOp program, StringRef format) {
  auto kernels = program.lookupSymbol<gpu::GPUModuleOp>("moe_kernels");
  OpBuilder b(program.getContext());
  OwningOpRef<ModuleOp> copy = ModuleOp::create(program.getLoc());
  (*copy)->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                   b.getUnitAttr());
  b.setInsertionPointToEnd(copy->getBody());
  b.clone(*kernels);
  PassManager pm(program.getContext());
  moe::GpuBinaryPipelineOptions options;
  options.format = format.str();
  options.toolkit = toolkitPath();
  if (failed(moe::buildGpuKernelsToBinaryPipeline(pm, options)) ||
      failed(pm.run(*copy)))
    return failure();
  auto binary = copy->lookupSymbol<gpu::BinaryOp>("moe_kernels");
  if (!binary || binary.getObjects().size() != 1)
    return program.emitError("no serialized kernel module");
  auto object = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
  return object.getObject().getValue().str();
}

/// Serializes the kernels of `program` in place to `gpu.binary
/// @moe_kernels` (a cubin); returns the cubin's bytes.
FailureOr<std::string> serializeInPlace(ModuleOp program) {
  PassManager pm(program.getContext());
  moe::GpuBinaryPipelineOptions options;
  options.format = "bin";
  options.toolkit = toolkitPath();
  if (failed(moe::buildGpuKernelsToBinaryPipeline(pm, options)) ||
      failed(pm.run(program)))
    return failure();
  auto binary = program.lookupSymbol<gpu::BinaryOp>("moe_kernels");
  if (!binary || binary.getObjects().size() != 1)
    return program.emitError("no serialized kernel module");
  auto object = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
  return object.getObject().getValue().str();
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAllPasses();
  moe::registerMoeConversionPasses();
  llvm::cl::ParseCommandLineOptions(argc, argv, "moe GPU layer compiler\n");

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  registry.insert<moe::MoeDialect, moe_gpu::MoeGPUDialect>();
  MLIRContext context(registry);
  context.loadAllAvailableDialects();

  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  std::string error;
  auto input = openInputFile(inputFile, &error);
  if (!input) {
    llvm::errs() << "moe-compile: error: " << error << "\n";
    return 1;
  }
  sourceMgr.AddNewSourceBuffer(std::move(input), llvm::SMLoc());
  OwningOpRef<ModuleOp> program =
      parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!program)
    return 1;

  if (std::error_code code = llvm::sys::fs::create_directories(outputDir)) {
    llvm::errs() << "moe-compile: error: cannot create " << outputDir << ": "
                 << code.message() << "\n";
    return 1;
  }

  PassManager pm(&context);
  moe::GpuPipelineOptions options;
  options.numTokens = numTokens;
  options.blockN = blockN;
  options.stages = stages;
  options.warpSpecialize = warpSpecialize;
  moe::buildGpuPipeline(pm, options);
  if (failed(pm.run(*program)))
    return 1;
  // Every moe op left must have its kernel.
  WalkResult uncovered = program->walk([](Operation *op) {
    if (op->getDialect() && op->getDialect()->getNamespace() == "moe" &&
        !op->hasAttr("moe.gpu_kernel")) {
      op->emitError("no GPU lowering for this op yet");
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (uncovered.wasInterrupted())
    return 1;
  if (!program->lookupSymbol<gpu::GPUModuleOp>("moe_kernels")) {
    program->emitError("no op of this program has a GPU kernel");
    return 1;
  }

  std::string name = layerName;
  if (name.empty())
    program->walk([&](func::FuncOp func) { name = func.getName().str(); });
  PassManager outline(&context);
  moe_gpu::MoeGpuOutlineHostOptions outlineOptions;
  outlineOptions.layerName = name;
  outlineOptions.alignManyBlocksAbove = alignManyBlocksAbove;
  outline.addPass(moe_gpu::createMoeGpuOutlineHost(outlineOptions));
  // Tidy the host functions only: the kernels are already final.
  outline.addNestedPass<func::FuncOp>(createCanonicalizerPass());
  outline.addNestedPass<func::FuncOp>(createCSEPass());
  if (failed(outline.run(*program)))
    return 1;
  if (!kernelsFile.empty()) {
    std::string text;
    llvm::raw_string_ostream os(text);
    program->print(os);
    if (failed(writeFile(kernelsFile, text)))
      return 1;
  }
  if (!ptxFile.empty()) {
    FailureOr<std::string> ptx = serializeCopy(*program, "isa");
    if (failed(ptx) || failed(writeFile(ptxFile, *ptx)))
      return 1;
  }
  FailureOr<std::string> cubin = serializeInPlace(*program);
  if (failed(cubin) || (!cubinFile.empty() && failed(writeFile(cubinFile, *cubin))))
    return 1;

  std::string source, header;
  llvm::raw_string_ostream sourceStream(source), headerStream(header);
  if (failed(moe::emitGpuHostSource(*program, name, sourceStream,
                                    headerStream)))
    return 1;
  SmallString<256> sourcePath(outputDir), headerPath(outputDir);
  llvm::sys::path::append(sourcePath, name + ".cpp");
  llvm::sys::path::append(headerPath, name + ".h");
  if (failed(writeFile(sourcePath, source)) ||
      failed(writeFile(headerPath, header)))
    return 1;
  return 0;
}
