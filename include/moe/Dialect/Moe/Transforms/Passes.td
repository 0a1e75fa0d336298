//===- Passes.td - moe dialect transformations -------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def MoeFuseRouting : Pass<"moe-fuse-routing"> {
  let summary = "Fuse moe.router and moe.topk into moe.route";
  let description = [{
    A `moe.topk` whose logits come from a `moe.router` and have no other use
    becomes one `moe.route`, so that no `[M, E]` logits need to round-trip
    through memory. Logits with another use are left alone.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

def MoeFuseExperts : Pass<"moe-fuse-experts"> {
  let summary = "Fold gather, activation and scatter/combine into the "
                "grouped matmuls";
  let description = [{
    Rewrites `permute → grouped_matmul → activation → grouped_matmul →
    unpermute → combine` into `moe.sort` and two `moe.expert_matmul` ops:

    - the gather of token rows folds into GEMM1's A loads (`gather`), so no
      permuted copy of the activations is materialized; `moe.permute` becomes
      `moe.sort`;
    - the activation runs in GEMM1's epilogue, which stores I columns, not 2I;
    - the scatter back to token order and the weighted sum over k run in
      GEMM2's epilogue (`unpermute`, then `combine`).

    Each step is a separate pattern, so partial chains fuse as far as is
    legal. A value with more than one use is never folded into its consumer
    (it would be computed twice or must stay materialized).

    Quantized matmuls fuse the same way, keeping their scale operands. A
    w8a8 GEMM1 of `moe.quantize(permute(x).rows)` gathers from
    `moe.quantize(x)` instead, which quantizes the same rows for the
    per-token and 1x128 block layouts, and gives the same scale for a
    per-tensor one since `moe.permute` gathers every token `k >= 1` times
    (its verifier requires k >= 1).
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

def MoeSplitSharedExperts : Pass<"moe-split-shared-experts"> {
  let summary = "Give the shared experts a schedule of their own where that "
                "is cheaper";
  let description = [{
    A fused expert block whose routing comes from `moe.add_shared_experts`
    runs its shared experts among the routed ones, in row blocks as tall as
    the routed experts' rows allow. Each shared expert holds every token, so
    where the routed experts hold few rows (decode, M ≥ 64 on DeepSeek-V3)
    its weights are streamed once per short row block. This pass rewrites
    the pair of `moe.expert_matmul` ops (after `moe-fuse-experts`, before
    `moe-tile`) into two schedules of the same layer:

    - the routed experts alone: `moe.sort` of the routed ids, GEMM1, and a
      GEMM2 whose combine keeps its f32 sums (result f32);
    - the shared experts alone: `moe.shared_expert_routing` and its
      `moe.sort`, over the shared slices of the weights
      (`tensor.extract_slice` of the last `num_shared` experts), and a GEMM2
      that `accumulate`s into the routed sums and rounds once.

    It does so where the shared experts' M rows would fill at least
    `min-row-blocks` of the routed schedule's row blocks (the height of
    `moe-tile`'s tile for the routed part, at `num-tokens`), each of which
    streams their weights again, unless those blocks are `tall-rows` high
    already and the shared experts hold more than `minor-share` of the rows
    (S / (k + S)). Measured on an H200 (docs/checkpoint-features.md, both
    forms replayed in turn): the split is 3% faster for DeepSeek-V3 at M =
    256, 2% at M = 1024 and 4–5% for Qwen1.5-MoE at M = 64; with tall
    routed blocks it is 2–8% slower for Qwen1.5-MoE at M = 1024 and 4096
    (its shared experts hold half the rows), but level to 1.6% faster for
    DeepSeek-V3 at M = 4096 (one ninth) once the shared schedule takes
    dense tiles of its own; with few tokens (M ≤ 16, where the three
    kernels it adds cost more than one short block) it is 4–13% slower.
    (The analytic model of `moe-tile`, summing its best tiles' times,
    ranked the two forms wrongly in 5 of the first 12 cases measured.)
    `policy` = `split` or `fused` overrides the rule. The four matmuls it
    makes carry the tiles it priced (moe-tile's choice for each part's own
    problem; the routed part keeps the whole weights, whose shared experts
    moe-tile would otherwise count among the routed ones). Blocks with
    quantized weights or expert biases are left fused.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::tensor::TensorDialect"];
  let options = [
    Option<"policy", "policy", "std::string", /*default=*/"\"cost\"",
           "cost (the cost model decides), split (always) or fused (never)">,
    Option<"numTokens", "num-tokens", "int64_t", /*default=*/"256",
           "Expected token count M">,
    Option<"minRowBlocks", "min-row-blocks", "int64_t", /*default=*/"4",
           "Split where the shared experts' rows fill at least this many "
           "of the routed schedule's row blocks">,
    Option<"tallRows", "tall-rows", "int64_t", /*default=*/"128",
           "Routed row blocks this tall already stream the shared experts' "
           "weights as well as their own schedule would (the tallest GPU "
           "tile)">,
    Option<"minorShare", "minor-share", "double", /*default=*/"0.25",
           "With tall routed row blocks, still split where the shared "
           "experts hold at most this share of the rows (S / (k + S), in "
           "[0, 1])">,
    Option<"l2Bytes", "l2-bytes", "int64_t", /*default=*/"52428800",
           "L2 cache of the target (H100, H200: 50 MiB)">,
    Option<"numSMs", "num-sms", "int64_t", /*default=*/"132",
           "Streaming multiprocessors of the target">,
    Option<"sharedMemoryBytes", "smem-bytes", "int64_t", /*default=*/"232448",
           "Shared memory one thread block may use (sm_90a: 227 KiB)">,
    Option<"peakTflops", "peak-tflops", "double", /*default=*/"799.0",
           "Dense bf16 tensor-core throughput, TFLOP/s">,
    Option<"bandwidthGBps", "bandwidth-gbps", "double", /*default=*/"3000.0",
           "Device memory bandwidth, GB/s">
  ];
}

def MoeTile : Pass<"moe-tile"> {
  let summary = "Choose GPU tiles for grouped matmuls with an analytic model";
  let description = [{
    Attaches a `#moe.tile` to every `moe.grouped_matmul` and
    `moe.expert_matmul`, chosen by the cost model in
    `moe/Dialect/Moe/Transforms/CostModel.h` for the expected token count
    `num-tokens`. The model counts the FLOPs and bytes a tiling really moves
    (padded rows, weights re-read by every row block, activations re-read by
    every column block), the wave quantization over the SMs, and the
    shared-memory and register limits of the target, and picks the fastest
    predicted candidate. The target defaults to an H100 SXM (sm_90a); each
    fact can be overridden.

    `group_m`, the grid's raster, follows the rows per expert. Where they
    fill several row blocks, `group_m` row blocks share each weight tile
    before the grid moves along N (8). Where one block holds an expert's
    rows, the grid moves along N first (1), so that a block's gathered rows
    are reused from L2 by its column tiles — unless many experts spill into
    a second block (more rows per expert than 3/4 of a block), one expert's
    weights do not fit in L2 and all the rows do: then a spilled block's
    sweep would read the weights again from memory, while the rows cost
    nothing to re-read, so every row block of a column tile runs first
    (`group_m` = the schedule's blocks). Measured on an H200
    (docs/gpu-benchmark.md), column-first against row-first: Mixtral
    M = 256 (235 MB experts, 2 MB of rows) 946 against 810 µs; Qwen3
    M = 1024 (6 MB experts) 440 against 459; DeepSeek M = 1024 (32 rows per
    64-row block) 5463 against 5864, M = 4096 (470 MB of gathered rows)
    8612 against 10449.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
  let options = [
    Option<"numTokens", "num-tokens", "int64_t", /*default=*/"256",
           "Expected token count M the tiles are chosen for">,
    Option<"l2Bytes", "l2-bytes", "int64_t", /*default=*/"52428800",
           "L2 cache of the target (H100, H200: 50 MiB)">,
    Option<"numSMs", "num-sms", "int64_t", /*default=*/"132",
           "Streaming multiprocessors of the target">,
    Option<"sharedMemoryBytes", "smem-bytes", "int64_t", /*default=*/"232448",
           "Shared memory one thread block may use (sm_90a: 227 KiB)">,
    Option<"peakTflops", "peak-tflops", "double", /*default=*/"799.0",
           "Dense bf16 tensor-core throughput, TFLOP/s (measured H100)">,
    Option<"bandwidthGBps", "bandwidth-gbps", "double", /*default=*/"3000.0",
           "Device memory bandwidth, GB/s (measured H100)">
  ];
}

def MoeTileReport : Pass<"moe-tile-report"> {
  let summary = "Explain the tile of every grouped matmul";
  let description = [{
    Prints, for every op that carries a `#moe.tile`, what the cost model
    predicts for it: the rows per expert, FLOPs and bytes moved, waves over
    the SMs, whether compute or memory bounds it, and the time. Uses the
    same target options as `moe-tile`. Changes nothing.
  }];
  let options = [
    Option<"numTokens", "num-tokens", "int64_t", /*default=*/"256",
           "Expected token count M">,
    Option<"numSMs", "num-sms", "int64_t", /*default=*/"132",
           "Streaming multiprocessors of the target">,
    Option<"sharedMemoryBytes", "smem-bytes", "int64_t", /*default=*/"232448",
           "Shared memory one thread block may use">,
    Option<"peakTflops", "peak-tflops", "double", /*default=*/"799.0",
           "Dense bf16 tensor-core throughput, TFLOP/s">,
    Option<"bandwidthGBps", "bandwidth-gbps", "double", /*default=*/"3000.0",
           "Device memory bandwidth, GB/s">
  ];
}

def MoeAlign : Pass<"moe-align"> {
  let summary = "Materialize the block-aligned expert schedule";
  let description = [{
    Replaces a `moe.sort` whose results only feed `moe.expert_matmul` ops by
    a `moe.align`, and moves those ops to the aligned schedule: every
    expert's assignments padded to `block_m` rows, buffers sized for the
    upper bound `M·k + E·(block_m − 1)`, so that no host synchronization is
    needed. `block_m` is the `block-m` option, or else the `block_m` of the
    ops' tiles (which must agree), or else 16. Schedules whose rows leave the
    fused matmuls (an intermediate with another use) are left alone; rows
    may pass through a `moe.quantize` between them (it works row by row, or
    on the whole tensor, whose padding rows are zero).
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
  let options = [
    Option<"blockM", "block-m", "int64_t", /*default=*/"0",
           "Padding granule; 0 takes it from the tiles">
  ];
}

def MoeExpertParallel : Pass<"moe-expert-parallel", "::mlir::func::FuncOp"> {
  let summary = "Turn a layer into the program one rank of an "
                "expert-parallel group runs";
  let description = [{
    Rewrites a layer function into the program every rank of a group of
    `ranks` ranks runs, with the experts spread over the ranks by a
    placement (`#moe.placement`):

    ```
    route -> ep_dispatch -> align (local ids) -> expert_matmul (local
    experts) ... -> ep_combine
    ```

    The expert block is first fused (the `moe-fuse-experts` patterns), so
    that it is a `moe.sort` and a chain of `moe.expert_matmul` ops that
    gathers the token rows in its first op and combines in its last. The
    pattern then sends each assignment to the rank serving its expert
    (`moe.ep_dispatch`), schedules the received rows over the rank's local
    experts (`moe.align`, which skips the padding rows), runs the chain on
    them with one expert per row, writes each row's result in its received
    position (`unpermute`, f32), and returns the rows for the weighted sum on
    their source rank (`moe.ep_combine`, which takes over the
    `routed_scaling_factor`).

    The per-rank program takes its local expert weights as arguments: every
    function argument indexed by expert (weights, their scales and zeros,
    expert biases), `[E, ...]`, becomes `[L, ...]`, the L experts of the
    rank's slots in slot order, marked `{moe.local_experts}`; the engine (or `moe-run --ep-ranks`) passes
    each rank its slice. Everything else (the router, the shared routing)
    runs on every rank unchanged.

    `placement` is `contiguous` (slot j of rank r holds expert
    `(r·L + j) mod E`, `L = ceil(E / R)`) or the path of a plan
    `{"ranks": R, "slots": [[expert, ...] per rank]}` as written by
    `python/moe_compiler/load_balance.py`. Layers with w8a8 activations
    (scales that would travel with the rows) are rejected, as are expert
    arguments with other uses.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::tensor::TensorDialect"];
  let options = [
    Option<"ranks", "ranks", "int64_t", /*default=*/"1",
           "Number of ranks of the expert-parallel group">,
    Option<"realization", "realization", "std::string",
           /*default=*/"\"allgather\"",
           "Collectives of the exchange: allgather (allgather + "
           "reduce-scatter) or all_to_all (all-to-all with exchanged counts)">,
    Option<"placement", "placement", "std::string",
           /*default=*/"\"contiguous\"",
           "contiguous, or the path of a placement plan (JSON)">
  ];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES
