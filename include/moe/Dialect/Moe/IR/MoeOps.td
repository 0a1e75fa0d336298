//===- MoeOps.td - moe dialect operations ------------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_DIALECT_MOE_IR_MOEOPS_TD

include "moe/Dialect/Moe/IR/MoeDialect.td"
include "moe/Dialect/Moe/IR/MoeAttrs.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/Properties.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def Moe_FloatElement : AnyTypeOf<[BF16, F16, F32]>;
def Moe_ActivationTensor2D : TensorRankOf<[BF16, F16, F32], [2]>;
def Moe_ActivationTensor3D : TensorRankOf<[BF16, F16, F32], [3]>;
// Matmul operands: activations, or the codes of a w8a8 format.
def Moe_MatmulTensor2D : TensorRankOf<[BF16, F16, F32, F8E4M3FN, I8], [2]>;
// Weights: plain, w8a8 codes, or the stored codes of a weight-only format
// (ui8: packed int4 / e2m1 pairs, or int8 codes with zero points).
def Moe_MatmulTensor3D : TensorRankOf<[BF16, F16, F32, F8E4M3FN, I8, UI8], [3]>;
def Moe_F32Tensor : TensorOf<[F32]>;
def Moe_F32Tensor1D : TensorRankOf<[F32], [1]>;
def Moe_F32Tensor2D : TensorRankOf<[F32], [2]>;
def Moe_I32Tensor1D : TensorRankOf<[I32], [1]>;
def Moe_I32Tensor2D : TensorRankOf<[I32], [2]>;

def Moe_ScoringFuncProp : EnumProp<Moe_ScoringFunc>;
def Moe_ActivationKindProp : EnumProp<Moe_ActivationKind>;
def Moe_EpRealizationProp : EnumProp<Moe_EpRealization>;
def Moe_PackedWeightLayoutProp : EnumProp<Moe_PackedWeightLayout>;

def Moe_FloatPositive : AttrConstraint<
    CPred<"::llvm::cast<::mlir::FloatAttr>($_self).getValue().isNegative() == false && !::llvm::cast<::mlir::FloatAttr>($_self).getValue().isZero() && !::llvm::cast<::mlir::FloatAttr>($_self).getValue().isNaN()">,
    "whose value is positive">;
def Moe_PositiveF32Attr : ConfinedAttr<F32Attr, [Moe_FloatPositive]>;

//===----------------------------------------------------------------------===//
// RouterOp
//===----------------------------------------------------------------------===//

def Moe_RouterOp : Moe_Op<"router", [Pure]> {
  let summary = "router logits: x · W_gateᵀ (+ bias)";
  let description = [{
    Computes `logits[m, e] = sum_h x[m, h] * gate_weight[e, h] (+ bias[e])`
    in f32. `x` is `[M, H]`, `gate_weight` is `[E, H]` with the same element
    type, the optional `bias` is `[E]` f32, and the result is `[M, E]` f32.

    Example:
    ```mlir
    %logits = moe.router %x, %w_gate
        : tensor<?x4096xbf16>, tensor<8x4096xbf16> -> tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input,
                       Moe_ActivationTensor2D:$gate_weight,
                       Optional<Moe_F32Tensor1D>:$bias);
  let results = (outs Moe_F32Tensor2D:$logits);
  let assemblyFormat = [{
    $input `,` $gate_weight (`bias` `(` $bias^ `:` type($bias) `)`)? attr-dict
    `:` type($input) `,` type($gate_weight) `->` type($logits)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// TopkOp
//===----------------------------------------------------------------------===//

def Moe_TopkOp : Moe_Op<"topk", [Pure]> {
  let summary = "select k experts per token and their routing weights";
  let description = [{
    Turns `logits[M, E]` into routing `weights[M, k]` (f32) and expert
    `ids[M, k]` (i32), ordered by decreasing selection score. The `scoring`
    function is one of:

    - `softmax`: scores = softmax over the E logits; select the k largest.
    - `sigmoid`: scores = sigmoid(logits); select the k largest.
    - `topk_softmax`: select the k largest logits; weights = softmax over
      those k logits.

    Options, in the order they apply:

    - `bias(%b)`: an `[E]` f32 correction added to the scores for *selection
      only* (DeepSeek-V3's `e_score_correction_bias`); the weights come from
      the unbiased scores.
    - `groups = G / T`: grouped selection. The E experts form G equal groups;
      a group's score is the sum of its two largest biased scores (its one
      score when a group has a single expert); only experts of the T best
      groups may be selected.
    - `renormalize`: divide the k weights by their sum.
    - `scale = s`: multiply the weights by `s` (DeepSeek-V3's
      `routed_scaling_factor`).

    Ties are broken toward the lower expert (or group) index. A NaN score
    ranks below every number, so ids always lie in `[0, E)`; NaN weights
    propagate.

    Example (DeepSeek-V3):
    ```mlir
    %w, %ids = moe.topk sigmoid %logits bias(%b : tensor<256xf32>)
        {k = 8 : i64, num_groups = 8 : i64, topk_groups = 4 : i64,
         renormalize, routed_scaling_factor = 2.5 : f32}
        : tensor<?x256xf32> -> tensor<?x8xf32>, tensor<?x8xi32>
    ```
  }];
  let arguments = (ins Moe_F32Tensor2D:$logits,
                       Optional<Moe_F32Tensor1D>:$bias,
                       Moe_ScoringFuncProp:$scoring,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$num_groups,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$topk_groups,
                       UnitAttr:$renormalize,
                       OptionalAttr<Moe_PositiveF32Attr>:$routed_scaling_factor);
  let results = (outs Moe_F32Tensor2D:$weights, Moe_I32Tensor2D:$ids);
  let assemblyFormat = [{
    $scoring $logits (`bias` `(` $bias^ `:` type($bias) `)`)? attr-dict
    `:` type($logits) `->` type($weights) `,` type($ids)
  }];
  let extraClassDeclaration = [{
    /// Number of experts E, from the logits type.
    int64_t getNumExperts() {
      return getLogits().getType().getDimSize(1);
    }
    /// Number of expert groups G (1 without grouped selection).
    int64_t getNumGroupsOrOne() { return getNumGroups().value_or(1); }
    /// Number of groups T that selection may draw from (G when ungrouped).
    int64_t getTopkGroupsOrAll() {
      return getTopkGroups().value_or(getNumGroupsOrOne());
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// AddSharedExpertsOp
//===----------------------------------------------------------------------===//

def Moe_AddSharedExpertsOp : Moe_Op<"add_shared_experts", [Pure]> {
  let summary = "every token also picks the shared experts";
  let description = [{
    Appends `num_shared` shared experts to each token's `k` routed choices,
    so that the expert GEMMs run them with the routed experts: the shared
    experts are experts `num_experts .. num_experts + num_shared - 1` of the
    expert weights (which then hold `num_experts + num_shared` experts), and
    every token picks all of them. A shared expert wider than the routed
    ones is split along its intermediate dimension into `num_shared`
    experts of the routed width; their outputs add up to its output.

    For token m: `ids[m, j] = routed_ids[m, j]` and `weights[m, j] =
    routed_weights[m, j]` for `j < k`; `ids[m, k + s] = num_experts + s`,
    and `weights[m, k + s]` is 1, or `sigmoid(gate[m, 0])` with `gate(%g)`
    (`[M, 1]` f32 logits of a shared-expert gate, as Qwen2-MoE's, from
    `moe.router`). Routed ids are copied as they are (also -1 and invalid
    ones).

    Example (DeepSeek-V3's shared expert; Qwen1.5-MoE's, 4 times the
    routed width and gated):
    ```mlir
    %w9, %ids9 = moe.add_shared_experts %w, %ids {num_experts = 256 : i64}
        : tensor<?x8xf32>, tensor<?x8xi32> -> tensor<?x9xf32>, tensor<?x9xi32>
    %w8, %ids8 = moe.add_shared_experts %w, %ids gate(%g : tensor<?x1xf32>)
        {num_experts = 60 : i64, num_shared = 4 : i64}
        : tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?x8xi32>
    ```
  }];
  let arguments = (ins Moe_F32Tensor2D:$routed_weights,
                       Moe_I32Tensor2D:$routed_ids,
                       Optional<Moe_F32Tensor2D>:$gate,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive]>,
                                         "1">:$num_shared);
  let results = (outs Moe_F32Tensor2D:$weights, Moe_I32Tensor2D:$ids);
  let assemblyFormat = [{
    $routed_weights `,` $routed_ids (`gate` `(` $gate^ `:` type($gate) `)`)?
    attr-dict `:` type($routed_weights) `,` type($routed_ids) `->`
    type($weights) `,` type($ids)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// SharedExpertRoutingOp
//===----------------------------------------------------------------------===//

def Moe_SharedExpertRoutingOp : Moe_Op<"shared_expert_routing", [Pure]> {
  let summary = "the shared experts alone, as a schedule of their own";
  let description = [{
    The shared columns of `moe.add_shared_experts`, numbered from 0: every
    token picks each of the `num_shared` shared experts, which are then the
    experts of a separate schedule (their weights are the last `num_shared`
    experts of the layer's, sliced off). `moe-split-shared-experts` makes it
    where the shared experts cost less apart from the routed ones than
    among them.

    For token m: `ids[m, s] = s`, and `weights[m, s]` is 1, or
    `sigmoid(gate[m, 0])` with `gate(%g)` (`[M, 1]` f32 logits of a
    shared-expert gate). Of `routed_weights` (`[M, k]`, the routed experts'
    weights) only the token count M is read.

    Example (Qwen1.5-MoE's gated shared expert, 4 times the routed width):
    ```mlir
    %w, %ids = moe.shared_expert_routing %routed_weights gate(%g : tensor<?x1xf32>)
        {num_shared = 4 : i64}
        : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    ```
  }];
  let arguments = (ins Moe_F32Tensor2D:$routed_weights,
                       Optional<Moe_F32Tensor2D>:$gate,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive]>,
                                         "1">:$num_shared);
  let results = (outs Moe_F32Tensor2D:$weights, Moe_I32Tensor2D:$ids);
  let assemblyFormat = [{
    $routed_weights (`gate` `(` $gate^ `:` type($gate) `)`)?
    attr-dict `:` type($routed_weights) `->` type($weights) `,` type($ids)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// PermuteOp
//===----------------------------------------------------------------------===//

def Moe_PermuteOp : Moe_Op<"permute", [Pure]> {
  let summary = "group the (token, slot) assignments by expert";
  let description = [{
    Given token rows `input[M, H]` and expert `ids[M, k]` (k ≥ 1), orders
    the M·k assignments `a = token * k + slot` by expert id, stably, and
    returns (`1 ≤ E ≤ 65536`):

    - `rows[M·k, H]`: `rows[i] = input[source[i] / k]`;
    - `offsets[E + 1]` (i32): expert e owns rows `[offsets[e], offsets[e+1])`;
      `offsets[0] = 0` and `offsets[E] = M·k`;
    - `source[M·k]` (i32): the assignment index each row came from.

    E is the number of experts, taken from the type of `offsets`. An id
    outside `[0, E)` is a runtime error.

    Example:
    ```mlir
    %rows, %offsets, %source = moe.permute %x, %ids
        : tensor<?x4096xbf16>, tensor<?x2xi32>
        -> tensor<?x4096xbf16>, tensor<9xi32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input, Moe_I32Tensor2D:$ids);
  let results = (outs Moe_ActivationTensor2D:$rows, Moe_I32Tensor1D:$offsets,
                      Moe_I32Tensor1D:$source);
  let assemblyFormat = [{
    $input `,` $ids attr-dict `:` type($input) `,` type($ids)
    `->` type($rows) `,` type($offsets) `,` type($source)
  }];
  let extraClassDeclaration = [{
    /// Number of experts E, from the offsets type.
    int64_t getNumExperts() {
      return getOffsets().getType().getDimSize(0) - 1;
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// GroupedMatmulOp
//===----------------------------------------------------------------------===//

def Moe_GroupedMatmulOp : Moe_Op<"grouped_matmul",
    [Pure, AttrSizedOperandSegments]> {
  let summary = "per-expert matmul over expert-contiguous rows";
  let description = [{
    For every expert e and every row i in `[offsets[e], offsets[e+1])`:
    `result[i, n] = sum_k rows[i, k] * weights[e, n, k]`, accumulated in f32
    and converted to the result element type. `rows` is `[R, K]`, `weights`
    is `[E, N, K]` and `offsets` is `[E + 1]` i32 with `offsets[E] = R`.

    The `quantization` attribute names the operand format and so the matmul
    pattern; it defaults to `#moe.quant<none>`. With a w8a8 format (`fp8`:
    `f8E4M3FN` rows and weights; `int8`: `i8`) the product is that of the
    dequantized operands, `rows · input_scales` and `weights ·
    weight_scales`, with the scale shapes of the layout:

    - `per_tensor`: input `[1]`, weight `[E]`;
    - `per_token_channel`: input `[R]`, weight `[E, N]`;
    - `block`: input `[R, K/128]` (1×128), weight `[E, N/128, K/128]`
      (128×128); K and N multiples of 128.

    With a weight-only format the rows stay in their floating-point type
    and the weights are stored codes, dequantized group-wise along K with
    `weight_scales`:

    - `int4_weight`: `ui8` `[E, N, K/2]`, two codes per byte (element 2j
      in the low nibble), signed (two's complement) without zero points,
      unsigned with them; f32 scales `[E, N, K/group]`;
    - `int8_weight`: `i8` `[E, N, K]` without zero points, `ui8` with them;
      f32 scales `[E, N, K/group]`;
    - with `zero_point = true`: `weight_zeros` `ui8` `[E, N, K/group]`, and
      a weight is `(code - zero) · scale`;
    - `mxfp4`: `ui8` `[E, N, K/2]` of e2m1 pairs, `weight_scales` `ui8`
      `[E, N, K/32]` of e8m0 exponents (`2^(byte - 127)`).

    With `bias(%b)` (f32 `[E, N]`, GPT-OSS's per-expert biases), row i of
    expert e gets `bias[e, n]` added to its (dequantized) product:
    `result[i, n] = sum_k rows[i, k] * weights[e, n, k] + bias[e, n]`.

    Example:
    ```mlir
    %h = moe.grouped_matmul %rows, %w13, %offsets
        : tensor<?x4096xbf16>, tensor<8x28672x4096xbf16>, tensor<9xi32>
        -> tensor<?x28672xf32>
    %q = moe.grouped_matmul %codes, %w, %offsets
        input_scales(%a_s : tensor<?x56xf32>) weight_scales(%w_s : tensor<256x32x56xf32>)
        {quantization = #moe.quant<fp8, scales = block>}
        : tensor<?x7168xf8E4M3FN>, tensor<256x4096x7168xf8E4M3FN>,
          tensor<257xi32> -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins Moe_MatmulTensor2D:$rows,
                       Moe_MatmulTensor3D:$weights,
                       Moe_I32Tensor1D:$offsets,
                       Optional<Moe_F32Tensor>:$input_scales,
                       Optional<TensorOf<[F32, UI8]>>:$weight_scales,
                       Optional<TensorOf<[UI8]>>:$weight_zeros,
                       Optional<Moe_F32Tensor2D>:$bias,
                       DefaultValuedAttr<Moe_QuantizationAttr,
                         "::mlir::moe::QuantFormat::None">:$quantization,
                       OptionalAttr<Moe_TileAttr>:$tile);
  let results = (outs Moe_ActivationTensor2D:$result);
  let assemblyFormat = [{
    $rows `,` $weights `,` $offsets
    (`input_scales` `(` $input_scales^ `:` type($input_scales) `)`)?
    (`weight_scales` `(` $weight_scales^ `:` type($weight_scales) `)`)?
    (`weight_zeros` `(` $weight_zeros^ `:` type($weight_zeros) `)`)?
    (`bias` `(` $bias^ `:` type($bias) `)`)?
    attr-dict `:` type($rows) `,` type($weights) `,` type($offsets) `->`
    type($result)
  }];
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return getWeights().getType().getDimSize(0);
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// QuantizeOp
//===----------------------------------------------------------------------===//

def Moe_QuantizeOp : Moe_Op<"quantize", [Pure]> {
  let summary = "dynamic activation quantization for a w8a8 matmul";
  let description = [{
    Quantizes `input` `[M, K]` for the w8a8 format `quantization` names:
    per group (the whole tensor for `per_tensor`, a row for
    `per_token_channel`, 128 columns of a row for `block`), `scale =
    amax / qmax` in f32 (qmax 448 for fp8, 127 for int8; an all-zero group
    has scale 1), and `codes = input / scale` rounded to nearest even and
    saturated to ±qmax (a NaN stays NaN in fp8). Results: the codes
    (`f8E4M3FN` or `i8`, `[M, K]`) and the scales (`[1]`, `[M]` or
    `[M, K/128]`), exactly what `moe.grouped_matmul` takes. The shapes are
    exact: M is as static or dynamic as the input's, and a static 1 never
    stands for a dynamic row count. A matmul that takes these scales must
    have the same quantization.

    Example:
    ```mlir
    %codes, %scales = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>}
        : tensor<?x7168xbf16> -> tensor<?x7168xf8E4M3FN>, tensor<?x56xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input,
                       Moe_QuantizationAttr:$quantization);
  let results = (outs Moe_MatmulTensor2D:$codes, Moe_F32Tensor:$scales);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `->` type($codes) `,` type($scales)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// PrepackOp
//===----------------------------------------------------------------------===//

def Moe_PrepackOp : Moe_Op<"prepack", [Pure]> {
  let summary = "weight-only codes reordered into an MMA fragment order";
  let description = [{
    Reorders the stored codes of a 4-bit weight-only format (int4 or e2m1
    pairs: `codes[e, n, p]` holds the codes of K columns `2p` in its low and
    `2p + 1` in its high nibble, as `moe.grouped_matmul` takes them) so
    that a kernel which multiplies the weights as an MMA's register operand
    reads each thread's codes for a step with one 16-byte load. Only bytes
    move: no code is changed, and the scales and zero points keep their
    layout.

    `wgmma_a_4bit`: the A operand of Hopper's `wgmma` (m64, k16, bf16) taken
    from registers, one warpgroup of 128 threads. `codes` `[E, N, K/2]`
    (N a multiple of 64, K of 64) becomes `packed` `[E, N/64, K/64, 2048]`:
    one 2048-byte tile per 64 weight rows and 64 columns of K, in which
    thread `t = 32w + 4r + q` (warp w, lane `4r + q`) holds bytes
    `16t .. 16t + 15`. Its byte `4s + 2g + h` is the code pair of tile row
    `16w + 8h + r` and tile columns `16s + 8g + 2q` and `+ 1`: for each of
    the tile's four k16 steps s, the four 32-bit A registers of the wgmma
    fragment (row `+ 8` for h = 1, column `+ 8` for g = 1), one bf16 pair
    each once decoded. Equivalently: with `n = 64 nt + 16w + 8h + r` and `p
    = 32 kt + 8s + 4g + q`, `packed[e, nt, kt, 512w + 64r + 16q + 4s + 2g +
    h] = codes[e, n, p]`.

    Example:
    ```mlir
    %packed = moe.prepack wgmma_a_4bit %w13
        : tensor<8x28672x2048xui8> -> tensor<8x448x64x2048xui8>
    ```
  }];
  let arguments = (ins TensorRankOf<[UI8], [3]>:$codes,
                       Moe_PackedWeightLayoutProp:$layout);
  let results = (outs TensorRankOf<[UI8], [4]>:$packed);
  let assemblyFormat = [{
    $layout $codes attr-dict `:` type($codes) `->` type($packed)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// ActivationOp
//===----------------------------------------------------------------------===//

def Moe_ActivationOp : Moe_Op<"activation", [Pure]> {
  let summary = "gated activation over paired gate and up columns";
  let description = [{
    Pairs the columns of `input[R, 2I]` into gate and up halves and returns
    `[R, I]`. By default the halves are contiguous, `gate = input[:, :I]` and
    `up = input[:, I:]`; with `interleaved` (attribute
    `gate_up_interleaved`), they alternate, `gate = input[:, 0::2]` and
    `up = input[:, 1::2]`, which is how GPT-OSS stores its gate/up
    projection: a GEMM over weights in that layout produces such columns,
    and the activation states it instead of a copy that reorders them.
    Output column `j` is:

    - `silu_and_mul`: `silu(gate) * up`, with `silu(x) = x * sigmoid(x)`;
    - `gelu_and_mul`: `gelu(gate) * up`, with the exact (erf) gelu;
    - `swiglu` (GPT-OSS), with attributes `alpha` and `limit`:
      `g = min(gate, limit)`, `u = clamp(up, -limit, limit)`,
      `g * sigmoid(alpha * g) * (u + 1)`.

    The activation is computed in f32 and converted to the result's element
    type, which may differ from the input's (an f32 GEMM1 result activated
    into the bf16 rows GEMM2 quantizes, as the fused kernels do).

    Example:
    ```mlir
    %a = moe.activation swiglu interleaved %h
        {alpha = 1.702 : f32, limit = 7.0 : f32}
        : tensor<?x5760xf32> -> tensor<?x2880xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input,
                       Moe_ActivationKindProp:$kind,
                       UnitAttr:$gate_up_interleaved,
                       OptionalAttr<F32Attr>:$alpha,
                       OptionalAttr<Moe_PositiveF32Attr>:$limit);
  let results = (outs Moe_ActivationTensor2D:$result);
  let assemblyFormat = [{
    $kind (`interleaved` $gate_up_interleaved^)? $input attr-dict `:`
    type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// UnpermuteOp
//===----------------------------------------------------------------------===//

def Moe_UnpermuteOp : Moe_Op<"unpermute", [Pure]> {
  let summary = "scatter expert-ordered rows back to assignment order";
  let description = [{
    The inverse of `moe.permute`'s grouping: with `rows[M·k, N]` and the
    `source[M·k]` assignment index of each row, returns `result[M, k, N]`
    with `result[a / k, a % k] = rows[i]` where `a = source[i]`. k ≥ 1 comes
    from the result type.

    Example:
    ```mlir
    %y = moe.unpermute %out, %source
        : tensor<?x4096xf32>, tensor<?xi32> -> tensor<?x2x4096xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$rows, Moe_I32Tensor1D:$source);
  let results = (outs Moe_ActivationTensor3D:$result);
  let assemblyFormat = [{
    $rows `,` $source attr-dict `:` type($rows) `,` type($source)
    `->` type($result)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

def Moe_CombineOp : Moe_Op<"combine", [Pure]> {
  let summary = "weighted sum of each token's k expert outputs";
  let description = [{
    `result[m, h] = scale * sum_j weights[m, j] * input[m, j, h]`, computed
    in f32. `input` is `[M, k, H]` (k ≥ 1), `weights` is `[M, k]` f32, and `scale` is
    the optional `routed_scaling_factor` (1 when absent).

    Example:
    ```mlir
    %out = moe.combine %y, %w
        : tensor<?x2x4096xf32>, tensor<?x2xf32> -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor3D:$input,
                       Moe_F32Tensor2D:$weights,
                       OptionalAttr<Moe_PositiveF32Attr>:$routed_scaling_factor);
  let results = (outs Moe_ActivationTensor2D:$result);
  let assemblyFormat = [{
    $input `,` $weights attr-dict `:` type($input) `,` type($weights)
    `->` type($result)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Fused and scheduled forms
//
// The passes produce these ops. They stay target-neutral and have CPU
// lowerings, so that every pass can be checked by running the program before
// and after it.
//===----------------------------------------------------------------------===//

def Moe_RouteOp : Moe_Op<"route", [Pure, AttrSizedOperandSegments]> {
  let summary = "router and top-k fused into one routing step";
  let description = [{
    `moe.router` followed by `moe.topk`, as one op: the `[M, E]` logits are
    not a result, so a GPU lowering can keep each token's logits in registers
    and select its experts in the same kernel. The semantics are exactly those
    of the two ops; `gate_bias` is the router's bias and `score_bias` the
    top-k selection bias.

    Example:
    ```mlir
    %w, %ids = moe.route sigmoid %x, %w_gate score_bias(%b : tensor<256xf32>)
        {k = 8 : i64, num_groups = 8 : i64, topk_groups = 4 : i64,
         renormalize, routed_scaling_factor = 2.5 : f32}
        : tensor<?x7168xbf16>, tensor<256x7168xbf16>
        -> tensor<?x8xf32>, tensor<?x8xi32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input,
                       Moe_ActivationTensor2D:$gate_weight,
                       Optional<Moe_F32Tensor1D>:$gate_bias,
                       Optional<Moe_F32Tensor1D>:$score_bias,
                       Moe_ScoringFuncProp:$scoring,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$num_groups,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$topk_groups,
                       UnitAttr:$renormalize,
                       OptionalAttr<Moe_PositiveF32Attr>:$routed_scaling_factor);
  let results = (outs Moe_F32Tensor2D:$weights, Moe_I32Tensor2D:$ids);
  let assemblyFormat = [{
    $scoring $input `,` $gate_weight
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`score_bias` `(` $score_bias^ `:` type($score_bias) `)`)?
    attr-dict `:` type($input) `,` type($gate_weight) `->` type($weights) `,`
    type($ids)
  }];
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return getGateWeight().getType().getDimSize(0);
    }
  }];
  let hasVerifier = 1;
}

def Moe_SortOp : Moe_Op<"sort", [Pure]> {
  let summary = "order the (token, slot) assignments by expert";
  let description = [{
    The routing half of `moe.permute`, without gathering rows: from
    `ids[M, k]` (k ≥ 1) returns the `offsets[E + 1]` (`1 ≤ E ≤ 65536`) of
    each expert's assignments and the `source[M·k]`
    assignment index of each position, grouped by expert and stable within
    an expert. Fused matmuls gather their rows through `source` instead of
    reading a permuted copy of the activations.

    Example:
    ```mlir
    %offsets, %source = moe.sort %ids
        : tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Moe_I32Tensor2D:$ids);
  let results = (outs Moe_I32Tensor1D:$offsets, Moe_I32Tensor1D:$source);
  let assemblyFormat = [{
    $ids attr-dict `:` type($ids) `->` type($offsets) `,` type($source)
  }];
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return getOffsets().getType().getDimSize(0) - 1;
    }
  }];
  let hasVerifier = 1;
}

def Moe_AlignOp : Moe_Op<"align", [Pure]> {
  let summary = "block-aligned, expert-sorted schedule of the assignments";
  let description = [{
    The schedule that vLLM's `moe_align_block_size` computes. With
    `A = M·k` assignments (k ≥ 1) and `E` experts, every expert's
    assignments are padded to a multiple of `block_m`; the buffers are sized
    for the upper bound `S = A + E·(block_m − 1)` so that no host
    synchronization is ever needed. `E ≤ 65536` and `block_m ≤ 4096`, so that
    the padding (< 2^28) leaves the i32 slot indices room for `A`:

    - `sorted_ids[S]`: the assignment index of each padded slot, grouped by
      expert, each expert's group its assignments and then its padding (the
      sentinel `A`), and the tail past the padded count filled with `A` too.
      The GPU's fused matmuls rely on the padding coming last: within a
      block of `block_m` slots (which never spans two groups), every slot
      after a padding slot is padding, so a run that starts on padding is
      not multiplied.
      The order of the assignments within a group is left to the
      implementation (the CPU lowering keeps ascending order; the GPU
      kernel takes slots by atomics); results of the fused matmuls do not
      depend on it;
    - `block_experts[ceil(S / block_m)]`: the expert of each block of
      `block_m` slots, `-1` past the padded count;
    - `num_padded[1]`: the padded count, a multiple of `block_m`.

    An id of `-1` marks an assignment to an expert that lives on another
    device (expert parallelism): it is skipped, not scheduled. Any other id
    outside `[0, E)` is a runtime error.

    Example:
    ```mlir
    %sorted, %blocks, %padded = moe.align %ids {block_m = 16 : i64, num_experts = 8 : i64}
        : tensor<?x2xi32> -> tensor<?xi32>, tensor<?xi32>, tensor<1xi32>
    ```
  }];
  let arguments = (ins Moe_I32Tensor2D:$ids,
                       ConfinedAttr<I64Attr, [IntPositive]>:$block_m,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts);
  let results = (outs Moe_I32Tensor1D:$sorted_ids,
                      Moe_I32Tensor1D:$block_experts,
                      Moe_I32Tensor1D:$num_padded);
  let assemblyFormat = [{
    $ids attr-dict `:` type($ids) `->` type($sorted_ids) `,`
    type($block_experts) `,` type($num_padded)
  }];
  let hasVerifier = 1;
}

def Moe_ExpertMatmulOp : Moe_Op<"expert_matmul",
    [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped matmul with gather, activation and scatter fused";
  let description = [{
    The fused form of `permute → grouped_matmul → activation` and of
    `grouped_matmul → unpermute → combine`. It works on a *schedule* of `S`
    slots; slot `s` holds the assignment `a = slots[s]` (`a = token·k +
    slot-in-k`), and each slot belongs to one expert:

    - offsets form, `offsets(%o)`: slot `s` belongs to the expert `e` with
      `o[e] <= s < o[e+1]` (`slots` is `moe.sort`'s `source`, `S = M·k`);
    - aligned form, `blocks(%block_experts, %num_padded)`: slot `s` belongs
      to `block_experts[s / block_m]`; slots at or past `num_padded[0]`,
      slots holding the sentinel `M·k`, and blocks of expert `-1` are skipped
      (`slots` is `moe.align`'s `sorted_ids`); `block_m ≤ 4096`, as for
      `moe.align`.

    For every scheduled slot: the A row is `input[a / k]` with `gather`, else
    `input[s]`; the product `p = row · weights[e]ᵀ` is accumulated in f32,
    plus `bias[e]` with `bias(%b)` (f32 `[E, N]`, as `moe.grouped_matmul`'s);
    `activation` (an epilogue over p's gate and up columns, as
    `moe.activation`: contiguous halves, or alternating columns with
    `gate_up_interleaved`) halves its width. Then, by output mode:

    - default: `result[s] = p` (`[S, N]`; skipped slots are 0);
    - `unpermute`: `result[a / k, a % k] = p` (`[M, k, N]`);
    - `combine(%w)`: `result[a / k] += w[a / k, a % k] · p`, times
      `routed_scaling_factor` (`[M, N]`); with `accumulate(%partial)` (f32
      `[M, N]`, combine only) the sums start from `partial` instead of 0
      (the scaling factor applies to this op's sum alone). A result of f32
      holds the sums unrounded, for a later combine to accumulate into:
      that is how the routed experts and a separately scheduled shared
      expert (`moe-split-shared-experts`) add up to one output.

    Without gather and in the default mode, the offsets form needs no
    `slots`.

    `quantization` and the scale operands are those of
    `moe.grouped_matmul`, with one scale row per `input` row: with `gather`
    the input scales are per token (`[M]` or `[M, K/128]`), otherwise per
    slot.

    Example (GEMM1 and GEMM2 of a Mixtral layer after `moe-fuse-experts`):
    ```mlir
    %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>)
        offsets(%offsets : tensor<9xi32>)
        {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>}
        : tensor<?x4096xbf16>, tensor<8x28672x4096xbf16> -> tensor<?x14336xbf16>
    %out = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>)
        offsets(%offsets : tensor<9xi32>) combine(%weights : tensor<?x2xf32>)
        {k = 2 : i64}
        : tensor<?x14336xbf16>, tensor<8x4096x14336xbf16> -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins Moe_MatmulTensor2D:$input,
                       Moe_MatmulTensor3D:$weights,
                       Optional<Moe_I32Tensor1D>:$slots,
                       Optional<Moe_I32Tensor1D>:$offsets,
                       Optional<Moe_I32Tensor1D>:$block_experts,
                       Optional<Moe_I32Tensor1D>:$num_padded,
                       Optional<Moe_F32Tensor2D>:$routing_weights,
                       Optional<Moe_F32Tensor2D>:$accumulate,
                       Optional<Moe_F32Tensor>:$input_scales,
                       Optional<TensorOf<[F32, UI8]>>:$weight_scales,
                       Optional<TensorOf<[UI8]>>:$weight_zeros,
                       Optional<Moe_F32Tensor2D>:$bias,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       UnitAttr:$gather,
                       UnitAttr:$unpermute,
                       OptionalAttr<Moe_ActivationKindAttr>:$activation,
                       UnitAttr:$gate_up_interleaved,
                       OptionalAttr<F32Attr>:$alpha,
                       OptionalAttr<Moe_PositiveF32Attr>:$limit,
                       OptionalAttr<Moe_PositiveF32Attr>:$routed_scaling_factor,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$block_m,
                       DefaultValuedAttr<Moe_QuantizationAttr,
                         "::mlir::moe::QuantFormat::None">:$quantization,
                       OptionalAttr<Moe_TileAttr>:$tile);
  let results = (outs AnyTypeOf<[Moe_ActivationTensor2D,
                                 Moe_ActivationTensor3D]>:$result);
  let assemblyFormat = [{
    $input `,` $weights
    (`slots` `(` $slots^ `:` type($slots) `)`)?
    (`offsets` `(` $offsets^ `:` type($offsets) `)`)?
    (`blocks` `(` $block_experts^ `,` $num_padded `:` type($block_experts)
      `,` type($num_padded) `)`)?
    (`combine` `(` $routing_weights^ `:` type($routing_weights) `)`)?
    (`accumulate` `(` $accumulate^ `:` type($accumulate) `)`)?
    (`input_scales` `(` $input_scales^ `:` type($input_scales) `)`)?
    (`weight_scales` `(` $weight_scales^ `:` type($weight_scales) `)`)?
    (`weight_zeros` `(` $weight_zeros^ `:` type($weight_zeros) `)`)?
    (`bias` `(` $bias^ `:` type($bias) `)`)?
    attr-dict `:` type($input) `,` type($weights) `->` type($result)
  }];
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return getWeights().getType().getDimSize(0);
    }
    bool isAligned() { return static_cast<bool>(getBlockExperts()); }
    bool isCombine() { return static_cast<bool>(getRoutingWeights()); }
    /// Width of a product row after the epilogue: N, or N / 2 with an
    /// activation.
    int64_t getOutputWidth() {
      int64_t n = getWeights().getType().getDimSize(1);
      return getActivation() ? n / 2 : n;
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Expert parallelism
//
// Each rank of a group of R ranks runs the same program; these ops are
// collectives over the group (every rank executes them, in the same order,
// with the same attributes and the same token count M). Their results on
// the calling rank `r` are stated in terms of the operands of every rank
// `s` (written `input_s`, `ids_s`, ...).
//===----------------------------------------------------------------------===//

def Moe_EpDispatchOp : Moe_Op<"ep_dispatch"> {
  let summary = "send each assignment's token row to the rank of its expert";
  let description = [{
    Every rank `s` holds token rows `input_s[M, H]` and global expert
    `ids_s[M, k]` (k ≥ 1). Assignment `a = token·k + j` of rank `s` is
    served by the (rank, local slot) that `placement` gives for expert
    `ids_s[a / k, a % k]` and source `s`; an id of `-1` is dropped (never
    sent), any other id outside `[0, E)` is a runtime error.

    On rank `r`, with `S = R·M·k` rows (the worst case: every assignment of
    every rank lands here), the results list the assignments that rank `r`
    serves, ordered by source rank and then by assignment index, packed at
    the front; the rows after them are padding:

    - `rows[S, H]`: `rows[q] = input_s[a / k]` (padding rows are 0);
    - `local_ids[S, 1]` (i32): the local slot in `[0, L)` serving the row,
      `-1` for padding, so the expert block over the `L` local experts
      (`moe.align`, `moe.expert_matmul`) skips the padding;
    - `origin[S]` (i32): `s·M·k + a`, which `moe.ep_combine` uses to return
      the row's result; `-1` for padding.

    The result does not depend on `realization`, which names the
    collectives of an implementation:

    - `allgather`: every rank gathers all ranks' ids and rows and keeps
      its own; the return is a reduce-scatter of weighted partial sums;
    - `all_to_all`: every rank counts and packs its rows per destination,
      the counts are exchanged, then the rows (an all-to-all); the return
      is the reverse all-to-all.

    Example (rank r of 2, 8 experts):
    ```mlir
    %rows, %local_ids, %origin = moe.ep_dispatch all_to_all %x, %ids
        {placement = #moe.placement<ranks = 2, experts = 8,
                                    slots = [[0, 1, 2, 3], [4, 5, 6, 7]]>}
        : tensor<?x4096xbf16>, tensor<?x2xi32>
        -> tensor<?x4096xbf16>, tensor<?x1xi32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$input,
                       Moe_I32Tensor2D:$ids,
                       Moe_EpRealizationProp:$realization,
                       Moe_PlacementAttr:$placement);
  let results = (outs Moe_ActivationTensor2D:$rows,
                      Moe_I32Tensor2D:$local_ids,
                      Moe_I32Tensor1D:$origin);
  let assemblyFormat = [{
    $realization $input `,` $ids attr-dict `:` type($input) `,` type($ids)
    `->` type($rows) `,` type($local_ids) `,` type($origin)
  }];
  let hasVerifier = 1;
}

def Moe_EpCombineOp : Moe_Op<"ep_combine"> {
  let summary = "return the expert outputs and sum them on the source rank";
  let description = [{
    The return of `moe.ep_dispatch`. Every rank `r` holds the expert outputs
    `rows_r[S, H]` of the rows it received (`S = R·M·k`, in the order of
    dispatch) and their `origin_r[S]`; rank `s` holds the routing
    `weights_s[M, k]` (f32) of its tokens. On rank `s`:

    `result[m, h] = scale · sum_j weights_s[m, j] · y[m·k + j, h]`,

    computed in f32 and converted to the result type, where `y[a]` is the
    row `rows_r[q]` of the one rank `r` with `origin_r[q] = s·M·k + a`, and
    0 for an assignment no rank served (a dropped id `-1`); `scale` is the
    optional `routed_scaling_factor`. Rows with origin `-1` are padding and
    ignored. An origin outside `[-1, R·M·k)` is a runtime error.

    `realization` and `ranks` must be those of the dispatch. The order of
    the sum over j may differ between realizations (`allgather` sums
    weighted partials across ranks), within f32 rounding.

    Example:
    ```mlir
    %out = moe.ep_combine all_to_all %y, %origin, %weights {ranks = 2 : i64}
        : tensor<?x4096xf32>, tensor<?xi32>, tensor<?x2xf32>
        -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins Moe_ActivationTensor2D:$rows,
                       Moe_I32Tensor1D:$origin,
                       Moe_F32Tensor2D:$weights,
                       Moe_EpRealizationProp:$realization,
                       ConfinedAttr<I64Attr, [IntPositive]>:$ranks,
                       OptionalAttr<Moe_PositiveF32Attr>:$routed_scaling_factor);
  let results = (outs Moe_ActivationTensor2D:$result);
  let assemblyFormat = [{
    $realization $rows `,` $origin `,` $weights attr-dict `:` type($rows) `,`
    type($origin) `,` type($weights) `->` type($result)
  }];
  let hasVerifier = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEOPS_TD
