//===- MoeGPUAttrs.h - moe_gpu attributes -----------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H
#define MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "moe/Dialect/MoeGPU/IR/MoeGPUEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h.inc"

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H
