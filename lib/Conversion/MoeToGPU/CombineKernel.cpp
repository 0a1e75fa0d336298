//===- CombineKernel.cpp - the GPU kernel finishing a combine -------------===//
//
// The combining grouped matmul (and the return of an expert-parallel
// exchange) adds weighted products atomically into an f32 [M, N] buffer;
// this kernel scales the sums and converts them to the result's element
// type.
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
mlir::moe::buildFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                               Location loc, int64_t width, Type elementType,
                               double scale, StringRef name) {
  OpBuilder::InsertionGuard guard(b);
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
  if (scale != 1.0)
    sum = arith::MulFOp::create(
        b, loc, sum,
        arith::ConstantOp::create(
            b, loc, b.getF32FloatAttr(static_cast<float>(scale))));
  Value narrow = sum;
  if (elementType != b.getF32Type())
    narrow = arith::TruncFOp::create(b, loc, elementType, sum);
  memref::StoreOp::create(b, loc, narrow, out, ValueRange{row, column});
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildCombineFinalizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                      ExpertMatmulOp op, StringRef name) {
  // The matmul's epilogue already applied the routed scaling factor.
  auto resultType = cast<RankedTensorType>(op.getResult().getType());
  return buildFinalizeKernel(b, module, op.getLoc(), resultType.getDimSize(1),
                             resultType.getElementType(), /*scale=*/1.0,
                             name);
}
