//===- Passes.h - moe_gpu transformations -----------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES_H
#define MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES_H

#include "moe/Dialect/Moe/IR/MoeDialect.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Pass/Pass.h"

namespace mlir::moe_gpu {

#define GEN_PASS_DECL
#include "moe/Dialect/MoeGPU/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe/Dialect/MoeGPU/Transforms/Passes.h.inc"

} // namespace mlir::moe_gpu

#endif // MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES_H
