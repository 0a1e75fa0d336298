//===- ScalarMath.cpp - scalar f32 math shared by the lowerings -----------===//

#include "moe/Conversion/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

using namespace mlir;

namespace mlir::moe {

Value f32Constant(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
}

Value buildSigmoid(OpBuilder &b, Location loc, Value x) {
  Value one = f32Constant(b, loc, 1.0);
  Value negExp = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one,
                               arith::AddFOp::create(b, loc, one, negExp));
}

Value buildGatedActivation(OpBuilder &b, Location loc, ActivationKind kind,
                           Value gate, Value up, double alpha, double limit) {
  Value out;
  switch (kind) {
  case ActivationKind::SiluAndMul:
    out = arith::MulFOp::create(
        b, loc, arith::MulFOp::create(b, loc, gate, buildSigmoid(b, loc, gate)),
        up);
    break;
  case ActivationKind::GeluAndMul: {
    // The normal CDF as erfc(-x/√2)/2: 1 + erf(x/√2) cancels to nothing in
    // f32 for strongly negative x, where erfc keeps its relative accuracy.
    Value negScaled = arith::MulFOp::create(
        b, loc, gate, f32Constant(b, loc, -1.0 / std::sqrt(2.0)));
    Value cdf = arith::MulFOp::create(b, loc, f32Constant(b, loc, 0.5),
                                      math::ErfcOp::create(b, loc, negScaled));
    out = arith::MulFOp::create(b, loc,
                                arith::MulFOp::create(b, loc, gate, cdf), up);
    break;
  }
  case ActivationKind::Swiglu: {
    Value limitValue = f32Constant(b, loc, limit);
    Value negLimit = f32Constant(b, loc, -limit);
    Value clampedGate = arith::MinimumFOp::create(b, loc, gate, limitValue);
    Value clampedUp = arith::MinimumFOp::create(
        b, loc, arith::MaximumFOp::create(b, loc, up, negLimit), limitValue);
    Value glu = arith::MulFOp::create(
        b, loc, clampedGate,
        buildSigmoid(b, loc,
                     arith::MulFOp::create(b, loc, f32Constant(b, loc, alpha),
                                           clampedGate)));
    out = arith::MulFOp::create(
        b, loc, glu,
        arith::AddFOp::create(b, loc, clampedUp, f32Constant(b, loc, 1.0)));
    break;
  }
  }
  return out;
}

} // namespace mlir::moe
