//===- GateLogitsKernel.cpp - the router logits x · W_gateᵀ on the GPU ----===//
//
// The logits of moe.router, and the first of moe.route's two kernels, as a
// grid of (expert chunk, token tile) blocks. A warp owns one expert and a
// tile of tokens: its lanes walk H with 16-byte loads of the gate row and of
// each token's row, keep one f32 vector sum per token, and add the sums
// across the warp by butterfly shuffles. The gate row is read once per
// token tile, and at decode the gate streams from many SMs at once, where a
// block per token read the whole gate from one SM.
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
constexpr int64_t kWarpSize = 32;
/// Tokens of a block: a gate row read from memory serves this many rows of
/// x, and a lane holds this many vector sums.
constexpr int64_t kTokensPerBlock = 8;
/// Warps (experts) of a block, fewer with fewer experts. Four rather than
/// eight spreads a decode step's few blocks over more SMs.
constexpr int64_t kMaxExpertsPerBlock = 4;
/// Independent 16-byte gate loads a lane has in flight per step: at decode
/// the stream's speed is the bytes in flight.
constexpr int64_t kGateLoadsInFlight = 4;
constexpr int64_t kLoadBytes = 16;

int64_t bytesOf(Type type) { return type.getIntOrFloatBitWidth() / 8; }

/// What the kernel computes and how a lane steps along H.
struct GateLogitsShape {
  int64_t numExperts, hidden;
  Type inputElement, gateElement;
  bool bias;

  int64_t expertsPerBlock() const {
    return std::min(kMaxExpertsPerBlock, numExperts);
  }
  int64_t threads() const { return expertsPerBlock() * kWarpSize; }
  /// Elements a lane loads at once from each row: 16 bytes of the wider
  /// type, or one element where H leaves rows unaligned to that.
  int64_t vectorWidth() const {
    int64_t width =
        kLoadBytes / std::max(bytesOf(inputElement), bytesOf(gateElement));
    return hidden % width == 0 ? width : 1;
  }
};

/// Builds the kernel body.
class GateLogitsBuilder : public KernelEmitter {
public:
  GateLogitsBuilder(OpBuilder &b, Location loc, const GateLogitsShape &shape)
      : KernelEmitter{b, loc}, shape(shape),
        width(shape.vectorWidth()),
        sumType(VectorType::get({width}, b.getF32Type())) {}
  void build(gpu::GPUFuncOp func);

private:
  /// The first element's address of `memref` as an i64.
  Value baseAddress(Value memref);
  /// `width` elements of the row-major [rows, H] array at `base`, row
  /// `row`, from column `column`, as f32.
  Value loadRow(Value base, Type element, Value row, Value column);
  /// Adds x[rows[t], h...] · gate[expert, h...] into `sums[t]` over h =
  /// first, first + step, ... < bound, `unroll` columns of `width` elements
  /// `kWarpSize · width` apart per step.
  SmallVector<Value> accumulate(Value first, int64_t bound, int64_t unroll,
                                ArrayRef<Value> sums);
  /// The warp's sum of `sum`'s elements over its lanes, in every lane.
  Value reduceAcrossWarp(Value sum);

  const GateLogitsShape &shape;
  int64_t width;
  VectorType sumType;
  Value xBase, gateBase, expert;
  SmallVector<Value> rows;
};
} // namespace

Value GateLogitsBuilder::baseAddress(Value memref) {
  auto metadata = memref::ExtractStridedMetadataOp::create(b, loc, memref);
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  Value pointer = arith::IndexCastOp::create(
      b, loc, b.getI64Type(),
      memref::ExtractAlignedPointerAsIndexOp::create(b, loc, memref));
  Value offset = arith::IndexCastOp::create(
      b, loc, b.getI64Type(),
      arith::MulIOp::create(b, loc, metadata.getOffset(),
                            index(bytesOf(element))));
  return arith::AddIOp::create(b, loc, pointer, offset);
}

Value GateLogitsBuilder::loadRow(Value base, Type element, Value row,
                                 Value column) {
  Value elementIndex = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, row, index(shape.hidden)),
      column);
  Value address = arith::AddIOp::create(
      b, loc, base,
      arith::IndexCastOp::create(
          b, loc, b.getI64Type(),
          arith::MulIOp::create(b, loc, elementIndex,
                                index(bytesOf(element)))));
  // Both operands live in device memory: a global pointer makes the load
  // ld.global, and H % width == 0 keeps it aligned to its size.
  constexpr unsigned kGlobalAddressSpace = 1;
  Value pointer = LLVM::IntToPtrOp::create(
      b, loc, LLVM::LLVMPointerType::get(b.getContext(), kGlobalAddressSpace),
      address);
  auto loadedType = VectorType::get({width}, element);
  Value loaded = LLVM::LoadOp::create(b, loc, loadedType, pointer,
                                      /*alignment=*/width * bytesOf(element));
  if (element.isF32())
    return loaded;
  return arith::ExtFOp::create(b, loc, sumType, loaded);
}

SmallVector<Value> GateLogitsBuilder::accumulate(Value first, int64_t bound,
                                                 int64_t unroll,
                                                 ArrayRef<Value> sums) {
  int64_t columnStride = kWarpSize * width;
  auto loop = scf::ForOp::create(
      b, loc, first, index(bound), index(unroll * columnStride), sums,
      [&](OpBuilder &, Location, Value h, ValueRange carried) {
        // The gate columns first: their loads go out together.
        SmallVector<Value> columns, weights;
        for (int64_t u = 0; u < unroll; ++u) {
          columns.push_back(
              arith::AddIOp::create(b, loc, h, index(u * columnStride)));
          weights.push_back(
              loadRow(gateBase, shape.gateElement, expert, columns.back()));
        }
        SmallVector<Value> next(carried);
        for (auto [t, row] : llvm::enumerate(rows))
          for (int64_t u = 0; u < unroll; ++u)
            next[t] = LLVM::FMAOp::create(
                b, loc,
                loadRow(xBase, shape.inputElement, row, columns[u]),
                weights[u], next[t]);
        scf::YieldOp::create(b, loc, next);
      });
  return SmallVector<Value>(loop.getResults());
}

Value GateLogitsBuilder::reduceAcrossWarp(Value sum) {
  Value total = LLVM::ExtractElementOp::create(b, loc, sum, i32(0));
  for (int64_t e = 1; e < width; ++e)
    total = arith::AddFOp::create(
        b, loc, total, LLVM::ExtractElementOp::create(b, loc, sum, i32(e)));
  for (int32_t offset = kWarpSize / 2; offset > 0; offset /= 2)
    total = arith::AddFOp::create(
        b, loc, total,
        gpu::ShuffleOp::create(b, loc, total, offset, kWarpSize,
                               gpu::ShuffleMode::XOR)
            .getShuffleResult());
  return total;
}

void GateLogitsBuilder::build(gpu::GPUFuncOp func) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value x = entry.getArgument(0), gate = entry.getArgument(1);
  Value bias = shape.bias ? entry.getArgument(2) : Value();
  Value logits = entry.getArguments().back();
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value warp = arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
  Value lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
  expert = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc,
                            gpu::BlockIdOp::create(b, loc, gpu::Dimension::x),
                            index(shape.expertsPerBlock())),
      warp);
  ifThen(cmp(arith::CmpIPredicate::ult, expert, index(shape.numExperts)),
         [&] {
    Value numTokens = memref::DimOp::create(b, loc, x, 0);
    Value lastToken = arith::SubIOp::create(b, loc, numTokens, index(1));
    Value firstToken = arith::MulIOp::create(
        b, loc, gpu::BlockIdOp::create(b, loc, gpu::Dimension::y),
        index(kTokensPerBlock));
    // A tile past the last token reads the last token's row again (no
    // branch in the loop) and does not store.
    for (int64_t t = 0; t < kTokensPerBlock; ++t)
      rows.push_back(arith::MinUIOp::create(
          b, loc, arith::AddIOp::create(b, loc, firstToken, index(t)),
          lastToken));
    xBase = baseAddress(x);
    gateBase = baseAddress(gate);
    Value zero = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(sumType, b.getF32FloatAttr(0.0f)));
    SmallVector<Value> sums(kTokensPerBlock, zero);
    // Whole steps of `kGateLoadsInFlight` columns, then one column a step.
    int64_t columnStride = kWarpSize * width;
    int64_t wholeSteps =
        shape.hidden - shape.hidden % (kGateLoadsInFlight * columnStride);
    Value laneColumn = arith::MulIOp::create(b, loc, lane, index(width));
    sums = accumulate(laneColumn, wholeSteps, kGateLoadsInFlight, sums);
    sums = accumulate(
        arith::AddIOp::create(b, loc, laneColumn, index(wholeSteps)),
        shape.hidden, 1, sums);
    Value expertBias =
        bias ? memref::LoadOp::create(b, loc, bias, expert).getResult()
             : Value();
    Value firstLane = cmp(arith::CmpIPredicate::eq, lane, index(0));
    for (int64_t t = 0; t < kTokensPerBlock; ++t) {
      Value logit = reduceAcrossWarp(sums[t]);
      if (expertBias)
        logit = arith::AddFOp::create(b, loc, logit, expertBias);
      Value token = arith::AddIOp::create(b, loc, firstToken, index(t));
      Value inRange = cmp(arith::CmpIPredicate::ult, token, numTokens);
      ifThen(arith::AndIOp::create(b, loc, firstLane, inRange), [&] {
        memref::StoreOp::create(b, loc, logit, logits,
                                ValueRange{token, expert});
      });
    }
  });
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildGateLogitsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                 Operation *op, Value input, Value gateWeight,
                                 bool bias, StringRef name) {
  auto gateType = cast<ShapedType>(gateWeight.getType());
  GateLogitsShape shape{gateType.getDimSize(0), gateType.getDimSize(1),
                        cast<ShapedType>(input.getType()).getElementType(),
                        gateType.getElementType(), bias};
  if (ShapedType::isDynamic(shape.numExperts) ||
      ShapedType::isDynamic(shape.hidden))
    return op->emitRemark(
        "no GPU kernel: the expert count and hidden size must be static");
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(module.getBody());
  Location loc = op->getLoc();
  Type f32 = b.getF32Type();
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, shape.hidden}, shape.inputElement),
      MemRefType::get({shape.numExperts, shape.hidden}, shape.gateElement)};
  if (bias)
    arguments.push_back(MemRefType::get({shape.numExperts}, f32));
  arguments.push_back(MemRefType::get({dynamic, shape.numExperts}, f32));
  auto func = createKernelFunc(
      b, loc, name, arguments,
      {b.getNamedAttr("threads", b.getI64IntegerAttr(shape.threads())),
       b.getNamedAttr("experts_per_block",
                      b.getI64IntegerAttr(shape.expertsPerBlock())),
       b.getNamedAttr("tokens_per_block",
                      b.getI64IntegerAttr(kTokensPerBlock))});
  GateLogitsBuilder(b, loc, shape).build(func);
  return func;
}
