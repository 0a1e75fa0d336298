//===- ExpertMatmulSpec.h - editable description of expert_matmul -*- C++ -*-//
//
// The fusion and alignment patterns rebuild moe.expert_matmul ops with one
// more thing folded in. This struct holds every operand and attribute of one,
// so that a pattern reads a producer, changes a field or two, and builds.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_DIALECT_MOE_TRANSFORMS_EXPERTMATMULSPEC_H
#define MOE_LIB_DIALECT_MOE_TRANSFORMS_EXPERTMATMULSPEC_H

#include "moe/Dialect/Moe/IR/MoeOps.h"

namespace mlir::moe {

struct ExpertMatmulSpec {
  Value input, weights, slots, offsets, blockExperts, numPadded, routingWeights;
  Value accumulate;
  Value inputScales, weightScales, weightZeros, bias;
  int64_t k = 1;
  bool gather = false;
  bool unpermute = false;
  ActivationKindAttr activation;
  bool gateUpInterleaved = false;
  FloatAttr alpha, limit, routedScalingFactor;
  IntegerAttr blockM;
  QuantizationAttr quantization;
  TileAttr tile;
  /// Attributes of other dialects the op carries (a target's kernel
  /// configuration): a rebuilt op keeps them.
  SmallVector<NamedAttribute> discardable;

  /// Describes `op`.
  static ExpertMatmulSpec of(ExpertMatmulOp op) {
    ExpertMatmulSpec spec;
    spec.input = op.getInput();
    spec.weights = op.getWeights();
    spec.slots = op.getSlots();
    spec.offsets = op.getOffsets();
    spec.blockExperts = op.getBlockExperts();
    spec.numPadded = op.getNumPadded();
    spec.routingWeights = op.getRoutingWeights();
    spec.accumulate = op.getAccumulate();
    spec.inputScales = op.getInputScales();
    spec.weightScales = op.getWeightScales();
    spec.weightZeros = op.getWeightZeros();
    spec.bias = op.getBias();
    spec.k = op.getK();
    spec.gather = op.getGather();
    spec.unpermute = op.getUnpermute();
    spec.activation = op.getActivationAttr();
    spec.gateUpInterleaved = op.getGateUpInterleaved();
    spec.alpha = op.getAlphaAttr();
    spec.limit = op.getLimitAttr();
    spec.routedScalingFactor = op.getRoutedScalingFactorAttr();
    spec.blockM = op.getBlockMAttr();
    spec.quantization = op.getQuantizationAttr();
    spec.tile = op.getTileAttr();
    spec.discardable = llvm::to_vector(op->getDiscardableAttrs());
    return spec;
  }

  /// Describes a plain grouped matmul: offsets form, rows in, rows out.
  static ExpertMatmulSpec of(GroupedMatmulOp op) {
    ExpertMatmulSpec spec;
    spec.input = op.getRows();
    spec.weights = op.getWeights();
    spec.offsets = op.getOffsets();
    spec.inputScales = op.getInputScales();
    spec.weightScales = op.getWeightScales();
    spec.weightZeros = op.getWeightZeros();
    spec.bias = op.getBias();
    spec.quantization = op.getQuantizationAttr();
    spec.tile = op.getTileAttr();
    return spec;
  }

  /// Describes the producer of `value` if it is a grouped matmul or an
  /// expert matmul in the offsets form that writes rows (no scatter).
  static std::optional<ExpertMatmulSpec> ofRowsProducer(Value value) {
    if (auto gmm = value.getDefiningOp<GroupedMatmulOp>())
      return of(gmm);
    auto op = value.getDefiningOp<ExpertMatmulOp>();
    if (!op || op.isAligned() || op.getUnpermute() || op.isCombine())
      return std::nullopt;
    return of(op);
  }

  ExpertMatmulOp create(OpBuilder &b, Location loc, Type resultType) const {
    MLIRContext *context = b.getContext();
    auto unit = [&](bool flag) {
      return flag ? UnitAttr::get(context) : UnitAttr();
    };
    auto op = ExpertMatmulOp::create(
        b, loc, resultType, input, weights, slots, offsets, blockExperts,
        numPadded, routingWeights, accumulate, inputScales, weightScales,
        weightZeros, bias, b.getI64IntegerAttr(k), unit(gather),
        unit(unpermute), activation, unit(gateUpInterleaved), alpha, limit,
        routedScalingFactor, blockM,
        quantization ? quantization
                     : QuantizationAttr::get(context, QuantFormat::None),
        tile);
    for (NamedAttribute attr : discardable)
      op->setAttr(attr.getName(), attr.getValue());
    return op;
  }
};

} // namespace mlir::moe

#endif // MOE_LIB_DIALECT_MOE_TRANSFORMS_EXPERTMATMULSPEC_H
