//===- MoeOps.cpp - moe dialect operations --------------------------------===//
//
// Verifiers for the shape relations between operands and results that ODS
// type constraints cannot state. Ranks and element types are checked by ODS.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::moe;

/// Returns true when two dimension sizes may describe the same extent: equal,
/// or at least one of them dynamic.
static bool areDimsCompatible(int64_t lhs, int64_t rhs) {
  return ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs) ||
         lhs == rhs;
}

/// Returns `lhs * rhs`, or dynamic when either factor is dynamic.
static int64_t multiplyDims(int64_t lhs, int64_t rhs) {
  if (ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs))
    return ShapedType::kDynamic;
  return lhs * rhs;
}

static std::string formatDim(int64_t dim) {
  return ShapedType::isDynamic(dim) ? "?" : std::to_string(dim);
}

/// Emits an error unless dimension `dim` of `type` (named `name`) is static.
static LogicalResult verifyStaticDim(Operation *op, RankedTensorType type,
                                     unsigned dim, StringRef name) {
  if (!type.isDynamicDim(dim))
    return success();
  return op->emitOpError() << "expects dimension " << dim << " of " << name
                           << " to be static, got " << type;
}

//===----------------------------------------------------------------------===//
// RouterOp
//===----------------------------------------------------------------------===//

LogicalResult RouterOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType gateType = getGateWeight().getType();
  RankedTensorType logitsType = getLogits().getType();
  if (!gateType.hasStaticShape())
    return emitOpError() << "expects a static gate_weight shape [E, H], got "
                         << gateType;
  if (inputType.getElementType() != gateType.getElementType())
    return emitOpError() << "expects input and gate_weight to share an "
                            "element type, got "
                         << inputType.getElementType() << " and "
                         << gateType.getElementType();
  int64_t numExperts = gateType.getDimSize(0);
  int64_t hiddenSize = gateType.getDimSize(1);
  if (inputType.getDimSize(1) != hiddenSize)
    return emitOpError() << "expects input hidden size "
                         << formatDim(inputType.getDimSize(1))
                         << " to match gate_weight hidden size " << hiddenSize;
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getDimSize(0) != numExperts)
      return emitOpError() << "expects bias of size " << numExperts
                           << " (one per expert), got " << biasType;
  }
  if (logitsType.getDimSize(1) != numExperts ||
      !areDimsCompatible(logitsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects logits of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << numExperts << "], got " << logitsType;
  return success();
}

//===----------------------------------------------------------------------===//
// TopkOp
//===----------------------------------------------------------------------===//

LogicalResult TopkOp::verify() {
  RankedTensorType logitsType = getLogits().getType();
  if (failed(verifyStaticDim(*this, logitsType, 1, "logits")))
    return failure();
  int64_t numExperts = getNumExperts();
  int64_t k = getK();
  if (k > numExperts)
    return emitOpError() << "expects k (" << k
                         << ") to be at most the number of experts ("
                         << numExperts << ")";
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getDimSize(0) != numExperts)
      return emitOpError() << "expects bias of size " << numExperts
                           << " (one per expert), got " << biasType;
  }

  if (getNumGroups().has_value() != getTopkGroups().has_value())
    return emitOpError()
           << "expects num_groups and topk_groups to be given together";
  int64_t numGroups = getNumGroupsOrOne();
  int64_t topkGroups = getTopkGroupsOrAll();
  if (numExperts % numGroups != 0)
    return emitOpError() << "expects num_groups (" << numGroups
                         << ") to divide the number of experts ("
                         << numExperts << ")";
  if (topkGroups > numGroups)
    return emitOpError() << "expects topk_groups (" << topkGroups
                         << ") to be at most num_groups (" << numGroups << ")";
  int64_t selectable = topkGroups * (numExperts / numGroups);
  if (k > selectable)
    return emitOpError() << "expects k (" << k
                         << ") to be at most the experts in the selected "
                            "groups ("
                         << selectable << ")";

  int64_t numTokens = logitsType.getDimSize(0);
  for (RankedTensorType resultType :
       {getWeights().getType(), getIds().getType()}) {
    if (resultType.getDimSize(1) != k ||
        !areDimsCompatible(resultType.getDimSize(0), numTokens))
      return emitOpError() << "expects results of shape ["
                           << formatDim(numTokens) << ", " << k << "], got "
                           << resultType;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// PermuteOp
//===----------------------------------------------------------------------===//

LogicalResult PermuteOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType idsType = getIds().getType();
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType offsetsType = getOffsets().getType();
  RankedTensorType sourceType = getSource().getType();
  if (failed(verifyStaticDim(*this, inputType, 1, "input")) ||
      failed(verifyStaticDim(*this, idsType, 1, "ids")) ||
      failed(verifyStaticDim(*this, offsetsType, 0, "offsets")))
    return failure();
  if (offsetsType.getDimSize(0) < 2)
    return emitOpError() << "expects offsets of size E + 1 with at least one "
                            "expert, got "
                         << offsetsType;
  if (!areDimsCompatible(idsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects one row of ids per input row, got "
                         << idsType << " for " << inputType;
  if (rowsType.getElementType() != inputType.getElementType() ||
      rowsType.getDimSize(1) != inputType.getDimSize(1))
    return emitOpError() << "expects rows with the element type and hidden "
                            "size of input, got "
                         << rowsType << " for " << inputType;
  int64_t numTokens = inputType.isDynamicDim(0) ? idsType.getDimSize(0)
                                                : inputType.getDimSize(0);
  int64_t numAssignments = multiplyDims(numTokens, idsType.getDimSize(1));
  if (!areDimsCompatible(rowsType.getDimSize(0), numAssignments) ||
      !areDimsCompatible(sourceType.getDimSize(0), numAssignments) ||
      !areDimsCompatible(rowsType.getDimSize(0), sourceType.getDimSize(0)))
    return emitOpError() << "expects rows and source to have M * k = "
                         << formatDim(numAssignments) << " rows, got "
                         << rowsType << " and " << sourceType;
  return success();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulOp
//===----------------------------------------------------------------------===//

LogicalResult GroupedMatmulOp::verify() {
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType weightsType = getWeights().getType();
  RankedTensorType offsetsType = getOffsets().getType();
  RankedTensorType resultType = getResult().getType();
  if (!weightsType.hasStaticShape())
    return emitOpError() << "expects a static weights shape [E, N, K], got "
                         << weightsType;
  int64_t numExperts = weightsType.getDimSize(0);
  int64_t outFeatures = weightsType.getDimSize(1);
  int64_t inFeatures = weightsType.getDimSize(2);
  if (offsetsType.getDimSize(0) != numExperts + 1)
    return emitOpError() << "expects offsets of size E + 1 = "
                         << numExperts + 1 << ", got " << offsetsType;
  if (rowsType.getDimSize(1) != inFeatures)
    return emitOpError() << "expects rows with K = " << inFeatures
                         << " columns to match weights, got " << rowsType;
  if (getQuantization().getFormat() == QuantFormat::None &&
      rowsType.getElementType() != weightsType.getElementType())
    return emitOpError() << "expects rows and weights to share an element "
                            "type without quantization, got "
                         << rowsType.getElementType() << " and "
                         << weightsType.getElementType();
  if (resultType.getDimSize(1) != outFeatures ||
      !areDimsCompatible(resultType.getDimSize(0), rowsType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(rowsType.getDimSize(0)) << ", "
                         << outFeatures << "], got " << resultType;
  return success();
}

//===----------------------------------------------------------------------===//
// ActivationOp
//===----------------------------------------------------------------------===//

LogicalResult ActivationOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType resultType = getResult().getType();
  if (failed(verifyStaticDim(*this, inputType, 1, "input")))
    return failure();
  int64_t gatedWidth = inputType.getDimSize(1);
  if (gatedWidth % 2 != 0)
    return emitOpError() << "expects an even last dimension holding "
                            "[gate | up], got "
                         << gatedWidth;
  if (resultType.getElementType() != inputType.getElementType() ||
      resultType.getDimSize(1) != gatedWidth / 2 ||
      !areDimsCompatible(resultType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << gatedWidth / 2 << "] with element type "
                         << inputType.getElementType() << ", got "
                         << resultType;
  bool isSwiglu = getKind() == ActivationKind::Swiglu;
  bool hasSwigluParams = getAlpha() || getLimit();
  if (isSwiglu && !(getAlpha() && getLimit()))
    return emitOpError() << "expects swiglu to carry both alpha and limit";
  if (!isSwiglu && hasSwigluParams)
    return emitOpError() << "expects alpha and limit only with swiglu, not "
                         << stringifyActivationKind(getKind());
  return success();
}

//===----------------------------------------------------------------------===//
// UnpermuteOp
//===----------------------------------------------------------------------===//

LogicalResult UnpermuteOp::verify() {
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType sourceType = getSource().getType();
  RankedTensorType resultType = getResult().getType();
  if (failed(verifyStaticDim(*this, resultType, 1, "result")))
    return failure();
  if (resultType.getElementType() != rowsType.getElementType() ||
      resultType.getDimSize(2) != rowsType.getDimSize(1) ||
      ShapedType::isDynamic(rowsType.getDimSize(1)))
    return emitOpError() << "expects result [M, k, N] with the static N and "
                            "element type of rows, got "
                         << resultType << " for " << rowsType;
  if (!areDimsCompatible(sourceType.getDimSize(0), rowsType.getDimSize(0)))
    return emitOpError() << "expects one source index per row, got "
                         << sourceType << " for " << rowsType;
  int64_t numAssignments =
      multiplyDims(resultType.getDimSize(0), resultType.getDimSize(1));
  if (!areDimsCompatible(rowsType.getDimSize(0), numAssignments))
    return emitOpError() << "expects M * k = " << formatDim(numAssignments)
                         << " rows, got " << rowsType;
  return success();
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType weightsType = getWeights().getType();
  RankedTensorType resultType = getResult().getType();
  if (failed(verifyStaticDim(*this, inputType, 1, "input")) ||
      failed(verifyStaticDim(*this, inputType, 2, "input")))
    return failure();
  if (weightsType.getDimSize(1) != inputType.getDimSize(1) ||
      !areDimsCompatible(weightsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects weights of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << inputType.getDimSize(1) << "], got "
                         << weightsType;
  if (resultType.getDimSize(1) != inputType.getDimSize(2) ||
      !areDimsCompatible(resultType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << inputType.getDimSize(2) << "], got " << resultType;
  return success();
}

#define GET_OP_CLASSES
#include "moe/Dialect/Moe/IR/MoeOps.cpp.inc"
