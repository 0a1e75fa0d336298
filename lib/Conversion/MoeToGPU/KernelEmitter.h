//===- KernelEmitter.h - small builders of the MoE GPU kernels --*- C++ -*-===//
//
// Constants, casts, conditionals and loops as the kernel builders of this
// directory spell them (align over many blocks, the expert-parallel
// exchange).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_KERNELEMITTER_H
#define MOE_LIB_CONVERSION_MOETOGPU_KERNELEMITTER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir::moe {

constexpr int64_t kWarpSize = 32;

/// `value` combined by `combine` over each aligned group of `lanes` lanes
/// (a power of two, at most the warp) in a butterfly of XOR shuffles
/// (offsets lanes/2, ..., 1): the same result in every lane of a group.
inline Value warpButterfly(OpBuilder &b, Location loc, Value value,
                           function_ref<Value(Value, Value)> combine,
                           int32_t lanes = kWarpSize) {
  for (int32_t offset = lanes / 2; offset > 0; offset /= 2) {
    Value other = gpu::ShuffleOp::create(b, loc, value, offset, kWarpSize,
                                         gpu::ShuffleMode::XOR)
                      .getShuffleResult();
    value = combine(value, other);
  }
  return value;
}

/// The global address of `memref`'s element (`row`, `column`) of a
/// row-major [?, width] buffer, as an LLVM global pointer.
/// The inclusive prefix sum of the i32 `value` over the lanes of a warp up
/// to `lane` (index), by shuffles up.
inline Value warpInclusiveScan(OpBuilder &b, Location loc, Value value,
                               Value lane) {
  for (int32_t offset = 1; offset < kWarpSize; offset *= 2) {
    Value shifted = gpu::ShuffleOp::create(b, loc, value, offset, kWarpSize,
                                           gpu::ShuffleMode::UP)
                        .getShuffleResult();
    Value has =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, lane,
                              arith::ConstantIndexOp::create(b, loc, offset));
    value = arith::AddIOp::create(
        b, loc, value,
        arith::SelectOp::create(
            b, loc, has, shifted,
            arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0))));
  }
  return value;
}

inline Value globalElementPointer(OpBuilder &b, Location loc, Value memref,
                                  Value row, Value column, int64_t width) {
  auto type = cast<MemRefType>(memref.getType());
  int64_t elementBytes = type.getElementTypeBitWidth() / 8;
  auto metadata = memref::ExtractStridedMetadataOp::create(b, loc, memref);
  Value element = arith::AddIOp::create(
      b, loc, metadata.getOffset(),
      arith::AddIOp::create(
          b, loc,
          arith::MulIOp::create(b, loc, row,
                                arith::ConstantIndexOp::create(b, loc, width)),
          column));
  Value bytes = arith::MulIOp::create(
      b, loc, element, arith::ConstantIndexOp::create(b, loc, elementBytes));
  Value address = arith::AddIOp::create(
      b, loc, memref::ExtractAlignedPointerAsIndexOp::create(b, loc, memref),
      bytes);
  constexpr unsigned kGlobalAddressSpace = 1;
  return LLVM::IntToPtrOp::create(
      b, loc, LLVM::LLVMPointerType::get(b.getContext(), kGlobalAddressSpace),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), address).getResult());
}

/// Small builders at `b`'s insertion point, at `loc`.
struct KernelEmitter {
  OpBuilder &b;
  Location loc;

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value i32(int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
  }
  Value toIndex(Value value) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), value);
  }
  Value toI32(Value value) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), value);
  }
  Value cmp(arith::CmpIPredicate predicate, Value lhs, Value rhs) {
    return arith::CmpIOp::create(b, loc, predicate, lhs, rhs);
  }
  Value negate(Value condition) {
    return arith::XOrIOp::create(
        b, loc, condition,
        arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
  }
  void ifThen(Value condition, function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, loc, condition, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    body();
  }
  /// `for (i = first; i < bound; i += step) body(i)`.
  void forEach(Value first, Value bound, Value step,
               function_ref<void(Value)> body) {
    scf::ForOp::create(b, loc, first, bound, step, ValueRange{},
                       [&](OpBuilder &, Location, Value i, ValueRange) {
                         body(i);
                         scf::YieldOp::create(b, loc);
                       });
  }
  /// Adds one to the i32 word `counter[0]`.
  void count(Value counter) {
    memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, i32(1),
                                counter, ValueRange{index(0)});
  }
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_KERNELEMITTER_H
