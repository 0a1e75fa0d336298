//===- ScheduleToLinalg.cpp - permute and unpermute lowering ---===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {
//===----------------------------------------------------------------------===//
// PermuteOp
//===----------------------------------------------------------------------===//

struct PermuteOpLowering : public OpConversionPattern<PermuteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(PermuteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    Value ids = adaptor.getIds();
    int64_t numExperts = op.getNumExperts();
    int64_t k = op.getIds().getType().getDimSize(1);
    Value kValue = indexConstant(rewriter, loc, k);
    Value numTokens = tensor::DimOp::create(rewriter, loc, ids, 0);
    Value numAssignments =
        arith::MulIOp::create(rewriter, loc, numTokens, kValue);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);
    auto [offsets, source] =
        buildSortAssignments(rewriter, loc, ids, numExperts, reportFn);

    // rows[i, h] = input[source[i] / k, h].
    RankedTensorType inputType = op.getInput().getType();
    SmallVector<OpFoldResult> rowSizes = {
        OpFoldResult(numAssignments),
        rewriter.getIndexAttr(inputType.getDimSize(1))};
    Value rows = buildGeneric(
        rewriter, loc, source,
        createEmpty(rewriter, loc, rowSizes, inputType.getElementType()),
        {{0}, {0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange args) {
          Value assignment =
              arith::IndexCastOp::create(b, l, b.getIndexType(), args[0]);
          Value token = arith::DivUIOp::create(b, l, assignment, kValue);
          Value column = linalg::IndexOp::create(b, l, 1);
          linalg::YieldOp::create(b, l,
                                  Value(tensor::ExtractOp::create(
                                      b, l, input, ValueRange{token, column})));
        });

    rewriter.replaceOp(
        op, {castToType(rewriter, loc, rows, op.getRows().getType()),
             castToType(rewriter, loc, offsets, op.getOffsets().getType()),
             castToType(rewriter, loc, source, op.getSource().getType())});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// UnpermuteOp
//===----------------------------------------------------------------------===//

struct UnpermuteOpLowering : public OpConversionPattern<UnpermuteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(UnpermuteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value rows = adaptor.getRows();
    Value source = adaptor.getSource();
    RankedTensorType resultType = op.getResult().getType();
    int64_t k = resultType.getDimSize(1);
    int64_t width = resultType.getDimSize(2);
    Type i32 = rewriter.getI32Type();
    Value c0 = indexConstant(rewriter, loc, 0);
    Value c1 = indexConstant(rewriter, loc, 1);
    Value kValue = indexConstant(rewriter, loc, k);
    Value numRows = tensor::DimOp::create(rewriter, loc, source, 0);
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);

    // rowOf[a] = i such that source[i] = a: the inverse permutation, so that
    // the result is a gather that every output element computes on its own.
    // Entries start at -1 so that a repeated source index is caught; with
    // no repeats and every index in range, all entries get written.
    SmallVector<OpFoldResult> inverseSizes = {OpFoldResult(numRows)};
    Value minusOne = arith::ConstantOp::create(rewriter, loc,
                                               rewriter.getI32IntegerAttr(-1));
    Value inverseInit = createFilledWith(rewriter, loc, inverseSizes, minusOne);
    auto inverseLoop = scf::ForOp::create(
        rewriter, loc, c0, numRows, c1, ValueRange{inverseInit},
        [&](OpBuilder &b, Location l, Value row, ValueRange args) {
          Value assignment = emitCheckedIndex(
              b, l, reportFn, extractIndex(b, l, source, row), c0, numRows,
              RuntimeErrorCode::InvalidSourceIndex);
          Value previous = tensor::ExtractOp::create(b, l, args[0], assignment);
          Value repeated = arith::CmpIOp::create(b, l, arith::CmpIPredicate::ne,
                                                 previous, minusOne);
          emitRuntimeCheck(b, l, reportFn, repeated,
                           RuntimeErrorCode::InvalidSourceIndex, assignment,
                           numRows);
          Value rowI32 = arith::IndexCastOp::create(b, l, i32, row);
          scf::YieldOp::create(b, l,
                               Value(tensor::InsertOp::create(
                                   b, l, rowI32, args[0], assignment)));
        });
    Value rowOf = inverseLoop.getResult(0);

    Value numTokens = arith::DivUIOp::create(rewriter, loc, numRows, kValue);
    SmallVector<OpFoldResult> sizes = {OpFoldResult(numTokens),
                                       rewriter.getIndexAttr(k),
                                       rewriter.getIndexAttr(width)};
    Value result = buildGeneric(
        rewriter, loc, {},
        createEmpty(rewriter, loc, sizes, resultType.getElementType()),
        {{0, 1, 2}}, {kParallel, kParallel, kParallel},
        [&](OpBuilder &b, Location l, ValueRange) {
          Value token = linalg::IndexOp::create(b, l, 0);
          Value slot = linalg::IndexOp::create(b, l, 1);
          Value column = linalg::IndexOp::create(b, l, 2);
          Value assignment = arith::AddIOp::create(
              b, l, arith::MulIOp::create(b, l, token, kValue), slot);
          // Clamped: only reached with -1 after a reported error.
          Value row = arith::MaxSIOp::create(
              b, l, extractIndex(b, l, rowOf, assignment),
              indexConstant(b, l, 0));
          linalg::YieldOp::create(
              b, l,
              Value(tensor::ExtractOp::create(b, l, rows, {row, column})));
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, resultType));
    return success();
  }
};

struct SortOpLowering : public OpConversionPattern<SortOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(SortOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    func::FuncOp reportFn = getOrInsertReportFunction(rewriter, op);
    auto [offsets, source] = buildSortAssignments(
        rewriter, loc, adaptor.getIds(), op.getNumExperts(), reportFn);
    rewriter.replaceOp(
        op, {castToType(rewriter, loc, offsets, op.getOffsets().getType()),
             castToType(rewriter, loc, source, op.getSource().getType())});
    return success();
  }
};

/// The values the steps of moe.align's lowering share: its shapes as index
/// constants and the report function of invalid ids.
struct AlignLowering {
  Location loc;
  Value ids;
  int64_t numExperts, blockM;
  Value c0, c1, kValue, blockValue, numExpertsValue, minusOne;
  Value numAssignments;
  func::FuncOp reportFn;

  AlignLowering(ConversionPatternRewriter &rewriter, AlignOp op, Value ids)
      : loc(op.getLoc()), ids(ids), numExperts(op.getNumExperts()),
        blockM(op.getBlockM()) {
    c0 = indexConstant(rewriter, loc, 0);
    c1 = indexConstant(rewriter, loc, 1);
    kValue = indexConstant(rewriter, loc, op.getIds().getType().getDimSize(1));
    blockValue = indexConstant(rewriter, loc, blockM);
    numExpertsValue = indexConstant(rewriter, loc, numExperts);
    minusOne = indexConstant(rewriter, loc, -1);
    numAssignments = arith::MulIOp::create(
        rewriter, loc, tensor::DimOp::create(rewriter, loc, ids, 0), kValue);
  }

  /// The expert of assignment `a`: -1 (another device's) or [0, E).
  Value readExpert(OpBuilder &b, Location l, Value assignment) const {
    Value token = arith::DivUIOp::create(b, l, assignment, kValue);
    Value slot = arith::RemUIOp::create(b, l, assignment, kValue);
    return emitCheckedIndex(b, l, reportFn,
                            extractIndex(b, l, ids, {token, slot}), minusOne,
                            numExpertsValue, RuntimeErrorCode::InvalidExpertId);
  }
  Value isLocal(OpBuilder &b, Location l, Value expert) const {
    return arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, expert, c0);
  }
  static Value asI32(OpBuilder &b, Location l, Value index) {
    return arith::IndexCastOp::create(b, l, b.getI32Type(), index);
  }

  /// counts[e] of local assignments.
  Value countAssignments(OpBuilder &rewriter, Value zeroI32) const;
  /// starts[e]: prefix sum of the counts rounded up to block_m; starts[E] is
  /// the padded count.
  Value paddedStarts(OpBuilder &rewriter, Value counts, Value zeroI32) const;
  /// sorted_ids: the sentinel A everywhere, then each local assignment at
  /// its expert's cursor, in assignment order (stable).
  Value scatterAssignments(OpBuilder &rewriter, Value starts,
                           Value numSlots) const;
  /// block_experts: -1 everywhere, then e for each block of e's range.
  Value blockExperts(OpBuilder &rewriter, Value starts, Value numBlocks) const;
};

Value AlignLowering::countAssignments(OpBuilder &rewriter,
                                      Value zeroI32) const {
  Value counts = createFilledWith(rewriter, loc,
                                  {rewriter.getIndexAttr(numExperts)}, zeroI32);
  return scf::ForOp::create(
             rewriter, loc, c0, numAssignments, c1, ValueRange{counts},
             [&](OpBuilder &b, Location l, Value a, ValueRange args) {
               Value expert = readExpert(b, l, a);
               auto ifOp = scf::IfOp::create(
                   b, l, isLocal(b, l, expert),
                   [&](OpBuilder &tb, Location tl) {
                     Value count =
                         tensor::ExtractOp::create(tb, tl, args[0], expert);
                     Value next = arith::AddIOp::create(
                         tb, tl, count,
                         arith::ConstantOp::create(tb, tl,
                                                   tb.getI32IntegerAttr(1)));
                     scf::YieldOp::create(tb, tl,
                                          Value(tensor::InsertOp::create(
                                              tb, tl, next, args[0], expert)));
                   },
                   [&](OpBuilder &eb, Location el) {
                     scf::YieldOp::create(eb, el, args[0]);
                   });
               scf::YieldOp::create(b, l, ifOp.getResult(0));
             })
      .getResult(0);
}

Value AlignLowering::paddedStarts(OpBuilder &rewriter, Value counts,
                                  Value zeroI32) const {
  Value starts = createFilledWith(
      rewriter, loc, {rewriter.getIndexAttr(numExperts + 1)}, zeroI32);
  return scf::ForOp::create(
             rewriter, loc, c0, numExpertsValue, c1, ValueRange{starts},
             [&](OpBuilder &b, Location l, Value expert, ValueRange args) {
               Value count = extractIndex(b, l, counts, expert);
               Value padded = arith::MulIOp::create(
                   b, l,
                   arith::DivUIOp::create(
                       b, l,
                       arith::AddIOp::create(b, l, count,
                                             indexConstant(b, l, blockM - 1)),
                       blockValue),
                   blockValue);
               Value start = extractIndex(b, l, args[0], expert);
               Value next = arith::AddIOp::create(b, l, start, padded);
               Value updated = tensor::InsertOp::create(
                   b, l, asI32(b, l, next), args[0],
                   ValueRange{arith::AddIOp::create(b, l, expert, c1)});
               scf::YieldOp::create(b, l, updated);
             })
      .getResult(0);
}

Value AlignLowering::scatterAssignments(OpBuilder &rewriter, Value starts,
                                        Value numSlots) const {
  Value sentinel = asI32(rewriter, loc, numAssignments);
  Value sortedInit =
      createFilledWith(rewriter, loc, {OpFoldResult(numSlots)}, sentinel);
  auto scatter = scf::ForOp::create(
      rewriter, loc, c0, numAssignments, c1, ValueRange{starts, sortedInit},
      [&](OpBuilder &b, Location l, Value a, ValueRange args) {
        Value expert = readExpert(b, l, a);
        auto ifOp = scf::IfOp::create(
            b, l, isLocal(b, l, expert),
            [&](OpBuilder &tb, Location tl) {
              Value cursor = extractIndex(tb, tl, args[0], expert);
              Value sorted = tensor::InsertOp::create(tb, tl, asI32(tb, tl, a),
                                                      args[1], cursor);
              Value cursors = tensor::InsertOp::create(
                  tb, tl,
                  asI32(tb, tl, arith::AddIOp::create(tb, tl, cursor, c1)),
                  args[0], expert);
              scf::YieldOp::create(tb, tl, ValueRange{cursors, sorted});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, args);
            });
        scf::YieldOp::create(b, l, ifOp.getResults());
      });
  return scatter.getResult(1);
}

Value AlignLowering::blockExperts(OpBuilder &rewriter, Value starts,
                                  Value numBlocks) const {
  Value minusOneI32 =
      arith::ConstantOp::create(rewriter, loc, rewriter.getI32IntegerAttr(-1));
  Value blocksInit =
      createFilledWith(rewriter, loc, {OpFoldResult(numBlocks)}, minusOneI32);
  return scf::ForOp::create(
             rewriter, loc, c0, numExpertsValue, c1, ValueRange{blocksInit},
             [&](OpBuilder &b, Location l, Value expert, ValueRange args) {
               Value first = arith::DivUIOp::create(
                   b, l, extractIndex(b, l, starts, expert), blockValue);
               Value last = arith::DivUIOp::create(
                   b, l,
                   extractIndex(
                       b, l, starts,
                       ValueRange{arith::AddIOp::create(b, l, expert, c1)}),
                   blockValue);
               auto inner = scf::ForOp::create(
                   b, l, first, last, c1, ValueRange{args[0]},
                   [&](OpBuilder &ib, Location il, Value block,
                       ValueRange blockArgs) {
                     scf::YieldOp::create(ib, il,
                                          Value(tensor::InsertOp::create(
                                              ib, il, asI32(ib, il, expert),
                                              blockArgs[0], block)));
                   });
               scf::YieldOp::create(b, l, inner.getResult(0));
             })
      .getResult(0);
}

/// The block-aligned schedule, as moe_align_block_size computes it: counts,
/// counts padded to block_m, their prefix sum, a stable scatter of the
/// assignments, and the expert of every block.
struct AlignOpLowering : public OpConversionPattern<AlignOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(AlignOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    AlignLowering align(rewriter, op, adaptor.getIds());
    Location loc = align.loc;
    int64_t blockM = align.blockM;
    Value numSlots = arith::AddIOp::create(
        rewriter, loc, align.numAssignments,
        indexConstant(rewriter, loc, align.numExperts * (blockM - 1)));
    Value numBlocks = arith::DivUIOp::create(
        rewriter, loc,
        arith::AddIOp::create(rewriter, loc, numSlots,
                              indexConstant(rewriter, loc, blockM - 1)),
        align.blockValue);
    align.reportFn = getOrInsertReportFunction(rewriter, op);

    Value zeroI32 =
        arith::ConstantOp::create(rewriter, loc, rewriter.getI32IntegerAttr(0));
    Value counts = align.countAssignments(rewriter, zeroI32);
    Value starts = align.paddedStarts(rewriter, counts, zeroI32);
    Value sortedIds = align.scatterAssignments(rewriter, starts, numSlots);
    Value blockExperts = align.blockExperts(rewriter, starts, numBlocks);

    Value padded = tensor::ExtractOp::create(rewriter, loc, starts,
                                             ValueRange{align.numExpertsValue});
    Value numPadded = tensor::FromElementsOp::create(
        rewriter, loc, RankedTensorType::get({1}, rewriter.getI32Type()),
        ValueRange{padded});

    rewriter.replaceOp(
        op,
        {castToType(rewriter, loc, sortedIds, op.getSortedIds().getType()),
         castToType(rewriter, loc, blockExperts,
                    op.getBlockExperts().getType()),
         castToType(rewriter, loc, numPadded, op.getNumPadded().getType())});
    return success();
  }
};

} // namespace

void mlir::moe::lowering::populateScheduleLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<PermuteOpLowering, UnpermuteOpLowering, SortOpLowering,
               AlignOpLowering>(patterns.getContext());
}
