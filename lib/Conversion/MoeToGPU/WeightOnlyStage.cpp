//===- WeightOnlyStage.cpp - stored codes into bf16 operands --------------===//

#include "WeightOnlyStage.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cstdlib>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::expert_matmul;

/// The 2048-byte tile of 64 weight rows × 64 of K in moe.prepack's
/// wgmma_a_4bit order, and its 16-byte chunks.
static constexpr int64_t kPackedTileBytes = 2048, kChunksPerPackedTile = 128;

static MemRefType sharedMemRef(OpBuilder &b, ArrayRef<int64_t> shape,
                               Type element) {
  auto workgroup =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  return MemRefType::get(shape, element, MemRefLayoutAttrInterface(),
                         workgroup);
}

void WeightOnlyStageEmitter::plan(Value tid) {
  // Every thread copies its share of the chunks. With the register operand
  // each decodes the chunks it copied: packed, thread t of warpgroup w
  // copies those of the warpgroup's own 64-row groups.
  bool ownGroups = config.registerOperand && config.swappedWarpgroups > 1;
  if (config.packedCodes)
    planPackedChunks(tid, config.threads(), ownGroups);
  else
    planRowChunks(tid, config.threads());
  if (!config.registerOperand) {
    planDequantization(tid);
    return;
  }
  operandChunkRow = codeRow;
  operandChunkColumn = codeColumn;
  planOperandRows(tid);
}

void WeightOnlyStageEmitter::planCopies(Value tid, int64_t threads) {
  if (config.packedCodes)
    planPackedChunks(tid, threads, /*ownGroups=*/false);
  else
    planRowChunks(tid, threads);
}

void WeightOnlyStageEmitter::planDecoding(Value tid) {
  assert(config.registerOperand && "only the register operand is decoded "
                                   "apart from its copies");
  // Packed: fragment i of thread t of warpgroup w is chunk t mod 128 of the
  // warpgroup's own 64-row group w · fragments + i.
  if (config.packedCodes) {
    Value warpgroup =
        arith::DivUIOp::create(b, loc, tid, index(kWarpgroupThreads));
    Value inTile =
        arith::RemUIOp::create(b, loc, tid, index(kChunksPerPackedTile));
    for (int64_t fragment = 0; fragment < config.mmaFragments(); ++fragment) {
      auto [row, column] =
          packedDestination(ownGroup(warpgroup, fragment), inTile);
      operandChunkRow.push_back(row);
      operandChunkColumn.push_back(column);
    }
  }
  planOperandRows(tid);
}

void WeightOnlyStageEmitter::planRowChunks(Value tid, int64_t threads) {
  // Each thread copies its 16-byte chunks of the stored codes of the tile's
  // BN weight rows (a row past N copies nothing).
  int64_t chunksPerRow = config.packedRowBytes() / kChunkBytes;
  for (int64_t i = 0; i < config.blockN * chunksPerRow / threads; ++i) {
    Value chunk = arith::AddIOp::create(b, loc, tid, index(threads * i));
    Value row = arith::DivUIOp::create(b, loc, chunk, index(chunksPerRow));
    Value column = arith::MulIOp::create(
        b, loc, arith::RemUIOp::create(b, loc, chunk, index(chunksPerRow)),
        index(kChunkBytes));
    Value weightRow = moe.weightRowOf(row);
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         weightRow, index(config.outFeatures));
    codeRow.push_back(row);
    codeColumn.push_back(column);
    codeSourceRow.push_back(arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, tile.expert, index(config.outFeatures)),
        arith::SelectOp::create(b, loc, inside, weightRow, index(0))));
    codeBytes.push_back(
        arith::SelectOp::create(b, loc, inside, index(kChunkBytes), index(0)));
  }
}

void WeightOnlyStageEmitter::planDequantization(Value tid) {
  if (config.packedCodes) {
    // Per chunk and row half, the scale places of its rows (chunk 0, and 4
    // for groups of 32).
    for (auto [group, inTile] : llvm::zip(packedGroup, packedChunk))
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t scaleGroup = 0; scaleGroup < groupsPerStage();
             ++scaleGroup) {
          dequantRow.push_back(packedChunkRow(group, inTile, half));
          dequantColumn.push_back(index(4 * scaleGroup));
        }
    return;
  }
  // Codes in rows: the thread's chunks of the B tile.
  int64_t chunksPerRowB = config.blockK() / kValuesPerChunk;
  for (int64_t i = 0; i < config.blockN * chunksPerRowB / config.threads();
       ++i) {
    Value chunk =
        arith::AddIOp::create(b, loc, tid, index(config.threads() * i));
    dequantRow.push_back(
        arith::DivUIOp::create(b, loc, chunk, index(chunksPerRowB)));
    dequantColumn.push_back(
        arith::RemUIOp::create(b, loc, chunk, index(chunksPerRowB)));
  }
}

Value WeightOnlyStageEmitter::ownGroup(Value warpgroup, int64_t fragment) {
  return arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc, warpgroup, index(config.mmaFragments())),
      index(fragment));
}

std::pair<Value, Value>
WeightOnlyStageEmitter::packedDestination(Value group, Value inTile) {
  Value destination = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, group, index(kPackedTileBytes)),
      arith::MulIOp::create(b, loc, inTile, index(kChunkBytes)));
  return {arith::DivUIOp::create(b, loc, destination,
                                 index(config.packedRowBytes())),
          arith::RemUIOp::create(b, loc, destination,
                                 index(config.packedRowBytes()))};
}

void WeightOnlyStageEmitter::planPackedChunks(Value tid, int64_t threads,
                                              bool ownGroups) {
  // Codes in moe.prepack's wgmma_a_4bit order: per K step, a 2048-byte
  // tile per 64 weight rows, in which chunk 32 w + 4 r + q holds the codes
  // of rows 16 w + r and + 8 that thread 32 w + 4 r + q of the wgmma's
  // fragment multiplies. The stage's group f of 64 tile rows gets, at byte
  // 2048 f + 16 j, chunk j of its fragment: each 16-row slab of tile rows is
  // 16 consecutive weight rows (gate or up rows, in halves), found in the
  // tile of their 64-row group. Thread t copies chunks t, t + threads, ...
  // (the tile kernel reads back the same chunks: no other thread's). With
  // `ownGroups`, thread t of warpgroup w copies chunk t mod 128 of each of
  // the warpgroup's own 64-row groups.
  int64_t groups = config.blockN / kWarpgroupRows;
  int64_t kTiles = config.inFeatures / config.blockK();
  Value warpgroup, inWarpgroup;
  if (ownGroups) {
    warpgroup = arith::DivUIOp::create(b, loc, tid, index(kWarpgroupThreads));
    inWarpgroup =
        arith::RemUIOp::create(b, loc, tid, index(kChunksPerPackedTile));
  }
  auto chunkOf = [&](int64_t i) -> Value {
    if (!ownGroups)
      return arith::AddIOp::create(b, loc, tid, index(threads * i));
    return arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, ownGroup(warpgroup, i),
                              index(kChunksPerPackedTile)),
        inWarpgroup);
  };
  for (int64_t i = 0; i < groups * kChunksPerPackedTile / threads; ++i) {
    Value chunk = chunkOf(i);
    Value group =
        arith::DivUIOp::create(b, loc, chunk, index(kChunksPerPackedTile));
    Value inTile =
        arith::RemUIOp::create(b, loc, chunk, index(kChunksPerPackedTile));
    Value slab = arith::DivUIOp::create(b, loc, inTile, index(32));
    Value weightRow = moe.weightRowOf(arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, group, index(kWarpgroupRows)),
        arith::MulIOp::create(b, loc, slab, index(16))));
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         weightRow, index(config.outFeatures));
    weightRow = arith::SelectOp::create(b, loc, inside, weightRow, index(0));
    // The flat byte of the chunk's source in K step 0: the expert's and
    // the 64-row group's K/64 tiles, then the slab's chunk in the tile.
    Value rowTile = arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, tile.expert,
                              index(config.outFeatures / kWarpgroupRows)),
        arith::DivUIOp::create(b, loc, weightRow, index(kWarpgroupRows)));
    Value sourceSlab = arith::DivUIOp::create(
        b, loc,
        arith::RemUIOp::create(b, loc, weightRow, index(kWarpgroupRows)),
        index(16));
    Value sourceChunk = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, sourceSlab, index(32)),
        arith::RemUIOp::create(b, loc, inTile, index(32)));
    Value flat = arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, rowTile,
                              index(kTiles * kPackedTileBytes)),
        arith::MulIOp::create(b, loc, sourceChunk, index(kChunkBytes)));
    auto [row, column] = packedDestination(group, inTile);
    codeRow.push_back(row);
    codeColumn.push_back(column);
    codeSourceRow.push_back(flat);
    codeBytes.push_back(
        arith::SelectOp::create(b, loc, inside, index(kChunkBytes), index(0)));
    packedGroup.push_back(group);
    packedChunk.push_back(inTile);
  }
}

Value WeightOnlyStageEmitter::packedChunkRow(Value group, Value inTile,
                                             int64_t half) {
  // Chunk j = 32 w + 4 r + q of a 64-row group holds rows 16 w + r and + 8.
  Value warp = arith::DivUIOp::create(b, loc, inTile, index(32));
  Value row = arith::DivUIOp::create(
      b, loc, arith::RemUIOp::create(b, loc, inTile, index(32)), index(4));
  Value first = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, group, index(kWarpgroupRows)),
      arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, warp, index(16)), row));
  return arith::AddIOp::create(b, loc, first, index(8 * half));
}

void WeightOnlyStageEmitter::planOperandRows(Value tid) {
  // Thread t of warpgroup w holds rows 16·(t/32 mod 4) + (t%32)/4 (+8) of
  // each 64-row fragment of the A operand among the warpgroup's own
  // weight rows (from w · block_n / warpgroups on), and columns 2·(t%4)
  // (+1, +8, +9) of each k16 step: the pair of codes in byte t%4 of every
  // 4-byte word of its rows' stored codes.
  Value lane = arith::RemUIOp::create(b, loc, tid, index(32));
  // One warpgroup's warps are t/32 and its rows start at 0.
  bool twoWarpgroups = config.swappedWarpgroups > 1;
  Value warp = twoWarpgroups
                   ? arith::RemUIOp::create(
                         b, loc, arith::DivUIOp::create(b, loc, tid, index(32)),
                         index(4))
                         .getResult()
                   : arith::DivUIOp::create(b, loc, tid, index(32)).getResult();
  Value warpgroupRows =
      twoWarpgroups
          ? arith::MulIOp::create(
                b, loc,
                arith::DivUIOp::create(b, loc, tid, index(kWarpgroupThreads)),
                index(config.swappedRowsPerWarpgroup()))
                .getResult()
          : Value();
  Value firstRow = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, warp, index(16)),
      arith::DivUIOp::create(b, loc, lane, index(4)));
  if (twoWarpgroups)
    firstRow = arith::AddIOp::create(b, loc, warpgroupRows, firstRow);
  Value byte = arith::IndexCastOp::create(
      b, loc, b.getI32Type(), arith::RemUIOp::create(b, loc, lane, index(4)));
  operandSelector = pairSelector(byte);
  for (int64_t fragment = 0; fragment < config.mmaFragments(); ++fragment)
    for (int64_t half = 0; half < 2; ++half) {
      Value row = arith::AddIOp::create(
          b, loc, firstRow, index(kWarpgroupRows * fragment + 8 * half));
      operandRows.push_back(row);
      for (int64_t group = 0; group < groupsPerStage(); ++group) {
        operandScaleRows.push_back(row);
        operandScaleColumns.push_back(index(4 * group));
      }
    }
}

std::pair<Value, Value>
WeightOnlyStageEmitter::packedCodeSource(Value flat, Value kOffset) {
  // K step kOffset / 64 is the group's next 2048-byte tile; the flat byte
  // as a place in the [E·N, K/2] byte matrix the kernel takes.
  Value tileOffset = arith::MulIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, kOffset, index(config.blockK())),
      index(kPackedTileBytes));
  Value source = arith::AddIOp::create(b, loc, flat, tileOffset);
  int64_t rowBytes = config.inFeatures / 2;
  return {arith::DivUIOp::create(b, loc, source, index(rowBytes)),
          arith::RemUIOp::create(b, loc, source, index(rowBytes))};
}

void WeightOnlyStageEmitter::copyCodes(Value stage, Value kOffset, Value valid,
                                       Value codes) {
  Value kBytes = arith::DivUIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc, kOffset, index(config.packedRowBytes())),
      index(config.blockK()));
  Value stageCodes = memory.view(
      b, loc,
      sharedMemRef(b, {config.blockN, config.packedRowBytes()}, b.getI8Type()),
      stage, config.codesOffset(), config.packedTileBytes());
  for (size_t i = 0; i < codeRow.size(); ++i) {
    Value bytes =
        arith::SelectOp::create(b, loc, valid, codeBytes[i], index(0));
    Value sourceRow = codeSourceRow[i];
    Value column = arith::AddIOp::create(b, loc, kBytes, codeColumn[i]);
    if (config.packedCodes)
      std::tie(sourceRow, column) = packedCodeSource(codeSourceRow[i], kOffset);
    hopper.copyAsync(stageCodes, {codeRow[i], codeColumn[i]}, codes,
                     {sourceRow, column}, kChunkBytes, bytes,
                     /*bypassL1=*/false);
  }
}

SmallVector<Value> WeightOnlyStageEmitter::loadScales(Value step) {
  return config.registerOperand
             ? moe.weightOnlyScales(step, operandScaleRows, operandScaleColumns)
             : moe.weightOnlyScales(step, dequantRow, dequantColumn);
}

Value WeightOnlyStageEmitter::codeChunks(Value stage) {
  auto chunkType = VectorType::get({4}, b.getI32Type());
  return memory.view(
      b, loc,
      sharedMemRef(b, {config.blockN, config.packedRowBytes() / kChunkBytes},
                   chunkType),
      stage, config.codesOffset(), config.packedTileBytes());
}

SmallVector<Value, 4>
WeightOnlyStageEmitter::loadCodeWords(Value chunks, Value row, Value chunk) {
  Value loaded = memref::LoadOp::create(b, loc, chunks, ValueRange{row, chunk});
  SmallVector<Value, 4> words;
  for (int64_t w = 0; w < 4; ++w)
    words.push_back(LLVM::ExtractElementOp::create(b, loc, loaded, i32(w)));
  return words;
}

SmallVector<std::pair<Value, Value>, 2>
WeightOnlyStageEmitter::rowGroupScales(ArrayRef<Value> scales, int64_t first) {
  // loadScales gives a row's scale of each group, each followed by its zero
  // point where the format has them.
  int64_t perScale = config.zeroPoint ? 2 : 1;
  SmallVector<std::pair<Value, Value>, 2> groups;
  for (int64_t group = 0; group < groupsPerStage(); ++group) {
    int64_t at = first + perScale * group;
    groups.emplace_back(scales[at],
                        config.zeroPoint ? scales[at + 1] : Value());
  }
  return groups;
}

SmallVector<Int4PairDecoder, 2>
WeightOnlyStageEmitter::rowDecoders(ArrayRef<Value> scales, int64_t first) {
  SmallVector<Int4PairDecoder, 2> decoders;
  for (auto [scale, zero] : rowGroupScales(scales, first))
    decoders.push_back(moe.int4PairDecoder(scale, zero));
  return decoders;
}

/// prmt's selector of byte q of its first operand into result byte 0 and
/// byte q of the second (the word shifted right by 4) into result byte 2:
/// q + (4 + q)·0x100.
static constexpr int64_t kPairSelectorPerByte = 0x101,
                         kPairSelectorBase = 0x400;

static constexpr int64_t pairSelectorOf(int64_t byte) {
  return kPairSelectorPerByte * byte + kPairSelectorBase;
}

Value WeightOnlyStageEmitter::pairSelector(Value byte) {
  return arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, byte, i32(kPairSelectorPerByte)),
      i32(kPairSelectorBase));
}

Value WeightOnlyStageEmitter::spreadCodePair(Value word, Value shifted,
                                             Value selector) {
  // The pair's low code (bits 0..3 of the byte) to bits 0..3, its high one
  // (bits 4..7, low in the shifted word) to bits 16..19.
  return NVVM::PermuteOp::create(b, loc, b.getI32Type(), word, shifted,
                                 selector, NVVM::PermuteMode::DEFAULT);
}

Value WeightOnlyStageEmitter::placeCodeByte(Value word, int64_t byte) {
  // Byte `byte` (codes 2j and 2j + 1) to bits 15..22.
  int64_t shift = 15 - 8 * byte;
  Value amount = i32(std::abs(shift));
  return shift > 0 ? arith::ShLIOp::create(b, loc, word, amount).getResult()
                   : arith::ShRUIOp::create(b, loc, word, amount).getResult();
}

SmallVector<SmallVector<Value, 16>>
WeightOnlyStageEmitter::decodeOperandA(Value stage, ArrayRef<Value> scales) {
  Value chunks = codeChunks(stage);
  int64_t perRow = (config.zeroPoint ? 2 : 1) * groupsPerStage();
  SmallVector<SmallVector<Value, 16>> operandA;
  for (int64_t fragment = 0; fragment < config.mmaFragments(); ++fragment) {
    // Per row half and scale group: int4's decoder, or mxfp4's scale pair.
    bool mxfp4 = config.format == QuantFormat::Mxfp4;
    SmallVector<SmallVector<Int4Bf16PairDecoder, 2>, 2> decoders;
    SmallVector<SmallVector<Value, 2>, 2> scalePairs(2);
    for (int64_t half = 0; half < 2; ++half) {
      decoders.emplace_back();
      for (auto [scale, zero] :
           rowGroupScales(scales, perRow * (2 * fragment + half))) {
        if (mxfp4)
          scalePairs[half].push_back(moe.bf16ScalePair(scale));
        else
          decoders[half].push_back(moe.int4Bf16PairDecoder(scale, zero));
      }
    }
    // Packed: the thread's own chunk, byte 2g + h of word s. Else per row
    // half its row's 8 code words (two chunks), byte t%4 of word 2s + g.
    SmallVector<SmallVector<Value, 8>, 2> words(2);
    if (config.packedCodes) {
      words[0] = llvm::to_vector<8>(loadCodeWords(
          chunks, operandChunkRow[fragment],
          arith::DivUIOp::create(b, loc, operandChunkColumn[fragment],
                                 index(kChunkBytes))));
    } else {
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t chunk = 0; chunk < 2; ++chunk)
          llvm::append_range(words[half],
                             loadCodeWords(chunks,
                                           operandRows[2 * fragment + half],
                                           index(chunk)));
    }
    auto shiftedByNibble = [&](Value word) -> Value {
      return arith::ShRUIOp::create(b, loc, word, i32(4));
    };
    // k16 step s, register 2g + h: row half h, columns 16s + 8g + 2·(t%4).
    SmallVector<Value, 16> registers;
    for (int64_t step = 0; step < 4; ++step) {
      Value packedShifted =
          config.packedCodes ? shiftedByNibble(words[0][step]) : Value();
      for (int64_t g = 0; g < 2; ++g)
        for (int64_t half = 0; half < 2; ++half) {
          Value pair =
              config.packedCodes
                  ? spreadCodePair(words[0][step], packedShifted,
                                   i32(pairSelectorOf(2 * g + half)))
                  : spreadCodePair(words[half][2 * step + g],
                                   shiftedByNibble(words[half][2 * step + g]),
                                   operandSelector);
          int64_t group = step * groupsPerStage() / 4;
          registers.push_back(
              mxfp4 ? moe.decodeMxfp4Bf16Pair(scalePairs[half][group], pair)
                    : moe.decodeInt4Bf16Pair(decoders[half][group], pair));
        }
    }
    operandA.push_back(std::move(registers));
  }
  return operandA;
}

void WeightOnlyStageEmitter::dequantize(Value stage, ArrayRef<Value> scales) {
  if (config.packedCodes)
    dequantizePacked(stage, scales);
  else
    dequantizeRows(stage, scales);
}

void WeightOnlyStageEmitter::dequantizeRows(Value stage,
                                            ArrayRef<Value> scales) {
  Type i32Type = b.getI32Type();
  // The stored codes and the B tile as 32-bit words: a chunk's 8 codes are
  // one (int4, e2m1) or two (int8) words, its 8 bf16 four words.
  auto wordsOf = [&](int64_t rows, int64_t bytes) {
    return sharedMemRef(b, {rows, bytes / 4}, i32Type);
  };
  Value packedWords =
      memory.view(b, loc, wordsOf(config.blockN, config.packedRowBytes()),
                  stage, config.codesOffset(), config.packedTileBytes());
  Value tileWords =
      memory.view(b, loc, wordsOf(config.blockN, kRowBytes), stage,
                  config.tileBOffset(), config.tileBBytes());
  int64_t bitsPerCode = config.format == QuantFormat::Int8Weight ? 8 : 4;
  int64_t wordsPerChunk = kValuesPerChunk * bitsPerCode / 32;
  int64_t perChunk = config.zeroPoint ? 2 : 1;
  for (auto [i, row, column] : llvm::enumerate(dequantRow, dequantColumn)) {
    Value scale = scales[perChunk * i];
    Value zero = config.zeroPoint ? scales[perChunk * i + 1] : Value();
    SmallVector<Value> words;
    for (int64_t w = 0; w < wordsPerChunk; ++w)
      words.push_back(memref::LoadOp::create(
          b, loc, packedWords,
          ValueRange{row, arith::AddIOp::create(
                              b, loc,
                              arith::MulIOp::create(b, loc, column,
                                                    index(wordsPerChunk)),
                              index(w))}));
    // Chunk c of row r sits at chunk c xor (r mod 8): the 128B swizzle.
    Value swizzledWord = arith::MulIOp::create(
        b, loc,
        arith::XOrIOp::create(b, loc, column,
                              arith::RemUIOp::create(b, loc, row, index(8))),
        index(kValuesPerChunk / 2));
    if (config.format == QuantFormat::Int4Weight) {
      for (auto [j, packed] :
           llvm::enumerate(moe.decodeInt4Pairs(words[0], scale, zero)))
        memref::StoreOp::create(
            b, loc, packed, tileWords,
            ValueRange{row,
                       arith::AddIOp::create(b, loc, swizzledWord, index(j))});
      continue;
    }
    auto pairType = VectorType::get({2}, b.getF32Type());
    Value pair;
    for (int64_t v = 0; v < kValuesPerChunk; ++v) {
      // Code v: element 2j in the low nibble of byte j, little-endian words.
      int64_t bit = v * bitsPerCode;
      Value code = arith::AndIOp::create(
          b, loc,
          arith::ShRUIOp::create(b, loc, words[bit / 32], i32(bit % 32)),
          i32((1 << bitsPerCode) - 1));
      Value value =
          arith::MulFOp::create(b, loc, moe.decodeWeight(code, zero), scale);
      if (v % 2 == 0)
        pair = LLVM::PoisonOp::create(b, loc, pairType);
      pair = LLVM::InsertElementOp::create(b, loc, pair, value, i32(v % 2));
      if (v % 2 == 0)
        continue;
      // Both values rounded to bf16 by one cvt.rn.bf16x2.f32, low first.
      Value packed = LLVM::BitcastOp::create(
          b, loc, i32Type,
          arith::TruncFOp::create(b, loc, VectorType::get({2}, b.getBF16Type()),
                                  pair));
      memref::StoreOp::create(
          b, loc, packed, tileWords,
          ValueRange{
              row, arith::AddIOp::create(b, loc, swizzledWord, index(v / 2))});
    }
  }
}

void WeightOnlyStageEmitter::dequantizePacked(Value stage,
                                              ArrayRef<Value> scales) {
  // Each chunk the thread copied: its two rows' 16 code pairs, decoded and
  // stored where the B tile's 128B swizzle puts columns 16s + 8g + 2q (+1).
  Value tileWords = memory.view(
      b, loc, sharedMemRef(b, {config.blockN, kRowBytes / 4}, b.getI32Type()),
      stage, config.tileBOffset(), config.tileBBytes());
  Value chunks = codeChunks(stage);
  int64_t perScale = config.zeroPoint ? 2 : 1;
  for (size_t i = 0; i < packedGroup.size(); ++i) {
    SmallVector<Value, 4> words = loadCodeWords(
        chunks, codeRow[i],
        arith::DivUIOp::create(b, loc, codeColumn[i], index(kChunkBytes)));
    Value pair = arith::RemUIOp::create(b, loc, packedChunk[i], index(4));
    for (int64_t half = 0; half < 2; ++half) {
      int64_t first = perScale * groupsPerStage() * (2 * i + half);
      Value row = dequantRow[groupsPerStage() * (2 * i + half)];
      Value swizzle = arith::RemUIOp::create(b, loc, row, index(8));
      SmallVector<Int4PairDecoder, 2> decoders;
      if (config.format == QuantFormat::Int4Weight)
        decoders = rowDecoders(scales, first);
      for (int64_t step = 0; step < 4; ++step)
        for (int64_t g = 0; g < 2; ++g) {
          int64_t scaleGroup = step * groupsPerStage() / 4;
          Value decoded =
              config.format == QuantFormat::Int4Weight
                  ? moe.decodeInt4Pair(decoders[scaleGroup],
                                       placeCodeByte(words[step], 2 * g + half))
                  : decodeMxfp4Pair(words[step], 2 * g + half,
                                    scales[first + scaleGroup]);
          Value chunk =
              arith::XOrIOp::create(b, loc, index(2 * step + g), swizzle);
          Value word = arith::AddIOp::create(
              b, loc, arith::MulIOp::create(b, loc, chunk, index(4)), pair);
          memref::StoreOp::create(b, loc, decoded, tileWords,
                                  ValueRange{row, word});
        }
    }
  }
}

Value WeightOnlyStageEmitter::decodeMxfp4Pair(Value word, int64_t byte,
                                              Value scale) {
  // The byte's two e2m1 codes (low nibble first), each scaled in f32, then
  // both rounded to bf16 by one cvt.
  Type f32 = b.getF32Type();
  Value pair = LLVM::PoisonOp::create(b, loc, VectorType::get({2}, f32));
  for (int64_t nibble = 0; nibble < 2; ++nibble) {
    Value code = arith::AndIOp::create(
        b, loc,
        arith::ShRUIOp::create(b, loc, word, i32(8 * byte + 4 * nibble)),
        i32(15));
    Value value =
        arith::MulFOp::create(b, loc, moe.decodeWeight(code, Value()), scale);
    pair = LLVM::InsertElementOp::create(b, loc, pair, value, i32(nibble));
  }
  return LLVM::BitcastOp::create(
      b, loc, b.getI32Type(),
      arith::TruncFOp::create(b, loc, VectorType::get({2}, b.getBF16Type()),
                              pair));
}
