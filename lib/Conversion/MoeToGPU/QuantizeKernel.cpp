//===- QuantizeKernel.cpp - the GPU kernel of moe.quantize ----------------===//
//
// Dynamic activation quantization, one warp per row. A lane converts 8
// adjacent columns per 16-byte load, so a warp covers 256 columns per
// access, and the loads of up to 2048 columns of a row are issued before
// their values are used. Lane maxima (shuffles) give the amax of a 1x128
// block (16 lanes) or of the row; then scale = amax / qmax in f32, and each
// value divided by it is rounded to nearest even and saturated
// (cvt.rn.satfinite.e4m3x2 for fp8; round, clamp and convert for int8),
// which is the rule of moe.quantize bit for bit. 8 codes go out per store.
//
// A per-tensor scale needs the amax of the whole tensor before any code is
// written, which one grid cannot wait for: a first kernel reduces each
// warp's rows and takes an atomic max of the f32 bits (non-negative floats
// order as their i32 bits) into a zeroed word; the quantization kernel then
// reads it.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "MoeGpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr int64_t kBlockColumns = 128;
constexpr int64_t kRowsPerBlock = 4;

// The arithmetic of moe.quantize.

Value f32Constant(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(
      b, loc, b.getF32FloatAttr(static_cast<float>(value)));
}

/// max |v| over `values`, starting from `amax`.
Value maxMagnitude(OpBuilder &b, Location loc, ArrayRef<Value> values,
                   Value amax) {
  for (Value value : values)
    amax = arith::MaxNumFOp::create(b, loc, amax,
                                    math::AbsFOp::create(b, loc, value));
  return amax;
}

/// The max of `value` over each group of `lanes` lanes.
Value butterflyMax(OpBuilder &b, Location loc, Value value,
                   int32_t lanes = kWarpSize) {
  return warpButterfly(
      b, loc, value,
      [&](Value lhs, Value rhs) -> Value {
        return arith::MaxNumFOp::create(b, loc, lhs, rhs);
      },
      lanes);
}

/// amax / qmax in f32, 1 where amax is 0.
Value scaleOfAmax(OpBuilder &b, Location loc, Value amax, bool fp8) {
  Value quotient = arith::DivFOp::create(
      b, loc, amax, f32Constant(b, loc, fp8 ? 448.0 : 127.0));
  Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                         amax, f32Constant(b, loc, 0));
  return arith::SelectOp::create(b, loc, positive, quotient,
                                 f32Constant(b, loc, 1.0));
}

/// The codes of `values` (an even count) divided by `scale`, rounded to
/// nearest even and saturated: for fp8 one i16 per pair, the first value's
/// code in its low byte (cvt.rn.satfinite.e4m3x2 puts its first operand's
/// code in the high byte); for int8 one i8 per value.
SmallVector<Value> codesOf(OpBuilder &b, Location loc, ArrayRef<Value> values,
                           Value scale, bool fp8) {
  SmallVector<Value> quotients;
  for (Value value : values)
    quotients.push_back(arith::DivFOp::create(b, loc, value, scale));
  SmallVector<Value> codes;
  if (fp8) {
    for (size_t i = 0; i < quotients.size(); i += 2)
      codes.push_back(NVVM::ConvertF32x2ToF8x2Op::create(
          b, loc, b.getI16Type(), quotients[i + 1], quotients[i],
          NVVM::FPRoundingMode::RN, NVVM::SaturationMode::SATFINITE,
          /*relu=*/false, b.getType<Float8E4M3FNType>()));
    return codes;
  }
  for (Value quotient : quotients) {
    Value rounded = math::RoundEvenOp::create(b, loc, quotient);
    Value clamped = arith::MinimumFOp::create(
        b, loc,
        arith::MaximumFOp::create(b, loc, rounded, f32Constant(b, loc, -127.0)),
        f32Constant(b, loc, 127.0));
    codes.push_back(arith::FPToSIOp::create(b, loc, b.getI8Type(), clamped));
  }
  return codes;
}

} // namespace

/// The rows of `input` to work on: all, or those before the padded count
/// `paddedWord` of an aligned schedule (whose rows beyond it hold nothing).
static Value boundedRows(OpBuilder &b, Location loc, Value input,
                         Value paddedWord) {
  Value rows = memref::DimOp::create(b, loc, input, 0);
  if (!paddedWord)
    return rows;
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value padded = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, paddedWord, ValueRange{zero}));
  return arith::MinUIOp::create(b, loc, rows, padded);
}

namespace {
/// A lane converts 8 adjacent columns of a row per 16-byte load, so a warp
/// covers 256 columns (a "span") per access and a 128-column block is 16
/// lanes. The loads of up to 8 spans (2048 columns) are issued before any
/// of their values is used: a loop that waits for each block's loads in
/// turn keeps about 256 bytes in flight per warp, and the earlier kernels
/// built that way were up to 21% slower per block at decode (H200,
/// docs/gpu-benchmark-quantized.md).
constexpr int64_t kVectorColumns = 8;
constexpr int64_t kSpanColumns = kWarpSize * kVectorColumns;
constexpr int64_t kBlockLanes = kBlockColumns / kVectorColumns;
constexpr int64_t kChunkSpans = 8;

/// How a row's columns split into chunks of loads in flight: `fullChunks`
/// of kChunkSpans whole spans, then a tail of `tailSpans` whole spans and,
/// where the width is an odd multiple of 128, a half span (lanes 0-15).
struct ChunkPlan {
  int64_t fullChunks, tailSpans;
  bool halfSpan;

  explicit ChunkPlan(int64_t columns)
      : fullChunks(columns / kSpanColumns / kChunkSpans),
        tailSpans(columns / kSpanColumns % kChunkSpans),
        halfSpan(columns % kSpanColumns != 0) {}
  /// The whole row is one chunk: its values can stay in registers.
  bool singleChunk() const {
    return fullChunks == 0 || (fullChunks == 1 && tailSpans == 0 && !halfSpan);
  }
};

/// Builds the kernels' bodies; holds what the steps share.
class QuantizeBuilder : KernelEmitter {
public:
  QuantizeBuilder(OpBuilder &b, Location loc, bool fp8, ScaleLayout layout,
                  int64_t columns)
      : KernelEmitter{b, loc}, fp8(fp8), layout(layout), columns(columns),
        plan(columns) {}

  void build(gpu::GPUFuncOp func, bool bounded);
  /// The per-tensor amax kernel: a warp walks its rows (skipping an aligned
  /// schedule's padding slots when `slotPadding`, E·(block_m − 1)) and puts
  /// its max into the word by one atomic.
  void buildAmax(gpu::GPUFuncOp func, std::optional<int64_t> slotPadding);

private:
  /// One span's 8 values of this lane.
  using SpanValues = SmallVector<Value, kVectorColumns>;
  /// The spans [firstSpan, firstSpan + spans) of a chunk; the last is a
  /// half span when `endsHalf`.
  using ChunkBody =
      function_ref<void(Value firstSpan, int64_t spans, bool endsHalf)>;

  Value f32(double value) { return f32Constant(b, loc, value); }
  Value scaleOf(Value amax) { return scaleOfAmax(b, loc, amax, fp8); }
  /// The lane's first column of span `span`.
  Value laneColumn(Value span) {
    return arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, span, index(kSpanColumns)),
        arith::MulIOp::create(b, loc, lane, index(kVectorColumns)));
  }
  /// Whether this lane has columns in a half span.
  Value inHalfSpan() {
    return cmp(arith::CmpIPredicate::ult, lane, index(kBlockLanes));
  }
  /// This lane's values of span `span` as f32 (zeros past a half span).
  SpanValues loadSpan(Value span, bool half);
  /// The values of a chunk's spans, all loads issued before the first use.
  SmallVector<SpanValues> loadChunk(Value firstSpan, int64_t spans,
                                    bool endsHalf);
  /// Calls `body` for each chunk of the row.
  void forEachChunk(ChunkBody body);
  /// The lane's max |v| over the whole row.
  Value rowLaneAmax();
  /// Stores the codes of the lane's `values` of span `span`, 8 bytes.
  void storeCodes(Value span, ArrayRef<Value> values, Value scale, bool half);
  /// Sets `lane` and returns the warp index of the thread.
  Value warpOfThread();
  /// Per 128-column block: its scale, stored by its first lane, and codes.
  void quantizeBlocks(Value firstSpan, int64_t spans, bool endsHalf);

  bool fp8;
  ScaleLayout layout;
  int64_t columns;
  ChunkPlan plan;
  Value input, codes, scales, row, lane;
};
} // namespace

QuantizeBuilder::SpanValues QuantizeBuilder::loadSpan(Value span, bool half) {
  Type element = cast<MemRefType>(input.getType()).getElementType();
  auto vectorType = VectorType::get({kVectorColumns}, element);
  auto f32Vector = VectorType::get({kVectorColumns}, b.getF32Type());
  auto load = [&]() -> Value {
    // Rows are 16-byte aligned: the buffers are (the workspace's offsets,
    // the C header's contract) and a row holds a multiple of 128 columns.
    Value vector = LLVM::LoadOp::create(
        b, loc, vectorType,
        globalElementPointer(b, loc, input, row, laneColumn(span), columns),
        /*alignment=*/16);
    if (element != b.getF32Type())
      vector = arith::ExtFOp::create(b, loc, f32Vector, vector);
    return vector;
  };
  Value vector;
  if (!half) {
    vector = load();
  } else {
    auto ifOp = scf::IfOp::create(
        b, loc, inHalfSpan(),
        [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, load()); },
        [&](OpBuilder &, Location) {
          Value zeros = arith::ConstantOp::create(
              b, loc, DenseElementsAttr::get(f32Vector, b.getF32FloatAttr(0)));
          scf::YieldOp::create(b, loc, zeros);
        });
    vector = ifOp.getResult(0);
  }
  SpanValues values;
  for (int64_t i = 0; i < kVectorColumns; ++i)
    values.push_back(LLVM::ExtractElementOp::create(b, loc, vector, i32(i)));
  return values;
}

SmallVector<QuantizeBuilder::SpanValues>
QuantizeBuilder::loadChunk(Value firstSpan, int64_t spans, bool endsHalf) {
  SmallVector<SpanValues> chunk;
  for (int64_t s = 0; s < spans; ++s)
    chunk.push_back(loadSpan(arith::AddIOp::create(b, loc, firstSpan, index(s)),
                             endsHalf && s == spans - 1));
  return chunk;
}

void QuantizeBuilder::forEachChunk(ChunkBody body) {
  if (plan.fullChunks == 1)
    body(index(0), kChunkSpans, /*endsHalf=*/false);
  else if (plan.fullChunks > 1)
    forEach(index(0), index(plan.fullChunks * kChunkSpans), index(kChunkSpans),
            [&](Value firstSpan) { body(firstSpan, kChunkSpans, false); });
  if (plan.tailSpans > 0 || plan.halfSpan)
    body(index(plan.fullChunks * kChunkSpans), plan.tailSpans + plan.halfSpan,
         plan.halfSpan);
}

Value QuantizeBuilder::rowLaneAmax() {
  auto chunkAmax = [&](Value firstSpan, int64_t spans, bool endsHalf,
                       Value amax) {
    for (const SpanValues &values : loadChunk(firstSpan, spans, endsHalf))
      amax = maxMagnitude(b, loc, values, amax);
    return amax;
  };
  Value amax = f32(0);
  if (plan.fullChunks == 1) {
    amax = chunkAmax(index(0), kChunkSpans, false, amax);
  } else if (plan.fullChunks > 1) {
    amax = scf::ForOp::create(
               b, loc, index(0), index(plan.fullChunks * kChunkSpans),
               index(kChunkSpans), ValueRange{amax},
               [&](OpBuilder &, Location, Value firstSpan, ValueRange args) {
                 scf::YieldOp::create(
                     b, loc, chunkAmax(firstSpan, kChunkSpans, false, args[0]));
               })
               .getResult(0);
  }
  if (plan.tailSpans > 0 || plan.halfSpan)
    amax = chunkAmax(index(plan.fullChunks * kChunkSpans),
                     plan.tailSpans + plan.halfSpan, plan.halfSpan, amax);
  return amax;
}

void QuantizeBuilder::storeCodes(Value span, ArrayRef<Value> values,
                                 Value scale, bool half) {
  auto store = [&]() {
    // Little-endian: column c's code is byte c of the 8-byte word.
    Type i64 = b.getI64Type();
    Value word = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0));
    int64_t bitOffset = 0;
    for (Value code : codesOf(b, loc, values, scale, fp8)) {
      Value wide = arith::ExtUIOp::create(b, loc, i64, code);
      word = arith::OrIOp::create(
          b, loc, word,
          arith::ShLIOp::create(b, loc, wide,
                                arith::ConstantOp::create(
                                    b, loc, b.getI64IntegerAttr(bitOffset))));
      bitOffset += code.getType().getIntOrFloatBitWidth();
    }
    LLVM::StoreOp::create(
        b, loc, word,
        globalElementPointer(b, loc, codes, row, laneColumn(span), columns),
        /*alignment=*/8);
  };
  if (half)
    ifThen(inHalfSpan(), store);
  else
    store();
}

Value QuantizeBuilder::warpOfThread() {
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  lane = arith::RemUIOp::create(b, loc, tid, index(kWarpSize));
  return arith::DivUIOp::create(b, loc, tid, index(kWarpSize));
}

void QuantizeBuilder::quantizeBlocks(Value firstSpan, int64_t spans,
                                     bool endsHalf) {
  SmallVector<SpanValues> chunk = loadChunk(firstSpan, spans, endsHalf);
  Value blockLane = arith::RemUIOp::create(b, loc, lane, index(kBlockLanes));
  Value firstOfBlock = cmp(arith::CmpIPredicate::eq, blockLane, index(0));
  for (auto [s, values] : llvm::enumerate(chunk)) {
    bool half = endsHalf && static_cast<int64_t>(s) == spans - 1;
    Value span = arith::AddIOp::create(b, loc, firstSpan, index(s));
    Value scale = scaleOf(butterflyMax(
        b, loc, maxMagnitude(b, loc, values, f32(0)), kBlockLanes));
    // Block 2·span + lane / 16; a half span has only its first block.
    Value block = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, span, index(2)),
        arith::DivUIOp::create(b, loc, lane, index(kBlockLanes)));
    Value stores = firstOfBlock;
    if (half)
      stores = arith::AndIOp::create(b, loc, stores, inHalfSpan());
    ifThen(stores, [&] {
      memref::StoreOp::create(b, loc, scale, scales, ValueRange{row, block});
    });
    storeCodes(span, values, scale, half);
  }
}

void QuantizeBuilder::buildAmax(gpu::GPUFuncOp func,
                                std::optional<int64_t> slotPadding) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  input = entry.getArgument(0);
  Value amaxWord = entry.getArgument(1);
  Value warp = warpOfThread();
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value gridBlocks = gpu::GridDimOp::create(b, loc, gpu::Dimension::x);
  Value firstRow = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, block, index(kRowsPerBlock)), warp);
  Value rowStep =
      arith::MulIOp::create(b, loc, gridBlocks, index(kRowsPerBlock));
  Value slots, assignments;
  if (slotPadding) {
    slots = entry.getArgument(3);
    // M·k, from the schedule's length M·k + E·(block_m − 1); slots holding
    // it are padding, which the matmul never wrote.
    assignments = arith::SubIOp::create(
        b, loc, memref::DimOp::create(b, loc, slots, 0), index(*slotPadding));
  }
  Value rows =
      boundedRows(b, loc, input, slotPadding ? entry.getArgument(2) : Value());
  // The lane's running amax with row `rowIndex` folded in.
  auto foldRow = [&](Value rowIndex, Value amax) -> Value {
    row = rowIndex;
    return arith::MaxNumFOp::create(b, loc, amax, rowLaneAmax());
  };
  // A warp walks rows firstRow, firstRow + rowStep, ... so that the grid
  // stays small and there is one atomic per warp.
  auto rowLoop = scf::ForOp::create(
      b, loc, firstRow, rows, rowStep, ValueRange{f32(0)},
      [&](OpBuilder &, Location, Value rowIndex, ValueRange args) {
        if (!slotPadding) {
          scf::YieldOp::create(b, loc, foldRow(rowIndex, args[0]));
          return;
        }
        Value assignment = arith::IndexCastOp::create(
            b, loc, b.getIndexType(),
            memref::LoadOp::create(b, loc, slots, ValueRange{rowIndex}));
        Value scheduled =
            cmp(arith::CmpIPredicate::ult, assignment, assignments);
        auto ifOp = scf::IfOp::create(
            b, loc, scheduled,
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, foldRow(rowIndex, args[0]));
            },
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(b, loc, args[0]);
            });
        scf::YieldOp::create(b, loc, ifOp.getResult(0));
      });
  Value amax = butterflyMax(b, loc, rowLoop.getResult(0));
  auto leaderIf =
      scf::IfOp::create(b, loc, cmp(arith::CmpIPredicate::eq, lane, index(0)),
                        /*withElse=*/false);
  b.setInsertionPointToStart(leaderIf.thenBlock());
  Value bits = arith::BitcastOp::create(b, loc, b.getI32Type(), amax);
  memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::maxs, bits,
                              amaxWord, ValueRange{index(0)});
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

void QuantizeBuilder::build(gpu::GPUFuncOp func, bool bounded) {
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  input = entry.getArgument(0);
  codes = entry.getArgument(1);
  scales = entry.getArgument(2);
  unsigned nextArgument = 3;
  Value amaxWord;
  if (layout == ScaleLayout::PerTensor)
    amaxWord = entry.getArgument(nextArgument++);
  Value paddedWord = bounded ? entry.getArgument(nextArgument) : Value();
  Value warp = warpOfThread();
  Value block = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  row = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, block, index(kRowsPerBlock)), warp);
  Value isLeader = cmp(arith::CmpIPredicate::eq, lane, index(0));
  Value tensorScale;
  if (layout == ScaleLayout::PerTensor) {
    // The amax kernel ran before: its word holds the f32 bits of the amax.
    Value bits = memref::LoadOp::create(b, loc, amaxWord, ValueRange{index(0)});
    tensorScale =
        scaleOf(arith::BitcastOp::create(b, loc, b.getF32Type(), bits));
    ifThen(arith::AndIOp::create(b, loc, isLeader,
                                 cmp(arith::CmpIPredicate::eq, row, index(0))),
           [&] {
             memref::StoreOp::create(b, loc, tensorScale, scales,
                                     ValueRange{index(0)});
           });
  }
  Value rows = boundedRows(b, loc, input, paddedWord);
  ifThen(cmp(arith::CmpIPredicate::ult, row, rows), [&] {
    if (layout == ScaleLayout::Block) {
      forEachChunk([&](Value firstSpan, int64_t spans, bool endsHalf) {
        quantizeBlocks(firstSpan, spans, endsHalf);
      });
      return;
    }
    auto storeChunk = [&](ArrayRef<SpanValues> chunk, Value firstSpan,
                          bool endsHalf, Value scale) {
      for (auto [s, values] : llvm::enumerate(chunk))
        storeCodes(arith::AddIOp::create(b, loc, firstSpan, index(s)), values,
                   scale, endsHalf && s + 1 == chunk.size());
    };
    if (layout == ScaleLayout::PerTensor) {
      forEachChunk([&](Value firstSpan, int64_t spans, bool endsHalf) {
        storeChunk(loadChunk(firstSpan, spans, endsHalf), firstSpan, endsHalf,
                   tensorScale);
      });
      return;
    }
    // Per token: the row's amax first. A row of one chunk keeps its values
    // in registers; a longer one is read again (from L1 or L2) for codes.
    SmallVector<SpanValues> rowValues;
    Value amax = f32(0);
    if (plan.singleChunk()) {
      int64_t spans =
          plan.fullChunks * kChunkSpans + plan.tailSpans + plan.halfSpan;
      rowValues = loadChunk(index(0), spans, plan.halfSpan);
      for (const SpanValues &values : rowValues)
        amax = maxMagnitude(b, loc, values, amax);
    } else {
      amax = rowLaneAmax();
    }
    Value scale = scaleOf(butterflyMax(b, loc, amax));
    ifThen(isLeader, [&] {
      memref::StoreOp::create(b, loc, scale, scales, ValueRange{row});
    });
    if (plan.singleChunk()) {
      storeChunk(rowValues, index(0), plan.halfSpan, scale);
      return;
    }
    forEachChunk([&](Value firstSpan, int64_t spans, bool endsHalf) {
      storeChunk(loadChunk(firstSpan, spans, endsHalf), firstSpan, endsHalf,
                 scale);
    });
  });
  b.setInsertionPointToEnd(&entry);
  gpu::ReturnOp::create(b, loc);
}

/// Returns true if `value` holds rows in the slot order of an aligned
/// schedule: rows at or past its padded count hold nothing.
static bool isAlignedRows(Value value) {
  auto producer = value.getDefiningOp<ExpertMatmulOp>();
  return producer && producer.isAligned() && !producer.isCombine() &&
         !producer.getUnpermute();
}

/// Why `op` has no GPU kernel, or success.
static LogicalResult checkSupported(QuantizeOp op) {
  auto inputType = op.getInput().getType();
  int64_t columns = inputType.getDimSize(1);
  Type element = inputType.getElementType();
  if (ShapedType::isDynamic(columns) || columns % kBlockColumns != 0 ||
      !(element.isBF16() || element.isF32()))
    return op.emitRemark("no GPU kernel yet: needs bf16 or f32 rows with a "
                         "multiple of 128 columns");
  return success();
}

/// A kernel function `name` of `arguments` at the end of `module`, launched
/// with `threads`, `rows_per_block`, `bounded` and `extra` in `moe.launch`.
static gpu::GPUFuncOp createKernel(OpBuilder &b, Location loc,
                                   gpu::GPUModuleOp module, StringRef name,
                                   ArrayRef<Type> arguments, bool bounded,
                                   ArrayRef<NamedAttribute> extra = {}) {
  b.setInsertionPointToEnd(module.getBody());
  SmallVector<NamedAttribute> launch = {
      b.getNamedAttr("threads", b.getI64IntegerAttr(kRowsPerBlock * kWarpSize)),
      b.getNamedAttr("rows_per_block", b.getI64IntegerAttr(kRowsPerBlock)),
      b.getNamedAttr("bounded", b.getI64IntegerAttr(bounded))};
  llvm::append_range(launch, extra);
  auto func = createKernelFunc(b, loc, name, arguments, launch);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildQuantizeKernel(OpBuilder &b, gpu::GPUModuleOp module,
                               QuantizeOp op, StringRef name) {
  if (failed(checkSupported(op)))
    return failure();
  QuantizationAttr quantization = op.getQuantization();
  ScaleLayout layout = *quantization.getScales();
  auto inputType = op.getInput().getType();
  int64_t columns = inputType.getDimSize(1);
  bool bounded = isAlignedRows(op.getInput());

  OpBuilder::InsertionGuard guard(b);
  auto dynamic = ShapedType::kDynamic;
  SmallVector<int64_t> scalesShape(
      cast<RankedTensorType>(op.getScales().getType()).getShape());
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, columns}, inputType.getElementType()),
      MemRefType::get({dynamic, columns}, b.getI8Type()),
      MemRefType::get(scalesShape, b.getF32Type())};
  if (layout == ScaleLayout::PerTensor)
    arguments.push_back(MemRefType::get({1}, b.getI32Type()));
  if (bounded)
    arguments.push_back(MemRefType::get({1}, b.getI32Type()));
  // Grid ceil(rows / rows_per_block) of `threads`, one warp per row.
  gpu::GPUFuncOp func =
      createKernel(b, op.getLoc(), module, name, arguments, bounded);
  bool fp8 = quantization.getFormat() == QuantFormat::Fp8;
  QuantizeBuilder(b, op.getLoc(), fp8, layout, columns).build(func, bounded);
  return func;
}

FailureOr<gpu::GPUFuncOp>
mlir::moe::buildQuantizeAmaxKernel(OpBuilder &b, gpu::GPUModuleOp module,
                                   QuantizeOp op, StringRef name) {
  if (failed(checkSupported(op)))
    return failure();
  auto inputType = op.getInput().getType();
  int64_t columns = inputType.getDimSize(1);
  auto producer = op.getInput().getDefiningOp<ExpertMatmulOp>();
  bool bounded = isAlignedRows(op.getInput());

  OpBuilder::InsertionGuard guard(b);
  auto dynamic = ShapedType::kDynamic;
  SmallVector<Type> arguments = {
      MemRefType::get({dynamic, columns}, inputType.getElementType()),
      MemRefType::get({1}, b.getI32Type())};
  std::optional<int64_t> slotPadding;
  if (bounded) {
    arguments.push_back(MemRefType::get({1}, b.getI32Type()));
    arguments.push_back(MemRefType::get({dynamic}, b.getI32Type()));
    slotPadding = producer.getNumExperts() * (*producer.getBlockM() - 1);
  }
  // Two blocks of 4 warps per SM of an H100 (132), one atomic per warp on
  // the one word. Measured (H200): the intermediate's amax at M = 4096
  // (40k rows of 768) takes 43 µs, about a third of the read bandwidth, so
  // the cap is a candidate for tuning.
  gpu::GPUFuncOp func = createKernel(
      b, op.getLoc(), module, name, arguments, bounded,
      {b.getNamedAttr("max_blocks", b.getI64IntegerAttr(264))});
  bool fp8 = op.getQuantization().getFormat() == QuantFormat::Fp8;
  QuantizeBuilder(b, op.getLoc(), fp8, ScaleLayout::PerTensor, columns)
      .buildAmax(func, slotPadding);
  return func;
}
