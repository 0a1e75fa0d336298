//===- Passes.td - moe_gpu transformations -----------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES
#define MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def MoeGpuConfigure : Pass<"moe-gpu-configure", "ModuleOp"> {
  let summary = "Choose the sm_90a kernel of every expert matmul";
  let description = [{
    Writes a `#moe_gpu.kernel_config` on each `moe.expert_matmul` that has a
    `#moe.tile` or an aligned schedule, as its attribute `moe_gpu.config`.
    The kernel emitters take every decision from it. Runs between `moe-tile`
    and `moe-align` (in `moe-gpu-pipeline`), or on an aligned schedule.
    Each configuration it builds is checked against the attribute's whole
    contract: a schedule aligned before the pass that no kernel takes with
    the options given (256-row slot blocks without the producer
    warpgroup, say) fails the pass with an error at the op.

    - `block_m`: 128 rows (two consumer warpgroups sharing each weight tile)
      where the cost model's tile asked for at least 128, else 64; the
      matmuls of one schedule (the same `slots`) take the smallest of the
      group, so that one `moe.align` serves them, and the `#moe.tile`'s
      `block_m` follows, since `moe-align` pads to it. A bf16 schedule
      whose tiles asked for 64 takes 128 where an expert's rows (mean
      M·k/E plus two binomial standard deviations, M as for `swap-ab`
      below) exceed 64 but fit 128: one block per expert instead of a
      second, mostly padded one that streams the expert's weights again.
      A schedule of shared experts alone takes 64-row blocks where its
      GEMM1's grid of 64-row blocks and 128-weight-row tiles fits in
      `num-sms` (DeepSeek-V3's shared expert up to M = 256, Qwen1.5-MoE's
      four up to M = 64), with two spans of K per stage (`block_k` 128 for
      bf16) where the ring keeps 4 stages, unless an option asks for
      another kernel. An aligned schedule keeps its `block_m`.
    - `mma`: `wgmma_e4m3` for fp8, `wgmma_s8` for int8, `wgmma_bf16`
      otherwise (weight-only formats are dequantized to bf16).
    - `block_k`: one 128-byte swizzle span of K per stage (64 bf16, 128
      one-byte codes); with `block-k` = 128, two spans (256 bytes of every
      weight row per TMA step) for bf16 matmuls whose K is a multiple of
      128, the rest keeping one.
    - `block_n`: the tile's `block_n` rounded down to a power of two in
      [64, 256] (128 without a tile); at most 128 for fp8 (the promoted
      partial sums take a second and third accumulator; not with
      `fp8-fast-accumulation`, which gives per-channel and per-tensor fp8
      `fast_accumulation` and no partial sums) and for weight-only
      formats (the chunks' scales stay in registers across the step);
      exactly 128 with block scales (gate and up halves in separate
      64-column chunks, each in one 128-row block of weight scales). In a
      schedule of shared experts alone (`moe.shared_expert_routing`, whose
      experts hold every token) it is 256 where tiles of 256 weight rows
      fill 0.8 of a wave; otherwise it starts from at least 128 (the tile's
      width, if wider) and halves, down to 64, while the grid would have
      fewer tiles than half the SMs (a gated matmul's tile holds `block_n /
      2` output columns; DeepSeek-V3's shared expert at M = 64: one row
      block of 16 tiles becomes 64).
    - `split_k`: for the combine, the tile's `split_k`, or, where the tile
      asked for swapped operands (few rows per expert), a split of up to 8,
      so that the weight stream spreads over the SMs; a divisor of the K
      steps, at least 8 of them per split. A bf16 swapped combine of two
      warpgroups copying their weights (`cp_async`), without expert
      biases, whose expected unsplit grid (below) already holds two tiles
      per SM is not split that way (DeepSeek-V3's GEMM2 at M = 1-256). A swapped combine on the register operand whose K is too
      short for that (Qwen3's int4 GEMM2,
      12 steps) splits in pieces of at least 4 steps, up to
      `short-split-k`, where its expected grid (below) is under two blocks
      per SM; so does a swapped matmul on the register operand without a
      combine (Qwen3's int4 GEMM1), in at most 2. The K splits of a matmul
      without a combine form a cluster along the grid's z; the first adds
      the others' sums from their shared memory before the epilogue (the
      activation needs the whole sums). bf16 and fp8 GEMM1s measured
      slower split. A bf16 combine of the multistage schedule (no
      `warp-specialize`, `persistent`, `pingpong` or `cluster-m`) left
      unsplit takes 2 where its expected grid ends in a partial wave: row
      blocks counted from the binomial routing (an expert's assignments
      X ~ Binomial(M·k, 1/E) fill E[ceil(X / block_m)] blocks) times
      column tiles, over `num-sms` times the blocks an SM holds, and
      half-length tiles take at most 0.9 of the waves' time.
    - `stages`: the deepest ring up to 5 (2 for weight-only formats, whose
      dequantization on the block's own warps is hidden better by more
      blocks per SM) that fits 227 KiB and has no more stages than K steps.
    - `group_m`: the tile's `group_m` (the cost model's swizzle), or 0
      without a tile.
    - `schedule = multistage` with `block_m / 64` consumer warpgroups; with
      `warp-specialize`, bf16 and w8a8 (fp8, int8) matmuls of 128-row
      blocks get `warp_specialized`: a producer warpgroup after two
      consumers, and
      setmaxnreg moving them to 88 and 208 registers per thread
      (128 · (88 + 2 · 208) = 64512, all that a block of 384 threads starts
      with; a consumer's 64x256 f32 accumulator takes 128, and the
      persistent producer spilled at 80). With
      `persistent`, the bf16 ones without split-K get `persistent` instead:
      the same roles and registers, on a grid of at most one block per SM
      that walks the tiles in the `group_m` raster; with `pingpong`,
      `pingpong` (persistent, each consumer warpgroup on all 128 rows of
      every other tile, `block_n` at most 128 and the ring as deep as
      fits). With `cluster-m` = 2, bf16 multistage matmuls without
      split-K get `cluster_m = 2`: pairs of consecutive
      slot blocks of one column tile, which load each weight tile once
      (half each, multicast to both) when both blocks hold one expert.
      With `warp-specialize` (or `persistent`, `pingpong`) too, the
      `warp_specialized` matmuls without split-K are paired instead, and
      the multistage ones stay single; persistent and pingpong matmuls are
      never paired.
    - By policy, without those options: bf16 matmuls of 128 x 256 tiles
      with one span of K per stage, no split-K and no cluster get
      `persistent` where the experts hold at most `persistent-max-rows`
      (64) rows on average (M·k/E, M as for `swap-ab` below): there the
      128-row blocks are about half padding and many slot blocks of the
      grid empty, and the persistent grid walks only the tiles that exist,
      each next tile's loads under the current one's epilogue (measured on
      an H200: −4 to −6% where experts hold ~64 rows, −1 to −3% at ~128;
      more rows gained less or lost; on an H100 DeepSeek-V3 at ~128 rows
      ran 3-4% faster multistage, hence 64). A combine that the wave split
      (below) splits stays multistage. In a schedule of shared experts alone, such
      matmuls get `persistent` where their tiles outnumber the SMs (no
      tail wave), unless `persistent-max-rows` is 0.

    With `swap-ab` (the default), a schedule whose matmuls are all bf16 (or
    all weight-only, below) with tiles that
    asked for swapped operands (`swap_ab = true`, the cost model's choice at
    decode) gets `block_m` 16 or 32 where an expert's rows, at their mean
    M·k/E plus two binomial standard deviations, fit (M: the gathered
    input's rows, or `num-tokens` where they are dynamic): its matmuls get
    `swap_ab = true`, `schedule = multistage` with one or two consumer
    warpgroups (the weights are the wgmma's A operand, 64 weight rows per
    accumulator, the slot block's rows its N), `block_n`, `split_k` and
    `stages` as above, and no cluster. With `swapped-warpgroups` = 0 (the
    default) the policy chooses per matmul: one warpgroup with `block_n`
    64 and TMA for a gated matmul whose weight rows hold at most 4 KB of K
    (a short stream per block, where several resident blocks hide each
    other's fill: Qwen3's GEMM1), or wherever `block-n` = 64 asks for one
    warpgroup's rows, two otherwise (`swapped-warpgroups` = 2 with
    `block-n` = 64 is an error). With two (or `swapped-warpgroups` = 2),
    two consumer warpgroups split each tile's weight rows (`block_n` at
    least 128) and a stage holds 256 bytes of K (`block_k` 128 for bf16,
    where K is a multiple of it and `block-k` is not given), unless the
    slot rows of a stage hold fewer 16-byte chunks than the
    block's 256 threads (then one warpgroup); `swapped-weight-load` sets
    `weight_load` (default `cp_async`: every thread copies its chunks of
    the weight tile). Any `block_m` under 64 (an aligned
    schedule's, or a configuration's) is configured this way.

    A weight-only schedule (int4, int8 groups, mxfp4) takes the same swapped
    16-row blocks, and 32-row ones only where every gated matmul's weight
    rows hold at most 4 KB of bf16 K (Mixtral's 8 KB measured slower with
    32 swapped rows than with 64 unswapped ones, Qwen3's 4 KB faster); its
    swapped matmuls take one warpgroup unless `swapped-warpgroups` asks for
    two, and their codes come by cp.async into a 2-stage ring (unless
    `stages` asks for another) whatever `swapped-weight-load` says
    (`weight_load = tma` in the attribute). With `weight-only-registers`
    (the default: swapped int4 blocks measured 15-22% faster with it at
    M = 1-64 on an H200),
    swapped 4-bit matmuls (`int4_weight`, with or without zero points, and
    `mxfp4`) take `weight_load = registers` instead: no bf16 tile is
    written to shared memory, so a stage holds only the codes and the slot
    rows, and the ring is as deep as the multistage schedule allows. A
    register-operand block multiplies 64 weight rows unless `block-n` asks
    for more. `weight-only-registers=false` keeps the bf16 tile. Swapped
    4-bit matmuls whose codes are stored prepacked (`#moe.quant<...,
    packed = wgmma_a_4bit>`) take it whatever the option says. So do 4-bit
    matmuls of 64- and 128-row slot blocks (prefill): swapped, with two
    consumer warpgroups of 64 weight rows each (`block_n` 128 unless
    `block-n` asks for more) and the block's slot rows as the wgmma's N,
    where the bf16 tile kernel waited for every stage's dequantized tile
    and then for its wgmma (H100, against the tile kernel: Mixtral int4
    25-38% faster at M = 256-4096, GPT-OSS-20B mxfp4 25-34% and Qwen3 int4
    zp 10-31% at M = 1024-4096). Their 128-row blocks without split-K
    take the persistent schedule (`weight-only-warp-specialize`, on by
    default): a block per SM walks the tiles, a producer warpgroup copies
    each stage's slot rows and codes (setmaxnreg 88/208), and the two
    consumer warpgroups only decode and multiply, with no block-wide
    barrier in the K loop (H100, against the multistage kernel: 6-12%
    faster at M = 1024-4096 on Mixtral int4 g128, GPT-OSS-120B mxfp4 and
    Qwen3 int4 g32 zp). 64-row blocks stay multistage: with the producer
    they measured 2-30% slower. Where an expert's mean rows are at least
    256 (Mixtral from M = 1024) and the codes are int4 in groups of 128 or
    more without zero points (the format measured; mxfp4 and int4 g32 zp
    spill twice as much), the persistent kernel's slot blocks hold 256
    rows: each decoded weight fragment feeds an m64n256 wgmma, half
    the decode per product, and the sums are transposed in two passes of
    128 rows (H100, Mixtral int4 g128: 14% faster than 128-row blocks at
    1024 and 512 rows per expert, 4% at 256). Without
    the register operand, a 4-bit
    schedule (int4, mxfp4) of unswapped blocks whose gated weight rows hold
    at most 6 KB of K as bf16 (GPT-OSS, Qwen3; not Mixtral) takes 64-row
    blocks of 64 weight rows unless `block-n` asks for more (on the
    register operand, 128-row blocks measured 25-34% faster than 64-row
    ones at M = 1024 and 4096): against
    128 x 128 at M = 1024 and 4096 on an H100, GPT-OSS mxfp4 measured 10-19%
    faster (120B at 1024 within 1%) and Qwen3 int4 7% faster at 1024 and
    level at 4096, where Mixtral's 8 KB rows were 5-9% slower with them. A schedule that
    mixes bf16 and weight-only matmuls is not swapped. The other bf16 rules
    above (128-row blocks, the wave split, the persistent schedule) do not
    apply to weight-only or w8a8 matmuls.

    With `w8a8-swap-ab` (on by default), a w8a8 schedule whose matmuls
    promote nothing (int8, and fp8 with `fp8-fast-accumulation`, also on
    by default) takes swapped slot blocks by the weight-only rule: 16 rows,
    32 only for short gated streams (H200, Qwen3-30B-A3B at M = 16: 12-15%
    faster than 64-row blocks). Its weights come by TMA (`weight_load = tma`),
    and the swapped fp8 matmuls get `fast_accumulation`. Promoted fp8 keeps
    its 64-row blocks.

    The first matmul of a schedule aligns the schedule itself at decode
    (`fused_align_assignments`, no align kernel and no memset node) where
    the schedule expects few assignments (M·k, with M as above): at most
    128 for bf16, 64 for swapped w8a8 and 8 for w8a8 in 64-row blocks,
    which then is the bound. Each of its blocks recomputes the alignment
    before its first load, which costs more than the align kernel once the
    grid runs several waves (H100 and H200: bf16 and swapped w8a8 gained
    1-4.5 µs up to those bounds; block-scaled fp8 gained at 8 and lost from
    32 on). Weight-only schedules keep the align kernel (not measured).
    `fused-align-assignments` replaces the bound, or with 0 turns it off.

    A configuration already on a matmul (written by hand, or by a tuning
    sweep) is kept, and its `block_m` sets the schedule's. A matmul with
    neither a tile, an aligned schedule nor a configuration is left alone.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::moe_gpu::MoeGPUDialect"];
  let options = [
    Option<"blockN", "block-n", "int64_t", /*default=*/"0",
           "wgmma N of the grouped GEMMs (64, 128, 256); 0 follows the tile">,
    Option<"blockK", "block-k", "int64_t", /*default=*/"0",
           "K elements per stage of bf16 matmuls: 64 (one 128-byte swizzle "
           "span) or 128 (two); 0 takes 64. Not with warp-specialize, "
           "persistent, pingpong or cluster-m = 2">,
    Option<"stages", "stages", "int64_t", /*default=*/"0",
           "Shared-memory ring depth (2-16; fewer where K has fewer steps "
           "or the ring would not fit); 0 takes the policy's depth">,
    Option<"warpSpecialize", "warp-specialize", "bool", /*default=*/"false",
           "Give bf16 and w8a8 matmuls of 128-row blocks the "
           "warp-specialized schedule (one producer warpgroup, setmaxnreg "
           "88/208)">,
    Option<"persistent", "persistent", "bool", /*default=*/"false",
           "Give bf16 matmuls of 128-row blocks without split-K the "
           "persistent schedule (warp-specialized, one block per SM; "
           "weight-only-warp-specialize gives it to the weight-only "
           "register operand's 128-row blocks)">,
    Option<"pingpong", "pingpong", "bool", /*default=*/"false",
           "Give bf16 matmuls of 128-row blocks without split-K the "
           "pingpong schedule (persistent; the consumer warpgroups take "
           "alternate tiles)">,
    Option<"clusterM", "cluster-m", "int64_t", /*default=*/"1",
           "Blocks per cluster along the slot blocks of the bf16 "
           "multistage (with warp-specialize: warp-specialized) matmuls "
           "without split-K (1 or 2; 2 multicasts a weight tile to a pair "
           "of blocks of one expert)">,
    Option<"swapAb", "swap-ab", "bool", /*default=*/"true",
           "Give bf16 and weight-only schedules whose tiles asked for "
           "swapped operands, and "
           "whose experts hold at most 16 or 32 rows (mean + 2 sd), slot "
           "blocks of that height and the swapped-operand kernel (on by "
           "default)">,
    Option<"swappedWarpgroups", "swapped-warpgroups", "int64_t",
           /*default=*/"0",
           "Consumer warpgroups of the swapped-operand kernel (0: chosen per "
           "matmul, see above; 1 or 2; 2 "
           "takes block_n >= 128 and, unless block-k says otherwise, 256 "
           "bytes of K per stage, and falls back to 1 where the slot rows "
           "hold fewer 16-byte chunks per stage than the block has threads)">,
    Option<"swappedWeightLoad", "swapped-weight-load", "std::string",
           /*default=*/"\"cp_async\"",
           "How the swapped-operand kernel loads its weight tile: tma or "
           "cp_async (16-byte chunks from every thread)">,
    Option<"weightOnlyRegisters", "weight-only-registers", "bool",
           /*default=*/"true",
           "Give swapped 4-bit weight-only matmuls (int4, mxfp4) "
           "weight_load = registers "
           "(on by default; false keeps the bf16 tile): "
           "each thread decodes its elements of the wgmma's A fragment from "
           "the stored codes into registers, and no bf16 tile is written "
           "to shared memory">,
    Option<"weightOnlyWarpSpecialize", "weight-only-warp-specialize",
           "bool", /*default=*/"true",
           "Give weight-only matmuls of 128-row slot blocks without split-K "
           "on the register operand (256-row ones from 256 rows per "
           "expert) the persistent schedule: a producer "
           "warpgroup copies the slot rows and codes into the ring while "
           "the consumer warpgroups only decode and multiply (setmaxnreg "
           "88/208) (on by default; false keeps them multistage)">,
    Option<"fp8FastAccumulation", "fp8-fast-accumulation", "bool",
           /*default=*/"true",
           "Give fp8 matmuls with per-channel or per-tensor scales "
           "fast_accumulation (on by default; false promotes): their sums "
           "stay in the wgmma's accumulator over all of K (fewer mantissa "
           "bits than f32) instead of being promoted every stage, and their "
           "tiles may be 256 columns wide. Block-scaled fp8 keeps the "
           "promotion">,
    Option<"w8a8SwapAb", "w8a8-swap-ab", "bool", /*default=*/"true",
           "Give w8a8 schedules whose matmuls promote nothing (int8, and "
           "fp8 with fp8-fast-accumulation) swapped slot blocks of 16 or 32 "
           "rows at decode, as bf16 ones get (weights by TMA)">,
    Option<"fusedAlignAssignments", "fused-align-assignments", "int64_t",
           /*default=*/"-1",
           "Give the first matmul of each schedule fused_align_assignments "
           "= this (-1, the default: the policy's bound, see above; 0: "
           "never; at most 1024): calls of at most "
           "this many assignments (M·k) run no align kernel, the matmul's "
           "blocks align their own slot blocks and write the schedule for "
           "the kernels after it; the matmul also zeroes the combine's f32 "
           "sums (no memset node)">,
    Option<"numTokens", "num-tokens", "int64_t", /*default=*/"256",
           "Token count M of an input with a dynamic token dimension, for "
           "the rows per expert (M·k/E) that swap-ab reads (moe-tile's "
           "num-tokens)">,
    Option<"persistentMaxRows", "persistent-max-rows", "int64_t",
           /*default=*/"64",
           "Give bf16 matmuls of 128 x 256 tiles without split-K the "
           "persistent schedule where the experts hold at most this many "
           "rows on average (M·k/E); 0 turns that off">,
    Option<"shortSplitK", "short-split-k", "int64_t", /*default=*/"8",
           "The largest K split of a swapped matmul on the register "
           "operand whose expected grid is under two blocks per SM (see "
           "`split_k` above; 1 turns it off, at most 8)">,
    Option<"combineRows", "combine-rows", "bool", /*default=*/"false",
           "Give combines with a bf16 result, no partial sums and unswapped "
           "tiles combine_rows: each assignment's weighted row stored in "
           "bf16 and summed over k by the finalize kernel, instead of f32 "
           "reductions into the token's sums">,
    Option<"combineRowsMaxK", "combine-rows-max-k", "int64_t",
           /*default=*/"2048",
           "Give bf16 and w8a8 (fp8, int8) combines whose K is at most this "
           "combine_rows by policy, where their tiles are unswapped without "
           "split-K, w8a8 ones on the multistage schedule (0: never by "
           "policy; weight-only combines never)">,
    Option<"tallBlocks", "tall-blocks", "bool", /*default=*/"false",
           "Give bf16 schedules whose experts' likely most rows (mean plus "
           "two binomial standard deviations) spill out of a 128-row slot "
           "block but fit 192 slot blocks of 192 rows: three consumer "
           "warpgroups on the multistage schedule, block_n at most 128">,
    Option<"stagedEpilogue", "staged-epilogue", "bool", /*default=*/"false",
           "Give the persistent bf16 matmuls that store rows (no combine, "
           "or combine_rows) and have at most 32 K steps per tile "
           "staged_epilogue: their rows leave through a 64-row table in "
           "shared memory, the consumer warpgroups in turn">,
    Option<"inputTma", "input-tma", "bool", /*default=*/"false",
           "Give the multistage bf16 matmuls whose input rows are their "
           "slots (no gather; unswapped, no cluster) input_tma: "
           "the A rows of each stage by TMA boxes instead of cp.async">,
    Option<"numSMs", "num-sms", "int64_t", /*default=*/"132",
           "Streaming multiprocessors of the target (H100 SXM, H200: 132), "
           "for the waves of a grid">
  ];
}

def MoeGpuOutlineHost : Pass<"moe-gpu-outline-host", "ModuleOp"> {
  let summary = "Turn a layer whose ops have kernels into a host function";
  let description = [{
    Runs after `moe-emit-gpu-kernels`, which left each `moe` op of the layer
    function with its kernels (`moe.gpu_kernel` and friends) and each kernel
    with its launch facts (`moe.launch`). Replaces the layer function `@f`
    with host functions that state, in IR, everything the host does:

    - `@moe_layer_<name>(inputs..., results..., %num_tokens: index,
      %workspace: memref<?xi8>, %stream: !moe_gpu.stream)`: the tensors
      become memrefs (a result is an argument marked `moe_gpu.result`, every
      dynamic dimension is the token count), each kernel a `gpu.launch_func`
      on the stream, whose operands the upstream verifier checks against the
      kernel's signature; the grid is arithmetic on the token count; the
      intermediates are `moe_gpu.workspace_buffer`s; the weights' TMA
      descriptors are `moe_gpu.tensor_map`s; accumulators are zeroed with
      `moe_gpu.zero`.
    - `moe_gpu.workspace_layout @moe_layer_<name>_workspace`: the bytes of
      each intermediate as an affine map of the token count.
    - `@moe_layer_<name>_workspace_bytes(%num_tokens) -> index` and
      `@moe_layer_<name>_invalid_ids(%workspace, %num_tokens, %stream) ->
      i64` (the expert ids outside [-1, E) that `moe.align` met).

    A `moe.align` with the many-block kernels (`moe.gpu_count_kernel`,
    `moe.gpu_scatter_kernel`) becomes an `scf.if` on the assignment count:
    above `align-many-blocks-above`, its counts and cursors and the error
    word are zeroed and the two kernels run over ceil(M·k / chunk) blocks;
    otherwise the single-block kernel runs (one launch, for decode).

    The grid of an expert matmul covers only the slot blocks that can hold
    an assignment: of the ceil(S / block_m) blocks of S slots, at most
    A / block_m + min(E, A), A = S - E (block_m - 1) the assignments (each
    expert's last block may be partial).

    Fails with a diagnostic on an op without a kernel, on a function
    argument with a dynamic dimension other than the first, and on results
    that are not distinct computed values.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::moe_gpu::MoeGPUDialect"];
  let options = [
    Option<"layerName", "name", "std::string", /*default=*/"",
           "The layer's name in the C entry points (default: the "
           "function's)">,
    Option<"alignManyBlocksAbove", "align-many-blocks-above", "int64_t",
           /*default=*/"4096",
           "Assignment count (M·k) above which moe.align runs over many "
           "blocks">
  ];
}

def MoeGpuDependentLaunch : Pass<"moe-gpu-dependent-launch", "ModuleOp"> {
  let summary = "Launch each kernel as a programmatic dependent of the one "
                "before it";
  let description = [{
    Runs after `moe-gpu-outline-host`. Hopper can schedule a kernel's blocks
    while the kernel before it on the stream is still running
    (programmatic dependent launch): its launch latency and block dispatch
    then overlap the previous kernel's last wave, which is a visible share
    of a decode layer (five kernels of a few to a few hundred µs).

    - Every kernel (`gpu.func` with `gpu.kernel`) starts with
      `nvvm.griddepcontrol wait` (it waits until the kernels before it have
      completed and their memory is visible; nothing precedes it, so no
      access can race with them), then `nvvm.griddepcontrol
      launch_dependents` (the next kernel may be scheduled once every block
      has started; it waits in turn). It is marked
      `moe_gpu.dependent_launch`. Launched normally, both are no-ops.
    - Every `gpu.launch_func` of such a kernel is marked
      `moe_gpu.dependent_launch`; the host lowering launches it with
      programmatic stream serialization
      (`moe_rt_launcher_launch_dependent`).
    - A `moe_gpu.zero` of a workspace buffer moves above the launches and
      pure ops before it in its block that do not use that buffer, so that
      the zeroing runs before the first kernel and the kernels follow one
      another directly (a dependent launch after a memset waits for it as
      after any stream operation).

    ```mlir
    gpu.func @expert_matmul(...) kernel attributes {moe_gpu.dependent_launch} {
      nvvm.griddepcontrol wait
      nvvm.griddepcontrol launch_dependents
      ...
    }
    gpu.launch_func @moe_kernels::@expert_matmul ... {moe_gpu.dependent_launch}
    ```
  }];
  let dependentDialects = ["::mlir::NVVM::NVVMDialect",
                           "::mlir::gpu::GPUDialect",
                           "::mlir::moe_gpu::MoeGPUDialect"];
}

#endif // MOE_DIALECT_MOEGPU_TRANSFORMS_PASSES
