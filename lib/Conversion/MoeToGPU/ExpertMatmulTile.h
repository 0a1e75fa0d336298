//===- ExpertMatmulTile.h - the MoE part of the expert GEMM ------*- C++
//-*-===//
//
// The target-neutral part of the expert GEMM emitter: which input row each
// slot reads (the gather), which weight row each row of a weight tile is
// (gated halves or interleaved pairs), the raster of tiles, the scales of
// the quantized formats, and the epilogue that turns a thread's
// accumulator fragment into output rows (scales, bias, gated activation) or
// adds it, times the routed weight, into the token's sums (the combine).
// What it needs of the MMA target (where a fragment's values sit, how a pair
// of sums is added to memory) it asks through AccumulatorTarget.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULTILE_H
#define MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULTILE_H

#include "ExpertMatmulPlan.h"

namespace mlir::moe::expert_matmul {

/// The MMA target's accumulator as the epilogue sees it. A thread's
/// fragment holds two row halves (rows r and r + 8) and, per 8-column group
/// of the output tile, a pair of adjacent columns.
class AccumulatorTarget {
public:
  virtual ~AccumulatorTarget() = default;
  /// The accumulator register of column `pair` (0 or 1) of 8-column group
  /// `group` in row half `half`.
  virtual int64_t registerOf(int64_t group, int64_t half,
                             int64_t pair) const = 0;
  /// The thread's first column in every 8-column group, from its thread id.
  virtual Value laneColumnOffset(OpBuilder &b, Location loc,
                                 Value tid) const = 0;
  /// Adds `first` and `second` to the two f32 at global `address` (i64).
  virtual void reduceAddPair(OpBuilder &b, Location loc, Value address,
                             Value first, Value second) const = 0;
};

/// What the epilogue needs of fragment row half h (rows r and r + 8): the
/// row's slot; with a combine or a bias whether it holds an assignment; with
/// a combine its assignment (0 for padding), token and routing weight.
struct EpilogueRow {
  Value slot, scheduled, assignment, token, scale;
};

/// A block's output tile staged in shared memory before it is copied out
/// in 16-byte chunks: `pairs` holds block_m rows of the tile's bf16 columns
/// as i32 pairs (each row padded by 16 bytes, so that the fragment's pairs
/// fall in distinct banks), `destinations` each row's output row (i32; -1:
/// not stored), for a combine that stores rows.
struct EpilogueTable {
  Value pairs, destinations;
};

/// What decodes the int4 code pairs of one group (see
/// ExpertTileEmitter::int4PairDecoder): the exponent-and-sign bits ORed into
/// each code, and the scale and offset of each code's fma.
struct Int4PairDecoder {
  Value lowFlip, highFlip, lowScale, highScale, lowOffset, highOffset;
};

/// What decodes the int4 code pairs of one group in bf16x2 arithmetic (see
/// ExpertTileEmitter::int4Bf16PairDecoder): the bits that make a masked pair
/// two bf16 of 128 + u, the pair of 128 + zero point they less, and the
/// group's scale rounded to bf16, twice.
struct Int4Bf16PairDecoder {
  Value flip, bias, scale;
};

/// Builds the MoE side of one expert GEMM kernel at `b`'s insertion point,
/// for the tile `tile` currently places.
class ExpertTileEmitter {
public:
  ExpertTileEmitter(OpBuilder &b, Location loc, const ExpertMatmulPlan &config,
                    const KernelArguments &args, const TileValues &tile,
                    const AccumulatorTarget &target)
      : b(b), loc(loc), config(config), args(args), tile(tile), target(target) {
  }

  /// The padded slot count, and the assignment count M·k from the
  /// schedule's length.
  std::pair<Value, Value> loadScheduleSize();
  /// The (slot block, column tile) of the `linear`-th tile of
  /// `slotBlocks` x `columnTiles` in a raster of `groupM` slot blocks per
  /// group: consecutive tiles walk the group's slot blocks first.
  std::pair<Value, Value> rasterizeLinear(Value linear, Value slotBlocks,
                                          Value columnTiles);
  /// The assignment slot `slot` of this tile holds (index; M·k or more for
  /// a padding slot), from the block's own slots where it aligned them.
  Value assignmentOf(Value slot);
  /// The input row that slot `slot` reads (its token with gather, else the
  /// slot), or row 0 for a padding slot; `real` is set to whether the slot
  /// holds an assignment.
  Value inputRowOf(Value slot, Value &real);
  /// The first weight row of this tile in the [E·N, K] weights.
  Value firstWeightRow();
  /// The weight row (local to the expert) of row `row` of the weight tile.
  Value weightRowOf(Value row);
  /// The product column (a weight row) of output column `column` of a
  /// gated tile, or of its up column if `up`: `column` or `column + N/2`
  /// as halves, `2 column` or `2 column + 1` interleaved.
  Value gateUpRow(Value column, bool up);
  /// The (column, row) coordinates of a gated tile's up rows at K offset
  /// `kOffset`, beside the gate rows at (kOffset, weightsRow).
  std::pair<Value, Value> upTileCoordinates(Value kOffset);

  /// The f32 value of one stored weight-only `code` (its bits in an i32)
  /// before its scale; `zeroBias` is 2^23 + the group's zero point, or null.
  Value decodeWeight(Value code, Value zeroBias);
  /// The 8 int4 codes of `word` (code v at bits 4v..4v+3) scaled by `scale`
  /// less the zero point (`zeroBias` as for decodeWeight, or null for
  /// two's complement codes), as 4 i32s of two bf16 each (codes 2j and
  /// 2j + 1, low first), each rounded once from f32.
  SmallVector<Value, 4> decodeInt4Pairs(Value word, Value scale,
                                        Value zeroBias);
  /// The constants that decode int4 code pairs of one group: `scale` and
  /// `zeroBias` as for decodeInt4Pairs.
  Int4PairDecoder int4PairDecoder(Value scale, Value zeroBias);
  /// The two codes of the byte at bits 15..22 of `placed` (low code first),
  /// decoded by `decoder` as one i32 of two bf16.
  Value decodeInt4Pair(const Int4PairDecoder &decoder, Value placed);
  /// The constants that decode int4 code pairs of one group in bf16x2
  /// arithmetic: `scale` and `zeroBias` as for decodeInt4Pairs.
  Int4Bf16PairDecoder int4Bf16PairDecoder(Value scale, Value zeroBias);
  /// The two codes at bits 0..3 (low) and 16..19 (high) of `pair` (the other
  /// bits are ignored), decoded by `decoder` as one i32 of two bf16: the
  /// code less its zero point, exact in bf16, times the bf16 scale, rounded
  /// once.
  Value decodeInt4Bf16Pair(const Int4Bf16PairDecoder &decoder, Value pair);
  /// The two e2m1 codes at bits 0..3 (low) and 16..19 (high) of `pair` (the
  /// other bits are ignored) times `scale` (a pair of bf16, the group's
  /// power of two), as one i32 of two bf16: exact.
  Value decodeMxfp4Bf16Pair(Value scale, Value pair);
  /// `scale` (f32) rounded to bf16, twice, as a vector<2xbf16>.
  Value bf16ScalePair(Value scale);
  /// Weight-only: the scale (and zero) of each chunk (tile row `rows[i]`,
  /// 8-value chunk `columns[i]`) of the weight tile at K step `step`.
  SmallVector<Value> weightOnlyScales(Value step, ArrayRef<Value> rows,
                                      ArrayRef<Value> columns);
  /// Block scales of K block `step`: per fragment half (input rows
  /// `scaleRows`), per 64-column chunk of the weight tile, activation x
  /// weight scale.
  SmallVector<Value> blockScales(Value step, ArrayRef<Value> scaleRows);

  /// Loads what the epilogue needs of each row half of the fragment whose
  /// first row in the tile is `fragmentRow`, before the K loop, so that
  /// their latency hides behind it.
  SmallVector<EpilogueRow, 2> loadEpilogueRows(Value fragmentRow);
  /// Stores the thread's fragment `accumulator` (rows `rows`; w8a8 input
  /// scales of the rows `scaleRows`) as bf16 rows, or adds it into the
  /// tokens' sums (combine).
  void storeEpilogue(Value accumulator, ArrayRef<EpilogueRow> rows, Value tid,
                     ArrayRef<Value> scaleRows);
  /// As storeEpilogue, but into `table` (tile row `fragmentRow` and 8 rows
  /// below) instead of global memory; copyEpilogueTable then stores it.
  void stageEpilogue(Value accumulator, ArrayRef<EpilogueRow> rows, Value tid,
                     ArrayRef<Value> scaleRows, Value fragmentRow,
                     const EpilogueTable &table);
  /// Stores the `rows` staged rows of `table`: each of `threads` threads
  /// (this one `tid`, counted from 0) copies 16-byte chunks of whole rows,
  /// so that a warp's stores fill whole 128-byte lines. Table row r holds
  /// tile row `firstRow` + r (null: r).
  void copyEpilogueTable(const EpilogueTable &table, int64_t rows,
                         Value firstRow, Value tid, int64_t threads);
  /// Whether a block's output tile is stored through an EpilogueTable: bf16
  /// rows (a matmul without a combine, or `combine_rows`), no K split.
  bool stagesEpilogue() const;

private:
  /// What the epilogue applies to the products, loaded before the first
  /// store: per fragment half the row's input scale, and per column of the
  /// thread (2 of every 8; gated: also its up column) the weight scale and
  /// the bias.
  struct EpilogueOperands {
    /// Per-tensor or per-channel w8a8 scales multiply the products.
    bool scaled = false;
    SmallVector<Value> rowScales, gateScales, upScales;
    SmallVector<Value> gateBiases, upBiases;
  };
  EpilogueOperands loadEpilogueOperands(Value laneColumn,
                                        ArrayRef<Value> scaleRows);
  /// table[expert, c] for an [E, N] table of per-column values, c the
  /// product column of output column `column` (its up column if `up`); a
  /// column past the width (the last tile's overhang) reads column 0's.
  Value loadColumnValue(Value table, Value column, bool up = false);
  /// Accumulator register `reg` as f32 (an s32 sum of int8 is converted).
  Value accumulatorValue(Value accumulator, int64_t reg);
  /// Fragment register `reg`, the thread's column `columnIndex` (its up
  /// column if `up`) of fragment half `half`, scaled and biased.
  Value epilogueValue(Value accumulator, int64_t reg, int64_t half,
                      int64_t columnIndex, bool up,
                      const EpilogueOperands &operands);
  /// Puts the builder inside a branch on `column` < width when the last
  /// column tile can stick out of the width (`guard` restores it).
  void maskColumnPair(Value column,
                      std::optional<OpBuilder::InsertionGuard> &guard);
  /// Where a pair of adjacent output columns (column, first, second) of a
  /// fragment row half goes: global memory or the staging table.
  using PairSink = llvm::function_ref<void(Value, Value, Value)>;
  /// The epilogue of both fragment halves, into global memory, or into
  /// `table` (if not null) at tile rows `fragmentRow` and 8 below.
  void emitEpilogue(Value accumulator, ArrayRef<EpilogueRow> rows, Value tid,
                    ArrayRef<Value> scaleRows, const EpilogueTable *table,
                    Value fragmentRow);
  /// Stores fragment half `half` of a non-combine matmul (activation and
  /// epilogue scales applied).
  void storeRows(Value accumulator, int64_t half, const EpilogueRow &rows,
                 Value laneColumn, const EpilogueOperands &operands,
                 PairSink sink);
  /// Stores a pair of adjacent bf16 columns as one 32-bit word.
  void storePair(Value slot, Value column, Value first, Value second);
  /// The global address (i64) of bf16 element (row, column) of the output.
  Value outAddress(Value row, Value column);
  /// `address` (i64) as a pointer into `addressSpace`: a global pointer
  /// makes a store st.global, a shared one ld.shared.
  Value pointerTo(Value address, unsigned addressSpace);
  static constexpr unsigned kGlobalAddressSpace = 1, kSharedAddressSpace = 3;
  /// `first` and `second` rounded to bf16, as a vector<2xbf16>.
  Value packPair(Value first, Value second);
  /// The combine's epilogue of fragment half `half`: each thread's two
  /// adjacent columns of a row, scaled and biased, times the routed weight
  /// `scale`, added into the f32 sums of `token` by one paired reduction.
  void combinePairs(Value accumulator, int64_t half, Value laneColumn,
                    Value token, Value scale, const EpilogueOperands &operands);
  /// The two adjacent columns of 8-column group `group` in fragment half
  /// `half`, scaled and biased, times the routed weight `scale`.
  SmallVector<Value, 2> weightedPair(Value accumulator, int64_t group,
                                     int64_t half, Value scale,
                                     const EpilogueOperands &operands);
  /// The combine's epilogue with `combine_rows`: the row's columns, scaled
  /// and biased, times the routed weight, stored in bf16 at the row of its
  /// assignment (a scheduled row only).
  void storeCombineRows(Value accumulator, int64_t half, const EpilogueRow &row,
                        Value laneColumn, const EpilogueOperands &operands,
                        PairSink sink);
  /// The address of a memref's aligned pointer, as i64.
  Value addressOf(Value view);
  Value index(int64_t value);
  Value i32(int64_t value);
  Value f32(double value);
  Value i64(int64_t value);

  OpBuilder &b;
  Location loc;
  const ExpertMatmulPlan &config;
  const KernelArguments &args;
  const TileValues &tile;
  const AccumulatorTarget &target;
};

} // namespace mlir::moe::expert_matmul

#endif // MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULTILE_H
