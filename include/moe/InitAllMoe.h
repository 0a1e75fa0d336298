//===- InitAllMoe.h - register every moe dialect, pass and pipeline -*- C++ -*-===//
//
// What a tool or an embedding engine calls once, as upstream's
// InitAllDialects.h / InitAllPasses.h.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_INITALLMOE_H
#define MOE_INITALLMOE_H

namespace mlir {
class DialectRegistry;

namespace moe {

/// Adds the moe and moe_gpu dialects to `registry`, with every upstream
/// dialect, extension and LLVM IR translation their pipelines need (the GPU
/// kernels serialize through LLVM IR).
void registerAllDialects(DialectRegistry &registry);

/// Registers every moe pass and pipeline, and upstream's, with the global
/// pass registry, so that textual pipelines (`parsePassPipeline`,
/// `moe-opt --pass-pipeline`) can name them. Idempotent.
void registerAllPasses();

} // namespace moe
} // namespace mlir

#endif // MOE_INITALLMOE_H
