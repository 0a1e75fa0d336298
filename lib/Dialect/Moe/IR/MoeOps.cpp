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
  return ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs) || lhs == rhs;
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

/// Formats a shape as "[d0, d1, ...]" with "?" for dynamic sizes.
static std::string formatShape(ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (auto [i, size] : llvm::enumerate(shape))
    text += (i ? ", " : "") + formatDim(size);
  return text + "]";
}

/// The largest schedule the ops describe: at most 65536 experts and slot
/// blocks of at most 4096 rows, so that the padding of an aligned schedule,
/// E · (block_m − 1) < 2^28, leaves the i32 slot indices room for M · k, and
/// every static size the lowerings allocate from fits comfortably in memory.
static constexpr int64_t kMaxExperts = int64_t(1) << 16;
static constexpr int64_t kMaxBlockM = int64_t(1) << 12;

/// Emits an error unless dimension `dim` of `type` (named `name`), the
/// experts per token k, is at least 1: a schedule of no choices has no
/// rows, and the lowerings index the first choice.
static LogicalResult verifyExpertsPerToken(Operation *op, RankedTensorType type,
                                           unsigned dim, StringRef name) {
  if (type.getDimSize(dim) >= 1)
    return success();
  return op->emitOpError() << "expects k >= 1 experts per token (dimension "
                           << dim << " of " << name << "), got " << type;
}

/// Emits an error unless the offsets of a schedule, E + 1 entries, count
/// between 1 and kMaxExperts experts.
static LogicalResult verifyOffsetsSize(Operation *op,
                                       RankedTensorType offsetsType) {
  int64_t numExperts = offsetsType.getDimSize(0) - 1;
  if (numExperts >= 1 && numExperts <= kMaxExperts)
    return success();
  return op->emitOpError() << "expects offsets of size E + 1 with 1 <= E <= "
                           << kMaxExperts << " experts, got " << offsetsType;
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

/// Verifies what moe.router and moe.route share: a static [E, H] gate of the
/// input's element type and hidden size, and an optional [E] bias.
static LogicalResult verifyGateOperands(Operation *op,
                                        RankedTensorType inputType,
                                        RankedTensorType gateType, Value bias,
                                        StringRef biasName) {
  if (!gateType.hasStaticShape())
    return op->emitOpError()
           << "expects a static gate_weight shape [E, H], got " << gateType;
  if (inputType.getElementType() != gateType.getElementType())
    return op->emitOpError() << "expects input and gate_weight to share an "
                                "element type, got "
                             << inputType.getElementType() << " and "
                             << gateType.getElementType();
  int64_t hiddenSize = gateType.getDimSize(1);
  if (inputType.getDimSize(1) != hiddenSize)
    return op->emitOpError()
           << "expects input hidden size " << formatDim(inputType.getDimSize(1))
           << " to match gate_weight hidden size " << hiddenSize;
  if (bias) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getDimSize(0) != gateType.getDimSize(0))
      return op->emitOpError()
             << "expects " << biasName << " of size " << gateType.getDimSize(0)
             << " (one per expert), got " << biasType;
  }
  return success();
}

LogicalResult RouterOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType gateType = getGateWeight().getType();
  RankedTensorType logitsType = getLogits().getType();
  if (failed(verifyGateOperands(*this, inputType, gateType, getBias(), "bias")))
    return failure();
  int64_t numExperts = gateType.getDimSize(0);
  if (logitsType.getDimSize(1) != numExperts ||
      !areDimsCompatible(logitsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects logits of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << numExperts << "], got " << logitsType;
  return success();
}

//===----------------------------------------------------------------------===//
// AddSharedExpertsOp
//===----------------------------------------------------------------------===//

/// Emits an error unless `gate`, if present, holds one f32 logit per token:
/// [M, 1].
static LogicalResult verifySharedGate(Operation *op, Value gate,
                                      int64_t numTokens) {
  if (!gate)
    return success();
  auto gateType = cast<RankedTensorType>(gate.getType());
  if (gateType.getDimSize(1) != 1 ||
      !areDimsCompatible(gateType.getDimSize(0), numTokens))
    return op->emitOpError()
           << "expects gate logits of shape [" << formatDim(numTokens)
           << ", 1], got " << gateType;
  return success();
}

LogicalResult AddSharedExpertsOp::verify() {
  RankedTensorType weightsType = getRoutedWeights().getType();
  RankedTensorType idsType = getRoutedIds().getType();
  int64_t numTokens = idsType.getDimSize(0);
  int64_t k = idsType.getDimSize(1);
  if (failed(verifyExpertsPerToken(*this, idsType, 1, "routed_ids")))
    return failure();
  if (weightsType.getDimSize(1) != k ||
      !areDimsCompatible(weightsType.getDimSize(0), numTokens))
    return emitOpError() << "expects routed weights of the routed ids' shape "
                         << formatShape(idsType.getShape()) << ", got "
                         << weightsType;
  // Bounded before adding: the attributes may be as large as int64_t.
  int64_t numExperts = getNumExperts(), numShared = getNumShared();
  if (numShared > kMaxExperts || numExperts > kMaxExperts - numShared)
    return emitOpError() << "expects at most " << kMaxExperts
                         << " routed and shared experts, got " << numExperts
                         << " + " << numShared;
  int64_t width;
  if (llvm::AddOverflow(k, numShared, width))
    return emitOpError() << "expects k + num_shared to fit in int64_t, got "
                         << k << " + " << numShared;
  if (failed(verifySharedGate(*this, getGate(), numTokens)))
    return failure();
  SmallVector<int64_t, 2> expected = {numTokens, width};
  for (Type resultType : getResultTypes()) {
    auto type = cast<RankedTensorType>(resultType);
    if (type.getDimSize(1) != expected[1] ||
        !areDimsCompatible(type.getDimSize(0), numTokens))
      return emitOpError() << "expects results of shape "
                           << formatShape(expected)
                           << " (k routed, then the shared experts), got "
                           << type;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// SharedExpertRoutingOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertRoutingOp::verify() {
  int64_t numTokens = getRoutedWeights().getType().getDimSize(0);
  int64_t numShared = getNumShared();
  if (numShared > kMaxExperts)
    return emitOpError() << "expects at most " << kMaxExperts
                         << " shared experts, got " << numShared;
  if (failed(verifySharedGate(*this, getGate(), numTokens)))
    return failure();
  for (Type resultType : getResultTypes()) {
    auto type = cast<RankedTensorType>(resultType);
    if (type.getDimSize(1) != numShared ||
        !areDimsCompatible(type.getDimSize(0), numTokens))
      return emitOpError() << "expects results of shape ["
                           << formatDim(numTokens) << ", " << numShared
                           << "] (one column per shared expert), got " << type;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// TopkOp
//===----------------------------------------------------------------------===//

/// Verifies what moe.topk and moe.route share: k, the selection bias, the
/// grouping, and the [M, k] results.
static LogicalResult
verifyTopkSemantics(Operation *op, int64_t numTokens, int64_t numExperts,
                    int64_t k, std::optional<int64_t> numGroupsAttr,
                    std::optional<int64_t> topkGroupsAttr, Value bias,
                    RankedTensorType weightsType, RankedTensorType idsType) {
  if (k > numExperts)
    return op->emitOpError()
           << "expects k (" << k << ") to be at most the number of experts ("
           << numExperts << ")";
  if (bias) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getDimSize(0) != numExperts)
      return op->emitOpError() << "expects bias of size " << numExperts
                               << " (one per expert), got " << biasType;
  }
  if (numGroupsAttr.has_value() != topkGroupsAttr.has_value())
    return op->emitOpError()
           << "expects num_groups and topk_groups to be given together";
  int64_t numGroups = numGroupsAttr.value_or(1);
  int64_t topkGroups = topkGroupsAttr.value_or(numGroups);
  if (numExperts % numGroups != 0)
    return op->emitOpError()
           << "expects num_groups (" << numGroups
           << ") to divide the number of experts (" << numExperts << ")";
  if (topkGroups > numGroups)
    return op->emitOpError()
           << "expects topk_groups (" << topkGroups
           << ") to be at most num_groups (" << numGroups << ")";
  int64_t selectable = topkGroups * (numExperts / numGroups);
  if (k > selectable)
    return op->emitOpError() << "expects k (" << k
                             << ") to be at most the experts in the selected "
                                "groups ("
                             << selectable << ")";
  for (RankedTensorType resultType : {weightsType, idsType}) {
    if (resultType.getDimSize(1) != k ||
        !areDimsCompatible(resultType.getDimSize(0), numTokens))
      return op->emitOpError()
             << "expects results of shape [" << formatDim(numTokens) << ", "
             << k << "], got " << resultType;
  }
  return success();
}

LogicalResult TopkOp::verify() {
  RankedTensorType logitsType = getLogits().getType();
  if (failed(verifyStaticDim(*this, logitsType, 1, "logits")))
    return failure();
  return verifyTopkSemantics(*this, logitsType.getDimSize(0), getNumExperts(),
                             getK(), getNumGroups(), getTopkGroups(), getBias(),
                             getWeights().getType(), getIds().getType());
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

LogicalResult RouteOp::verify() {
  RankedTensorType inputType = getInput().getType();
  if (failed(verifyGateOperands(*this, inputType, getGateWeight().getType(),
                                getGateBias(), "gate_bias")))
    return failure();
  return verifyTopkSemantics(*this, inputType.getDimSize(0), getNumExperts(),
                             getK(), getNumGroups(), getTopkGroups(),
                             getScoreBias(), getWeights().getType(),
                             getIds().getType());
}

//===----------------------------------------------------------------------===//
// SortOp
//===----------------------------------------------------------------------===//

LogicalResult SortOp::verify() {
  RankedTensorType idsType = getIds().getType();
  RankedTensorType offsetsType = getOffsets().getType();
  if (failed(verifyStaticDim(*this, idsType, 1, "ids")) ||
      failed(verifyStaticDim(*this, offsetsType, 0, "offsets")) ||
      failed(verifyExpertsPerToken(*this, idsType, 1, "ids")) ||
      failed(verifyOffsetsSize(*this, offsetsType)))
    return failure();
  int64_t numAssignments =
      multiplyDims(idsType.getDimSize(0), idsType.getDimSize(1));
  if (!areDimsCompatible(getSource().getType().getDimSize(0), numAssignments))
    return emitOpError() << "expects source of M * k = "
                         << formatDim(numAssignments) << " entries, got "
                         << getSource().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// AlignOp
//===----------------------------------------------------------------------===//

LogicalResult AlignOp::verify() {
  RankedTensorType idsType = getIds().getType();
  if (failed(verifyStaticDim(*this, idsType, 1, "ids")) ||
      failed(verifyExpertsPerToken(*this, idsType, 1, "ids")))
    return failure();
  int64_t blockM = getBlockM();
  int64_t numExperts = getNumExperts();
  if (numExperts > kMaxExperts || blockM > kMaxBlockM)
    return emitOpError() << "expects num_experts <= " << kMaxExperts
                         << " and block_m <= " << kMaxBlockM << ", got "
                         << numExperts << " and " << blockM;
  int64_t numAssignments =
      multiplyDims(idsType.getDimSize(0), idsType.getDimSize(1));
  int64_t slots = ShapedType::isDynamic(numAssignments)
                      ? ShapedType::kDynamic
                      : numAssignments + numExperts * (blockM - 1);
  if (!areDimsCompatible(getSortedIds().getType().getDimSize(0), slots))
    return emitOpError() << "expects sorted_ids of M * k + E * (block_m - 1) "
                            "= "
                         << formatDim(slots) << " entries, got "
                         << getSortedIds().getType();
  int64_t blocks = ShapedType::isDynamic(slots) ? ShapedType::kDynamic
                                                : (slots + blockM - 1) / blockM;
  if (!areDimsCompatible(getBlockExperts().getType().getDimSize(0), blocks))
    return emitOpError() << "expects block_experts of ceil(slots / block_m) = "
                         << formatDim(blocks) << " entries, got "
                         << getBlockExperts().getType();
  if (getNumPadded().getType().getShape() != ArrayRef<int64_t>{1})
    return emitOpError() << "expects num_padded of type tensor<1xi32>, got "
                         << getNumPadded().getType();
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
      failed(verifyStaticDim(*this, offsetsType, 0, "offsets")) ||
      failed(verifyExpertsPerToken(*this, idsType, 1, "ids")) ||
      failed(verifyOffsetsSize(*this, offsetsType)))
    return failure();
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

/// The scale and zero operands of a quantized matmul.
struct QuantOperands {
  Value inputScales, weightScales, weightZeros;
};

/// Verifies the operand types and scale shapes of a w8a8 matmul whose A
/// operand (`aName`) has `aType`.
static LogicalResult verifyW8A8(Operation *op, StringRef aName,
                                RankedTensorType aType,
                                RankedTensorType weightsType,
                                const QuantOperands &operands,
                                QuantizationAttr quantization) {
  Type code = quantization.getFormat() == QuantFormat::Fp8
                  ? Type(Float8E4M3FNType::get(op->getContext()))
                  : Type(IntegerType::get(op->getContext(), 8));
  if (aType.getElementType() != code || weightsType.getElementType() != code)
    return op->emitOpError() << "expects " << aName << " and weights of "
                             << code << " for " << quantization << ", got "
                             << aType.getElementType() << " and "
                             << weightsType.getElementType();
  if (!operands.inputScales || !operands.weightScales)
    return op->emitOpError()
           << "expects input and weight scales for " << quantization;
  if (operands.weightZeros)
    return op->emitOpError() << "takes no weight zeros for " << quantization;
  int64_t numRows = aType.getDimSize(0);
  int64_t numExperts = weightsType.getDimSize(0);
  int64_t outFeatures = weightsType.getDimSize(1);
  int64_t inFeatures = weightsType.getDimSize(2);
  SmallVector<int64_t> inputShape, weightShape;
  switch (*quantization.getScales()) {
  case ScaleLayout::PerTensor:
    inputShape = {1};
    weightShape = {numExperts};
    break;
  case ScaleLayout::PerTokenChannel:
    inputShape = {numRows};
    weightShape = {numExperts, outFeatures};
    break;
  case ScaleLayout::Block:
    if (inFeatures % 128 != 0 || outFeatures % 128 != 0)
      return op->emitOpError()
             << "expects K and N to be multiples of 128 for block scales, got "
                "K = "
             << inFeatures << " and N = " << outFeatures;
    inputShape = {numRows, inFeatures / 128};
    weightShape = {numExperts, outFeatures / 128, inFeatures / 128};
    break;
  }
  // Exactly these shapes: a static 1 never stands for a dynamic row count
  // (the lowerings index the scales by row).
  auto inputScales = cast<RankedTensorType>(operands.inputScales.getType());
  auto weightScales = cast<RankedTensorType>(operands.weightScales.getType());
  if (inputScales.getShape() != ArrayRef<int64_t>(inputShape))
    return op->emitOpError() << "expects input scales of shape "
                             << formatShape(inputShape) << " for "
                             << quantization << ", got " << inputScales;
  if (weightScales.getShape() != ArrayRef<int64_t>(weightShape))
    return op->emitOpError() << "expects weight scales of shape "
                             << formatShape(weightShape) << " for "
                             << quantization << ", got " << weightScales;
  // Scales a moe.quantize produced follow its layout, which must be this
  // op's.
  if (auto producer = operands.inputScales.getDefiningOp<QuantizeOp>();
      producer && producer.getQuantization() != quantization)
    return op->emitOpError() << "expects input scales quantized as "
                             << quantization << ", got scales of "
                             << producer.getQuantization();
  return success();
}

/// Verifies the stored weights and their scales and zeros of a weight-only
/// matmul; returns the K the A operand must have.
static FailureOr<int64_t> verifyWeightOnly(Operation *op, StringRef aName,
                                           RankedTensorType aType,
                                           RankedTensorType weightsType,
                                           const QuantOperands &operands,
                                           QuantizationAttr quantization) {
  QuantFormat format = quantization.getFormat();
  if (!isa<FloatType>(aType.getElementType()) ||
      isa<Float8E4M3FNType>(aType.getElementType()))
    return op->emitOpError() << "expects floating-point " << aName << " for "
                             << quantization << ", got " << aType;
  if (operands.inputScales)
    return op->emitOpError() << "takes no input scales for " << quantization;
  if (!operands.weightScales)
    return op->emitOpError() << "expects weight scales for " << quantization;
  bool zeroPoint = quantization.getZeroPoint();
  if (zeroPoint != static_cast<bool>(operands.weightZeros))
    return op->emitOpError() << (zeroPoint ? "expects" : "takes no")
                             << " weight zeros for " << quantization;
  MLIRContext *context = op->getContext();
  Type u8 = IntegerType::get(context, 8, IntegerType::Unsigned);
  Type i8 = IntegerType::get(context, 8);
  bool packed = format != QuantFormat::Int8Weight;
  Type stored = (format == QuantFormat::Int8Weight && !zeroPoint) ? i8 : u8;
  int64_t storedK = weightsType.getDimSize(2);
  int64_t inFeatures = packed ? 2 * storedK : storedK;
  if (weightsType.getElementType() != stored)
    return op->emitOpError() << "expects weights stored as " << stored
                             << " for " << quantization << ", got "
                             << weightsType;
  int64_t group = quantization.getGroupSize();
  if (inFeatures % group != 0)
    return op->emitOpError() << "expects K = " << inFeatures
                             << " to be a multiple of the group " << group;
  // Prepacked codes come in tiles of 64 weight rows and 64 of K.
  constexpr int64_t kPackedTile = 64;
  if (quantization.getPacked() &&
      (weightsType.getDimSize(1) % kPackedTile != 0 ||
       inFeatures % kPackedTile != 0))
    return op->emitOpError()
           << "expects N and K to be multiples of " << kPackedTile
           << " for codes packed as "
           << stringifyPackedWeightLayout(*quantization.getPacked())
           << ", got N = " << weightsType.getDimSize(1)
           << " and K = " << inFeatures;
  SmallVector<int64_t> groupShape = {weightsType.getDimSize(0),
                                     weightsType.getDimSize(1),
                                     inFeatures / group};
  auto scalesType = cast<RankedTensorType>(operands.weightScales.getType());
  Type scaleElement = format == QuantFormat::Mxfp4
                          ? u8
                          : Type(Float32Type::get(context));
  if (scalesType.getElementType() != scaleElement ||
      scalesType.getShape() != ArrayRef<int64_t>(groupShape))
    return op->emitOpError()
           << "expects weight scales of " << scaleElement << " and shape "
           << formatShape(groupShape) << " for " << quantization << ", got "
           << scalesType;
  if (zeroPoint) {
    auto zerosType = cast<RankedTensorType>(operands.weightZeros.getType());
    if (zerosType.getShape() != ArrayRef<int64_t>(groupShape))
      return op->emitOpError() << "expects weight zeros of the scales' shape, "
                                  "got "
                               << zerosType;
  }
  return inFeatures;
}

/// Verifies what moe.grouped_matmul and moe.expert_matmul share: static
/// [E, N, K] weights, [E + 1] offsets when given, and an A operand
/// (`aName`) with the weights' K: of their element type without
/// quantization, else of the format's types, with the format's scales.
static LogicalResult verifyMatmulOperands(Operation *op, StringRef aName,
                                          RankedTensorType aType,
                                          RankedTensorType weightsType,
                                          Value offsets,
                                          QuantizationAttr quantization,
                                          const QuantOperands &operands) {
  if (!weightsType.hasStaticShape())
    return op->emitOpError()
           << "expects a static weights shape [E, N, K], got " << weightsType;
  int64_t numExperts = weightsType.getDimSize(0);
  if (offsets) {
    auto offsetsType = cast<RankedTensorType>(offsets.getType());
    if (offsetsType.getDimSize(0) != numExperts + 1)
      return op->emitOpError()
             << "expects offsets of size E + 1 = " << numExperts + 1 << ", got "
             << offsetsType;
  }
  // The K the A operand must have: the weights' last dimension, or twice it
  // for two codes per byte.
  int64_t inFeatures = weightsType.getDimSize(2);
  if (quantization.getFormat() == QuantFormat::None) {
    if (operands.inputScales || operands.weightScales || operands.weightZeros)
      return op->emitOpError() << "takes scales and zeros only with a "
                                  "quantization, not "
                               << quantization;
    if (aType.getElementType() != weightsType.getElementType())
      return op->emitOpError()
             << "expects " << aName
             << " and weights to share an element type "
                "without quantization, got "
             << aType.getElementType() << " and "
             << weightsType.getElementType();
  } else if (quantization.isW8A8()) {
    if (failed(verifyW8A8(op, aName, aType, weightsType, operands,
                          quantization)))
      return failure();
  } else {
    FailureOr<int64_t> k = verifyWeightOnly(op, aName, aType, weightsType,
                                            operands, quantization);
    if (failed(k))
      return failure();
    inFeatures = *k;
  }
  if (aType.getDimSize(1) != inFeatures)
    return op->emitOpError()
           << "expects " << aName << " with K = " << inFeatures
           << " columns to match weights, got " << aType;
  return success();
}

/// An optional per-expert bias is f32 [E, N], one value per expert and
/// product column (before any activation halves the width).
static LogicalResult verifyExpertBias(Operation *op, Value bias,
                                      RankedTensorType weightsType) {
  if (!bias)
    return success();
  auto biasType = cast<RankedTensorType>(bias.getType());
  SmallVector<int64_t, 2> expected = {weightsType.getDimSize(0),
                                      weightsType.getDimSize(1)};
  if (biasType.getShape() != ArrayRef<int64_t>(expected))
    return op->emitOpError()
           << "expects a bias of shape " << formatShape(expected)
           << " (experts, product columns), got " << biasType;
  return success();
}

LogicalResult GroupedMatmulOp::verify() {
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType weightsType = getWeights().getType();
  RankedTensorType resultType = getResult().getType();
  if (failed(verifyMatmulOperands(
          *this, "rows", rowsType, weightsType, getOffsets(), getQuantization(),
          {getInputScales(), getWeightScales(), getWeightZeros()})) ||
      failed(verifyExpertBias(*this, getBias(), weightsType)))
    return failure();
  int64_t outFeatures = weightsType.getDimSize(1);
  if (resultType.getDimSize(1) != outFeatures ||
      !areDimsCompatible(resultType.getDimSize(0), rowsType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(rowsType.getDimSize(0)) << ", "
                         << outFeatures << "], got " << resultType;
  return success();
}

//===----------------------------------------------------------------------===//
// PrepackOp
//===----------------------------------------------------------------------===//

LogicalResult PrepackOp::verify() {
  // wgmma_a_4bit: tiles of 64 weight rows by 64 columns of K (32 bytes of
  // code pairs per row), 16 bytes for each of a warpgroup's 128 threads.
  constexpr int64_t kTileRows = 64, kTilePairs = 32, kTileBytes = 2048;
  RankedTensorType codesType = getCodes().getType();
  int64_t rows = codesType.getDimSize(1), pairs = codesType.getDimSize(2);
  if (!codesType.hasStaticShape() || rows % kTileRows != 0 ||
      pairs % kTilePairs != 0)
    return emitOpError() << "expects static codes [E, N, K/2] with N a "
                            "multiple of 64 and K of 64 for "
                         << stringifyPackedWeightLayout(getLayout()) << ", got "
                         << codesType;
  SmallVector<int64_t> packedShape = {codesType.getDimSize(0), rows / kTileRows,
                                      pairs / kTilePairs, kTileBytes};
  RankedTensorType packedType = getPacked().getType();
  if (packedType.getShape() != ArrayRef<int64_t>(packedShape))
    return emitOpError() << "expects packed codes of shape "
                         << formatShape(packedShape) << ", got " << packedType;
  return success();
}

//===----------------------------------------------------------------------===//
// QuantizeOp
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  QuantizationAttr quantization = getQuantization();
  if (!quantization.isW8A8())
    return emitOpError() << "quantizes activations for a w8a8 format, not "
                         << quantization;
  RankedTensorType inputType = getInput().getType();
  RankedTensorType codesType = getCodes().getType();
  Type code = quantization.getFormat() == QuantFormat::Fp8
                  ? Type(Float8E4M3FNType::get(getContext()))
                  : Type(IntegerType::get(getContext(), 8));
  if (codesType.getElementType() != code ||
      codesType.getShape() != inputType.getShape())
    return emitOpError() << "expects codes of the input's shape in " << code
                         << ", got " << codesType;
  int64_t rows = inputType.getDimSize(0);
  int64_t columns = inputType.getDimSize(1);
  SmallVector<int64_t> scaleShape;
  switch (*quantization.getScales()) {
  case ScaleLayout::PerTensor:
    scaleShape = {1};
    break;
  case ScaleLayout::PerTokenChannel:
    scaleShape = {rows};
    break;
  case ScaleLayout::Block:
    if (ShapedType::isDynamic(columns) || columns % 128 != 0)
      return emitOpError() << "expects a static K that is a multiple of 128 "
                              "for block scales, got "
                           << inputType;
    scaleShape = {rows, columns / 128};
    break;
  }
  // Exactly this shape: a static 1 never stands for a dynamic row count.
  auto scalesType = cast<RankedTensorType>(getScales().getType());
  if (scalesType.getShape() != ArrayRef<int64_t>(scaleShape))
    return emitOpError() << "expects scales of shape "
                         << formatShape(scaleShape) << " for " << quantization
                         << ", got " << scalesType;
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
  if (resultType.getDimSize(1) != gatedWidth / 2 ||
      !areDimsCompatible(resultType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << gatedWidth / 2 << "], got " << resultType;
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
  if (failed(verifyStaticDim(*this, resultType, 1, "result")) ||
      failed(verifyExpertsPerToken(*this, resultType, 1, "result")))
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
      failed(verifyStaticDim(*this, inputType, 2, "input")) ||
      failed(verifyExpertsPerToken(*this, inputType, 1, "input")))
    return failure();
  if (weightsType.getDimSize(1) != inputType.getDimSize(1) ||
      !areDimsCompatible(weightsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects weights of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << inputType.getDimSize(1) << "], got " << weightsType;
  if (resultType.getDimSize(1) != inputType.getDimSize(2) ||
      !areDimsCompatible(resultType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(inputType.getDimSize(0)) << ", "
                         << inputType.getDimSize(2) << "], got " << resultType;
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertMatmulOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertMatmulOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType weightsType = getWeights().getType();
  auto resultType = cast<RankedTensorType>(getResult().getType());
  if (failed(verifyMatmulOperands(
          *this, "input", inputType, weightsType, getOffsets(),
          getQuantization(),
          {getInputScales(), getWeightScales(), getWeightZeros()})) ||
      failed(verifyExpertBias(*this, getBias(), weightsType)))
    return failure();
  int64_t outFeatures = weightsType.getDimSize(1);
  int64_t k = getK();

  // The schedule: offsets form or aligned form, never both.
  if (static_cast<bool>(getOffsets()) == isAligned())
    return emitOpError()
           << "expects exactly one schedule: offsets(...) or blocks(...)";
  if (isAligned() != static_cast<bool>(getBlockM()))
    return emitOpError() << "expects block_m exactly with blocks(...)";
  if (getBlockM() && *getBlockM() > kMaxBlockM)
    return emitOpError() << "expects block_m <= " << kMaxBlockM
                         << ", the limit of moe.align, got " << *getBlockM();
  if (isAligned() &&
      cast<RankedTensorType>(getNumPadded().getType()).getShape() !=
          ArrayRef<int64_t>{1})
    return emitOpError() << "expects num_padded of type tensor<1xi32>";
  bool needsSlots = getGather() || getUnpermute() || isCombine() || isAligned();
  if (needsSlots && !getSlots())
    return emitOpError() << "expects slots(...) with gather, unpermute, "
                            "combine or an aligned schedule";
  if (getUnpermute() && isCombine())
    return emitOpError() << "expects at most one of unpermute and combine";

  // The epilogue.
  if (std::optional<ActivationKind> kind = getActivation()) {
    if (outFeatures % 2 != 0)
      return emitOpError() << "expects an even N holding [gate | up] for the "
                              "activation, got "
                           << outFeatures;
    bool isSwiglu = *kind == ActivationKind::Swiglu;
    if (isSwiglu && !(getAlpha() && getLimit()))
      return emitOpError() << "expects swiglu to carry both alpha and limit";
    if (!isSwiglu && (getAlpha() || getLimit()))
      return emitOpError() << "expects alpha and limit only with swiglu";
  } else if (getAlpha() || getLimit()) {
    return emitOpError() << "expects alpha and limit only with swiglu";
  } else if (getGateUpInterleaved()) {
    return emitOpError() << "expects gate_up_interleaved only with an "
                            "activation, which pairs the columns";
  }
  if (getRoutedScalingFactor() && !isCombine())
    return emitOpError() << "expects routed_scaling_factor only with combine";
  if (getAccumulate() && !isCombine())
    return emitOpError() << "expects accumulate(...) only with combine";

  // The result, by output mode.
  int64_t width = getOutputWidth();
  int64_t numSlots =
      getSlots() ? cast<RankedTensorType>(getSlots().getType()).getDimSize(0)
                 : inputType.getDimSize(0);
  if (!getGather() && !areDimsCompatible(inputType.getDimSize(0), numSlots))
    return emitOpError() << "expects one input row per slot without gather, "
                            "got "
                         << inputType << " for " << formatDim(numSlots)
                         << " slots";
  if (getUnpermute()) {
    if (resultType.getRank() != 3 || resultType.getDimSize(1) != k ||
        resultType.getDimSize(2) != width)
      return emitOpError() << "expects an unpermuted result [M, " << k << ", "
                           << width << "], got " << resultType;
    return success();
  }
  if (resultType.getRank() != 2 || resultType.getDimSize(1) != width)
    return emitOpError() << "expects a result [" << (isCombine() ? "M" : "S")
                         << ", " << width << "], got " << resultType;
  if (isCombine()) {
    auto weightsOfRoutes =
        cast<RankedTensorType>(getRoutingWeights().getType());
    if (weightsOfRoutes.getDimSize(1) != k ||
        !areDimsCompatible(weightsOfRoutes.getDimSize(0),
                           resultType.getDimSize(0)))
      return emitOpError() << "expects routing weights [M, " << k
                           << "] matching the result, got " << weightsOfRoutes;
    if (Value partial = getAccumulate()) {
      auto partialType = cast<RankedTensorType>(partial.getType());
      if (partialType.getDimSize(1) != width ||
          !areDimsCompatible(partialType.getDimSize(0),
                             resultType.getDimSize(0)))
        return emitOpError() << "expects partial sums [M, " << width
                             << "] matching the result, got " << partialType;
    }
    return success();
  }
  if (!areDimsCompatible(resultType.getDimSize(0), numSlots))
    return emitOpError() << "expects one result row per slot, got "
                         << resultType;
  return success();
}

#define GET_OP_CLASSES
#include "moe/Dialect/Moe/IR/MoeOps.cpp.inc"

//===----------------------------------------------------------------------===//
// EpDispatchOp / EpCombineOp
//===----------------------------------------------------------------------===//

/// Emits an error unless `rows`' leading size (S received rows) is
/// compatible with R · M · k, and `origin` ([S]) agrees with it.
/// Whether `dim` is dynamic, or static and equal to `expected` (itself
/// static): a static size that may be smaller than the op's real count is
/// refused, a dynamic one is sized when the op runs.
static bool isDynamicOrEqual(int64_t dim, int64_t expected) {
  return ShapedType::isDynamic(dim) || dim == expected;
}

static LogicalResult verifyReceivedRows(Operation *op, RankedTensorType rows,
                                        RankedTensorType origin, int64_t ranks,
                                        int64_t numTokens, int64_t k) {
  // A static size must be the bound itself, never stand for a dynamic one
  // (the lowerings write or read R * M * k rows); a dynamic one is sized
  // when the op runs.
  int64_t bound = multiplyDims(ranks, multiplyDims(numTokens, k));
  if (!isDynamicOrEqual(rows.getDimSize(0), bound) ||
      !isDynamicOrEqual(origin.getDimSize(0), bound))
    return op->emitOpError()
           << "expects rows and origin sized for the worst case, R * M * k = "
           << ranks << " * " << formatDim(numTokens) << " * " << k << " = "
           << formatDim(bound) << " rows, got " << rows << " and " << origin;
  return success();
}

LogicalResult EpDispatchOp::verify() {
  RankedTensorType inputType = getInput().getType();
  RankedTensorType idsType = getIds().getType();
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType localIdsType = getLocalIds().getType();
  PlacementAttr placement = getPlacement();
  if (failed(verifyStaticDim(*this, inputType, 1, "input")) ||
      failed(verifyStaticDim(*this, idsType, 1, "ids")) ||
      failed(verifyExpertsPerToken(*this, idsType, 1, "ids")))
    return failure();
  if (!areDimsCompatible(idsType.getDimSize(0), inputType.getDimSize(0)))
    return emitOpError() << "expects one row of ids per input row, got "
                         << idsType << " for " << inputType;
  if (rowsType.getElementType() != inputType.getElementType() ||
      rowsType.getDimSize(1) != inputType.getDimSize(1))
    return emitOpError() << "expects rows with the element type and hidden "
                            "size of input, got "
                         << rowsType << " for " << inputType;
  // One slot per row: a static count must be the rows' (the lowering
  // writes one per row).
  if (localIdsType.getDimSize(1) != 1 ||
      !isDynamicOrEqual(localIdsType.getDimSize(0), rowsType.getDimSize(0)))
    return emitOpError() << "expects local_ids of shape ["
                         << formatDim(rowsType.getDimSize(0))
                         << ", 1] (one local slot per row), got "
                         << localIdsType;
  int64_t numTokens = inputType.isDynamicDim(0) ? idsType.getDimSize(0)
                                                : inputType.getDimSize(0);
  return verifyReceivedRows(*this, rowsType, getOrigin().getType(),
                            placement.getRanks(), numTokens,
                            idsType.getDimSize(1));
}

LogicalResult EpCombineOp::verify() {
  RankedTensorType rowsType = getRows().getType();
  RankedTensorType weightsType = getWeights().getType();
  RankedTensorType resultType = getResult().getType();
  if (failed(verifyStaticDim(*this, rowsType, 1, "rows")) ||
      failed(verifyStaticDim(*this, weightsType, 1, "weights")) ||
      failed(verifyExpertsPerToken(*this, weightsType, 1, "weights")))
    return failure();
  if (resultType.getDimSize(1) != rowsType.getDimSize(1) ||
      !areDimsCompatible(resultType.getDimSize(0), weightsType.getDimSize(0)))
    return emitOpError() << "expects result of shape ["
                         << formatDim(weightsType.getDimSize(0)) << ", "
                         << rowsType.getDimSize(1) << "] (the weights' tokens, "
                         << "the rows' width), got " << resultType;
  int64_t k = weightsType.getDimSize(1);
  if (failed(verifyReceivedRows(*this, rowsType, getOrigin().getType(),
                                getRanks(), weightsType.getDimSize(0), k)))
    return failure();
  // The return must retrace the dispatch that produced the origins.
  if (auto dispatch = getOrigin().getDefiningOp<EpDispatchOp>()) {
    if (dispatch.getRealization() != getRealization() ||
        dispatch.getPlacement().getRanks() !=
            static_cast<int64_t>(getRanks()))
      return emitOpError()
             << "expects the realization and ranks of its dispatch, '"
             << stringifyEpRealization(dispatch.getRealization()) << "' on "
             << dispatch.getPlacement().getRanks() << " ranks, got '"
             << stringifyEpRealization(getRealization()) << "' on "
             << getRanks();
    if (dispatch.getIds().getType().getDimSize(1) != k)
      return emitOpError() << "expects weights with the dispatch's k = "
                           << dispatch.getIds().getType().getDimSize(1)
                           << " experts per token, got " << weightsType;
  }
  return success();
}
