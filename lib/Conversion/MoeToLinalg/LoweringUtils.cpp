//===- LoweringUtils.cpp - helpers of the moe to linalg lowering ----------===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace mlir::moe::lowering {
//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

Value indexConstant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

std::pair<Value, Value> gateUpColumns(OpBuilder &b, Location loc, Value column,
                                      int64_t width, bool interleaved) {
  if (!interleaved)
    return {column, arith::AddIOp::create(b, loc, column,
                                          indexConstant(b, loc, width))};
  Value gate = arith::MulIOp::create(b, loc, column, indexConstant(b, loc, 2));
  return {gate, arith::AddIOp::create(b, loc, gate, indexConstant(b, loc, 1))};
}

/// Converts a scalar float to `type` (extension or truncation).
Value convertFloat(OpBuilder &b, Location loc, Value value, Type type) {
  unsigned from = value.getType().getIntOrFloatBitWidth();
  unsigned to = type.getIntOrFloatBitWidth();
  if (value.getType() == type)
    return value;
  if (from < to)
    return arith::ExtFOp::create(b, loc, type, value);
  return arith::TruncFOp::create(b, loc, type, value);
}

/// Returns the sizes of a tensor of type `type` whose dynamic dimensions are
/// taken, in order, from `dynamicSources` (pairs of value and dimension).
SmallVector<OpFoldResult>
mixedSizes(OpBuilder &b, Location loc, RankedTensorType type,
           ArrayRef<std::pair<Value, int64_t>> dynamicSources) {
  SmallVector<OpFoldResult> sizes;
  for (auto [dim, size] : llvm::enumerate(type.getShape())) {
    if (!ShapedType::isDynamic(size)) {
      sizes.push_back(b.getIndexAttr(size));
      continue;
    }
    auto [source, sourceDim] = dynamicSources[dim];
    sizes.push_back(tensor::getMixedSize(b, loc, source, sourceDim));
  }
  return sizes;
}

/// Creates a tensor of `sizes` filled with the f32/element constant `value`.
Value createFilled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, double value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, elementType);
  Value scalar =
      arith::ConstantOp::create(b, loc, b.getFloatAttr(elementType, value));
  return linalg::FillOp::create(b, loc, scalar, empty).getResult(0);
}

/// Creates a tensor of `sizes` filled with the scalar `value`.
Value createFilledWith(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                       Value value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, value.getType());
  return linalg::FillOp::create(b, loc, value, empty).getResult(0);
}

Value createEmpty(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

/// Builds a linalg.generic over `numLoops` loops with affine maps given as
/// lists of loop dimensions (one list per input, then one per output).
Value buildGeneric(OpBuilder &b, Location loc, ValueRange inputs, Value output,
                   ArrayRef<SmallVector<unsigned>> operandDims,
                   ArrayRef<utils::IteratorType> iterators, BodyFn body) {
  unsigned numLoops = iterators.size();
  SmallVector<AffineMap> maps;
  for (ArrayRef<unsigned> dims : operandDims) {
    SmallVector<AffineExpr> exprs;
    for (unsigned d : dims)
      exprs.push_back(b.getAffineDimExpr(d));
    maps.push_back(AffineMap::get(numLoops, 0, exprs, b.getContext()));
  }
  auto generic = linalg::GenericOp::create(
      b, loc, output.getType(), inputs, output, maps, iterators,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        body(nested, nestedLoc, args);
      });
  return generic.getResult(0);
}

/// Softmax along dimension 1 of a [M, X] f32 tensor. A NaN in a row makes
/// the whole row NaN, as in the reference.
Value buildRowSoftmax(OpBuilder &b, Location loc, Value input) {
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> rowSizes = {tensor::getMixedSize(b, loc, input, 0)};
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> full = {0, 1}, row = {0};

  Value rowMax = buildGeneric(
      b, loc, input,
      createFilled(b, loc, rowSizes, f32,
                   -std::numeric_limits<double>::infinity()),
      {full, row}, {kParallel, kReduction},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::MaximumFOp::create(nb, nl, args[0], args[1])));
      });
  Value exps = buildGeneric(
      b, loc, {input, rowMax}, createEmpty(b, loc, sizes, f32),
      {full, row, full}, {kParallel, kParallel},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        Value shifted = arith::SubFOp::create(nb, nl, args[0], args[1]);
        linalg::YieldOp::create(nb, nl,
                                Value(math::ExpOp::create(nb, nl, shifted)));
      });
  Value rowSum = buildGeneric(
      b, loc, exps, createFilled(b, loc, rowSizes, f32, 0.0), {full, row},
      {kParallel, kReduction}, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::AddFOp::create(nb, nl, args[0], args[1])));
      });
  return buildGeneric(
      b, loc, {exps, rowSum}, createEmpty(b, loc, sizes, f32),
      {full, row, full}, {kParallel, kParallel},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::DivFOp::create(nb, nl, args[0], args[1])));
      });
}

/// Divides each row of a [M, X] f32 tensor by its sum.
Value buildRowNormalize(OpBuilder &b, Location loc, Value input) {
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> rowSizes = {tensor::getMixedSize(b, loc, input, 0)};
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> full = {0, 1}, row = {0};
  Value rowSum = buildGeneric(
      b, loc, input, createFilled(b, loc, rowSizes, f32, 0.0), {full, row},
      {kParallel, kReduction}, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::AddFOp::create(nb, nl, args[0], args[1])));
      });
  return buildGeneric(
      b, loc, {input, rowSum}, createEmpty(b, loc, sizes, f32),
      {full, row, full}, {kParallel, kParallel},
      [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::DivFOp::create(nb, nl, args[0], args[1])));
      });
}

/// Multiplies every element of an f32 tensor of rank 2 by `scale`.
Value buildScale(OpBuilder &b, Location loc, Value input, double scale) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  Value factor = f32Constant(b, loc, scale);
  return buildGeneric(
      b, loc, input, createEmpty(b, loc, sizes, b.getF32Type()),
      {{0, 1}, {0, 1}}, {kParallel, kParallel},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(
            nb, nl, Value(arith::MulFOp::create(nb, nl, args[0], factor)));
      });
}

/// Converts every element of a rank-`rank` float tensor to `elementType`.
Value buildConvert(OpBuilder &b, Location loc, Value input,
                   RankedTensorType resultType) {
  auto inputType = cast<RankedTensorType>(input.getType());
  if (inputType.getElementType() == resultType.getElementType())
    return input;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
  SmallVector<unsigned> identity;
  SmallVector<utils::IteratorType> iterators;
  for (unsigned d = 0; d < inputType.getRank(); ++d) {
    identity.push_back(d);
    iterators.push_back(kParallel);
  }
  Type elementType = resultType.getElementType();
  return buildGeneric(b, loc, input, createEmpty(b, loc, sizes, elementType),
                      {identity, identity}, iterators,
                      [&](OpBuilder &nb, Location nl, ValueRange args) {
                        linalg::YieldOp::create(
                            nb, nl, convertFloat(nb, nl, args[0], elementType));
                      });
}

/// Makes a value's static shape agree with the op result it replaces.
Value castToType(OpBuilder &b, Location loc, Value value, Type type) {
  if (value.getType() == type)
    return value;
  return tensor::CastOp::create(b, loc, type, value);
}

/// Returns `index` as a value of type index from an i32 tensor element.
Value extractIndex(OpBuilder &b, Location loc, Value tensor,
                   ValueRange indices) {
  Value element = tensor::ExtractOp::create(b, loc, tensor, indices);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), element);
}

/// Returns the declaration of the runtime error hook, inserting it into the
/// enclosing module on first use.
func::FuncOp getOrInsertReportFunction(OpBuilder &b, Operation *op) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(kReportRuntimeErrorFn))
    return existing;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  Type i64 = b.getI64Type();
  auto fn = func::FuncOp::create(b, op->getLoc(), kReportRuntimeErrorFn,
                                 b.getFunctionType({i64, i64, i64}, {}));
  fn.setPrivate();
  return fn;
}

/// Reports `code` with `value` and `bound` (index values) when `invalid`.
void emitRuntimeCheck(OpBuilder &b, Location loc, func::FuncOp reportFn,
                      Value invalid, RuntimeErrorCode code, Value value,
                      Value bound) {
  auto ifOp = scf::IfOp::create(b, loc, invalid, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  Type i64 = b.getI64Type();
  Value codeValue = arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(i64, static_cast<int64_t>(code)));
  func::CallOp::create(
      b, loc, reportFn,
      ValueRange{codeValue, arith::IndexCastOp::create(b, loc, i64, value),
                 arith::IndexCastOp::create(b, loc, i64, bound)});
}

/// Checks `lower <= value < upper` (index values), reporting `code` when not,
/// and returns `value` clamped into that range.
Value emitCheckedIndex(OpBuilder &b, Location loc, func::FuncOp reportFn,
                       Value value, Value lower, Value upper,
                       RuntimeErrorCode code) {
  Value below =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, value, lower);
  Value above =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, value, upper);
  emitRuntimeCheck(b, loc, reportFn, arith::OrIOp::create(b, loc, below, above),
                   code, value, upper);
  Value last = arith::SubIOp::create(b, loc, upper, indexConstant(b, loc, 1));
  return arith::MinSIOp::create(
      b, loc, arith::MaxSIOp::create(b, loc, value, lower), last);
}

std::pair<Value, Value> buildSortAssignments(OpBuilder &b, Location loc,
                                             Value ids, int64_t numExperts,
                                             func::FuncOp reportFn) {
  int64_t k = cast<RankedTensorType>(ids.getType()).getDimSize(1);
  Type i32 = b.getI32Type();
  Value c0 = indexConstant(b, loc, 0);
  Value c1 = indexConstant(b, loc, 1);
  Value kValue = indexConstant(b, loc, k);
  Value numExpertsValue = indexConstant(b, loc, numExperts);
  Value numTokens = tensor::DimOp::create(b, loc, ids, 0);
  Value numAssignments = arith::MulIOp::create(b, loc, numTokens, kValue);

  // Reads the expert of assignment `a`, reporting and clamping bad ids.
  auto readExpert = [&](OpBuilder &b, Location l, Value assignment) {
    Value token = arith::DivUIOp::create(b, l, assignment, kValue);
    Value slot = arith::RemUIOp::create(b, l, assignment, kValue);
    Value expert = extractIndex(b, l, ids, {token, slot});
    return emitCheckedIndex(b, l, reportFn, expert, c0, numExpertsValue,
                            RuntimeErrorCode::InvalidExpertId);
  };

  // Count the assignments of each expert.
  SmallVector<OpFoldResult> countSizes = {b.getIndexAttr(numExperts + 1)};
  Value zeroI32 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
  Value oneI32 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(1));
  Value zeros = createFilledWith(b, loc, countSizes, zeroI32);
  // counts[e + 1] holds expert e's count, so that a prefix sum in place
  // turns the buffer into offsets.
  auto countLoop = scf::ForOp::create(
      b, loc, c0, numAssignments, c1, ValueRange{zeros},
      [&](OpBuilder &b, Location l, Value assignment, ValueRange args) {
        Value expert = readExpert(b, l, assignment);
        Value slot = arith::AddIOp::create(b, l, expert, c1);
        Value count = tensor::ExtractOp::create(b, l, args[0], slot);
        Value incremented = arith::AddIOp::create(b, l, count, oneI32);
        scf::YieldOp::create(
            b, l,
            Value(tensor::InsertOp::create(b, l, incremented, args[0], slot)));
      });
  auto prefixLoop = scf::ForOp::create(
      b, loc, c1, indexConstant(b, loc, numExperts + 1), c1,
      ValueRange{countLoop.getResult(0)},
      [&](OpBuilder &b, Location l, Value expertPlusOne, ValueRange args) {
        Value previous = tensor::ExtractOp::create(
            b, l, args[0],
            ValueRange{arith::SubIOp::create(b, l, expertPlusOne, c1)});
        Value current = tensor::ExtractOp::create(b, l, args[0], expertPlusOne);
        Value sum = arith::AddIOp::create(b, l, previous, current);
        scf::YieldOp::create(
            b, l,
            Value(tensor::InsertOp::create(b, l, sum, args[0], expertPlusOne)));
      });
  Value offsets = prefixLoop.getResult(0);

  // Scatter assignment indices to their slots, in assignment order, so
  // that each expert's rows stay in token order (a stable sort).
  SmallVector<OpFoldResult> sourceSizes = {OpFoldResult(numAssignments)};
  Value sourceInit = tensor::EmptyOp::create(b, loc, sourceSizes, i32);
  auto scatterLoop = scf::ForOp::create(
      b, loc, c0, numAssignments, c1, ValueRange{offsets, sourceInit},
      [&](OpBuilder &b, Location l, Value assignment, ValueRange args) {
        Value expert = readExpert(b, l, assignment);
        Value cursor = tensor::ExtractOp::create(b, l, args[0], expert);
        Value position =
            arith::IndexCastOp::create(b, l, b.getIndexType(), cursor);
        Value assignmentI32 = arith::IndexCastOp::create(b, l, i32, assignment);
        Value newSource =
            tensor::InsertOp::create(b, l, assignmentI32, args[1], position);
        Value advanced = arith::AddIOp::create(b, l, cursor, oneI32);
        Value newCursors =
            tensor::InsertOp::create(b, l, advanced, args[0], expert);
        scf::YieldOp::create(b, l, ValueRange{newCursors, newSource});
      });
  Value source = scatterLoop.getResult(1);

  return {offsets, source};
}

} // namespace mlir::moe::lowering
