//===- GateLogitsKernel.cpp - the router logits x · W_gateᵀ on the GPU ----===//
//
// The logits of moe.router, and the first of moe.route's two kernels, as a
// grid of (expert chunk, token tile) blocks. A warp owns a few experts and
// a tile of tokens: its lanes walk H with 16-byte loads of the gate rows
// and of each token's row, keep f32 sums per (token, expert), and add
// the sums across the warp by butterfly shuffles. Two tilings: at decode a
// warp per expert with 4 gate loads in flight per lane, so the gate streams
// from many SMs; with many tokens 4 experts per warp, so each token row
// loaded serves 4 dot products (one expert per warp loaded its 8 rows of x
// per 8 dot products, bound by L2 traffic at 4-5 T FMA/s).
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "moe/Target/GpuTarget.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kLoadBytes = 16;

int64_t bytesOf(Type type) { return type.getIntOrFloatBitWidth() / 8; }

/// How a kernel splits the work.
struct GateLogitsTiling {
  /// Experts of a warp: each token row loaded serves this many.
  int64_t expertsPerWarp;
  /// Tokens of a block: each gate row loaded serves this many.
  int64_t tokensPerBlock;
  /// At most this many warps per block (fewer with fewer experts).
  int64_t maxWarps;
  /// Columns of 16-byte loads a lane issues per step: the gate's bytes in
  /// flight at decode.
  int64_t loadsInFlight;
  /// Whether a lane keeps a vector of sums per (token, expert), adding the
  /// products of a load element by element, or one f32 sum that chains
  /// them. The decode tiling keeps the vectors it was measured with; with
  /// 4 experts per warp they would not fit in registers.
  bool vectorSums;
};
/// A warp per expert, 4 warps a block: a decode step's blocks spread over
/// many SMs, each lane with 4 gate loads in flight.
constexpr GateLogitsTiling kDecodeTiling{1, 8, 4, 4, true};
/// 4 experts per warp, 16 per block.
constexpr GateLogitsTiling kManyTokensTiling{4, 8, 4, 1, false};
/// The many-token tiling is taken from 64 tokens on, and only once its grid
/// has this many warps per SM: with fewer (Mixtral's 8 experts are 2 warps
/// per token tile) the decode tiling's 4× more warps stream faster.
constexpr int64_t kMinTokens = 64;
constexpr int64_t kManyTokensWarpsPerSM = 4;

/// What the kernel computes and how a lane steps along H.
struct GateLogitsShape {
  int64_t numExperts, hidden;
  Type inputElement, gateElement;
  bool bias;
  GateLogitsTiling tiling;

  int64_t warps() const {
    return std::min(tiling.maxWarps,
                    static_cast<int64_t>(llvm::divideCeil(
                        numExperts, tiling.expertsPerWarp)));
  }
  int64_t expertsPerBlock() const { return warps() * tiling.expertsPerWarp; }
  int64_t threads() const { return warps() * kWarpSize; }
  /// The tokens from which the host takes this tiling.
  int64_t minTokens() const {
    if (tiling.vectorSums)
      return 0;
    int64_t warpsPerTile =
        llvm::divideCeil(numExperts, expertsPerBlock()) * warps();
    int64_t tiles = llvm::divideCeil(
        kManyTokensWarpsPerSM * GpuTarget().numSMs, warpsPerTile);
    return std::max(kMinTokens, tiles * tiling.tokensPerBlock);
  }
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
      : KernelEmitter{b, loc}, shape(shape), width(shape.vectorWidth()),
        vectorType(VectorType::get({width}, b.getF32Type())) {}
  void build(gpu::GPUFuncOp func);

private:
  /// The first element's address of `memref` as an i64.
  Value baseAddress(Value memref);
  /// `width` elements of the row-major [rows, H] array at `base`, row
  /// `row`, from column `column`, as f32.
  Value loadRow(Value base, Type element, Value row, Value column);
  /// `sum` + the dot product of the f32 vectors `x` and `w`.
  Value addDot(Value sum, Value x, Value w);
  /// Adds x[tokenRows[t], h...] · gate[expertRows[e], h...] into
  /// `sums[t · E_w + e]` over h = first, first + step, ... < bound,
  /// `unroll` columns of `width` elements `kWarpSize · width` apart per
  /// step.
  SmallVector<Value> accumulate(Value first, int64_t bound, int64_t unroll,
                                ArrayRef<Value> sums);
  /// The warp's sum of `sum` over its lanes, in every lane.
  Value reduceAcrossWarp(Value sum);
  /// Row `first + i` for i < count, clamped to `last`: a row past the end
  /// is read again from the last one (no branch in the loop), not stored.
  SmallVector<Value> clampedRows(Value first, int64_t count, Value last);
  /// The logits of the warp's experts (`expertRows`, from `firstExpert`)
  /// for the block's tokens, from the kernel's `arguments`.
  void computeLogits(ValueRange arguments, Value lane, Value firstExpert);

  const GateLogitsShape &shape;
  int64_t width;
  VectorType vectorType;
  Value xBase, gateBase;
  SmallVector<Value> tokenRows, expertRows;
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
  return arith::ExtFOp::create(b, loc, vectorType, loaded);
}

Value GateLogitsBuilder::addDot(Value sum, Value x, Value w) {
  for (int64_t e = 0; e < width; ++e)
    sum = LLVM::FMAOp::create(
        b, loc, LLVM::ExtractElementOp::create(b, loc, x, i32(e)),
        LLVM::ExtractElementOp::create(b, loc, w, i32(e)), sum);
  return sum;
}

SmallVector<Value> GateLogitsBuilder::accumulate(Value first, int64_t bound,
                                                 int64_t unroll,
                                                 ArrayRef<Value> sums) {
  int64_t columnStride = kWarpSize * width;
  int64_t expertsPerWarp = expertRows.size();
  auto loop = scf::ForOp::create(
      b, loc, first, index(bound), index(unroll * columnStride), sums,
      [&](OpBuilder &, Location, Value h, ValueRange carried) {
        // The gate columns first: their loads go out together.
        SmallVector<Value> columns, weights;
        for (int64_t u = 0; u < unroll; ++u)
          columns.push_back(
              arith::AddIOp::create(b, loc, h, index(u * columnStride)));
        for (Value expertRow : expertRows)
          for (Value column : columns)
            weights.push_back(
                loadRow(gateBase, shape.gateElement, expertRow, column));
        SmallVector<Value> next(carried);
        for (auto [t, tokenRow] : llvm::enumerate(tokenRows))
          for (auto [u, column] : llvm::enumerate(columns)) {
            Value x = loadRow(xBase, shape.inputElement, tokenRow, column);
            for (int64_t e = 0; e < expertsPerWarp; ++e) {
              Value &sum = next[t * expertsPerWarp + e];
              Value w = weights[e * unroll + u];
              sum = shape.tiling.vectorSums
                        ? LLVM::FMAOp::create(b, loc, x, w, sum).getResult()
                        : addDot(sum, x, w);
            }
          }
        scf::YieldOp::create(b, loc, next);
      });
  return SmallVector<Value>(loop.getResults());
}

Value GateLogitsBuilder::reduceAcrossWarp(Value sum) {
  if (shape.tiling.vectorSums) {
    Value total = LLVM::ExtractElementOp::create(b, loc, sum, i32(0));
    for (int64_t e = 1; e < width; ++e) {
      Value element = LLVM::ExtractElementOp::create(b, loc, sum, i32(e));
      total = arith::AddFOp::create(b, loc, total, element);
    }
    sum = total;
  }
  return warpButterfly(b, loc, sum, [&](Value lhs, Value rhs) -> Value {
    return arith::AddFOp::create(b, loc, lhs, rhs);
  });
}

SmallVector<Value> GateLogitsBuilder::clampedRows(Value first, int64_t count,
                                                  Value last) {
  SmallVector<Value> rows;
  for (int64_t i = 0; i < count; ++i)
    rows.push_back(arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, first, index(i)), last));
  return rows;
}

void GateLogitsBuilder::build(gpu::GPUFuncOp func) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value warp = arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
  Value lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
  // One op per statement: C++ leaves the order of arguments open, and the
  // IR should not depend on the compiler.
  Value chunk = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value blockExperts =
      arith::MulIOp::create(b, loc, chunk, index(shape.expertsPerBlock()));
  Value warpExperts =
      arith::MulIOp::create(b, loc, warp, index(shape.tiling.expertsPerWarp));
  Value firstExpert = arith::AddIOp::create(b, loc, blockExperts, warpExperts);
  Value realExpert =
      cmp(arith::CmpIPredicate::ult, firstExpert, index(shape.numExperts));
  if (shape.tiling.expertsPerWarp == 1) {
    // A warp past the last expert has nothing to do. (Clamping its row
    // instead, as below, made ptxas keep 4 loads in flight at the top of
    // the loop where it kept 12, and the decode kernel twice as slow.)
    ifThen(realExpert, [&] {
      expertRows = {firstExpert};
      computeLogits(entry.getArguments(), lane, firstExpert);
    });
  } else {
    // A warp's experts past the last read the last one again and are not
    // stored.
    expertRows = clampedRows(firstExpert, shape.tiling.expertsPerWarp,
                             index(shape.numExperts - 1));
    computeLogits(entry.getArguments(), lane, firstExpert);
  }
  gpu::ReturnOp::create(b, loc);
}

void GateLogitsBuilder::computeLogits(ValueRange arguments, Value lane,
                                      Value firstExpert) {
  const GateLogitsTiling &tiling = shape.tiling;
  Value x = arguments[0], gate = arguments[1];
  Value bias = shape.bias ? arguments[2] : Value();
  Value logits = arguments.back();
  Value numTokens = memref::DimOp::create(b, loc, x, 0);
  Value tile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value firstToken =
      arith::MulIOp::create(b, loc, tile, index(tiling.tokensPerBlock));
  tokenRows = clampedRows(firstToken, tiling.tokensPerBlock,
                          arith::SubIOp::create(b, loc, numTokens, index(1)));
  xBase = baseAddress(x);
  gateBase = baseAddress(gate);
  TypedAttr zero =
      tiling.vectorSums
          ? TypedAttr(DenseElementsAttr::get(vectorType, b.getF32FloatAttr(0)))
          : TypedAttr(b.getF32FloatAttr(0));
  SmallVector<Value> sums(tiling.tokensPerBlock * tiling.expertsPerWarp,
                          arith::ConstantOp::create(b, loc, zero));
  // Whole steps of `loadsInFlight` columns, then one column a step.
  int64_t columnStride = kWarpSize * width;
  int64_t wholeSteps =
      shape.hidden - shape.hidden % (tiling.loadsInFlight * columnStride);
  Value laneColumn = arith::MulIOp::create(b, loc, lane, index(width));
  sums = accumulate(laneColumn, wholeSteps, tiling.loadsInFlight, sums);
  sums = accumulate(
      arith::AddIOp::create(b, loc, laneColumn, index(wholeSteps)),
      shape.hidden, 1, sums);
  Value firstLane = cmp(arith::CmpIPredicate::eq, lane, index(0));
  for (int64_t e = 0; e < tiling.expertsPerWarp; ++e) {
    Value expert = arith::AddIOp::create(b, loc, firstExpert, index(e));
    Value expertBias =
        bias ? memref::LoadOp::create(b, loc, bias, expertRows[e]).getResult()
             : Value();
    Value storing =
        tiling.expertsPerWarp == 1
            ? firstLane
            : arith::AndIOp::create(
                  b, loc, firstLane,
                  cmp(arith::CmpIPredicate::ult, expert,
                      index(shape.numExperts)))
                  .getResult();
    for (int64_t t = 0; t < tiling.tokensPerBlock; ++t) {
      Value logit = reduceAcrossWarp(sums[t * tiling.expertsPerWarp + e]);
      if (expertBias)
        logit = arith::AddFOp::create(b, loc, logit, expertBias);
      Value token = arith::AddIOp::create(b, loc, firstToken, index(t));
      Value inRange = cmp(arith::CmpIPredicate::ult, token, numTokens);
      ifThen(arith::AndIOp::create(b, loc, storing, inRange), [&] {
        memref::StoreOp::create(b, loc, logit, logits,
                                ValueRange{token, expert});
      });
    }
  }
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildGateLogitsKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                 Operation *op, Value input, Value gateWeight,
                                 bool bias, bool manyTokens, StringRef name) {
  auto gateType = cast<ShapedType>(gateWeight.getType());
  GateLogitsShape shape{gateType.getDimSize(0),
                        gateType.getDimSize(1),
                        cast<ShapedType>(input.getType()).getElementType(),
                        gateType.getElementType(),
                        bias,
                        manyTokens ? kManyTokensTiling : kDecodeTiling};
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
                      b.getI64IntegerAttr(shape.tiling.tokensPerBlock)),
       b.getNamedAttr("min_tokens",
                      b.getI64IntegerAttr(shape.minTokens()))});
  GateLogitsBuilder(b, loc, shape).build(func);
  return func;
}
