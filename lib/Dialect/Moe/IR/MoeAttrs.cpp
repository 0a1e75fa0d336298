//===- MoeAttrs.cpp - moe dialect attributes ------------------------------===//

#include "moe/Dialect/Moe/IR/MoeAttrs.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"

#include "llvm/ADT/DenseSet.h"
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
                         int64_t group, bool zeroPoint,
                         std::optional<PackedWeightLayout> packed) {
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
  // wgmma_a_4bit reorders pairs of 4-bit codes.
  if (packed && format != QuantFormat::Int4Weight &&
      format != QuantFormat::Mxfp4)
    return emitError() << "packed = " << stringifyPackedWeightLayout(*packed)
                       << " orders 4-bit codes (int4_weight, mxfp4), not '"
                       << stringifyQuantFormat(format) << "'";
  return success();
}

//===----------------------------------------------------------------------===//
// PlacementAttr
//===----------------------------------------------------------------------===//

/// `<ranks = R, experts = E, slots = [[e, ...], ...]>`.
Attribute PlacementAttr::parse(AsmParser &parser, Type) {
  int64_t ranks = 0, experts = 0;
  SmallVector<DenseI64ArrayAttr> slots;
  auto parseRank = [&]() -> ParseResult {
    SmallVector<int64_t> rankSlots;
    if (parser.parseCommaSeparatedList(
            AsmParser::Delimiter::Square,
            [&]() { return parser.parseInteger(rankSlots.emplace_back()); }))
      return failure();
    slots.push_back(DenseI64ArrayAttr::get(parser.getContext(), rankSlots));
    return success();
  };
  if (parser.parseLess() || parser.parseKeyword("ranks") ||
      parser.parseEqual() || parser.parseInteger(ranks) ||
      parser.parseComma() || parser.parseKeyword("experts") ||
      parser.parseEqual() || parser.parseInteger(experts) ||
      parser.parseComma() || parser.parseKeyword("slots") ||
      parser.parseEqual() ||
      parser.parseCommaSeparatedList(AsmParser::Delimiter::Square,
                                     parseRank) ||
      parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(parser.getNameLoc()); },
                    parser.getContext(), ranks, experts,
                    ArrayRef<DenseI64ArrayAttr>(slots));
}

void PlacementAttr::print(AsmPrinter &printer) const {
  printer << "<ranks = " << getRanks() << ", experts = " << getExperts()
          << ", slots = [";
  llvm::interleaveComma(getSlots(), printer, [&](DenseI64ArrayAttr rank) {
    printer << "[";
    llvm::interleaveComma(rank.asArrayRef(), printer);
    printer << "]";
  });
  printer << "]>";
}

LogicalResult
PlacementAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                      int64_t ranks, int64_t experts,
                      ArrayRef<DenseI64ArrayAttr> slots) {
  if (ranks < 1 || experts < 1)
    return emitError() << "expects at least one rank and one expert, got "
                       << ranks << " ranks and " << experts << " experts";
  if (static_cast<int64_t>(slots.size()) != ranks)
    return emitError() << "expects the slots of " << ranks
                       << " ranks, got " << slots.size();
  int64_t perRank = slots.front().size();
  if (perRank < 1)
    return emitError() << "expects at least one slot per rank, rank 0 has none";
  SmallVector<bool> placed(experts, false);
  for (auto [rank, rankSlots] : llvm::enumerate(slots)) {
    if (static_cast<int64_t>(rankSlots.size()) != perRank)
      return emitError() << "expects " << perRank
                         << " slots on every rank (as on rank 0), rank "
                         << rank << " has " << rankSlots.size();
    llvm::SmallDenseSet<int64_t> seen;
    for (int64_t expert : rankSlots.asArrayRef()) {
      if (expert < 0 || expert >= experts)
        return emitError() << "expects experts in [0, " << experts
                           << "), rank " << rank << " holds " << expert;
      if (!seen.insert(expert).second)
        return emitError() << "expects an expert at most once per rank, rank "
                           << rank << " holds expert " << expert << " twice";
      placed[expert] = true;
    }
  }
  for (auto [expert, isPlaced] : llvm::enumerate(placed))
    if (!isPlaced)
      return emitError() << "expects every expert on some rank, expert "
                         << expert << " is on none";
  return success();
}

std::pair<int64_t, int64_t>
PlacementAttr::getServingSlot(int64_t expert, int64_t source) const {
  SmallVector<std::pair<int64_t, int64_t>> replicas;
  for (auto [rank, rankSlots] : llvm::enumerate(getSlots()))
    for (auto [slot, held] : llvm::enumerate(rankSlots.asArrayRef()))
      if (held == expert)
        replicas.emplace_back(rank, slot);
  assert(!replicas.empty() && "the verifier places every expert");
  return replicas[source % replicas.size()];
}

PlacementAttr PlacementAttr::getContiguous(MLIRContext *context, int64_t ranks,
                                           int64_t experts) {
  int64_t perRank = llvm::divideCeil(experts, ranks);
  SmallVector<DenseI64ArrayAttr> slots;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    SmallVector<int64_t> rankSlots;
    for (int64_t slot = 0; slot < perRank; ++slot)
      rankSlots.push_back((rank * perRank + slot) % experts);
    slots.push_back(DenseI64ArrayAttr::get(context, rankSlots));
  }
  return get(context, ranks, experts, ArrayRef<DenseI64ArrayAttr>(slots));
}
