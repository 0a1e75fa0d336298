//===- CombineKernel.cpp - the GPU kernel finishing a combine -------------===//
//
// The combining grouped matmul (and the return of an expert-parallel
// exchange) adds weighted products atomically into an f32 [M, N] buffer;
// this kernel scales the sums and converts them to the result's element
// type, eight columns per thread where the width allows.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kFinalizeThreads = 256;
/// Columns per thread where the width allows: 32 bytes of f32 sums in, 16
/// of bf16 out. One f32 per thread streamed 44 MB in 37 µs (1.2 TB/s,
/// DeepSeek-V3 M = 1024 on an H200), a quarter of the bandwidth.
constexpr int64_t kFinalizeVectorColumns = 8;
} // namespace

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
  // Whole vectors where every row holds them: the sums and the output are
  // 16-byte aligned (the workspace's offsets, the C header's contract), so
  // W % 8 == 0 keeps every row's vectors aligned.
  int64_t columns =
      width % kFinalizeVectorColumns == 0 ? kFinalizeVectorColumns : 1;
  // Grid (M, ceil(width / columns_per_block)).
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(kFinalizeThreads)),
       b.getNamedAttr("columns_per_block",
                      b.getI64IntegerAttr(kFinalizeThreads * columns))});
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value sums = entry.getArgument(0), out = entry.getArgument(1);
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  Value row = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnBlock = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value column = arith::MulIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc,
          arith::MulIOp::create(b, loc, columnBlock, index(kFinalizeThreads)),
          tid),
      index(columns));
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        column, index(width));
  auto ifOp = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(ifOp.thenBlock());
  auto sumType = VectorType::get({columns}, b.getF32Type());
  auto outType = VectorType::get({columns}, elementType);
  constexpr unsigned kVectorAlignment = 16;
  Value sum = LLVM::LoadOp::create(
      b, loc, sumType, globalElementPointer(b, loc, sums, row, column, width),
      /*alignment=*/columns == 1 ? 4 : kVectorAlignment);
  if (scale != 1.0)
    sum = arith::MulFOp::create(
        b, loc, sum,
        arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(
                sumType, b.getF32FloatAttr(static_cast<float>(scale)))));
  Value narrow = sum;
  if (elementType != b.getF32Type())
    narrow = arith::TruncFOp::create(b, loc, outType, sum);
  int64_t outBytes = columns * outType.getElementTypeBitWidth() / 8;
  LLVM::StoreOp::create(
      b, loc, narrow, globalElementPointer(b, loc, out, row, column, width),
      /*alignment=*/std::min<int64_t>(outBytes, kVectorAlignment));
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
