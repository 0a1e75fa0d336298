//===- CombineKernel.cpp - the GPU kernel finishing a combine -------------===//
//
// The combining grouped matmul adds weighted products atomically into an f32
// [M, N] buffer; this kernel converts the sums to the result's element type.
//
//===----------------------------------------------------------------------===//

#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildCombineFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                      ExpertMatmulOp op, StringRef name) {
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  int64_t width = resultType.getDimSize(1);
  Type elementType = resultType.getElementType();
  OpBuilder::InsertionGuard guard(b);
  Location loc = op.getLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, width}, b.getF32Type()),
      MemRefType::get({dynamic, width}, elementType)};
  // One thread per element of a row; grid (M, ceil(width / 256)).
  constexpr int64_t kThreads = 256;
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kThreads))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value sums = entry.getArgument(0), out = entry.getArgument(1);
  Value row = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnBlock = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value column = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc, columnBlock,
                            arith::ConstantIndexOp::create(b, loc, kThreads)),
      tid);
  Value inRange = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::slt, column,
      arith::ConstantIndexOp::create(b, loc, width));
  auto ifOp = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(ifOp.thenBlock());
  Value sum = memref::LoadOp::create(b, loc, sums, ValueRange{row, column});
  Value narrow = sum;
  if (elementType != b.getF32Type())
    narrow = arith::TruncFOp::create(b, loc, elementType, sum);
  memref::StoreOp::create(b, loc, narrow, out, ValueRange{row, column});
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  return func;
}
