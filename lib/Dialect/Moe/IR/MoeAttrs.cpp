//===- MoeAttrs.cpp - moe dialect attributes ------------------------------===//

#include "moe/Dialect/Moe/IR/MoeAttrs.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "moe/Dialect/Moe/IR/MoeEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/Moe/IR/MoeAttrs.cpp.inc"

void MoeDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe/Dialect/Moe/IR/MoeAttrs.cpp.inc"
      >();
}

LogicalResult TileAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               int64_t blockM, int64_t blockN, int64_t blockK,
                               int64_t stages, int64_t splitK, bool swapAB,
                               int64_t groupM) {
  if (blockM < 1 || blockN < 1 || blockK < 1)
    return emitError() << "tile sizes must be positive, got " << blockM << "x"
                       << blockN << "x" << blockK;
  if (stages < 1 || splitK < 1 || groupM < 1)
    return emitError() << "stages, split_k and group_m must be positive, got "
                       << stages << ", " << splitK << " and " << groupM;
  return success();
}

LogicalResult
QuantizationAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                         QuantFormat format, std::optional<ScaleLayout> scales,
                         int64_t group, bool zeroPoint) {
  bool weightOnly =
      format == QuantFormat::Int4Weight || format == QuantFormat::Int8Weight;
  if ((format == QuantFormat::Fp8 || format == QuantFormat::Int8) != scales.has_value())
    return emitError() << "'" << stringifyQuantFormat(format) << "' "
                       << (scales ? "takes no scale layout"
                                  : "needs a scale layout (scales = ...)");
  if (format == QuantFormat::Int8 && scales != ScaleLayout::PerTokenChannel)
    return emitError() << "'int8' supports only scales = per_token_channel, "
                          "got "
                       << stringifyScaleLayout(*scales);
  if (weightOnly != (group != 0))
    return emitError() << "'" << stringifyQuantFormat(format) << "' "
                       << (weightOnly ? "needs a group size (group = ...)"
                                      : "takes no group size");
  if (weightOnly && group != 32 && group != 64 && group != 128)
    return emitError() << "group size must be 32, 64 or 128, got " << group;
  if (zeroPoint && !weightOnly)
    return emitError() << "zero points apply to the weight-only integer "
                          "formats, not '"
                       << stringifyQuantFormat(format) << "'";
  return success();
}
