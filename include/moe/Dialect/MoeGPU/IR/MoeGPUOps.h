//===- MoeGPUOps.h - moe_gpu host types and ops -----------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_H
#define MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_H

#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h"
#include "moe/Dialect/MoeGPU/IR/MoeGPUDialect.h"

#include "mlir/Dialect/LLVMIR/LLVMTypes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_TYPEDEF_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUTypes.h.inc"

#define GET_OP_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h.inc"

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_H
