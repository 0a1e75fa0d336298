//===- Pipelines.h - moe pass pipelines -------------------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace mlir::moe {

/// Options of `moe-cpu-pipeline`.
struct CpuPipelineOptions : public PassPipelineOptions<CpuPipelineOptions> {
  PassOptions::Option<int64_t> rowBlock{
      *this, "row-block",
      llvm::cl::desc("Rows per static contraction block of a grouped matmul"),
      llvm::cl::init(8)};
};

/// Lowers a module of moe ops on tensors to the LLVM dialect for the host
/// CPU: moe -> linalg -> bufferized loops -> LLVM. Public functions keep
/// memref arguments and results; mark them `llvm.emit_c_interface` to get
/// `_mlir_ciface_` wrappers.
void buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options);

/// Registers `moe-cpu-pipeline`.
void registerCpuPipeline();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H
