//===- MoeAttrs.td - moe dialect attributes ----------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_DIALECT_MOE_IR_MOEATTRS_TD

include "moe/Dialect/Moe/IR/MoeDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Moe_ScoringFunc : I32EnumAttr<"ScoringFunc",
    "expert scoring function", [
  I32EnumAttrCase<"Softmax", 0, "softmax">,
  I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
  I32EnumAttrCase<"TopkSoftmax", 2, "topk_softmax">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_ActivationKind : I32EnumAttr<"ActivationKind",
    "gated activation", [
  I32EnumAttrCase<"SiluAndMul", 0, "silu_and_mul">,
  I32EnumAttrCase<"GeluAndMul", 1, "gelu_and_mul">,
  I32EnumAttrCase<"Swiglu", 2, "swiglu">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_QuantFormat : I32EnumAttr<"QuantFormat",
    "quantization format", [
  I32EnumAttrCase<"None", 0, "none">,
  I32EnumAttrCase<"Fp8", 1, "fp8">,
  I32EnumAttrCase<"Int8", 2, "int8">,
  I32EnumAttrCase<"Int4Weight", 3, "int4_weight">,
  I32EnumAttrCase<"Int8Weight", 4, "int8_weight">,
  I32EnumAttrCase<"Mxfp4", 5, "mxfp4">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_ScaleLayout : I32EnumAttr<"ScaleLayout",
    "scale layout of a w8a8 format", [
  I32EnumAttrCase<"PerTensor", 0, "per_tensor">,
  I32EnumAttrCase<"PerTokenChannel", 1, "per_token_channel">,
  I32EnumAttrCase<"Block", 2, "block">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_EpRealization : I32EnumAttr<"EpRealization",
    "collectives that realize an expert-parallel exchange", [
  I32EnumAttrCase<"AllgatherReduceScatter", 0, "allgather">,
  I32EnumAttrCase<"AllToAll", 1, "all_to_all">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_PackedWeightLayout : I32EnumAttr<"PackedWeightLayout",
    "fragment order of prepacked weight-only codes", [
  I32EnumAttrCase<"WgmmaA4Bit", 0, "wgmma_a_4bit">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

def Moe_ActivationKindAttr
    : EnumAttr<Moe_Dialect, Moe_ActivationKind, "activation"> {
  let summary = "gated activation fused into a matmul epilogue";
  let assemblyFormat = "`<` $value `>`";
}

def Moe_TileAttr : AttrDef<Moe_Dialect, "Tile"> {
  let mnemonic = "tile";
  let summary = "tiling of a grouped matmul chosen by the cost model";
  let description = [{
    How a grouped matmul is cut into thread blocks on the GPU, as chosen by
    `moe-tile`:

    - `block_m`, `block_n`, `block_k`: the tile of rows (assignments),
      output features and reduction depth one thread block computes per step;
      `block_m` is also the padding granule of the aligned schedule;
    - `stages`: the depth of the shared-memory pipeline;
    - `split_k`: the number of thread blocks that share one tile's reduction
      (partial sums are added afterwards);
    - `swap_ab`: compute `(W · Aᵀ)ᵀ`, so that the weights' output features
      fill the MMA's M dimension and the few rows of a decode step its N;
    - `group_m`: the grid swizzle, in tiles along M that share a weight tile
      in L2 before the grid moves along N.

    Example: `#moe.tile<block_m = 64, block_n = 128, block_k = 64,
    stages = 4, split_k = 1, swap_ab = false, group_m = 8>`.
  }];
  let parameters = (ins "int64_t":$block_m, "int64_t":$block_n,
                        "int64_t":$block_k, "int64_t":$stages,
                        "int64_t":$split_k, "bool":$swap_ab,
                        "int64_t":$group_m);
  let assemblyFormat = [{
    `<` `block_m` `=` $block_m `,` `block_n` `=` $block_n `,`
        `block_k` `=` $block_k `,` `stages` `=` $stages `,`
        `split_k` `=` $split_k `,` `swap_ab` `=` $swap_ab `,`
        `group_m` `=` $group_m `>`
  }];
  let genVerifyDecl = 1;
}

def Moe_QuantizationAttr : AttrDef<Moe_Dialect, "Quantization"> {
  let mnemonic = "quant";
  let summary = "quantization format of a grouped matmul";
  let description = [{
    Names how the operands of a grouped matmul are stored and scaled, and so
    which matmul pattern the lowering picks. The float64 semantics of every
    format (scale rules, rounding, saturation, packing) are
    `python/moe_compiler/quant.py`.

    - `none`: operands in one plain floating-point type, f32 accumulation.
    - `fp8`, `scales = per_tensor | per_token_channel | block`: w8a8 with e4m3
      operands; `block` is DeepSeek-V3's 1×128 activation and 128×128 weight
      scales.
    - `int8`, `scales = per_token_channel`: w8a8, symmetric int8.
    - `int4_weight` / `int8_weight`, `group = 32 | 64 | 128`, optional
      `zero_point = true`: weight-only, group-wise scales along K, bf16
      activations.
    - `mxfp4`: weight-only e2m1 with an e8m0 scale per 32 along K.
    - `packed = wgmma_a_4bit` (`int4_weight` and `mxfp4`): the stored codes
      are in `moe.prepack`'s `wgmma_a_4bit` order, not in rows: the
      `[E, N, K/2]` weights hold, per expert, the bytes of the prepacked
      `[N/64, K/64, 2048]` tiles in row-major order (N and K multiples of
      64); the scales and zero points keep their layout. A kernel that
      multiplies the weights as the wgmma's register operand then reads
      each thread's codes of a K step with one 16-byte load.

    Example: `#moe.quant<fp8, scales = block>`,
    `#moe.quant<int4_weight, group = 128, zero_point = true>`,
    `#moe.quant<int4_weight, group = 128, packed = wgmma_a_4bit>`.
  }];
  let parameters = (ins
    EnumParameter<Moe_QuantFormat>:$format,
    OptionalParameter<"std::optional<::mlir::moe::ScaleLayout>">:$scales,
    DefaultValuedParameter<"int64_t", "0">:$group,
    DefaultValuedParameter<"bool", "false">:$zero_point,
    OptionalParameter<"std::optional<::mlir::moe::PackedWeightLayout>">:$packed);
  let assemblyFormat =
      "`<` $format (`,` struct($scales, $group, $zero_point, $packed)^)? `>`";
  let builders = [
    AttrBuilder<(ins "::mlir::moe::QuantFormat":$format), [{
      return $_get($_ctxt, format, std::nullopt, 0, false, std::nullopt);
    }]>
  ];
  let genVerifyDecl = 1;
  let constBuilderCall =
      "::mlir::moe::QuantizationAttr::get($_builder.getContext(), $0)";
  let extraClassDeclaration = [{
    /// Whether the activations are quantized too (w8a8).
    bool isW8A8() {
      return getFormat() == QuantFormat::Fp8 ||
             getFormat() == QuantFormat::Int8;
    }
    /// Whether only the weights are quantized (stored codes, bf16/f16/f32
    /// activations).
    bool isWeightOnly() {
      return getFormat() != QuantFormat::None && !isW8A8();
    }
    /// The K extent of one weight scale of a weight-only format: 32 for
    /// mxfp4 (the MX block), else `group`.
    int64_t getGroupSize() {
      return getFormat() == QuantFormat::Mxfp4 ? 32 : getGroup();
    }
  }];
}

def Moe_PlacementAttr : AttrDef<Moe_Dialect, "Placement"> {
  let mnemonic = "placement";
  let summary = "where the experts of an expert-parallel layer live";
  let description = [{
    Places the `experts` experts of a layer on `ranks` ranks: rank `r` holds
    the experts `slots[r]`, in its local slot order, so that its expert
    weights are `[L, ...]` with `L` the slots per rank, the same on every
    rank (a rank's program is one program). An expert may be replicated on
    several ranks (a hot expert's load is then shared), never twice on one
    rank, and every expert lives on at least one rank. The plan
    `python/moe_compiler/load_balance.py` writes has this form.

    When expert `e` has replicas on ranks `p_0 < p_1 < ... < p_{n-1}`, the
    assignments of source rank `s` go to rank `p_{s mod n}`: a fixed choice
    every rank can make without communication, which spreads the sources
    over the replicas.

    Example (8 experts on 2 ranks, expert 0 replicated):
    `#moe.placement<ranks = 2, experts = 8, slots = [[0, 1, 2, 3, 4],
    [5, 6, 7, 0, 3]]>`.
  }];
  let parameters = (ins "int64_t":$ranks, "int64_t":$experts,
                        ArrayRefParameter<"::mlir::DenseI64ArrayAttr",
                                          "experts of each rank">:$slots);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Local expert slots per rank, L.
    int64_t getSlotsPerRank() const { return getSlots().front().size(); }
    /// The (rank, local slot) that serves the assignments of rank `source`
    /// to expert `expert` (see the description).
    std::pair<int64_t, int64_t> getServingSlot(int64_t expert,
                                               int64_t source) const;
    /// The placement of `experts` experts on `ranks` ranks in contiguous
    /// runs: slot j of rank r holds expert (r·L + j) mod E with
    /// L = ceil(E / R), so spare slots replicate the first experts.
    static PlacementAttr getContiguous(::mlir::MLIRContext *context,
                                       int64_t ranks, int64_t experts);
  }];
}

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD
