//===- main.cpp - compile a moe layer from an engine -------------*- C++ -*-===//
//
// What an inference engine does with the installed moe package: register
// moe once, parse a layer, run moe-optimize through a textual pipeline, and
// compile the layer for Hopper through the C++ API, writing the host code
// and the cubin that the engine then builds and loads.
//
//===----------------------------------------------------------------------===//

#include "moe/InitAllMoe.h"
#include "moe/Target/CompileLayer.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

using namespace mlir;

/// Writes `contents` to `directory`/`file`; false (with a message) on error.
static bool writeFile(llvm::StringRef directory, llvm::StringRef file,
                      llvm::StringRef contents) {
  llvm::SmallString<256> path(directory);
  llvm::sys::path::append(path, file);
  std::error_code error;
  llvm::raw_fd_ostream stream(path, error);
  if (error) {
    llvm::errs() << "moe-embedding-example: error: cannot write " << path
                 << ": " << error.message() << "\n";
    return false;
  }
  stream << contents;
  return true;
}

/// The number of ops named `name` in `module`.
static int64_t countOps(ModuleOp module, llvm::StringRef name) {
  int64_t count = 0;
  module.walk([&](Operation *op) {
    if (op->getName().getStringRef() == name)
      ++count;
  });
  return count;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    llvm::errs() << "usage: moe-embedding-example LAYER.mlir OUTPUT_DIR\n";
    return 2;
  }
  DialectRegistry registry;
  moe::registerAllDialects(registry);
  moe::registerAllPasses();
  MLIRContext context(registry);
  context.printOpOnDiagnostic(false);

  OwningOpRef<ModuleOp> layer = parseSourceFile<ModuleOp>(argv[1], &context);
  if (!layer)
    return 1;

  // moe-optimize by name, on a copy: the fused, tiled program the GPU
  // pipeline starts from (compileLayerForGpu runs it again itself).
  OwningOpRef<ModuleOp> optimized = layer->clone();
  PassManager pm(&context);
  if (failed(parsePassPipeline("moe-optimize{num-tokens=256}", pm)) ||
      failed(pm.run(*optimized)))
    return 1;
  llvm::outs() << "moe-optimize: " << countOps(*layer, "moe.grouped_matmul")
               << " moe.grouped_matmul -> "
               << countOps(*optimized, "moe.expert_matmul")
               << " moe.expert_matmul (gather and combine fused)\n";

  moe::GpuCompileOptions options;
  options.name = "layer";
  options.numTokens = 256;
  FailureOr<moe::GpuCompiledLayer> compiled =
      moe::compileLayerForGpu(*layer, options);
  if (failed(compiled))
    return 1;
  if (llvm::sys::fs::create_directories(argv[2])) {
    llvm::errs() << "moe-embedding-example: error: cannot create "
                 << argv[2] << "\n";
    return 1;
  }
  if (!writeFile(argv[2], compiled->name + ".cpp", compiled->source) ||
      !writeFile(argv[2], compiled->name + ".h", compiled->header) ||
      !writeFile(argv[2], compiled->name + ".cubin", compiled->cubin))
    return 1;
  llvm::outs() << "compiled moe_layer_" << compiled->name << ": "
               << compiled->cubin.size() << "-byte sm_90a cubin, "
               << compiled->source.size() << "-byte host source, "
               << compiled->header.size() << "-byte header in " << argv[2]
               << "\n";
  return 0;
}
