//===- MoeOps.h - moe dialect operations ------------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_H
#define MOE_DIALECT_MOE_IR_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "moe/Dialect/Moe/IR/MoeAttrs.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"

#define GET_OP_CLASSES
#include "moe/Dialect/Moe/IR/MoeOps.h.inc"

namespace mlir::moe {
/// The shared experts among the experts of a matmul whose schedule (offsets,
/// slots or block experts) comes, through moe.permute, moe.sort or moe.align,
/// from ids that moe.add_shared_experts made; 0 otherwise.
int64_t getNumSharedExperts(Value schedule);
} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_IR_MOEOPS_H
