//===- ScalarMath.h - scalar f32 math shared by the lowerings ---*- C++ -*-===//
//
// The CPU lowering and the GPU kernels compute activations the same way;
// these builders are that one definition.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_UTILS_SCALARMATH_H
#define MOE_CONVERSION_UTILS_SCALARMATH_H

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::moe {

/// An f32 constant.
Value f32Constant(OpBuilder &b, Location loc, double value);

/// 1 / (1 + exp(-x)) of an f32 value.
Value buildSigmoid(OpBuilder &b, Location loc, Value x);

/// The gated activation `kind` of f32 `gate` and `up` (see moe.activation);
/// `alpha` and `limit` are used by swiglu only.
Value buildGatedActivation(OpBuilder &b, Location loc, ActivationKind kind,
                           Value gate, Value up, double alpha, double limit);

} // namespace mlir::moe

#endif // MOE_CONVERSION_UTILS_SCALARMATH_H
