//===- MoeGPUOps.cpp - moe_gpu host types and ops -------------------------===//

#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe_gpu;

#define GET_TYPEDEF_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUTypes.cpp.inc"

#define GET_OP_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.cpp.inc"

void MoeGPUDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "moe/Dialect/MoeGPU/IR/MoeGPUTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "moe/Dialect/MoeGPU/IR/MoeGPUOps.cpp.inc"
      >();
}

/// Checks that `type` is a row-major memref of whole-byte elements.
static LogicalResult verifyRowMajor(Operation *op, MemRefType type,
                                    StringRef what) {
  if (!type.getLayout().isIdentity())
    return op->emitOpError() << what << " must be row-major (identity "
                             << "layout), got " << type;
  if (!type.getElementType().isIntOrFloat() ||
      type.getElementTypeBitWidth() % 8 != 0)
    return op->emitOpError() << what << " must have whole-byte int or float "
                             << "elements, got " << type.getElementType();
  return success();
}

/// The workspace layout `symbol` names from `op`.
static FailureOr<WorkspaceLayoutOp>
lookupLayout(Operation *op, FlatSymbolRefAttr symbol,
             SymbolTableCollection &symbolTable) {
  auto layout =
      symbolTable.lookupNearestSymbolFrom<WorkspaceLayoutOp>(op, symbol);
  if (!layout)
    return op->emitOpError() << "refers to " << symbol
                             << ", which is not a moe_gpu.workspace_layout";
  return layout;
}

//===----------------------------------------------------------------------===//
// WorkspaceLayoutOp
//===----------------------------------------------------------------------===//

LogicalResult WorkspaceLayoutOp::verify() {
  ArrayAttr buffers = getBuffers();
  if (getNames().size() != buffers.size())
    return emitOpError() << "has " << buffers.size() << " buffers but "
                         << getNames().size() << " names";
  for (auto [index, attr] : llvm::enumerate(buffers)) {
    AffineMap map = cast<AffineMapAttr>(attr).getValue();
    if (map.getNumDims() != 0 || map.getNumSymbols() != 1 ||
        map.getNumResults() != 1)
      return emitOpError() << "buffer " << index
                           << " must be a map of one symbol (the token "
                           << "count) to one byte count, got "
                           << AffineMapAttr::get(map);
  }
  llvm::SmallDenseSet<int64_t> seen;
  for (int64_t counter : getInvalidIdCounters())
    if (counter < 0 || counter >= static_cast<int64_t>(buffers.size()) ||
        !seen.insert(counter).second)
      return emitOpError() << "invalid_id_counters: " << counter
                           << " is not a distinct buffer index in [0, "
                           << buffers.size() << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// WorkspaceBufferOp
//===----------------------------------------------------------------------===//

LogicalResult WorkspaceBufferOp::verify() {
  MemRefType type = getResult().getType();
  if (failed(verifyRowMajor(*this, type, "the buffer")))
    return failure();
  if (type.getRank() < 1 || type.getRank() > 3)
    return emitOpError() << "the buffer must have rank 1 to 3, got "
                         << type.getRank();
  if (static_cast<int64_t>(getSizes().size()) != type.getNumDynamicDims())
    return emitOpError() << "needs " << type.getNumDynamicDims()
                         << " sizes (the dynamic dimensions of " << type
                         << "), got " << getSizes().size();
  return success();
}

LogicalResult
WorkspaceBufferOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<WorkspaceLayoutOp> layout =
      lookupLayout(*this, getLayoutAttr(), symbolTable);
  if (failed(layout))
    return failure();
  int64_t count = layout->getBuffers().size();
  if (getIndex() >= count)
    return emitOpError() << "buffer index " << getIndex() << " is outside "
                         << getLayoutAttr() << ", which has " << count
                         << " buffers";
  return success();
}

//===----------------------------------------------------------------------===//
// WorkspaceBytesOp
//===----------------------------------------------------------------------===//

LogicalResult
WorkspaceBytesOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return lookupLayout(*this, getLayoutAttr(), symbolTable);
}

//===----------------------------------------------------------------------===//
// TensorMapOp
//===----------------------------------------------------------------------===//

LogicalResult TensorMapOp::verify() {
  MemRefType type = getSource().getType();
  if (failed(verifyRowMajor(*this, type, "the source")))
    return failure();
  if (type.getRank() < 2)
    return emitOpError() << "the source must have rank 2 or more, got "
                         << type;
  if (llvm::any_of(type.getShape().drop_front(), ShapedType::isDynamic))
    return emitOpError() << "only the source's leading dimension may be "
                            "dynamic, got "
                         << type;
  int64_t elementBytes = type.getElementTypeBitWidth() / 8;
  if (elementBytes != 1 && elementBytes != 2)
    return emitOpError() << "TMA elements must be 1 or 2 bytes, got "
                         << type.getElementType();
  ArrayRef<int64_t> box = getBox();
  if (box.size() != 2)
    return emitOpError() << "box must be [rows, cols], got " << box.size()
                         << " sizes";
  if (box[1] * elementBytes != 128)
    return emitOpError() << "a box row must be one 128-byte swizzle span: "
                         << box[1] << " elements of " << elementBytes
                         << " bytes";
  if (box[0] < 1 || box[0] > 256)
    return emitOpError() << "box rows must be in [1, 256], got " << box[0];
  return success();
}

//===----------------------------------------------------------------------===//
// LeadingSliceOp
//===----------------------------------------------------------------------===//

LogicalResult LeadingSliceOp::verify() {
  MemRefType source = getSource().getType(), result = getResult().getType();
  if (failed(verifyRowMajor(*this, source, "the source")) ||
      failed(verifyRowMajor(*this, result, "the result")))
    return failure();
  if (source.getRank() == 0)
    return emitOpError() << "expects a source of rank 1 or more, got "
                         << source;
  if (source.getElementType() != result.getElementType() ||
      source.getRank() != result.getRank() ||
      source.getShape().drop_front() != result.getShape().drop_front())
    return emitOpError() << "expects a result of the source's element type "
                            "and inner sizes, got "
                         << result << " from " << source;
  if (getOffset() > source.getDimSize(0) - result.getDimSize(0))
    return emitOpError() << "expects the slice inside the source: offset "
                         << getOffset() << " + " << result.getDimSize(0)
                         << " entries > " << source.getDimSize(0);
  return success();
}

//===----------------------------------------------------------------------===//
// ZeroOp, ReadCountOp
//===----------------------------------------------------------------------===//

LogicalResult ZeroOp::verify() {
  auto type = cast<MemRefType>(getBuffer().getType());
  if (failed(verifyRowMajor(*this, type, "the buffer")))
    return failure();
  // The runtime zeroes whole 4-byte words.
  if (type.getElementTypeBitWidth() != 32)
    return emitOpError() << "zeroes 4-byte words: the buffer's elements "
                         << "must be 32 bits, got " << type.getElementType();
  return success();
}

LogicalResult ReadCountOp::verify() {
  auto type = cast<MemRefType>(getCounter().getType());
  if (!type.hasStaticShape() || type.getNumElements() != 1)
    return emitOpError() << "the counter must hold one i32, got " << type;
  return success();
}

//===----------------------------------------------------------------------===//
// StoreGroupRankOp, AllGatherOp, ReduceScatterOp
//===----------------------------------------------------------------------===//

LogicalResult StoreGroupRankOp::verify() {
  auto type = cast<MemRefType>(getRank().getType());
  if (!type.hasStaticShape() || type.getNumElements() != 1)
    return emitOpError() << "the rank must be one i32, got " << type;
  return success();
}

/// Checks that `small` and `large` are row-major buffers of one element
/// type and trailing dimensions, where `large` has `ranks` times the rows of
/// `small` (when both are static).
static LogicalResult verifyRowBlocks(Operation *op, MemRefType small,
                                     StringRef smallName, MemRefType large,
                                     StringRef largeName, int64_t ranks) {
  if (failed(verifyRowMajor(op, small, smallName)) ||
      failed(verifyRowMajor(op, large, largeName)))
    return failure();
  if (small.getElementType() != large.getElementType())
    return op->emitOpError()
           << "expects " << smallName << " and " << largeName
           << " of one element type, got " << small.getElementType()
           << " and " << large.getElementType();
  // Row blocks need rows: a 0-D buffer has none.
  if (small.getRank() < 1 || small.getRank() != large.getRank() ||
      small.getShape().drop_front() != large.getShape().drop_front())
    return op->emitOpError()
           << "expects " << largeName << " to have the trailing dimensions of "
           << smallName << ", got " << large << " and " << small;
  int64_t rows = small.getDimSize(0), largeRows = large.getDimSize(0);
  if (!ShapedType::isDynamic(rows) && !ShapedType::isDynamic(largeRows) &&
      largeRows != ranks * rows)
    return op->emitOpError()
           << "expects " << largeName << " to have " << ranks << " x " << rows
           << " rows, got " << largeRows;
  return success();
}

LogicalResult AllGatherOp::verify() {
  return verifyRowBlocks(*this, getSend().getType(), "the send buffer",
                         getRecv().getType(), "the receive buffer",
                         getRanks());
}

LogicalResult ReduceScatterOp::verify() {
  return verifyRowBlocks(*this, getRecv().getType(), "the receive buffer",
                         getSend().getType(), "the send buffer", getRanks());
}
