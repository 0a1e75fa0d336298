//===- WeightOnlyStage.h - stored codes into bf16 operands ------*- C++ -*-===//
//
// The weight-only formats' part of a K stage of the expert GEMM on sm_90a
// (int4 and int8 groups, mxfp4; codes in rows or prepacked as
// wgmma_a_4bit): which 16-byte chunks of stored codes each thread copies by
// cp.async, the group scales it applies, and how the stage's codes become
// bf16 operand values, either in the swizzled B tile the bf16 wgmma reads
// or in the registers of the wgmma's A fragment (weight_load = registers).
// What a code is worth (nibbles, zero points, e2m1) is the MoE part's
// (ExpertTileEmitter); where each value goes is the wgmma's layout, so this
// is Hopper's. The schedules (ExpertMatmulKernel.cpp) decide when.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_WEIGHTONLYSTAGE_H
#define MOE_LIB_CONVERSION_MOETOGPU_WEIGHTONLYSTAGE_H

#include "ExpertMatmulTile.h"
#include "HopperEmitter.h"
#include "KernelEmitter.h"

namespace mlir::moe::expert_matmul {

/// Builds a weight-only kernel's stage work at `b`'s insertion point. Before
/// the K loop, each thread plans once: `plan` where every thread copies and
/// decodes (multistage); with a producer warpgroup, `planCopies` in the
/// producer and `planDecoding` in the consumers.
class WeightOnlyStageEmitter : KernelEmitter {
public:
  WeightOnlyStageEmitter(OpBuilder &b, Location loc,
                         const ExpertMatmulPlan &config, const TileValues &tile,
                         ExpertTileEmitter &moe,
                         const hopper::StageMemory &memory)
      : KernelEmitter{b, loc}, config(config), tile(tile), moe(moe),
        memory(memory), hopper(b, loc) {}

  /// Multistage: plans the chunks of stored codes thread `tid` copies at
  /// every stage, and the values it decodes from them (every thread copies
  /// and decodes; with the register operand, the chunks it decodes).
  void plan(Value tid);
  /// Warp-specialized producer: plans the chunks of stored codes thread
  /// `tid` of `threads` copies at every stage (`tid + threads · i`).
  void planCopies(Value tid, int64_t threads);
  /// Warp-specialized consumer with the register operand: plans what
  /// consumer thread `tid` decodes (the chunks the multistage schedule's
  /// thread `tid` would have copied), and copies nothing.
  void planDecoding(Value tid);
  /// Copies this thread's chunks of the codes at K offset `kOffset` into
  /// `stage` from `codes` ([E·N, stored K] bytes) by cp.async; a chunk
  /// reads nothing where `valid` is false.
  void copyCodes(Value stage, Value kOffset, Value valid, Value codes);
  /// The group scales (and zero points) this thread applies at K step
  /// `step`, in the order decodeOperandA and dequantize take them.
  SmallVector<Value> loadScales(Value step);
  /// Register operand: this thread's A registers of `stage` with the step's
  /// `scales`: per 64-row fragment, the four registers of each k16 step.
  SmallVector<SmallVector<Value, 16>> decodeOperandA(Value stage,
                                                     ArrayRef<Value> scales);
  /// Writes this thread's chunks of `stage`'s codes into the stage's bf16
  /// B tile, each value (code − zero) · scale, at its 128B-swizzled place.
  void dequantize(Value stage, ArrayRef<Value> scales);

private:
  /// Codes in rows: the chunks of the tile's weight rows, thread `tid`'s
  /// of every `threads`.
  void planRowChunks(Value tid, int64_t threads);
  /// Codes packed as wgmma_a_4bit: thread `tid`'s chunks of each stage, of
  /// every `threads`; with `ownGroups`, those of its warpgroup's own 64-row
  /// groups (the A fragment's 16 bytes it decodes).
  void planPackedChunks(Value tid, int64_t threads, bool ownGroups);
  /// The tile kernel: the B tile chunks this thread dequantizes (codes in
  /// rows), or its packed chunks' rows' scale places.
  void planDequantization(Value tid);
  /// The tile's 64-row group whose A fragment `fragment` the warpgroup
  /// `warpgroup` decodes: warpgroup · fragments + fragment.
  Value ownGroup(Value warpgroup, int64_t fragment);
  /// The place (tile row, byte column) in a stage's codes of chunk
  /// `inTile` of the tile's 64-row group `group`.
  std::pair<Value, Value> packedDestination(Value group, Value inTile);
  /// Register operand: this thread's rows of the A fragment, the rotation
  /// that places its byte of a code word, and its group scales' places.
  void planOperandRows(Value tid);
  /// Row `half` (0: +0, 1: +8) of chunk `inTile` of the tile's 64-row
  /// group `group`.
  Value packedChunkRow(Value group, Value inTile, int64_t half);
  /// The (row, byte column) in the [E·N, K/2] code matrix of a packed
  /// chunk whose flat byte at K step 0 is `flat`, at K offset `kOffset`.
  std::pair<Value, Value> packedCodeSource(Value flat, Value kOffset);
  /// The stage's codes as [block_n, 2] 16-byte chunks.
  Value codeChunks(Value stage);
  /// The four i32 words of chunk (`row`, `chunk`) of `chunks`.
  SmallVector<Value, 4> loadCodeWords(Value chunks, Value row, Value chunk);
  /// One row's (scale, zero point or null) of each of the stage's groups,
  /// from `scales[first]` on (loadScales' order).
  SmallVector<std::pair<Value, Value>, 2> rowGroupScales(ArrayRef<Value> scales,
                                                         int64_t first);
  /// The int4 decoders of one row's groups in the stage, its scales (and
  /// zero points) from `scales[first]` on.
  SmallVector<Int4PairDecoder, 2> rowDecoders(ArrayRef<Value> scales,
                                              int64_t first);
  /// prmt's selector that spreadCodePair takes for the pair in byte `byte`
  /// (an i32, 0..3, known when the kernel runs) of a code word.
  Value pairSelector(Value byte);
  /// The code pair of `word`'s byte that `selector` names, its low code at
  /// bits 0..3 and its high one at bits 16..19, by one prmt of `word` and
  /// `shifted` (the word shifted right by 4).
  Value spreadCodePair(Value word, Value shifted, Value selector);
  /// `word` with its byte `byte` at bits 15..22.
  Value placeCodeByte(Value word, int64_t byte);
  /// Codes in rows: dequantizes this thread's chunks into the B tile.
  void dequantizeRows(Value stage, ArrayRef<Value> scales);
  /// Packed codes: dequantizes this thread's chunks into the B tile.
  void dequantizePacked(Value stage, ArrayRef<Value> scales);
  /// The two e2m1 codes of byte `byte` of `word` times `scale`, as one i32
  /// of two bf16.
  Value decodeMxfp4Pair(Value word, int64_t byte, Value scale);
  /// The scale groups of 64 of K in one stage: two for groups of 32.
  int64_t groupsPerStage() const { return config.group == 32 ? 2 : 1; }

  const ExpertMatmulPlan &config;
  const TileValues &tile;
  ExpertTileEmitter &moe;
  const hopper::StageMemory &memory;
  hopper::HopperEmitter hopper;

  /// Chunks of stored codes: tile row, byte column, source row of the
  /// [E·N, stored K] codes (packed: the flat byte at K step 0), bytes to
  /// copy (0 past the weights' last row).
  SmallVector<Value> codeRow, codeColumn, codeSourceRow, codeBytes;
  /// Tile kernels: the B tile chunks (row, chunk) this thread dequantizes,
  /// or, packed, the (row, scale chunk) of each of its chunks' rows.
  SmallVector<Value> dequantRow, dequantColumn;
  /// Register operand: per 64-row fragment the thread's two weight rows of
  /// the tile (+0 and +8), and the prmt selector of byte t%4 of a code word
  /// (codes in rows: the thread's pair); the (row, chunk) of each group scale
  /// the thread reads per stage (per fragment and row: chunk 0, and chunk 4
  /// where a group is 32 of K).
  SmallVector<Value> operandRows;
  Value operandSelector;
  SmallVector<Value> operandScaleRows, operandScaleColumns;
  /// Codes packed as wgmma_a_4bit: per copied chunk, its 64-row group of
  /// the tile and its place j in the group's 2048-byte tile.
  SmallVector<Value> packedGroup, packedChunk;
  /// Register operand, packed codes: per 64-row fragment, the (tile row,
  /// byte column) of the chunk the thread decodes.
  SmallVector<Value> operandChunkRow, operandChunkColumn;
};

} // namespace mlir::moe::expert_matmul

#endif // MOE_LIB_CONVERSION_MOETOGPU_WEIGHTONLYSTAGE_H
