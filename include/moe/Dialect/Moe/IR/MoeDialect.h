//===- MoeDialect.h - moe dialect -------------------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEDIALECT_H
#define MOE_DIALECT_MOE_IR_MOEDIALECT_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dialect.h"

#include "moe/Dialect/Moe/IR/MoeOpsDialect.h.inc"

#endif // MOE_DIALECT_MOE_IR_MOEDIALECT_H
