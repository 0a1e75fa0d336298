//===- MatmulToLinalg.cpp - grouped and expert matmul lowering ------------===//
//
// moe.grouped_matmul is the simplest moe.expert_matmul (offsets schedule,
// rows in, rows out), so it is rewritten into one and lowered with it. A
// w8a8 grouped_matmul first dequantizes both operands to f32 (the codes
// times their scales, as python/moe_compiler/quant.py defines them) and
// becomes an unquantized one: the CPU path is the formats' specification.
//
// An expert_matmul becomes a loop over the schedule's ranges (an expert's
// slots in the offsets form, a block of block_m slots in the aligned form).
// A range with rows transposes its expert's weights once to [K, N]; its
// slots go through static [rowBlock, K] x [K, N] linalg.matmul ops (full
// blocks, then single rows), so that later tiling and vectorization see
// static shapes. A rows are gathered per block, never as a whole permuted
// copy; the activation and the scatter or weighted combine run per block.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

/// The f32 value of every code of the `bitWidth`-bit float format
/// `semantics` (e4m3, e2m1), indexed by its bits (NaN codes give NaN).
Value buildDecodeTable(OpBuilder &b, Location loc,
                       const llvm::fltSemantics &semantics,
                       unsigned bitWidth) {
  SmallVector<float> values;
  for (unsigned bits = 0; bits < (1u << bitWidth); ++bits) {
    APFloat value(semantics, APInt(bitWidth, bits));
    bool losesInfo = false;
    value.convert(APFloat::IEEEsingle(), APFloat::rmNearestTiesToEven,
                  &losesInfo);
    values.push_back(value.convertToFloat());
  }
  auto type = RankedTensorType::get({int64_t(1) << bitWidth}, b.getF32Type());
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(type, ArrayRef<float>(values)));
}

/// `codes` (e4m3 or i8) times `scales` in f32; `scaleMap` maps the codes'
/// loop dimensions to their scale.
Value buildDequantize(OpBuilder &b, Location loc, Value codes, Value scales,
                      AffineMap scaleMap) {
  auto codesType = cast<RankedTensorType>(codes.getType());
  Type f32 = b.getF32Type();
  bool fp8 = isa<Float8E4M3FNType>(codesType.getElementType());
  Value table =
      fp8 ? buildDecodeTable(b, loc, APFloat::Float8E4M3FN(), 8) : Value();
  Value output =
      createEmpty(b, loc, tensor::getMixedSizes(b, loc, codes), f32);
  AffineMap identity = b.getMultiDimIdentityMap(codesType.getRank());
  SmallVector<utils::IteratorType> iterators(codesType.getRank(),
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{output.getType()}, ValueRange{codes, scales},
             ValueRange{output},
             ArrayRef<AffineMap>{identity, scaleMap, identity}, iterators,
             [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
               Value value;
               if (fp8) {
                 Value bits = arith::BitcastOp::create(
                     nested, nestedLoc, nested.getI8Type(), args[0]);
                 Value position = arith::IndexCastUIOp::create(
                     nested, nestedLoc, nested.getIndexType(), bits);
                 value = tensor::ExtractOp::create(nested, nestedLoc, table,
                                                   position);
               } else {
                 value =
                     arith::SIToFPOp::create(nested, nestedLoc, f32, args[0]);
               }
               linalg::YieldOp::create(
                   nested, nestedLoc,
                   arith::MulFOp::create(nested, nestedLoc, value, args[1])
                       .getResult());
             })
      .getResult(0);
}

/// The scale maps of a w8a8 layout: rows (r, k), weights (e, n, k).
std::pair<AffineMap, AffineMap> scaleMaps(MLIRContext *context,
                                          ScaleLayout layout) {
  AffineExpr r, k, e, n, k3;
  bindDims(context, r, k);
  bindDims(context, e, n, k3);
  AffineExpr zero = getAffineConstantExpr(0, context);
  switch (layout) {
  case ScaleLayout::PerTensor:
    return {AffineMap::get(2, 0, {zero}, context),
            AffineMap::get(3, 0, {e}, context)};
  case ScaleLayout::PerTokenChannel:
    return {AffineMap::get(2, 0, {r}, context),
            AffineMap::get(3, 0, {e, n}, context)};
  case ScaleLayout::Block:
    return {AffineMap::get(2, 0, {r, k.floorDiv(128)}, context),
            AffineMap::get(3, 0, {e, n.floorDiv(128), k3.floorDiv(128)},
                           context)};
  }
  llvm_unreachable("unknown scale layout");
}

/// Codes [E, N, K/2] stored in moe.prepack's wgmma_a_4bit order back in
/// rows: each expert's bytes viewed as [nt, kt, w, r, q, s, g, h] tiles are
/// permuted to [nt, w, h, r, kt, s, g, q] (n = 64 nt + 16 w + 8 h + r, p =
/// 32 kt + 8 s + 4 g + q), the inverse of PrepackOpLowering's transpose.
Value buildUnpackWgmmaA4Bit(OpBuilder &b, Location loc, Value codes) {
  auto codesType = cast<RankedTensorType>(codes.getType());
  int64_t experts = codesType.getDimSize(0);
  int64_t rowTiles = codesType.getDimSize(1) / 64;
  int64_t kTiles = codesType.getDimSize(2) / 32;
  Type byte = codesType.getElementType();
  Value flat = tensor::CollapseShapeOp::create(
      b, loc, codes, SmallVector<ReassociationIndices>{{0}, {1, 2}});
  // [E, nt, kt, w, r, q, s, g, h]
  SmallVector<int64_t> threadShape = {experts, rowTiles, kTiles, 4, 8,
                                      4,       4,        2,      2};
  Value byThread = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(threadShape, byte), flat,
      SmallVector<ReassociationIndices>{{0}, {1, 2, 3, 4, 5, 6, 7, 8}});
  SmallVector<int64_t> permutation = {0, 1, 3, 8, 4, 2, 6, 7, 5};
  SmallVector<OpFoldResult> rowSizes;
  for (int64_t dim : permutation)
    rowSizes.push_back(b.getIndexAttr(threadShape[dim]));
  Value init = tensor::EmptyOp::create(b, loc, rowSizes, byte);
  Value byRow = linalg::TransposeOp::create(b, loc, byThread, init, permutation)
                    .getResult()
                    .front();
  return tensor::CollapseShapeOp::create(
      b, loc, codesType, byRow,
      SmallVector<ReassociationIndices>{{0}, {1, 2, 3, 4}, {5, 6, 7, 8}});
}

/// The code of weight element (expert, column, position) of the stored
/// `weights` as i32: a byte, or for `packed` formats the nibble of byte
/// position / 2 (low nibble first).
static Value buildStoredCode(OpBuilder &b, Location l, Value weights,
                             bool packed) {
  auto constant = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, l, b.getI32IntegerAttr(v));
  };
  Value expert = linalg::IndexOp::create(b, l, 0);
  Value column = linalg::IndexOp::create(b, l, 1);
  Value position = linalg::IndexOp::create(b, l, 2);
  Value stored = position;
  if (packed)
    stored = arith::DivUIOp::create(b, l, position,
                                    arith::ConstantIndexOp::create(b, l, 2));
  Value byte = tensor::ExtractOp::create(b, l, weights,
                                         ValueRange{expert, column, stored});
  // The stored byte's bits as i32 (signless views of ui8/i8).
  Value bits = arith::ExtUIOp::create(
      b, l, b.getI32Type(),
      UnrealizedConversionCastOp::create(b, l, b.getI8Type(), byte)
          .getResult(0));
  if (!packed)
    return bits;
  Value odd = arith::IndexCastOp::create(
      b, l, b.getI32Type(),
      arith::RemUIOp::create(b, l, position,
                             arith::ConstantIndexOp::create(b, l, 2)));
  return arith::AndIOp::create(
      b, l,
      arith::ShRUIOp::create(b, l, bits,
                             arith::MulIOp::create(b, l, odd, constant(4))),
      constant(0xF));
}

/// The f32 value of weight `code` (buildStoredCode) with its group's
/// `scale` and, with a zero point, `zero`: an mxfp4 code's e2m1 value (from
/// `e2m1Table`) times 2^(scale byte - 127); otherwise the signed code
/// (minus the zero point) times the scale.
static Value buildDecodedWeight(OpBuilder &b, Location l, QuantFormat format,
                                bool packed, Value code, Value scale,
                                Value zero, Value e2m1Table) {
  Type f32 = b.getF32Type();
  Type i32 = b.getI32Type();
  auto constant = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b, l, b.getI32IntegerAttr(v));
  };
  if (format == QuantFormat::Mxfp4) {
    Value entry = tensor::ExtractOp::create(
        b, l, e2m1Table,
        ValueRange{arith::IndexCastOp::create(b, l, b.getIndexType(), code)});
    // 2^(s - 127): the byte as an f32 exponent field.
    Value scaleBits = arith::ShLIOp::create(
        b, l,
        arith::ExtUIOp::create(
            b, l, i32,
            UnrealizedConversionCastOp::create(b, l, b.getI8Type(), scale)
                .getResult(0)),
        constant(23));
    return arith::MulFOp::create(b, l, entry,
                                 arith::BitcastOp::create(b, l, f32, scaleBits));
  }
  if (zero) {
    Value zeroCode = arith::ExtUIOp::create(
        b, l, i32,
        UnrealizedConversionCastOp::create(b, l, b.getI8Type(), zero)
            .getResult(0));
    code = arith::SubIOp::create(b, l, code, zeroCode);
  } else if (packed) {
    // A signed nibble: 8..15 are -8..-1.
    code = arith::SubIOp::create(
        b, l, code,
        arith::MulIOp::create(
            b, l, arith::ShRUIOp::create(b, l, code, constant(3)),
            constant(16)));
  } else {
    code = arith::ExtSIOp::create(
        b, l, i32, arith::TruncIOp::create(b, l, b.getI8Type(), code));
  }
  return arith::MulFOp::create(b, l, arith::SIToFPOp::create(b, l, f32, code),
                               scale);
}

/// The weights of a weight-only format as f32 [E, N, K]: each code (a nibble
/// of the packed byte k / 2 for int4 and mxfp4) minus its zero point, times
/// its group's scale (mxfp4: the e2m1 value times 2^(byte - 127)).
Value buildDequantizeWeightOnly(OpBuilder &b, Location loc,
                                QuantizationAttr quantization, Value weights,
                                Value scales, Value zeros) {
  QuantFormat format = quantization.getFormat();
  bool packed = format != QuantFormat::Int8Weight;
  bool zeroPoint = quantization.getZeroPoint();
  if (quantization.getPacked())
    weights = buildUnpackWgmmaA4Bit(b, loc, weights);
  int64_t group = quantization.getGroupSize();
  auto storedType = cast<RankedTensorType>(weights.getType());
  int64_t numExperts = storedType.getDimSize(0);
  int64_t outFeatures = storedType.getDimSize(1);
  int64_t inFeatures = storedType.getDimSize(2) * (packed ? 2 : 1);
  Value e2m1Table;
  if (format == QuantFormat::Mxfp4)
    e2m1Table = buildDecodeTable(b, loc, APFloat::Float4E2M1FN(), 4);
  Value output = createEmpty(
      b, loc,
      {b.getIndexAttr(numExperts), b.getIndexAttr(outFeatures),
       b.getIndexAttr(inFeatures)},
      b.getF32Type());
  AffineExpr e, n, k;
  bindDims(b.getContext(), e, n, k);
  AffineMap groupMap =
      AffineMap::get(3, 0, {e, n, k.floorDiv(group)}, b.getContext());
  SmallVector<Value> inputs = {scales};
  SmallVector<AffineMap> maps = {groupMap};
  if (zeroPoint) {
    inputs.push_back(zeros);
    maps.push_back(groupMap);
  }
  maps.push_back(b.getMultiDimIdentityMap(3));
  SmallVector<utils::IteratorType> iterators(3, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{output.getType()}, inputs, ValueRange{output},
             maps, iterators,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               Value code = buildStoredCode(nb, l, weights, packed);
               linalg::YieldOp::create(
                   nb, l,
                   buildDecodedWeight(nb, l, format, packed, code, args[0],
                                      zeroPoint ? args[1] : Value(),
                                      e2m1Table));
             })
      .getResult(0);
}

/// The A operand and the weights of a quantized matmul as f32: a w8a8
/// format dequantizes both with their scales, a weight-only one converts A
/// and dequantizes the stored weights. The A scales have one row per A row.
std::pair<Value, Value>
buildDequantizeOperands(OpBuilder &b, Location loc,
                        QuantizationAttr quantization, Value a, Value weights,
                        Value inputScales, Value weightScales,
                        Value weightZeros) {
  if (quantization.isW8A8()) {
    auto [rowMap, weightMap] =
        scaleMaps(b.getContext(), *quantization.getScales());
    return {buildDequantize(b, loc, a, inputScales, rowMap),
            buildDequantize(b, loc, weights, weightScales, weightMap)};
  }
  auto aType = cast<RankedTensorType>(a.getType());
  auto f32Type = RankedTensorType::get(aType.getShape(), b.getF32Type());
  return {buildConvert(b, loc, a, f32Type),
          buildDequantizeWeightOnly(b, loc, quantization, weights,
                                    weightScales, weightZeros)};
}

struct GroupedMatmulOpLowering : public OpConversionPattern<GroupedMatmulOp> {
  using OpConversionPattern::OpConversionPattern;

  /// A w8a8 matmul becomes an unquantized one, which this pattern then
  /// lowers: the recursion is one level deep.
  void initialize() { setHasBoundedRewriteRecursion(); }

  LogicalResult
  matchAndRewrite(GroupedMatmulOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (op.getQuantization().getFormat() != QuantFormat::None) {
      auto [rows, weights] = buildDequantizeOperands(
          rewriter, op.getLoc(), op.getQuantization(), adaptor.getRows(),
          adaptor.getWeights(), adaptor.getInputScales(),
          adaptor.getWeightScales(), adaptor.getWeightZeros());
      rewriter.replaceOpWithNewOp<GroupedMatmulOp>(
          op, op.getResult().getType(), rows, weights, adaptor.getOffsets(),
          /*input_scales=*/Value(), /*weight_scales=*/Value(),
          /*weight_zeros=*/Value(), adaptor.getBias(),
          QuantizationAttr::get(op.getContext(), QuantFormat::None),
          op.getTileAttr());
      return success();
    }
    rewriter.replaceOpWithNewOp<ExpertMatmulOp>(
        op, op.getResult().getType(), adaptor.getRows(), adaptor.getWeights(),
        /*slots=*/Value(), adaptor.getOffsets(), /*block_experts=*/Value(),
        /*num_padded=*/Value(), /*routing_weights=*/Value(),
        /*accumulate=*/Value(), /*input_scales=*/Value(),
        /*weight_scales=*/Value(),
        /*weight_zeros=*/Value(), adaptor.getBias(),
        rewriter.getI64IntegerAttr(1), /*gather=*/UnitAttr(),
        /*unpermute=*/UnitAttr(), /*activation=*/ActivationKindAttr(),
        /*gate_up_interleaved=*/UnitAttr(), /*alpha=*/FloatAttr(),
        /*limit=*/FloatAttr(),
        /*routed_scaling_factor=*/FloatAttr(), /*block_m=*/IntegerAttr(),
        op.getQuantizationAttr(), op.getTileAttr());
    return success();
  }
};

/// Lowers one moe.expert_matmul; holds what its helpers share.
class ExpertMatmulBuilder {
public:
  ExpertMatmulBuilder(OpBuilder &b, Location loc, ExpertMatmulOp op,
                      ExpertMatmulOp::Adaptor adaptor, int64_t rowBlock)
      : loc(loc), op(op), rowBlock(rowBlock), input(adaptor.getInput()),
        weights(adaptor.getWeights()), slots(adaptor.getSlots()),
        routingWeights(adaptor.getRoutingWeights()),
        accumulate(adaptor.getAccumulate()), bias(adaptor.getBias()),
        offsets(adaptor.getOffsets()), blockExperts(adaptor.getBlockExperts()),
        numPadded(adaptor.getNumPadded()), k(op.getK()) {
    auto weightsType = op.getWeights().getType();
    numExperts = weightsType.getDimSize(0);
    outFeatures = weightsType.getDimSize(1);
    inFeatures = weightsType.getDimSize(2);
    width = op.getOutputWidth();
    resultType = cast<RankedTensorType>(op.getResult().getType());
    f32 = b.getF32Type();
    reportFn = getOrInsertReportFunction(b, op);
    c0 = indexConstant(b, loc, 0);
    c1 = indexConstant(b, loc, 1);
    kValue = indexConstant(b, loc, k);
    numSlots = tensor::DimOp::create(b, loc, slots ? slots : input, 0);
    numAssignments = numSlots;
    if (op.isAligned()) {
      // S = A + E·(block_m − 1).
      Value padding =
          indexConstant(b, loc, numExperts * (op.getBlockM().value_or(1) - 1));
      numAssignments = arith::MaxSIOp::create(
          b, loc, arith::SubIOp::create(b, loc, numSlots, padding), c0);
    }
    if (op.getGather())
      numTokens = tensor::DimOp::create(b, loc, input, 0);
    else if (routingWeights)
      numTokens = tensor::DimOp::create(b, loc, routingWeights, 0);
    else
      numTokens = arith::DivUIOp::create(b, loc, numAssignments, kValue);
  }

  Value build(OpBuilder &b) {
    if (slots)
      validateSlots(b);
    if (accumulate) {
      Value partialRows = tensor::DimOp::create(b, loc, accumulate, 0);
      emitRuntimeCheck(b, loc, reportFn,
                       arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                             partialRows, numTokens),
                       RuntimeErrorCode::MismatchedPartialSums, partialRows,
                       numTokens);
    }
    Value acc = createResultInit(b);
    acc =
        op.isAligned() ? buildAlignedRanges(b, acc) : buildOffsetRanges(b, acc);
    if (op.isCombine()) {
      if (std::optional<APFloat> scale = op.getRoutedScalingFactor()) {
        acc = buildScale(b, loc, acc, scale->convertToDouble());
        // The factor scales this op's sum alone, so the partial sums are
        // added after it.
        if (accumulate)
          acc = buildAdd(b, acc, accumulate);
      }
      acc = buildConvert(b, loc, acc, resultType);
    }
    return castToType(b, loc, acc, resultType);
  }

private:
  /// Every slot holds an assignment in [0, A), or, in the aligned form, the
  /// sentinel A.
  void validateSlots(OpBuilder &b) {
    Value upper = op.isAligned()
                      ? arith::AddIOp::create(b, loc, numAssignments, c1)
                      : numAssignments;
    scf::ForOp::create(
        b, loc, c0, numSlots, c1, ValueRange{},
        [&](OpBuilder &lb, Location l, Value slot, ValueRange) {
          Value assignment = extractIndex(lb, l, slots, slot);
          Value invalid = arith::OrIOp::create(
              lb, l,
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::slt,
                                    assignment, c0),
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::sge,
                                    assignment, upper));
          emitRuntimeCheck(lb, l, reportFn, invalid,
                           RuntimeErrorCode::InvalidSlot, slot, numAssignments);
          scf::YieldOp::create(lb, l);
        });
  }

  /// `sums + partial`, elementwise over f32 [M, N].
  Value buildAdd(OpBuilder &b, Value sums, Value partial) {
    return buildGeneric(
        b, loc, partial, sums, {{0, 1}, {0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &nb, Location nl, ValueRange args) {
          linalg::YieldOp::create(
              nb, nl, Value(arith::AddFOp::create(nb, nl, args[0], args[1])));
        });
  }

  Value createResultInit(OpBuilder &b) {
    OpFoldResult widthValue = b.getIndexAttr(width);
    if (op.getUnpermute())
      return createFilled(b, loc, {numTokens, b.getIndexAttr(k), widthValue},
                          resultType.getElementType(), 0.0);
    if (op.isCombine()) {
      // Without a scaling factor the sums start from the partial ones.
      if (accumulate && !op.getRoutedScalingFactor())
        return castToType(
            b, loc, accumulate,
            RankedTensorType::get({ShapedType::kDynamic, width}, f32));
      return createFilled(b, loc, {numTokens, widthValue}, f32, 0.0);
    }
    return createFilled(b, loc, {numSlots, widthValue},
                        resultType.getElementType(), 0.0);
  }

  /// Offsets form: one range per expert, checked to partition [0, S).
  Value buildOffsetRanges(OpBuilder &b, Value acc) {
    auto loop = scf::ForOp::create(
        b, loc, c0, indexConstant(b, loc, numExperts), c1, ValueRange{acc},
        [&](OpBuilder &lb, Location l, Value expert, ValueRange args) {
          Value begin = extractIndex(lb, l, offsets, expert);
          Value end = extractIndex(
              lb, l, offsets,
              ValueRange{arith::AddIOp::create(lb, l, expert, c1)});
          Value beginBad = arith::OrIOp::create(
              lb, l,
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::slt, begin,
                                    c0),
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::sgt, begin,
                                    numSlots));
          Value endBad = arith::OrIOp::create(
              lb, l,
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::slt, end,
                                    begin),
              arith::CmpIOp::create(lb, l, arith::CmpIPredicate::sgt, end,
                                    numSlots));
          emitRuntimeCheck(lb, l, reportFn,
                           arith::OrIOp::create(lb, l, beginBad, endBad),
                           RuntimeErrorCode::InvalidOffsets, expert, numSlots);
          begin = arith::MinSIOp::create(
              lb, l, arith::MaxSIOp::create(lb, l, begin, c0), numSlots);
          end = arith::MinSIOp::create(
              lb, l, arith::MaxSIOp::create(lb, l, end, begin), numSlots);
          scf::YieldOp::create(lb, l,
                               buildRange(lb, l, begin, end, expert, args[0]));
        });
    return loop.getResult(0);
  }

  /// Aligned form: one range per block of block_m slots below num_padded;
  /// blocks of expert -1 are skipped.
  Value buildAlignedRanges(OpBuilder &b, Value acc) {
    int64_t blockM = *op.getBlockM();
    Value blockValue = indexConstant(b, loc, blockM);
    Value padded = extractIndex(b, loc, numPadded, {c0});
    padded = arith::MinSIOp::create(
        b, loc, arith::MaxSIOp::create(b, loc, padded, c0), numSlots);
    Value numBlocks = arith::MinSIOp::create(
        b, loc,
        arith::DivUIOp::create(
            b, loc,
            arith::AddIOp::create(b, loc, padded,
                                  indexConstant(b, loc, blockM - 1)),
            blockValue),
        tensor::DimOp::create(b, loc, blockExperts, 0));
    Value numExpertsValue = indexConstant(b, loc, numExperts);
    Value minusOne = indexConstant(b, loc, -1);
    auto loop = scf::ForOp::create(
        b, loc, c0, numBlocks, c1, ValueRange{acc},
        [&](OpBuilder &lb, Location l, Value block, ValueRange args) {
          Value expert = emitCheckedIndex(
              lb, l, reportFn, extractIndex(lb, l, blockExperts, block),
              minusOne, numExpertsValue, RuntimeErrorCode::InvalidBlockExpert);
          Value begin = arith::MulIOp::create(lb, l, block, blockValue);
          Value end = arith::MinSIOp::create(
              lb, l, arith::AddIOp::create(lb, l, begin, blockValue), padded);
          // A block of another device's experts has no rows here.
          Value remote = arith::CmpIOp::create(lb, l, arith::CmpIPredicate::slt,
                                               expert, c0);
          end = arith::SelectOp::create(lb, l, remote, begin, end);
          expert = arith::MaxSIOp::create(lb, l, expert, c0);
          scf::YieldOp::create(lb, l,
                               buildRange(lb, l, begin, end, expert, args[0]));
        });
    return loop.getResult(0);
  }

  /// Slots [begin, end) of `expert`: nothing to do when empty.
  Value buildRange(OpBuilder &b, Location l, Value begin, Value end,
                   Value expert, Value acc) {
    Value numRows = arith::SubIOp::create(b, l, end, begin);
    Value hasRows =
        arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, numRows, c0);
    auto ifOp = scf::IfOp::create(
        b, l, hasRows,
        [&](OpBuilder &tb, Location tl) {
          Value transposed = buildTransposedWeights(tb, tl, expert);
          Value biasRow = bias ? buildBiasRow(tb, tl, expert) : Value();
          Value blockValue = indexConstant(tb, tl, rowBlock);
          Value fullRows = arith::MulIOp::create(
              tb, tl, arith::DivUIOp::create(tb, tl, numRows, blockValue),
              blockValue);
          Value fullEnd = arith::AddIOp::create(tb, tl, begin, fullRows);
          Value result = buildRowBlocks(tb, tl, begin, fullEnd, rowBlock,
                                        transposed, biasRow, acc);
          result = buildRowBlocks(tb, tl, fullEnd, end, 1, transposed, biasRow,
                                  result);
          scf::YieldOp::create(tb, tl, result);
        },
        [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, acc); });
    return ifOp.getResult(0);
  }

  /// weights[expert] transposed to [K, N], so that the N dimension of the
  /// row-block matmuls is contiguous and vectorizes.
  Value buildTransposedWeights(OpBuilder &b, Location l, Value expert) {
    Type elementType = op.getWeights().getType().getElementType();
    auto sliceType =
        RankedTensorType::get({outFeatures, inFeatures}, elementType);
    Value slice = tensor::ExtractSliceOp::create(
        b, l, sliceType, weights,
        ArrayRef<OpFoldResult>{expert, b.getIndexAttr(0), b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(outFeatures),
                               b.getIndexAttr(inFeatures)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                               b.getIndexAttr(1)});
    Value init = createEmpty(
        b, l, {b.getIndexAttr(inFeatures), b.getIndexAttr(outFeatures)},
        elementType);
    return linalg::TransposeOp::create(b, l, slice, init,
                                       ArrayRef<int64_t>{1, 0})
        ->getResult(0);
  }

  /// bias[expert] as an [N] f32 row.
  Value buildBiasRow(OpBuilder &b, Location l, Value expert) {
    return tensor::ExtractSliceOp::create(
        b, l, RankedTensorType::get({outFeatures}, f32), bias,
        ArrayRef<OpFoldResult>{expert, b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(outFeatures)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  }

  /// The matmul's initial sums: zero, or the expert's bias row on every row
  /// (the bias is added before the epilogue).
  Value createProductInit(OpBuilder &b, Location l, int64_t rows,
                          Value biasRow) {
    SmallVector<OpFoldResult> shape = {b.getIndexAttr(rows),
                                       b.getIndexAttr(outFeatures)};
    if (!biasRow)
      return createFilled(b, l, shape, f32, 0.0);
    return linalg::BroadcastOp::create(b, l, biasRow,
                                       createEmpty(b, l, shape, f32),
                                       ArrayRef<int64_t>{0})
        ->getResult(0);
  }

  /// for s0 in [begin, end) step rows:
  ///   acc = store(s0, epilogue(A(s0) · Wt + bias)).
  Value buildRowBlocks(OpBuilder &b, Location l, Value begin, Value end,
                       int64_t rows, Value transposed, Value biasRow,
                       Value acc) {
    auto loop = scf::ForOp::create(
        b, l, begin, end, indexConstant(b, l, rows), ValueRange{acc},
        [&](OpBuilder &lb, Location ll, Value firstSlot, ValueRange args) {
          Value block = loadRowBlock(lb, ll, firstSlot, rows);
          Value product =
              linalg::MatmulOp::create(
                  lb, ll, ValueRange{block, transposed},
                  ValueRange{createProductInit(lb, ll, rows, biasRow)})
                  .getResult(0);
          if (op.getActivation())
            product = buildActivationEpilogue(lb, ll, product, rows);
          if (biasRow && slots && !op.getUnpermute() && !op.isCombine())
            product = zeroPaddingRows(lb, ll, product, firstSlot, rows);
          scf::YieldOp::create(
              lb, ll, storeRowBlock(lb, ll, firstSlot, rows, product, args[0]));
        });
    return loop.getResult(0);
  }

  /// The A rows of slots [firstSlot, firstSlot + rows): input rows, or the
  /// gathered rows of their tokens (zero for a padding slot).
  Value loadRowBlock(OpBuilder &b, Location l, Value firstSlot, int64_t rows) {
    Type elementType = op.getInput().getType().getElementType();
    if (!op.getGather())
      return tensor::ExtractSliceOp::create(
          b, l, RankedTensorType::get({rows, inFeatures}, elementType), input,
          ArrayRef<OpFoldResult>{firstSlot, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(rows),
                                 b.getIndexAttr(inFeatures)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    Value lastToken = arith::MaxSIOp::create(
        b, l, arith::SubIOp::create(b, l, numTokens, c1), c0);
    return buildGeneric(
        b, l, {},
        createEmpty(b, l, {b.getIndexAttr(rows), b.getIndexAttr(inFeatures)},
                    elementType),
        {{0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &gb, Location gl, ValueRange) {
          Value slot = arith::AddIOp::create(
              gb, gl, firstSlot, linalg::IndexOp::create(gb, gl, 0));
          Value column = linalg::IndexOp::create(gb, gl, 1);
          Value assignment = extractIndex(gb, gl, slots, slot);
          Value valid = isRealAssignment(gb, gl, assignment);
          Value token = arith::DivUIOp::create(
              gb, gl, arith::MaxSIOp::create(gb, gl, assignment, c0), kValue);
          token = arith::MinSIOp::create(gb, gl, token, lastToken);
          Value value =
              tensor::ExtractOp::create(gb, gl, input, {token, column});
          Value zero = arith::ConstantOp::create(
              gb, gl, gb.getFloatAttr(elementType, 0.0));
          linalg::YieldOp::create(
              gb, gl,
              Value(arith::SelectOp::create(gb, gl, valid, value, zero)));
        });
  }

  /// The rows of padding slots set to zero: a skipped slot's result is 0,
  /// which a zero A row gives without a bias but not with one.
  Value zeroPaddingRows(OpBuilder &b, Location l, Value product,
                        Value firstSlot, int64_t rows) {
    return buildGeneric(
        b, l, {product},
        createEmpty(b, l, {b.getIndexAttr(rows), b.getIndexAttr(width)}, f32),
        {{0, 1}, {0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &gb, Location gl, ValueRange args) {
          Value slot = arith::AddIOp::create(
              gb, gl, firstSlot, linalg::IndexOp::create(gb, gl, 0));
          Value real =
              isRealAssignment(gb, gl, extractIndex(gb, gl, slots, slot));
          Value zero = arith::ConstantOp::create(gb, gl, gb.getF32FloatAttr(0));
          linalg::YieldOp::create(
              gb, gl,
              Value(arith::SelectOp::create(gb, gl, real, args[0], zero)));
        });
  }

  /// [rows, 2W] f32 -> [rows, W] f32 through the gated activation.
  Value buildActivationEpilogue(OpBuilder &b, Location l, Value product,
                                int64_t rows) {
    double alpha = op.getAlpha() ? op.getAlpha()->convertToDouble() : 0.0;
    double limit = op.getLimit() ? op.getLimit()->convertToDouble() : 0.0;
    ActivationKind kind = *op.getActivation();
    return buildGeneric(
        b, l, {},
        createEmpty(b, l, {b.getIndexAttr(rows), b.getIndexAttr(width)}, f32),
        {{0, 1}}, {kParallel, kParallel},
        [&](OpBuilder &gb, Location gl, ValueRange) {
          Value row = linalg::IndexOp::create(gb, gl, 0);
          Value column = linalg::IndexOp::create(gb, gl, 1);
          auto [gateColumn, upColumn] =
              gateUpColumns(gb, gl, column, width, op.getGateUpInterleaved());
          Value gate =
              tensor::ExtractOp::create(gb, gl, product, {row, gateColumn});
          Value up =
              tensor::ExtractOp::create(gb, gl, product, {row, upColumn});
          linalg::YieldOp::create(
              gb, gl,
              buildGatedActivation(gb, gl, kind, gate, up, alpha, limit));
        });
  }

  /// Writes a block of f32 product rows by the op's output mode.
  Value storeRowBlock(OpBuilder &b, Location l, Value firstSlot, int64_t rows,
                      Value product, Value acc) {
    Type elementType = resultType.getElementType();
    if (!op.getUnpermute() && !op.isCombine()) {
      Value converted = buildConvert(
          b, l, product, RankedTensorType::get({rows, width}, elementType));
      return tensor::InsertSliceOp::create(
          b, l, converted, acc,
          ArrayRef<OpFoldResult>{firstSlot, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(rows), b.getIndexAttr(width)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    }
    // Scatter: each real assignment goes to its (token, slot-in-k) place, or
    // is added, weighted, into its token's row.
    auto loop = scf::ForOp::create(
        b, l, c0, indexConstant(b, l, rows), c1, ValueRange{acc},
        [&](OpBuilder &lb, Location ll, Value row, ValueRange args) {
          Value slot = arith::AddIOp::create(lb, ll, firstSlot, row);
          Value assignment = extractIndex(lb, ll, slots, slot);
          Value valid = isRealAssignment(lb, ll, assignment);
          auto ifOp = scf::IfOp::create(
              lb, ll, valid,
              [&](OpBuilder &tb, Location tl) {
                Value token =
                    arith::DivUIOp::create(tb, tl, assignment, kValue);
                Value within =
                    arith::RemUIOp::create(tb, tl, assignment, kValue);
                auto rowType = RankedTensorType::get({width}, f32);
                Value productRow = tensor::ExtractSliceOp::create(
                    tb, tl, rowType, product,
                    ArrayRef<OpFoldResult>{row, tb.getIndexAttr(0)},
                    ArrayRef<OpFoldResult>{tb.getIndexAttr(1),
                                           tb.getIndexAttr(width)},
                    ArrayRef<OpFoldResult>{tb.getIndexAttr(1),
                                           tb.getIndexAttr(1)});
                Value updated = op.getUnpermute()
                                    ? storeUnpermuted(tb, tl, productRow, token,
                                                      within, args[0])
                                    : addCombined(tb, tl, productRow, token,
                                                  within, args[0]);
                scf::YieldOp::create(tb, tl, updated);
              },
              [&](OpBuilder &eb, Location el) {
                scf::YieldOp::create(eb, el, args[0]);
              });
          scf::YieldOp::create(lb, ll, ifOp.getResult(0));
        });
    return loop.getResult(0);
  }

  Value storeUnpermuted(OpBuilder &b, Location l, Value productRow, Value token,
                        Value within, Value acc) {
    Value converted = buildConvert1D(b, l, productRow);
    return tensor::InsertSliceOp::create(
        b, l, converted, acc,
        ArrayRef<OpFoldResult>{token, within, b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                               b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                               b.getIndexAttr(1)});
  }

  Value addCombined(OpBuilder &b, Location l, Value productRow, Value token,
                    Value within, Value acc) {
    auto rowType = RankedTensorType::get({width}, f32);
    Value weight =
        tensor::ExtractOp::create(b, l, routingWeights, {token, within});
    Value current = tensor::ExtractSliceOp::create(
        b, l, rowType, acc, ArrayRef<OpFoldResult>{token, b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    Value sum = buildGeneric(
        b, l, {current, productRow},
        createEmpty(b, l, {b.getIndexAttr(width)}, f32), {{0}, {0}, {0}},
        {kParallel}, [&](OpBuilder &gb, Location gl, ValueRange args) {
          Value weighted = arith::MulFOp::create(gb, gl, weight, args[1]);
          linalg::YieldOp::create(
              gb, gl, Value(arith::AddFOp::create(gb, gl, args[0], weighted)));
        });
    return tensor::InsertSliceOp::create(
        b, l, sum, acc, ArrayRef<OpFoldResult>{token, b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  }

  Value buildConvert1D(OpBuilder &b, Location l, Value row) {
    Type elementType = resultType.getElementType();
    if (elementType == f32)
      return row;
    return buildGeneric(
        b, l, row, createEmpty(b, l, {b.getIndexAttr(width)}, elementType),
        {{0}, {0}}, {kParallel}, [&](OpBuilder &gb, Location gl, ValueRange a) {
          linalg::YieldOp::create(gb, gl,
                                  convertFloat(gb, gl, a[0], elementType));
        });
  }

  /// A slot holds a real assignment unless it is padding (>= A) or invalid.
  Value isRealAssignment(OpBuilder &b, Location l, Value assignment) {
    return arith::AndIOp::create(
        b, l,
        arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, assignment, c0),
        arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, assignment,
                              numAssignments));
  }

  Location loc;
  ExpertMatmulOp op;
  int64_t rowBlock;
  Value input, weights, slots, routingWeights, accumulate, bias, offsets,
      blockExperts, numPadded;
  int64_t k, numExperts, outFeatures, inFeatures, width;
  RankedTensorType resultType;
  Type f32;
  func::FuncOp reportFn;
  Value c0, c1, kValue, numSlots, numAssignments, numTokens;
};

struct ExpertMatmulOpLowering : public OpConversionPattern<ExpertMatmulOp> {
  ExpertMatmulOpLowering(MLIRContext *context, int64_t rowBlock)
      : OpConversionPattern(context), rowBlock(rowBlock) {}

  /// A quantized matmul becomes an f32 one, which this pattern then
  /// lowers: the recursion is one level deep.
  void initialize() { setHasBoundedRewriteRecursion(); }

  LogicalResult
  matchAndRewrite(ExpertMatmulOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (op.getQuantization().getFormat() != QuantFormat::None) {
      auto [input, weights] = buildDequantizeOperands(
          rewriter, op.getLoc(), op.getQuantization(), adaptor.getInput(),
          adaptor.getWeights(), adaptor.getInputScales(),
          adaptor.getWeightScales(), adaptor.getWeightZeros());
      rewriter.replaceOpWithNewOp<ExpertMatmulOp>(
          op, op.getResult().getType(), input, weights, adaptor.getSlots(),
          adaptor.getOffsets(), adaptor.getBlockExperts(),
          adaptor.getNumPadded(), adaptor.getRoutingWeights(),
          adaptor.getAccumulate(), /*input_scales=*/Value(),
          /*weight_scales=*/Value(),
          /*weight_zeros=*/Value(), adaptor.getBias(), op.getKAttr(),
          op.getGatherAttr(), op.getUnpermuteAttr(), op.getActivationAttr(),
          op.getGateUpInterleavedAttr(), op.getAlphaAttr(), op.getLimitAttr(),
          op.getRoutedScalingFactorAttr(), op.getBlockMAttr(),
          QuantizationAttr::get(op.getContext(), QuantFormat::None),
          op.getTileAttr());
      return success();
    }
    ExpertMatmulBuilder builder(rewriter, op.getLoc(), op, adaptor, rowBlock);
    rewriter.replaceOp(op, builder.build(rewriter));
    return success();
  }

  int64_t rowBlock;
};

} // namespace

void mlir::moe::lowering::populateMatmulLoweringPatterns(
    RewritePatternSet &patterns, int64_t rowBlock) {
  patterns.add<GroupedMatmulOpLowering>(patterns.getContext());
  patterns.add<ExpertMatmulOpLowering>(patterns.getContext(), rowBlock);
}
