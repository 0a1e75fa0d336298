//===- ExpertMatmulKernel.cpp - the Hopper kernel of moe.expert_matmul ----===//
//
// Builds the sm_90a kernel of an aligned, gathering moe.expert_matmul that
// writes rows: for each slot block of 64 and column tile of 128, one
// warpgroup runs a K loop in which TMA brings a 128x64 tile of the expert's
// [N, K] weights, cp.async gathers the block's 64 token rows into the
// 128B-swizzled layout, and four K-major wgmma accumulate in f32. The
// structure was checked on an H200 first (runtime/test/gen_grouped_gemm.py).
//
//===----------------------------------------------------------------------===//

#include "ExpertMatmulKernel.h"

#include "moe/Conversion/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kBlockM = 64, kBlockN = 128, kBlockK = 64;
constexpr int64_t kThreads = 128;
/// Shared memory: the A tile [64, 64] then the B tile [128, 64], bf16.
constexpr int64_t kTileABytes = kBlockM * kBlockK * 2;
constexpr int64_t kTileBBytes = kBlockN * kBlockK * 2;
/// Descriptor bits of a K-major, 128B-swizzled tile: stride byte offset
/// 1024 (8 rows of 128 bytes) at bit 32, leading byte offset 1 at bit 16
/// (unused when swizzled), swizzle mode 1 (128B) at bit 62.
constexpr uint64_t kDescriptorBits =
    (uint64_t(1) << 62) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 16);

/// Builds the body; holds the values the steps share.
class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, int64_t k, int64_t n, int64_t kDim,
                bool gated)
      : b(b), loc(loc), topK(k), outFeatures(n), inFeatures(kDim),
        gated(gated) {}

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value i64(int64_t value) {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
  }

  void build(gpu::GPUFuncOp func, memref::GlobalOp tiles);

private:
  Value sharedAddress(Value view);
  Value descriptor(Value address);
  void gatherRows(Value kOffset);
  Value wgmmaStep(Value accumulator);
  void storeRows(Value accumulator);

  OpBuilder &b;
  Location loc;
  int64_t topK, outFeatures, inFeatures;
  /// silu_and_mul epilogue: the 128 columns of a tile are 64 gate columns
  /// and the 64 matching up columns, and the kernel stores 64 activated ones.
  bool gated;
  MLIRContext *context() { return b.getContext(); }
  /// Output columns one thread block produces.
  int64_t outputTile() const { return gated ? kBlockN / 2 : kBlockN; }

  // Arguments and per-thread values.
  Value x, slots, blocks, padded, out;
  Value tid, firstSlot, paddedCount, assignments, tileColumn, tileA, tileB;
  Value barriers, weightsMap, leader;
  Value descriptorA, descriptorB;
  SmallVector<Value> chunkRow, dstColumn, chunkColumn, srcRow, srcElements;
  SmallVector<Value> tileBHalves;
  LLVM::LLVMStructType accumulatorType;
};
} // namespace

Value KernelBuilder::sharedAddress(Value view) {
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, view);
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), pointer);
}

Value KernelBuilder::descriptor(Value address) {
  Value masked = arith::AndIOp::create(b, loc, address, i64(0x3FFFF));
  Value base = arith::ShRUIOp::create(b, loc, masked, i64(4));
  return arith::OrIOp::create(b, loc, base,
                              i64(static_cast<int64_t>(kDescriptorBits)));
}

void KernelBuilder::gatherRows(Value kOffset) {
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(context());
  SmallVector<Value> tokens;
  for (size_t i = 0; i < chunkRow.size(); ++i) {
    Value column = arith::AddIOp::create(b, loc, kOffset, chunkColumn[i]);
    tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
        b, loc, tokenType, tileA, ValueRange{chunkRow[i], dstColumn[i]}, x,
        ValueRange{srcRow[i], column}, b.getIndexAttr(8), srcElements[i],
        UnitAttr()));
  }
  Value group =
      nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType, tokens);
  nvgpu::DeviceAsyncWaitOp::create(b, loc, group, IntegerAttr());
  // cp.async wrote through the generic proxy; wgmma reads through the async
  // one.
  NVVM::FenceProxyOp::create(
      b, loc,
      NVVM::ProxyKindAttr::get(context(), NVVM::ProxyKind::async_shared),
      NVVM::SharedSpaceAttr::get(context(), NVVM::SharedSpace::shared_cta));
  gpu::BarrierOp::create(b, loc);
}

Value KernelBuilder::wgmmaStep(Value accumulator) {
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  auto shape = NVVM::MMAShapeAttr::get(context(), 64, kBlockN, 16);
  for (int64_t step = 0; step < kBlockK / 16; ++step) {
    // +32 bytes per k16 step in both K-major operands.
    Value offset = i64(2 * step);
    Value stepA = arith::AddIOp::create(b, loc, descriptorA, offset);
    Value stepB = arith::AddIOp::create(b, loc, descriptorB, offset);
    accumulator = NVVM::WgmmaMmaAsyncOp::create(
        b, loc, accumulatorType, accumulator, stepA, stepB, shape,
        NVVM::WGMMATypes::bf16, NVVM::WGMMATypes::bf16, NVVM::WGMMATypes::f32,
        NVVM::WGMMAScaleOut::one, NVVM::WGMMAScaleIn::one,
        NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row, NVVM::MMALayout::col,
        NVVM::MMAIntOverflowAttr());
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
  return accumulator;
}

void KernelBuilder::storeRows(Value accumulator) {
  // The m64nNk16 f32 fragment: thread t of the warpgroup holds, for every
  // 8-column group g, rows 16·(t/32) + (t%32)/4 (+8) and columns
  // 8g + 2·(t%4) (+1).
  Value warp = arith::DivUIOp::create(b, loc, tid, index(32));
  Value lane = arith::RemUIOp::create(b, loc, tid, index(32));
  Value row0 = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, warp, index(16)),
      arith::DivUIOp::create(b, loc, lane, index(4)));
  Value laneColumn = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(
          b, loc, arith::RemUIOp::create(b, loc, lane, index(4)), index(2)),
      tileColumn);
  for (int64_t half = 0; half < 2; ++half) {
    Value row = arith::AddIOp::create(b, loc, row0, index(8 * half));
    Value slot = arith::AddIOp::create(b, loc, firstSlot, row);
    Value assignment = arith::IndexCastOp::create(
        b, loc, b.getIndexType(),
        memref::LoadOp::create(b, loc, slots, ValueRange{slot}));
    Value scheduled = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, slot,
                              paddedCount),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                              assignments));
    auto ifOp = scf::IfOp::create(b, loc, scheduled, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    for (int64_t group = 0; group < outputTile() / 8; ++group)
      for (int64_t pair = 0; pair < 2; ++pair) {
        int64_t reg = 4 * group + 2 * half + pair;
        Value value = LLVM::ExtractValueOp::create(b, loc, accumulator, reg);
        if (gated) {
          // The up column of this gate column sits 64 columns, 8 groups of
          // registers, further: in the same thread.
          Value up = LLVM::ExtractValueOp::create(b, loc, accumulator,
                                                  reg + 4 * (kBlockN / 16));
          value = buildGatedActivation(b, loc, ActivationKind::SiluAndMul,
                                       value, up, /*alpha=*/0.0,
                                       /*limit=*/0.0);
        }
        Value narrow = arith::TruncFOp::create(b, loc, b.getBF16Type(), value);
        Value column =
            arith::AddIOp::create(b, loc, laneColumn, index(8 * group + pair));
        memref::StoreOp::create(b, loc, narrow, out, ValueRange{slot, column});
      }
  }
}

void KernelBuilder::build(gpu::GPUFuncOp func, memref::GlobalOp tiles) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  x = entry.getArgument(0);
  slots = entry.getArgument(1);
  blocks = entry.getArgument(2);
  padded = entry.getArgument(3);
  Value weightsPointer = entry.getArgument(4);
  out = entry.getArgument(5);

  auto workgroup =
      gpu::AddressSpaceAttr::get(context(), gpu::AddressSpace::Workgroup);
  auto bf16 = b.getBF16Type();
  auto tileAType = MemRefType::get({kBlockM, kBlockK}, bf16,
                                   MemRefLayoutAttrInterface(), workgroup);
  auto tileBType = MemRefType::get({kBlockN, kBlockK}, bf16,
                                   MemRefLayoutAttrInterface(), workgroup);
  // One TMA box is the whole B tile, or, gated, one of its 64-row halves.
  auto boxType = MemRefType::get({gated ? kBlockN / 2 : kBlockN, kBlockK}, bf16,
                                 MemRefLayoutAttrInterface(), workgroup);
  auto mapType = nvgpu::TensorMapDescriptorType::get(
      context(), boxType, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
      nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  auto barrierType = nvgpu::MBarrierGroupType::get(context(), workgroup);
  accumulatorType = LLVM::LLVMStructType::getLiteral(
      context(), SmallVector<Type>(64, b.getF32Type()));

  // The descriptor travels as a pointer: a tensor-map type in a gpu.func
  // signature breaks the NVVM pipeline.
  weightsMap =
      UnrealizedConversionCastOp::create(b, loc, mapType, weightsPointer)
          .getResult(0);
  Value smem =
      memref::GetGlobalOp::create(b, loc, tiles.getType(), tiles.getSymName());
  tileA =
      memref::ViewOp::create(b, loc, tileAType, smem, index(0), ValueRange{});
  tileB = memref::ViewOp::create(b, loc, tileBType, smem, index(kTileABytes),
                                 ValueRange{});
  if (gated)
    for (int64_t half = 0; half < 2; ++half)
      tileBHalves.push_back(memref::ViewOp::create(
          b, loc, boxType, smem, index(kTileABytes + half * kTileBBytes / 2),
          ValueRange{}));
  barriers = nvgpu::MBarrierCreateOp::create(b, loc, barrierType);
  tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value columnTile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  firstSlot = arith::MulIOp::create(b, loc, block, index(kBlockM));
  tileColumn = arith::MulIOp::create(b, loc, columnTile, index(outputTile()));
  paddedCount = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, padded, ValueRange{index(0)}));
  assignments = arith::MulIOp::create(
      b, loc, memref::DimOp::create(b, loc, x, 0), index(topK));

  // Blocks past the padded count (the grid is sized for the upper bound)
  // and blocks of another device's experts exit at once.
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                        firstSlot, paddedCount);
  auto rangeIf = scf::IfOp::create(b, loc, inRange, /*withElse=*/false);
  b.setInsertionPointToStart(rangeIf.thenBlock());
  Value expert = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, blocks, ValueRange{block}));
  Value local = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, expert,
                                      index(0));
  auto localIf = scf::IfOp::create(b, loc, local, /*withElse=*/false);
  b.setInsertionPointToStart(localIf.thenBlock());

  leader =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, index(0));
  {
    auto ifOp = scf::IfOp::create(b, loc, leader, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    nvgpu::MBarrierInitOp::create(b, loc, barriers, index(1), index(0),
                                  Value());
  }
  gpu::BarrierOp::create(b, loc);
  Value weightsRow = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, expert, index(outFeatures)),
      tileColumn);

  // Each thread gathers 4 of the 64 x 8 chunks of 16 bytes; chunk c of row r
  // lands at chunk c xor (r mod 8): the 128B swizzle TMA would produce.
  for (int64_t i = 0; i < kBlockM * 8 / kThreads; ++i) {
    Value chunk = arith::AddIOp::create(b, loc, tid, index(kThreads * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(8));
    Value column = arith::RemUIOp::create(b, loc, chunk, index(8));
    Value slot = arith::AddIOp::create(b, loc, firstSlot, row);
    Value assignment = arith::IndexCastOp::create(
        b, loc, b.getIndexType(),
        memref::LoadOp::create(b, loc, slots, ValueRange{slot}));
    Value real = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       assignment, assignments);
    Value token = arith::DivUIOp::create(b, loc, assignment, index(topK));
    chunkRow.push_back(row);
    srcRow.push_back(arith::SelectOp::create(b, loc, real, token, index(0)));
    // A padding slot copies nothing and zero-fills its chunk.
    srcElements.push_back(
        arith::SelectOp::create(b, loc, real, index(8), index(0)));
    Value swizzled = arith::XOrIOp::create(
        b, loc, column, arith::RemUIOp::create(b, loc, row, index(8)));
    dstColumn.push_back(arith::MulIOp::create(b, loc, swizzled, index(8)));
    chunkColumn.push_back(arith::MulIOp::create(b, loc, column, index(8)));
  }

  descriptorA = descriptor(sharedAddress(tileA));
  descriptorB = descriptor(sharedAddress(tileB));
  Value accumulator = LLVM::ZeroOp::create(b, loc, accumulatorType);
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0));
  for (int64_t reg = 0; reg < 64; ++reg)
    accumulator = LLVM::InsertValueOp::create(b, loc, accumulator, zero, reg);

  Value falseValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
  Value trueValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(inFeatures / kBlockK), index(1),
      ValueRange{accumulator, falseValue},
      [&](OpBuilder &, Location, Value step, ValueRange args) {
        Value kOffset = arith::MulIOp::create(b, loc, step, index(kBlockK));
        {
          auto ifOp = scf::IfOp::create(b, loc, leader, /*withElse=*/false);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(ifOp.thenBlock());
          if (!gated) {
            nvgpu::TmaAsyncLoadOp::create(b, loc, tileB, barriers, weightsMap,
                                          ValueRange{kOffset, weightsRow},
                                          index(0), Value(), Value());
          } else {
            // Gate rows, then the matching up rows N/2 further down.
            Value upRow = arith::AddIOp::create(b, loc, weightsRow,
                                                index(outFeatures / 2));
            SmallVector<Value, 2> rows = {weightsRow, upRow};
            for (auto [half, row] : llvm::enumerate(rows))
              nvgpu::TmaAsyncLoadOp::create(
                  b, loc, tileBHalves[half], barriers, weightsMap,
                  ValueRange{kOffset, row}, index(0), Value(), Value());
          }
          nvgpu::MBarrierArriveExpectTxOp::create(
              b, loc, barriers, index(kTileBBytes), index(0), Value());
        }
        gatherRows(kOffset);
        nvgpu::MBarrierTryWaitParityOp::create(b, loc, barriers, args[1],
                                               index(10000000), index(0));
        Value result = wgmmaStep(args[0]);
        // The next step overwrites both tiles.
        gpu::BarrierOp::create(b, loc);
        Value nextParity = arith::XOrIOp::create(b, loc, args[1], trueValue);
        scf::YieldOp::create(b, loc, ValueRange{result, nextParity});
      });
  storeRows(loop.getResult(0));
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildExpertMatmulKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                   ExpertMatmulOp op, StringRef name) {
  auto weightsType = op.getWeights().getType();
  int64_t outFeatures = weightsType.getDimSize(1);
  int64_t inFeatures = weightsType.getDimSize(2);
  auto bf16 = b.getBF16Type();
  if (!op.isAligned() || !op.getGather() || op.getUnpermute() || op.isCombine())
    return op.emitRemark("no GPU kernel yet: only aligned, gathering "
                         "expert_matmul ops that write rows are covered");
  std::optional<ActivationKind> activation = op.getActivation();
  if (activation && *activation != ActivationKind::SiluAndMul)
    return op.emitRemark("no GPU kernel yet for the ")
           << stringifyActivationKind(*activation) << " epilogue";
  bool gated = activation.has_value();
  if (op.getInput().getType().getElementType() != bf16 ||
      weightsType.getElementType() != bf16 ||
      cast<RankedTensorType>(op.getResult().getType()).getElementType() !=
          bf16 ||
      op.getBlockM() != kBlockM || inFeatures % kBlockK != 0 ||
      outFeatures % (gated ? 2 * kBlockN : kBlockN) != 0)
    return op.emitRemark("no GPU kernel yet: needs bf16, block_m 64, K a "
                         "multiple of 64 and N a multiple of 128");

  OpBuilder::InsertionGuard guard(b);
  MLIRContext *context = b.getContext();
  Location loc = op.getLoc();
  auto workgroup =
      gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup);
  b.setInsertionPointToStart(module.getBody());
  std::string tilesName = (name + "_tiles").str();
  auto tiles = memref::GlobalOp::create(
      b, loc, tilesName, b.getStringAttr("private"),
      MemRefType::get({kTileABytes + kTileBBytes}, b.getI8Type(),
                      MemRefLayoutAttrInterface(), workgroup),
      Attribute(), /*constant=*/false, b.getI64IntegerAttr(1024));

  auto dynamic = ShapedType::kDynamic;
  auto i32 = b.getI32Type();
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, inFeatures}, bf16),
      MemRefType::get({dynamic}, i32),
      MemRefType::get({dynamic}, i32),
      MemRefType::get({1}, i32),
      LLVM::LLVMPointerType::get(context),
      MemRefType::get({dynamic, op.getOutputWidth()}, bf16)};
  auto func =
      gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(arguments, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  KernelBuilder(b, loc, op.getK(), outFeatures, inFeatures, gated)
      .build(func, tiles);
  return func;
}
