//===- ExpertMatmulTile.cpp - the MoE part of the expert GEMM -------------===//

#include "ExpertMatmulTile.h"

#include "moe/Conversion/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::expert_matmul;

void mlir::moe::expert_matmul::buildIfThen(OpBuilder &b, Location loc,
                                           Value condition,
                                           function_ref<void()> body) {
  auto ifOp = scf::IfOp::create(b, loc, condition, /*withElse=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifOp.thenBlock());
  body();
}

Value ExpertTileEmitter::index(int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value ExpertTileEmitter::i32(int64_t value) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(value));
}

Value ExpertTileEmitter::f32(double value) {
  return arith::ConstantOp::create(
      b, loc, b.getF32FloatAttr(static_cast<float>(value)));
}

Value ExpertTileEmitter::i64(int64_t value) {
  return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(value));
}

Value ExpertTileEmitter::addressOf(Value view) {
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, view);
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), pointer);
}

Value ExpertTileEmitter::assignmentOf(Value slot) {
  Value word =
      tile.ownSlots
          ? memref::LoadOp::create(
                b, loc, tile.ownSlots,
                ValueRange{arith::SubIOp::create(b, loc, slot, tile.firstSlot)})
          : memref::LoadOp::create(b, loc, args.slots, ValueRange{slot});
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), word);
}

Value ExpertTileEmitter::inputRowOf(Value slot, Value &real) {
  Value assignment = assignmentOf(slot);
  real = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                               tile.assignments);
  Value source = config.gather ? arith::DivUIOp::create(b, loc, assignment,
                                                        index(config.topK))
                                     .getResult()
                               : slot;
  return arith::SelectOp::create(b, loc, real, source, index(0));
}

Value ExpertTileEmitter::weightRowOf(Value row) {
  if (!config.activation)
    return arith::AddIOp::create(b, loc, tile.tileColumn, row);
  // The tile's gate rows, then their up rows: row r is output column
  // tileColumn + r (mod the output tile), gate below outputTile, else up.
  Value isGate = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row,
                                       index(config.outputTile()));
  Value column = arith::AddIOp::create(b, loc, tile.tileColumn, row);
  Value upColumn =
      arith::SubIOp::create(b, loc, column, index(config.outputTile()));
  return arith::SelectOp::create(b, loc, isGate, gateUpRow(column, false),
                                 gateUpRow(upColumn, true));
}

Value ExpertTileEmitter::gateUpRow(Value column, bool up) {
  if (!config.activation)
    return column;
  if (!config.gateUpInterleaved)
    return up ? arith::AddIOp::create(b, loc, column,
                                      index(config.outFeatures / 2))
              : column;
  Value gate = arith::MulIOp::create(b, loc, column, index(2));
  return up ? arith::AddIOp::create(b, loc, gate, index(1)) : gate;
}

std::pair<Value, Value> ExpertTileEmitter::upTileCoordinates(Value kOffset) {
  if (config.gateUpInterleaved)
    return {arith::AddIOp::create(b, loc, kOffset, index(config.inFeatures)),
            tile.weightsRow};
  return {kOffset, arith::AddIOp::create(b, loc, tile.weightsRow,
                                         index(config.outFeatures / 2))};
}

Value ExpertTileEmitter::decodeWeight(Value code, Value zeroBias) {
  // Integer codes become floats without a conversion instruction (those
  // issue at an eighth of the f32 rate): the f32 with bits 0x4B000000 | c
  // is 2^23 + c exactly, and subtracting 2^23 + zero is exact too.
  Type f32Type = b.getF32Type();
  constexpr int64_t kMagicBits = 0x4B000000;
  constexpr double kMagic = 8388608.0; // 2^23
  if (zeroBias)
    return arith::SubFOp::create(
        b, loc,
        arith::BitcastOp::create(
            b, loc, f32Type,
            arith::OrIOp::create(b, loc, code, i32(kMagicBits))),
        zeroBias);
  if (config.format != QuantFormat::Mxfp4) {
    // Two's complement in 4 or 8 bits: flipping the sign bit offsets the
    // code by 2^(bits − 1), which the subtraction takes back.
    int64_t signBit = config.format == QuantFormat::Int4Weight ? 8 : 128;
    Value biased =
        arith::XOrIOp::create(b, loc, code, i32(kMagicBits | signBit));
    return arith::SubFOp::create(b, loc,
                                 arith::BitcastOp::create(b, loc, f32Type, biased),
                                 f32(kMagic + signBit));
  }
  // e2m1 (sign, exponent e, mantissa m): with e·m at bits 24..22 of an f32
  // the value is (1 + m/2)·2^(e − 127), or m/2·2^−126 (a denormal) for
  // e = 0, that is the e2m1 value times 2^−126 either way; the product by
  // 2^126 is exact (denormals are kept: no ftz).
  Value magnitude = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, code, i32(7)),
      i32(22));
  Value sign = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, code, i32(8)),
      i32(28));
  Value bits = arith::OrIOp::create(b, loc, magnitude, sign);
  return arith::MulFOp::create(b, loc,
                               arith::BitcastOp::create(b, loc, f32Type, bits),
                               f32(std::ldexp(1.0, 126)));
}

Int4PairDecoder ExpertTileEmitter::int4PairDecoder(Value scale,
                                                   Value zeroBias) {
  // A byte of two codes placed at bits 15..22, inside an f32's mantissa,
  // becomes an f32 with one logical op per code: with the exponent of 256
  // (0x43800000) mantissa bit 15 counts one, so the low code becomes 256 +
  // u and the high one 256 + 16u (u: the unsigned nibble; two's complement
  // codes have their sign bit flipped in the same op, u = c + 8). One fma
  // per code then subtracts the offset and zero point and scales: its
  // constant, (256 + z)s or (16 + z)s, is rounded to f32 once, so a value
  // is off by at most 2^-24 of 272|s| (2^-16 |s|): a code at its zero point
  // decodes to that instead of 0, and other values move by far less than
  // the bf16 rounding that follows. About 3 operations per code instead of
  // 6 (docs/gpu-benchmark-quantized.md).
  constexpr int64_t kExponentOf256 = 0x43800000;
  constexpr int64_t kLowSign = 0x00040000, kHighSign = 0x00400000;
  bool twosComplement = !zeroBias;
  Int4PairDecoder decoder;
  decoder.lowFlip = i32(kExponentOf256 | (twosComplement ? kLowSign : 0));
  decoder.highFlip = i32(kExponentOf256 | (twosComplement ? kHighSign : 0));
  // What the codes hold beyond their values, times s: 256 + z and 16 + z
  // (the high code is scaled by s/16), or with flipped sign bits 264 and
  // 24.
  Value lowOffset, highOffset;
  if (zeroBias) {
    Value zero = arith::SubFOp::create(b, loc, zeroBias,
                                       f32(8388608.0)); // 2^23
    lowOffset = arith::MulFOp::create(
        b, loc, arith::AddFOp::create(b, loc, zero, f32(256.0)), scale);
    highOffset = arith::MulFOp::create(
        b, loc, arith::AddFOp::create(b, loc, zero, f32(16.0)), scale);
  } else {
    lowOffset = arith::MulFOp::create(b, loc, f32(264.0), scale);
    highOffset = arith::MulFOp::create(b, loc, f32(24.0), scale);
  }
  decoder.lowOffset = arith::NegFOp::create(b, loc, lowOffset);
  decoder.highOffset = arith::NegFOp::create(b, loc, highOffset);
  decoder.lowScale = scale;
  decoder.highScale = arith::MulFOp::create(b, loc, scale, f32(0.0625));
  return decoder;
}

Value ExpertTileEmitter::decodeInt4Pair(const Int4PairDecoder &decoder,
                                        Value placed) {
  constexpr int64_t kLowCode = 0x00078000, kHighCode = 0x00780000;
  Type f32Type = b.getF32Type();
  auto decode = [&](int64_t mask, Value flip, Value codeScale,
                    Value offset) -> Value {
    Value bits = arith::XOrIOp::create(
        b, loc, arith::AndIOp::create(b, loc, placed, i32(mask)), flip);
    return math::FmaOp::create(b, loc,
                               arith::BitcastOp::create(b, loc, f32Type, bits),
                               codeScale, offset);
  };
  auto pairType = VectorType::get({2}, f32Type);
  Value pair = LLVM::PoisonOp::create(b, loc, pairType);
  pair = LLVM::InsertElementOp::create(
      b, loc, pair,
      decode(kLowCode, decoder.lowFlip, decoder.lowScale, decoder.lowOffset),
      i32(0));
  pair = LLVM::InsertElementOp::create(b, loc, pair,
                                       decode(kHighCode, decoder.highFlip,
                                              decoder.highScale,
                                              decoder.highOffset),
                                       i32(1));
  // Both rounded to bf16 by one cvt.rn.bf16x2.f32, low first.
  return LLVM::BitcastOp::create(
      b, loc, b.getI32Type(),
      arith::TruncFOp::create(b, loc, VectorType::get({2}, b.getBF16Type()),
                              pair));
}

Int4Bf16PairDecoder ExpertTileEmitter::int4Bf16PairDecoder(Value scale,
                                                           Value zeroBias) {
  // A nibble u at bits 0..3 of a half, ORed with the bf16 exponent of 128
  // (0x4300: mantissa bit 0 counts one), is the bf16 128 + u; two's
  // complement codes have their sign bit flipped by the same op (u = c + 8).
  // 128 + u less 128 + z (or 136) is u − z (or c), exact in bf16; times the
  // scale it is rounded once, as the f32 path rounds (u − z)·s, but with the
  // scale itself rounded to bf16 first (a relative 2^-9 at most).
  constexpr int64_t kExponentOf128 = 0x43004300, kSigns = 0x00080008;
  constexpr int64_t kOnePerHalf = 0x00010001;
  Type i32Type = b.getI32Type();
  auto bf16Pair = VectorType::get({2}, b.getBF16Type());
  Int4Bf16PairDecoder decoder;
  decoder.flip = i32(zeroBias ? kExponentOf128 : kExponentOf128 | kSigns);
  Value bias = decoder.flip;
  if (zeroBias) {
    // zeroBias is the f32 2^23 + z: z is its low mantissa byte. 128 + z is
    // exact for any z up to 127 (int4 zero points are 0..15).
    Value zero = arith::AndIOp::create(
        b, loc, arith::BitcastOp::create(b, loc, i32Type, zeroBias), i32(0xff));
    bias = arith::AddIOp::create(
        b, loc, i32(kExponentOf128),
        arith::MulIOp::create(b, loc, zero, i32(kOnePerHalf)));
  }
  decoder.bias = LLVM::BitcastOp::create(b, loc, bf16Pair, bias);
  decoder.scale = bf16ScalePair(scale);
  return decoder;
}

Value ExpertTileEmitter::bf16ScalePair(Value scale) {
  auto f32Pair = VectorType::get({2}, b.getF32Type());
  Value scales = LLVM::PoisonOp::create(b, loc, f32Pair);
  for (int64_t i = 0; i < 2; ++i)
    scales = LLVM::InsertElementOp::create(b, loc, scales, scale, i32(i));
  return arith::TruncFOp::create(b, loc, VectorType::get({2}, b.getBF16Type()),
                                 scales);
}

Value ExpertTileEmitter::decodeMxfp4Bf16Pair(Value scale, Value pair) {
  // An e2m1 code s·eem (sign, two exponent bits, one mantissa bit) with its
  // sign at bit 15 of a half and eem at bits 6..8 is a bf16 of exponent
  // field ee and mantissa m·0.5: 2^(ee − 127)·(1 + m/2), or for ee = 0 the
  // subnormal 2^-126·(m/2); either way the code's value times 2^-126. Times
  // 2^126 and then the group's power of two, both exact in bf16 (the
  // product only rounds where it leaves bf16's range).
  constexpr int64_t kMagnitudes = 0x01c001c0, kSigns = 0x80008000;
  constexpr float kTwoTo126 = 8.5070591730234616e37f;
  auto bf16Pair = VectorType::get({2}, b.getBF16Type());
  Value magnitudes = arith::AndIOp::create(
      b, loc, arith::ShLIOp::create(b, loc, pair, i32(6)), i32(kMagnitudes));
  Value signs = arith::AndIOp::create(
      b, loc, arith::ShLIOp::create(b, loc, pair, i32(12)), i32(kSigns));
  Value scaledDown = LLVM::BitcastOp::create(
      b, loc, bf16Pair, arith::OrIOp::create(b, loc, magnitudes, signs));
  auto twoTo126 = arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(bf16Pair,
                             b.getFloatAttr(b.getBF16Type(), kTwoTo126)));
  Value value = arith::MulFOp::create(
      b, loc, arith::MulFOp::create(b, loc, scaledDown, twoTo126), scale);
  return LLVM::BitcastOp::create(b, loc, b.getI32Type(), value);
}

Value ExpertTileEmitter::decodeInt4Bf16Pair(const Int4Bf16PairDecoder &decoder,
                                            Value pair) {
  constexpr int64_t kCodes = 0x000f000f;
  auto bf16Pair = VectorType::get({2}, b.getBF16Type());
  Value biased = LLVM::BitcastOp::create(
      b, loc, bf16Pair,
      arith::XOrIOp::create(b, loc,
                            arith::AndIOp::create(b, loc, pair, i32(kCodes)),
                            decoder.flip));
  Value centered = arith::SubFOp::create(b, loc, biased, decoder.bias);
  return LLVM::BitcastOp::create(
      b, loc, b.getI32Type(),
      arith::MulFOp::create(b, loc, centered, decoder.scale));
}

SmallVector<Value, 4>
ExpertTileEmitter::decodeInt4Pairs(Value word, Value scale, Value zeroBias) {
  // Byte j (codes 2j and 2j + 1) is moved to bits 15..22 by one shift.
  Int4PairDecoder decoder = int4PairDecoder(scale, zeroBias);
  SmallVector<Value, 4> pairs;
  for (int64_t j = 0; j < 4; ++j) {
    int64_t shift = 15 - 8 * j;
    Value placed =
        shift > 0 ? arith::ShLIOp::create(b, loc, word, i32(shift))
                        .getResult()
                  : arith::ShRUIOp::create(b, loc, word, i32(-shift))
                        .getResult();
    pairs.push_back(decodeInt4Pair(decoder, placed));
  }
  return pairs;
}

SmallVector<Value>
ExpertTileEmitter::weightOnlyScales(Value step, ArrayRef<Value> rows,
                                    ArrayRef<Value> columns) {
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  Value kOffset = arith::AddIOp::create(
      b, loc, tile.kBase,
      arith::MulIOp::create(b, loc, step, index(config.blockK())));
  SmallVector<Value> values;
  for (auto [row, column] : llvm::zip(rows, columns)) {
    // A row past N (the last tile's overhang) reads row 0's scales; its
    // columns are dropped.
    Value weightRow = weightRowOf(row);
    weightRow = arith::SelectOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, weightRow,
                              index(config.outFeatures)),
        weightRow, index(0));
    Value groupIndex = arith::DivUIOp::create(
        b, loc,
        arith::AddIOp::create(
            b, loc, kOffset,
            arith::MulIOp::create(b, loc, column, index(kValuesPerChunk))),
        index(config.group));
    Value scale =
        memref::LoadOp::create(b, loc, args.weightScales,
                               ValueRange{tile.expert, weightRow, groupIndex});
    if (config.format == QuantFormat::Mxfp4) {
      // e8m0: the byte is an f32 exponent field, 2^(byte − 127).
      Value bits = arith::ShLIOp::create(
          b, loc, arith::ExtUIOp::create(b, loc, i32, scale),
          arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(23)));
      scale = arith::BitcastOp::create(b, loc, f32, bits);
    }
    values.push_back(scale);
    // A zero point z as the f32 2^23 + z (bits 0x4B000000 | z), which
    // decodeWeight subtracts.
    if (config.zeroPoint)
      values.push_back(arith::BitcastOp::create(
          b, loc, f32,
          arith::OrIOp::create(
              b, loc,
              arith::ExtUIOp::create(
                  b, loc, i32,
                  memref::LoadOp::create(
                      b, loc, args.weightZeros,
                      ValueRange{tile.expert, weightRow, groupIndex})),
              arith::ConstantOp::create(b, loc,
                                        b.getI32IntegerAttr(0x4B000000)))));
  }
  return values;
}

SmallVector<Value> ExpertTileEmitter::blockScales(Value step,
                                                  ArrayRef<Value> scaleRows) {
  // The K block of this step among all of K (split-K blocks start at kBase).
  Value kBlock = arith::AddIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, tile.kBase, index(kScaleBlock)),
      step);
  Value rowScales[2];
  for (int64_t half = 0; half < 2; ++half)
    rowScales[half] = memref::LoadOp::create(
        b, loc, args.inputScales, ValueRange{scaleRows[half], kBlock});
  // 64-column chunks of the B tile: gate rows, then (gated) their up rows;
  // a chunk's rows never straddle a 128-row scale block (as halves, N/2 is
  // a multiple of 64; interleaved, 64 output columns from a multiple of 64
  // are the 128 rows of one block).
  int64_t chunks = config.blockN / 64;
  int64_t gateChunks = config.activation ? chunks / 2 : chunks;
  SmallVector<Value> chunkScales;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    bool up = chunk >= gateChunks;
    Value column = arith::AddIOp::create(
        b, loc, tile.tileColumn, index((up ? chunk - gateChunks : chunk) * 64));
    Value nBlock = arith::DivUIOp::create(b, loc, gateUpRow(column, up),
                                          index(kScaleBlock));
    chunkScales.push_back(memref::LoadOp::create(
        b, loc, args.weightScales, ValueRange{tile.expert, nBlock, kBlock}));
  }
  SmallVector<Value> scales;
  for (int64_t half = 0; half < 2; ++half)
    for (Value chunkScale : chunkScales)
      scales.push_back(
          arith::MulFOp::create(b, loc, rowScales[half], chunkScale));
  return scales;
}

Value ExpertTileEmitter::accumulatorValue(Value accumulator, int64_t reg) {
  Value value = LLVM::ExtractValueOp::create(b, loc, accumulator, reg);
  if (config.format == QuantFormat::Int8)
    value = arith::SIToFPOp::create(b, loc, b.getF32Type(), value);
  return value;
}

SmallVector<Value, 2>
ExpertTileEmitter::weightedPair(Value accumulator, int64_t group, int64_t half,
                                Value scale, const EpilogueOperands &operands) {
  SmallVector<Value, 2> values;
  for (int64_t pair = 0; pair < 2; ++pair) {
    Value value =
        epilogueValue(accumulator, target.registerOf(group, half, pair), half,
                      2 * group + pair, /*up=*/false, operands);
    values.push_back(arith::MulFOp::create(b, loc, value, scale));
  }
  return values;
}

void ExpertTileEmitter::combinePairs(Value accumulator, int64_t half,
                                     Value laneColumn, Value token, Value scale,
                                     const EpilogueOperands &operands) {
  // Element (token, column) of the sums lies token · N + column elements
  // past the memref's offset.
  Value offset =
      memref::ExtractStridedMetadataOp::create(b, loc, args.out).getOffset();
  Value rowOffset = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(
          b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), token),
          i64(config.outFeatures)),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), offset));
  Value base = addressOf(args.out);
  for (int64_t group = 0; group < config.outputTile() / 8; ++group) {
    Value column = arith::AddIOp::create(b, loc, laneColumn, index(8 * group));
    std::optional<OpBuilder::InsertionGuard> maskGuard;
    maskColumnPair(column, maskGuard);
    SmallVector<Value, 2> values =
        weightedPair(accumulator, group, half, scale, operands);
    Value element = arith::AddIOp::create(
        b, loc, rowOffset,
        arith::IndexCastOp::create(b, loc, b.getI64Type(), column));
    Value address = arith::AddIOp::create(
        b, loc, base, arith::MulIOp::create(b, loc, element, i64(4)));
    target.reduceAddPair(b, loc, address, values[0], values[1]);
  }
}

void ExpertTileEmitter::storeCombineRows(Value accumulator, int64_t half,
                                         const EpilogueRow &row,
                                         Value laneColumn,
                                         const EpilogueOperands &operands,
                                         PairSink sink) {
  for (int64_t group = 0; group < config.outputTile() / 8; ++group) {
    Value column = arith::AddIOp::create(b, loc, laneColumn, index(8 * group));
    std::optional<OpBuilder::InsertionGuard> maskGuard;
    maskColumnPair(column, maskGuard);
    SmallVector<Value, 2> values =
        weightedPair(accumulator, group, half, row.scale, operands);
    sink(column, values[0], values[1]);
  }
}

void ExpertTileEmitter::maskColumnPair(
    Value column, std::optional<OpBuilder::InsertionGuard> &guard) {
  // The last column tile may stick out of a width that is not a multiple of
  // it: its extra columns are products with the next expert's rows (or
  // TMA's zero fill) and are dropped (and their scales, past the end, are
  // not read). Widths are multiples of 8: a pair is in or out whole.
  if (config.width() % config.outputTile() == 0)
    return;
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(config.width()));
  auto maskIf = scf::IfOp::create(b, loc, inside, false);
  guard.emplace(b);
  b.setInsertionPointToStart(maskIf.thenBlock());
}

Value ExpertTileEmitter::epilogueValue(Value accumulator, int64_t reg,
                                       int64_t half, int64_t columnIndex,
                                       bool up,
                                       const EpilogueOperands &operands) {
  Value value = accumulatorValue(accumulator, reg);
  if (operands.scaled) {
    Value weightScale =
        (up ? operands.upScales : operands.gateScales)[columnIndex];
    value = arith::MulFOp::create(
        b, loc, value,
        arith::MulFOp::create(b, loc, operands.rowScales[half], weightScale));
  }
  if (config.bias)
    value = arith::AddFOp::create(
        b, loc, value,
        (up ? operands.upBiases : operands.gateBiases)[columnIndex]);
  return value;
}

Value ExpertTileEmitter::loadColumnValue(Value table, Value column, bool up) {
  // The last tile's overhang (its products are dropped) reads column 0.
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       column, index(config.width()));
  column = arith::SelectOp::create(b, loc, inside, column, index(0));
  return memref::LoadOp::create(b, loc, table,
                                ValueRange{tile.expert, gateUpRow(column, up)});
}

ExpertTileEmitter::EpilogueOperands
ExpertTileEmitter::loadEpilogueOperands(Value laneColumn,
                                        ArrayRef<Value> scaleRows) {
  // Per-tensor and per-channel scales and the biases are all loaded here,
  // before the first store: behind the stores (atomics for the combine)
  // each load's latency would be paid in turn. Per fragment half the row's
  // input scale; per column of the thread (2 of every 8; gated: and its up
  // column) the weight scale and the bias; per tensor, one scale of each.
  EpilogueOperands operands;
  operands.scaled = config.isW8A8() && !config.hasBlockScales();
  int64_t threadColumns = config.outputTile() / 4;
  if (operands.scaled && config.scales == ScaleLayout::PerTensor) {
    operands.rowScales.assign(
        2,
        memref::LoadOp::create(b, loc, args.inputScales, ValueRange{index(0)}));
    Value weightScale = memref::LoadOp::create(b, loc, args.weightScales,
                                               ValueRange{tile.expert});
    operands.gateScales.assign(threadColumns, weightScale);
    operands.upScales.assign(threadColumns, weightScale);
  } else if (operands.scaled) {
    for (int64_t half = 0; half < 2; ++half)
      operands.rowScales.push_back(memref::LoadOp::create(
          b, loc, args.inputScales, ValueRange{scaleRows[half]}));
  }
  bool perChannel = operands.scaled && config.scales != ScaleLayout::PerTensor;
  if (!perChannel && !config.bias)
    return operands;
  // With split-K (a combine, so no activation), only the first split adds
  // the bias into the sums.
  Value firstSplit;
  if (config.bias && config.splitK > 1)
    firstSplit = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        gpu::BlockIdOp::create(b, loc, gpu::Dimension::z), index(0));
  auto loadBias = [&](Value column, bool up) -> Value {
    Value bias = loadColumnValue(args.biases, column, up);
    if (!firstSplit)
      return bias;
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    return arith::SelectOp::create(b, loc, firstSplit, bias, zero);
  };
  for (int64_t group = 0; group < config.outputTile() / 8; ++group)
    for (int64_t pair = 0; pair < 2; ++pair) {
      Value column =
          arith::AddIOp::create(b, loc, laneColumn, index(8 * group + pair));
      if (perChannel) {
        operands.gateScales.push_back(
            loadColumnValue(args.weightScales, column));
        if (config.activation)
          operands.upScales.push_back(
              loadColumnValue(args.weightScales, column, /*up=*/true));
      }
      if (config.bias) {
        operands.gateBiases.push_back(loadBias(column, /*up=*/false));
        if (config.activation)
          operands.upBiases.push_back(loadBias(column, /*up=*/true));
      }
    }
  return operands;
}

void ExpertTileEmitter::storeEpilogue(Value accumulator,
                                      ArrayRef<EpilogueRow> rows, Value tid,
                                      ArrayRef<Value> scaleRows) {
  emitEpilogue(accumulator, rows, tid, scaleRows, /*table=*/nullptr, Value());
}

void ExpertTileEmitter::stageEpilogue(Value accumulator,
                                      ArrayRef<EpilogueRow> rows, Value tid,
                                      ArrayRef<Value> scaleRows,
                                      Value fragmentRow,
                                      const EpilogueTable &table) {
  assert(stagesEpilogue() && "a tile of bf16 rows");
  emitEpilogue(accumulator, rows, tid, scaleRows, &table, fragmentRow);
}

void ExpertTileEmitter::emitEpilogue(Value accumulator,
                                     ArrayRef<EpilogueRow> rows, Value tid,
                                     ArrayRef<Value> scaleRows,
                                     const EpilogueTable *table,
                                     Value fragmentRow) {
  Value laneColumn = arith::AddIOp::create(
      b, loc, target.laneColumnOffset(b, loc, tid), tile.tileColumn);
  EpilogueOperands operands = loadEpilogueOperands(laneColumn, scaleRows);
  for (int64_t half = 0; half < 2; ++half) {
    const EpilogueRow &row = rows[half];
    Value tableRow =
        table ? arith::AddIOp::create(b, loc, fragmentRow, index(8 * half))
                    .getResult()
              : Value();
    // The row's destination, for the copy out of the table: its
    // assignment's row if it holds one. The four lanes of a row store the
    // same word.
    if (table && config.combine) {
      Value assignment =
          arith::IndexCastOp::create(b, loc, b.getI32Type(), row.assignment);
      memref::StoreOp::create(
          b, loc,
          arith::SelectOp::create(b, loc, row.scheduled, assignment, i32(-1)),
          table->destinations, ValueRange{tableRow});
    }
    auto sinkTo = [&](Value destinationRow) {
      return [&, destinationRow](Value column, Value first, Value second) {
        if (!table) {
          storePair(destinationRow, column, first, second);
          return;
        }
        // Word (column − the tile's first column) / 2 of the row.
        Value word = arith::DivUIOp::create(
            b, loc, arith::SubIOp::create(b, loc, column, tile.tileColumn),
            index(2));
        Value pair = LLVM::BitcastOp::create(b, loc, b.getI32Type(),
                                             packPair(first, second));
        memref::StoreOp::create(b, loc, pair, table->pairs,
                                ValueRange{tableRow, word});
      };
    };
    if (!config.combine) {
      auto sink = sinkTo(row.slot);
      storeRows(accumulator, half, row, laneColumn, operands, sink);
      continue;
    }
    buildIfThen(b, loc, row.scheduled, [&] {
      if (config.combineRows) {
        auto sink = sinkTo(row.assignment);
        storeCombineRows(accumulator, half, row, laneColumn, operands, sink);
      } else {
        combinePairs(accumulator, half, laneColumn, row.token, row.scale,
                     operands);
      }
    });
  }
}

bool ExpertTileEmitter::stagesEpilogue() const {
  return (!config.combine || config.combineRows) && config.splitK == 1 &&
         !config.swapAB;
}

void ExpertTileEmitter::copyEpilogueTable(const EpilogueTable &table,
                                          int64_t rows, Value firstRow,
                                          Value tid, int64_t threads) {
  int64_t chunksPerRow = config.outputTile() / 8;
  int64_t chunks = rows * chunksPerRow;
  assert(chunks % threads == 0 && "whole passes of the block's threads");
  constexpr unsigned kChunkAlignment = 16;
  auto chunkType = VectorType::get({4}, b.getI32Type());
  Value tableBase = addressOf(table.pairs);
  for (int64_t pass = 0; pass < chunks / threads; ++pass) {
    Value chunk = arith::AddIOp::create(b, loc, tid, index(pass * threads));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(chunksPerRow));
    Value within = arith::RemUIOp::create(b, loc, chunk, index(chunksPerRow));
    Value column =
        arith::AddIOp::create(b, loc, tile.tileColumn,
                              arith::MulIOp::create(b, loc, within, index(8)));
    Value stored, destination;
    if (config.combine) {
      Value word =
          memref::LoadOp::create(b, loc, table.destinations, ValueRange{row});
      stored = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, word,
                                     i32(0));
      destination = arith::IndexCastOp::create(b, loc, b.getIndexType(), word);
    } else {
      Value tileRow =
          firstRow ? arith::AddIOp::create(b, loc, firstRow, row).getResult()
                   : row;
      destination = arith::AddIOp::create(b, loc, tile.firstSlot, tileRow);
    }
    // The last column tile's overhang past the width is dropped (widths
    // are multiples of 8: a chunk is in or out whole).
    if (config.width() % config.outputTile() != 0) {
      Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           column, index(config.width()));
      stored = stored
                   ? arith::AndIOp::create(b, loc, stored, inside).getResult()
                   : inside;
    }
    auto copyChunk = [&] {
      Value from = arith::AddIOp::create(
          b, loc, tableBase,
          arith::IndexCastOp::create(
              b, loc, b.getI64Type(),
              arith::AddIOp::create(
                  b, loc,
                  arith::MulIOp::create(b, loc, row,
                                        index(config.epilogueTablePitch())),
                  arith::MulIOp::create(b, loc, within, index(16)))));
      Value value = LLVM::LoadOp::create(b, loc, chunkType,
                                         pointerTo(from, kSharedAddressSpace),
                                         kChunkAlignment);
      LLVM::StoreOp::create(
          b, loc, value,
          pointerTo(outAddress(destination, column), kGlobalAddressSpace),
          kChunkAlignment);
    };
    if (stored)
      buildIfThen(b, loc, stored, copyChunk);
    else
      copyChunk();
  }
}

void ExpertTileEmitter::storeRows(Value accumulator, int64_t half,
                                  const EpilogueRow &rows, Value laneColumn,
                                  const EpilogueOperands &operands,
                                  PairSink sink) {
  // No branch per row: a block never reaches past the padded count, and a
  // padding slot's A row is zero, so its outputs are zero as the op states
  // (with a bias, or with input_tma's unfilled rows, once selected away).
  Value zero = config.zeroesPaddingRows()
                   ? arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f))
                         .getResult()
                   : Value();
  for (int64_t group = 0; group < config.outputTile() / 8; ++group) {
    Value column = arith::AddIOp::create(b, loc, laneColumn, index(8 * group));
    std::optional<OpBuilder::InsertionGuard> maskGuard;
    maskColumnPair(column, maskGuard);
    SmallVector<Value, 2> pairValues;
    for (int64_t pair = 0; pair < 2; ++pair) {
      int64_t reg = target.registerOf(group, half, pair);
      int64_t columnIndex = 2 * group + pair;
      Value value = epilogueValue(accumulator, reg, half, columnIndex,
                                  /*up=*/false, operands);
      if (config.activation) {
        // The up column of this gate column sits one output tile further:
        // in the same thread.
        int64_t upRegister =
            target.registerOf(group + config.outputTile() / 8, half, pair);
        Value up = epilogueValue(accumulator, upRegister, half, columnIndex,
                                 /*up=*/true, operands);
        value = buildGatedActivation(b, loc, *config.activation, value, up,
                                     config.alpha, config.limit);
      }
      if (config.zeroesPaddingRows())
        value = arith::SelectOp::create(b, loc, rows.scheduled, value, zero);
      pairValues.push_back(value);
    }
    sink(column, pairValues[0], pairValues[1]);
  }
}

void ExpertTileEmitter::storePair(Value slot, Value column, Value first,
                                  Value second) {
  // Column is even, so the word is 4-byte aligned.
  LLVM::StoreOp::create(
      b, loc, packPair(first, second),
      pointerTo(outAddress(slot, column), kGlobalAddressSpace),
      /*alignment=*/4);
}

Value ExpertTileEmitter::outAddress(Value row, Value column) {
  // Element (row, column) lies row · width + column elements past the
  // memref's offset.
  Value offset =
      memref::ExtractStridedMetadataOp::create(b, loc, args.out).getOffset();
  Value element = arith::AddIOp::create(
      b, loc,
      arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, row, index(config.width())),
          column),
      offset);
  return arith::AddIOp::create(
      b, loc, addressOf(args.out),
      arith::MulIOp::create(
          b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), element),
          i64(2)));
}

Value ExpertTileEmitter::pointerTo(Value address, unsigned addressSpace) {
  return LLVM::IntToPtrOp::create(
      b, loc, LLVM::LLVMPointerType::get(b.getContext(), addressSpace),
      address);
}

Value ExpertTileEmitter::packPair(Value first, Value second) {
  auto pairType = VectorType::get({2}, b.getBF16Type());
  Value pair = LLVM::PoisonOp::create(b, loc, pairType);
  Value values[] = {first, second};
  for (auto [position, value] : llvm::enumerate(values)) {
    Value narrow = arith::TruncFOp::create(b, loc, b.getBF16Type(), value);
    pair = LLVM::InsertElementOp::create(
        b, loc, pair, narrow,
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(position)));
  }
  return pair;
}

SmallVector<EpilogueRow, 2>
ExpertTileEmitter::loadEpilogueRows(Value fragmentRow) {
  SmallVector<EpilogueRow, 2> epilogueRows;
  for (int64_t half = 0; half < 2; ++half) {
    Value row = arith::AddIOp::create(b, loc, fragmentRow, index(8 * half));
    EpilogueRow rows;
    rows.slot = arith::AddIOp::create(b, loc, tile.firstSlot, row);
    // Rows out need to know their padding only to zero it
    // (zeroesPaddingRows).
    if (!config.combine && !config.zeroesPaddingRows()) {
      epilogueRows.push_back(rows);
      continue;
    }
    Value assignment = assignmentOf(rows.slot);
    rows.scheduled = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, rows.slot,
                              tile.paddedCount),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, assignment,
                              tile.assignments));
    if (!config.combine) {
      epilogueRows.push_back(rows);
      continue;
    }
    // A padding slot reads assignment 0's weight, which is then unused.
    Value safe =
        arith::SelectOp::create(b, loc, rows.scheduled, assignment, index(0));
    rows.assignment = safe;
    if (config.unpermute) {
      rows.token = safe;
      rows.scale = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f));
      epilogueRows.push_back(rows);
      continue;
    }
    rows.token = arith::DivUIOp::create(b, loc, safe, index(config.topK));
    Value choice = arith::RemUIOp::create(b, loc, safe, index(config.topK));
    rows.scale = memref::LoadOp::create(b, loc, args.routingWeights,
                                        ValueRange{rows.token, choice});
    if (config.routedScalingFactor != 1.0)
      rows.scale = arith::MulFOp::create(
          b, loc, rows.scale,
          arith::ConstantOp::create(b, loc,
                                    b.getF32FloatAttr(static_cast<float>(
                                        config.routedScalingFactor))));
    epilogueRows.push_back(rows);
  }
  return epilogueRows;
}

std::pair<Value, Value> ExpertTileEmitter::rasterizeLinear(Value linear,
                                                           Value slotBlocks,
                                                           Value columnTiles) {
  Value groupBlocks =
      arith::MulIOp::create(b, loc, columnTiles, index(config.groupM));
  Value group = arith::DivUIOp::create(b, loc, linear, groupBlocks);
  Value firstBlock = arith::MulIOp::create(b, loc, group, index(config.groupM));
  // The last group may hold fewer slot blocks.
  Value groupRows = arith::MinUIOp::create(
      b, loc, arith::SubIOp::create(b, loc, slotBlocks, firstBlock),
      index(config.groupM));
  Value within = arith::RemUIOp::create(b, loc, linear, groupBlocks);
  Value block = arith::AddIOp::create(
      b, loc, firstBlock, arith::RemUIOp::create(b, loc, within, groupRows));
  Value columnTile = arith::DivUIOp::create(b, loc, within, groupRows);
  return {block, columnTile};
}

Value ExpertTileEmitter::firstWeightRow() {
  // Interleaved gate/up weights are read as [E·N/2, 2K] row pairs.
  int64_t rowsPerExpert =
      config.gateUpInterleaved ? config.outFeatures / 2 : config.outFeatures;
  return arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, tile.expert, index(rowsPerExpert)),
      tile.tileColumn);
}

std::pair<Value, Value> ExpertTileEmitter::loadScheduleSize() {
  Value paddedCount = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, args.padded, ValueRange{index(0)}));
  // M·k, from the schedule's length: M·k + E·(block_m − 1) slots.
  Value assignments = arith::SubIOp::create(
      b, loc, memref::DimOp::create(b, loc, args.slots, 0),
      index(config.numExperts * (config.blockM - 1)));
  return {paddedCount, assignments};
}
