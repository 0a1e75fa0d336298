// The cases below have dynamic rows; 128 tokens give their 8 experts 32
// rows each (43 at mean + 2 sd): neither swapped nor spilling a 64-row block.
// The block-height and schedule cases below keep the multistage schedule
// (persistent-max-rows=0); the persistent policy is tested further down.
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 persistent-max-rows=0" | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 block-n=64 stages=3" | FileCheck %s --check-prefix=OVERRIDE
// RUN: moe-opt %s -split-input-file -moe-gpu-configure=num-tokens=128 -moe-tile-report=num-tokens=4 | FileCheck %s --check-prefix=REPORT
// The configurations the example layers get at prefill, and at decode
// without swapped operands (swap-ab=false; the default is below).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false" | FileCheck %s --check-prefix=QWEN-DECODE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=QWEN-PREFILL
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false" | FileCheck %s --check-prefix=MIXTRAL-DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=FP8-DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=FP8-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=512 -moe-gpu-configure=num-tokens=512 | FileCheck %s --check-prefix=INT4-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=INT4-PREFILL-WIDE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=INT4-PREFILL-WIDE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 weight-only-warp-specialize=false" | FileCheck %s --check-prefix=INT4-PREFILL-MULTISTAGE
// A schedule aligned to 256 rows before configure, with the producer
// warpgroup off, has no kernel: the pass checks each configuration it
// builds against the attribute's contract and fails at the op.
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 | sed -e 's/tile = #moe.tile<block_m = 128/tile = #moe.tile<block_m = 256/' | moe-opt -moe-align | not moe-opt -moe-gpu-configure="num-tokens=4096 weight-only-warp-specialize=false" 2>&1 | FileCheck %s --check-prefix=WIDE-UNBUILT
// WIDE-UNBUILT: error: moe-gpu-configure: no kernel for the schedule's 256-row slot blocks with these options: with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (128), or 256 over two with weight_load = registers and a producer warpgroup, got 256
// A 4-bit schedule whose gated weight rows hold at most 6 KB of K as bf16
// (GPT-OSS: 2880 · 2 bytes) takes 64 x 64 tiles on the bf16 tile kernel
// (weight-only-registers=false) where the cost model asked for 128 rows.
// By default prefill's 4-bit blocks take the register operand instead, with
// the cost model's 128 rows: swapped, two consumer warpgroups of 64 weight
// rows, the slot rows as the wgmma's N, and a producer warpgroup; without
// split-K the schedule is persistent, a block per SM walking the tiles
// (weight-only-warp-specialize; =false keeps every thread loading,
// multistage). The `persistent` option, bf16's, changes nothing here.
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=MXFP4-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 persistent" | FileCheck %s --check-prefix=MXFP4-PREFILL
// mxfp4 keeps 128-row blocks at 1024 rows per expert (wide ones are int4 g128's).
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=8192 -moe-gpu-configure=num-tokens=8192 | FileCheck %s --check-prefix=MXFP4-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 weight-only-registers=false" | FileCheck %s --check-prefix=MXFP4-PREFILL-TILE
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 weight-only-warp-specialize=false" | FileCheck %s --check-prefix=MXFP4-PREFILL-MULTISTAGE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 block-n=256" | FileCheck %s --check-prefix=INT4-PREFILL-256
// A combine whose tile asks to split K keeps the multistage schedule (a
// persistent block walks whole tiles); its gather matmul does not split.
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 | sed -e 's/split_k = 1,/split_k = 2,/' | moe-opt -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=INT4-PREFILL-SPLIT
// INT4-PREFILL-SPLIT: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, swap_ab = true, weight_load = registers>
// INT4-PREFILL-SPLIT: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, split_k = 2, group_m = 8, swap_ab = true, weight_load = registers>
// MXFP4-PREFILL-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, swap_ab = true, weight_load = registers>
// MXFP4-PREFILL-MULTISTAGE-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, group_m = 8, swap_ab = true, weight_load = registers>
// Persistent, the transposition table (128 x 260 floats) and the tile
// slots take shared memory beside the ring: three stages of 128 slot rows
// and 256 weight rows' codes fit, not five.
// INT4-PREFILL-256-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 3, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, swap_ab = true, weight_load = registers>
// MXFP4-PREFILL-TILE-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, group_m = 8>
// fp8-fast-accumulation (the default) has per-channel fp8 keep its sums in
// the wgmma's accumulator and take int8's 256-wide tiles; block scales keep
// the promotion and their configuration; =false promotes, 128 wide.
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=FP8-FAST
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 fp8-fast-accumulation=false" | FileCheck %s --check-prefix=FP8-PROMOTED
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 fp8-fast-accumulation" | FileCheck %s --check-prefix=FP8-PREFILL
// w8a8-swap-ab (the default) gives fp8 that promotes nothing swapped 16-row
// blocks at decode, its weights by TMA; promoted fp8 keeps 64-row blocks,
// and so does fast fp8 with w8a8-swap-ab=false.
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=W8A8-SWAP
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 fp8-fast-accumulation=false" | FileCheck %s --check-prefix=W8A8-PROMOTED
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 w8a8-swap-ab=false" | FileCheck %s --check-prefix=W8A8-UNSWAPPED
// W8A8-SWAP: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 16, block_n = 64, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fast_accumulation = true, fused_align_assignments = 64>
// W8A8-SWAP: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fast_accumulation = true>
// W8A8-PROMOTED: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, fused_align_assignments = 8>
// W8A8-PROMOTED: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1>
// W8A8-UNSWAPPED: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, fast_accumulation = true, fused_align_assignments = 8>
// W8A8-UNSWAPPED: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, fast_accumulation = true>
// FP8-FAST: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, group_m = 8, fast_accumulation = true>
// FP8-PROMOTED: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 8>
// FP8-PROMOTED: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 8, combine_rows = true>
// FP8-FAST: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, group_m = 8, fast_accumulation = true, combine_rows = true>
// With warp-specialize: bf16 and w8a8 matmuls of 128-row blocks get a
// producer warpgroup (w8a8 tiles at most 128 wide); 64-row blocks keep the
// multistage schedule. With persistent, fp8 keeps it (not built).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 warp-specialize" | FileCheck %s --check-prefix=WS-PREFILL
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false warp-specialize" | FileCheck %s --check-prefix=QWEN-DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 warp-specialize" | FileCheck %s --check-prefix=WS-FP8-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 persistent" | FileCheck %s --check-prefix=FP8-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 warp-specialize" | FileCheck %s --check-prefix=FP8-DECODE
// With persistent: the same roles on a persistent grid, except where K is
// split (a split tile is not one block's).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 persistent" | FileCheck %s --check-prefix=PERSIST-PREFILL
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false persistent" | FileCheck %s --check-prefix=QWEN-DECODE
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 persistent" | FileCheck %s --check-prefix=PERSIST
// With pingpong: 128 x 128 tiles per consumer warpgroup, as many stages as
// fit (5), still not where K is split.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 pingpong" | FileCheck %s --check-prefix=PINGPONG-PREFILL
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 pingpong" | FileCheck %s --check-prefix=PINGPONG
// With cluster-m=2: bf16 multistage matmuls without split-K get pairs along
// M (cluster_m = 2); weight-only and fp8 ones keep single blocks.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 cluster-m=2" | FileCheck %s --check-prefix=CLUSTER-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 cluster-m=2" | FileCheck %s --check-prefix=FP8-PREFILL
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=2048 -moe-gpu-configure="num-tokens=2048 cluster-m=2" | FileCheck %s --check-prefix=INT4-PREFILL-WIDE
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=cluster-m=3 2>&1 | FileCheck %s --check-prefix=CLUSTER-INVALID
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=block-n=96 2>&1 | FileCheck %s --check-prefix=BLOCKN-INVALID
// block-k=128: bf16 matmuls take two 128-byte spans of K per stage (the
// ring as deep as fits: 4 stages of (64 + 128) rows x 256 bytes); weight-only
// and fp8 ones keep theirs (one span: 64 codes dequantized to bf16, 128
// e4m3 codes).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false block-k=128 block-n=128" | FileCheck %s --check-prefix=BLOCKK-DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=2048 -moe-gpu-configure="num-tokens=2048 block-k=128" | FileCheck %s --check-prefix=INT4-PREFILL-WIDE
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 block-k=128" | FileCheck %s --check-prefix=FP8-PREFILL
// RUN: moe-opt %moe_src_root/examples/gpt_oss_20b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false block-k=128" | FileCheck %s --check-prefix=BLOCKK-ODD-K
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=block-k=96 2>&1 | FileCheck %s --check-prefix=BLOCKK-INVALID
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure="block-k=128 warp-specialize" 2>&1 | FileCheck %s --check-prefix=BLOCKK-SCHEDULE
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=stages=1 2>&1 | FileCheck %s --check-prefix=STAGES-INVALID
// With warp-specialize and cluster-m=2: the warp-specialized matmuls
// without split-K are paired; the multistage ones (64-row blocks at decode)
// and split-K ones stay single, and persistent ones are never paired.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 warp-specialize cluster-m=2" | FileCheck %s --check-prefix=WS-CLUSTER-PREFILL
// A schedule of shared experts alone (moe-split-shared-experts) holds every
// token: DeepSeek-V3's at M = 64 is one row block, whose 256-row tiles (16)
// would stream its weights on a few SMs; its tiles narrow to 64 weight
// rows. The routed schedule keeps its tiles.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=64 -moe-tile=num-tokens=64 -moe-gpu-configure=num-tokens=64 | FileCheck %s --check-prefix=SHARED-DECODE
// SHARED-DECODE: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, {{.*}}swap_ab = true
// SHARED-DECODE: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, {{.*}}swap_ab = true
// SHARED-DECODE: moe.shared_expert_routing
// The shared schedule's experts hold 64 rows each: 64-row blocks with two
// spans of K per stage, and 64 weight rows per tile (32 output columns of
// GEMM1: 64 tiles; GEMM2: 112).
// SHARED-DECODE: moe.expert_matmul {{.*}}gather, k = 1 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 8, fused_align_assignments = 128>, tile = #moe.tile<block_m = 64, block_n = 256,
// SHARED-DECODE: moe.expert_matmul {{.*}}accumulate({{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1>

// At 256 rows, four 64-row blocks of GEMM1's 128-weight-row tiles still
// fit one wave (4 x 32): 64-row blocks, two spans of K. GEMM2's widest
// tiles fill 0.85 of a wave (4 x 28): 256 weight rows, whose ring holds 5
// stages of one span, not 2 of two.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=256 -moe-tile=num-tokens=256 -moe-gpu-configure=num-tokens=256 | FileCheck %s --check-prefix=SHARED-256
// SHARED-256: moe.shared_expert_routing
// SHARED-256: moe.expert_matmul {{.*}}gather, k = 1 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1,
// SHARED-256: moe.expert_matmul {{.*}}accumulate({{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1,

// Qwen1.5-MoE's four shared experts at M = 256 would make 16 x 22 tiles of
// 64-row blocks, 2.7 waves: 128-row blocks.
// RUN: moe-opt %moe_src_root/examples/qwen1_5_moe_a2_7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=256 -moe-tile=num-tokens=256 -moe-gpu-configure=num-tokens=256 | FileCheck %s --check-prefix=SHARED-QWEN-256
// SHARED-QWEN-256: moe.shared_expert_routing
// SHARED-QWEN-256: moe.expert_matmul {{.*}}gather, k = 4 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2,

// At 1024 rows, 8 row blocks: GEMM1's 128 x 256 tiles fill most of one
// wave (8 x 16 = 128) and stay multistage; GEMM2's (8 x 28 = 224) spill
// into a second and take the persistent schedule.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir -moe-fuse-routing -moe-fuse-experts -moe-split-shared-experts=num-tokens=1024 -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=SHARED-1024
// SHARED-1024: moe.shared_expert_routing
// SHARED-1024: moe.expert_matmul {{.*}}gather, k = 1 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2,
// SHARED-1024: moe.expert_matmul {{.*}}accumulate({{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64,
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swap-ab=false warp-specialize cluster-m=2" | FileCheck %s --check-prefix=QWEN-DECODE
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 warp-specialize cluster-m=2" | FileCheck %s --check-prefix=WS-CLUSTER
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=128 persistent cluster-m=2" | FileCheck %s --check-prefix=PERSIST
// The full GPU pipeline keeps the configuration through moe-align.
// RUN: moe-opt %moe_src_root/examples/scaled/mixtral_8x7b.mlir --moe-gpu-pipeline=num-tokens=4096 | FileCheck %s --check-prefix=PIPELINE
// With swap-ab (the default): bf16 schedules whose tiles asked for swapped operands and
// whose experts hold at most 16 (32) rows at mean + 2 sd get 16- (32-) row
// slot blocks with swap_ab; prefill and fp8 keep their kernels.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=SWAP-QWEN-DECODE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swapped-warpgroups=2" | FileCheck %s --check-prefix=SWAP2-QWEN-DECODE
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=16 -moe-gpu-configure=num-tokens=16 | FileCheck %s --check-prefix=SWAP-DEEPSEEK-DECODE
// The older swapped kernels: one warpgroup (one span, TMA), or two with TMA.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swapped-warpgroups=1 swapped-weight-load=tma" | FileCheck %s --check-prefix=SWAP1-QWEN-DECODE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 swapped-warpgroups=2 swapped-weight-load=tma" | FileCheck %s --check-prefix=SWAP-TMA-QWEN-DECODE
// GPT-OSS's K = 2880 allows one span: 16 rows x 8 chunks are too few for two
// warpgroups, so one, with TMA.
// RUN: moe-opt %moe_src_root/examples/gpt_oss_20b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="swap-ab num-tokens=1" | FileCheck %s --check-prefix=SWAP-GPT-OSS
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure="swapped-warpgroups=3" 2>&1 | FileCheck %s --check-prefix=SWAPPED-WARPGROUPS-INVALID
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure="swapped-warpgroups=2 block-n=64" 2>&1 | FileCheck %s --check-prefix=SWAPPED-BLOCKN-INVALID
// fused-align-assignments gives the first matmul of each schedule (GEMM1,
// which runs first) fused_align_assignments, the others nothing; a persistent
// GEMM walks many tiles and takes none.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 fused-align-assignments=256" | FileCheck %s --check-prefix=FUSED-ALIGN
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 fused-align-assignments=256 persistent-max-rows=256" | FileCheck %s --check-prefix=FUSED-ALIGN-PERSISTENT
// Without the option the policy fuses the alignment where the schedule
// expects at most 128 assignments for bf16 (Qwen3: k = 8, so M <= 16), 64
// for swapped w8a8 (M <= 8) and 8 for w8a8 in 64-row blocks (M = 1), with
// that bound; 0 turns it off.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=16 -moe-gpu-configure="num-tokens=16" | FileCheck %s --check-prefix=AUTO-ALIGN-BF16
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=17 -moe-gpu-configure="num-tokens=17" | FileCheck %s --check-prefix=AUTO-ALIGN-NONE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 fused-align-assignments=0" | FileCheck %s --check-prefix=AUTO-ALIGN-NONE
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=8 -moe-gpu-configure=num-tokens=8 | FileCheck %s --check-prefix=AUTO-ALIGN-SWAPPED-W8A8
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=9 -moe-gpu-configure=num-tokens=9 | FileCheck %s --check-prefix=AUTO-ALIGN-NONE
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=AUTO-ALIGN-W8A8
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=2 -moe-gpu-configure=num-tokens=2 | FileCheck %s --check-prefix=AUTO-ALIGN-NONE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=AUTO-ALIGN-NONE
// AUTO-ALIGN-SWAPPED-W8A8: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<{{[^>]*}}swap_ab = true{{[^>]*}}, fused_align_assignments = 64>
// AUTO-ALIGN-SWAPPED-W8A8-NOT: fused_align_assignments
// AUTO-ALIGN-W8A8: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, {{[^>]*}}, fused_align_assignments = 8>
// AUTO-ALIGN-W8A8-NOT: fused_align_assignments
// AUTO-ALIGN-BF16: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<{{[^>]*}}, fused_align_assignments = 128>
// AUTO-ALIGN-BF16-NOT: fused_align_assignments
// AUTO-ALIGN-NONE-NOT: fused_align_assignments
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=fused-align-assignments=2048 2>&1 | FileCheck %s --check-prefix=FUSED-ALIGN-INVALID
// FUSED-ALIGN: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 256>
// FUSED-ALIGN: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>,
// FUSED-ALIGN-PERSISTENT: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, {{[^>]*}}group_m = 8>
// FUSED-ALIGN-INVALID: error: moe-gpu-configure: fused-align-assignments must be -1 (the policy's) or in [0, 1024], got 2048
// block-n = 64 asks for one warpgroup's rows: the policy gives both of
// Mixtral's decode GEMMs one warpgroup (by TMA), not two raised to 128.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 block-n=64" | FileCheck %s --check-prefix=SWAP-BLOCKN64
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure="swapped-weight-load=ldg" 2>&1 | FileCheck %s --check-prefix=SWAPPED-LOAD-INVALID
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=256 -moe-gpu-configure="swap-ab num-tokens=256" | FileCheck %s --check-prefix=SWAP-QWEN-256
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="swap-ab num-tokens=4096" | FileCheck %s --check-prefix=QWEN-PREFILL
// tall-blocks: DeepSeek-V3 at M = 4096 holds 128 rows per expert on
// average, 128 + 2·√128 ≈ 151 likely most, past 128 and within 192: slot
// blocks of 192 rows over three consumer warpgroups, 128 columns each.
// Qwen3's 256 + 32 = 288 do not fit 192 (128-row blocks as before), and
// warp-specialize asks for a producer the three-warpgroup kernel lacks.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 tall-blocks" | FileCheck %s --check-prefix=TALL
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 tall-blocks" | FileCheck %s --check-prefix=QWEN-PREFILL
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 tall-blocks warp-specialize" | FileCheck %s --check-prefix=TALL-WS
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="swap-ab num-tokens=1" | FileCheck %s --check-prefix=FP8-DECODE
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="swap-ab num-tokens=4" | FileCheck %s --check-prefix=SWAP
// Weight-only schedules take swapped 16-row blocks at decode, with one
// warpgroup; 32-row ones only where their gated weight rows are short
// streams (Mixtral's K = 4096 is not: 64-row blocks at M = 64, which take
// prefill's register operand over two warpgroups).
// weight-only-registers=false keeps the bf16 tile and its 2-stage ring.
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 weight-only-registers=false" | FileCheck %s --check-prefix=INT4-DECODE
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=64 -moe-gpu-configure=num-tokens=64 | FileCheck %s --check-prefix=INT4-64
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=64 weight-only-registers=false" | FileCheck %s --check-prefix=WEIGHT-ONLY-64
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="swap-ab=false num-tokens=4" | FileCheck %s --check-prefix=WEIGHT-ONLY-UNSWAPPED
// By default (weight-only-registers), swapped int4 matmuls decode into the
// wgmma's register operand: no bf16 tile in a stage, so the ring is five
// deep, and a block multiplies 64 weight rows (the tile's 256 and 64 are not
// taken); block-n asks for another height.
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure=num-tokens=1 | FileCheck %s --check-prefix=INT4-REGISTERS
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-gpu-configure="num-tokens=1 block-n=128" | FileCheck %s --check-prefix=INT4-REGISTERS-128
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure="swapped-weight-load=registers" 2>&1 | FileCheck %s --check-prefix=SWAPPED-LOAD-REGISTERS
// INT4-REGISTERS: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, weight_load = registers>
// INT4-REGISTERS: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 8, group_m = 1, swap_ab = true, weight_load = registers>
// INT4-REGISTERS-128: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, weight_load = registers>
// INT4-REGISTERS-128: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 8, group_m = 1, swap_ab = true, weight_load = registers>
// SWAPPED-LOAD-REGISTERS: error: moe-gpu-configure: swapped-weight-load must be tma or cp_async (weight-only-registers asks for register operands), got 'registers'
// INT4-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, group_m = 1, swap_ab = true>
// INT4-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 8, group_m = 1, swap_ab = true>
// INT4-64: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = registers>
// INT4-64: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, split_k = 8, group_m = 1, swap_ab = true, weight_load = registers>
// Without num-tokens the rows per expert follow its default of 256 tokens:
// 64 per expert here, 80 at mean + 2 sd, so no swap, and the tiles that
// asked for 64-row blocks get 128 rows: one block per expert, not a second
// one that streams the expert's weights again for a few rows.
// (persistent-max-rows=0: the heights alone; the schedule policy is below.)
// RUN: moe-opt %s -split-input-file -moe-gpu-configure=persistent-max-rows=0 | FileCheck %s --check-prefix=SPILL
// SPILL-LABEL: func.func @decode
// SPILL: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 2, group_m = 1>
// SPILL-LABEL: func.func @one_schedule
// SPILL: moe.expert_matmul {{.*}}block_m = 128, block_n = 128, {{.*}}consumer_warpgroups = 2, group_m = 8>
// SPILL: moe.expert_matmul {{.*}}block_m = 128, block_n = 256, {{.*}}consumer_warpgroups = 2, group_m = 8>
// The example layers where that happens: Qwen3 at M = 1024 (64 rows per
// expert) but not at 512 (32); Mixtral at M = 256. Only bf16: the fp8 Qwen3
// block keeps its 64-row tiles at M = 1024.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 persistent-max-rows=0" | FileCheck %s --check-prefix=SPILL-QWEN-1024
// SPILL-QWEN-1024-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2,
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=512 -moe-gpu-configure=num-tokens=512 | FileCheck %s --check-prefix=SPILL-QWEN-512
// SPILL-QWEN-512-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64,
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=256 -moe-gpu-configure="num-tokens=256 persistent-max-rows=0" | FileCheck %s --check-prefix=SPILL-MIXTRAL-256
// SPILL-MIXTRAL-256-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256,
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=SPILL-FP8-1024
// SPILL-FP8-1024-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64,
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir --moe-gpu-pipeline="num-tokens=1 swap-ab" | FileCheck %s --check-prefix=SWAP-PIPELINE
// The persistent schedule by policy: bf16 128 x 256 tiles where experts
// hold at most persistent-max-rows (64) rows on average. Qwen3 at M = 1024
// (64 per expert), DeepSeek-V3 at M = 2048 (64) and Mixtral at M = 256
// (64) take it on both GEMMs, and DeepSeek-V3 at M = 4096 (128) with a
// higher bound; Qwen3 at M = 4096 (256), DeepSeek-V3 at M = 4096 (128) and
// Mixtral at M = 1024 (256, the wave split) keep the multistage schedule,
// as do the fp8 block (not bf16), two spans of K per stage (block-k=128),
// and Qwen3 M = 2048's 128 rows.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=PERSIST-POLICY
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=2048 -moe-gpu-configure=num-tokens=2048 | FileCheck %s --check-prefix=PERSIST-POLICY
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 persistent-max-rows=128" | FileCheck %s --check-prefix=PERSIST-POLICY
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=256 -moe-gpu-configure=num-tokens=256 | FileCheck %s --check-prefix=PERSIST-POLICY
// The rows combine by policy (combine-rows-max-k, default 2048): bf16 and
// w8a8 combines of K at most 2048 in schedules of at least 8192
// assignments. Qwen3 (K = 768) from M = 1024, DeepSeek-V3 (K = 2048) at
// M = 4096, Qwen3's fp8 per channel and DeepSeek-V3's fp8 blocks at M =
// 4096; not Mixtral (K = 14336), not Qwen3 at M = 512 (4096 assignments),
// not a weight-only combine (Mixtral int4 on the bf16 tile, K = 14336 lifted
// by the bound), and not with combine-rows-max-k=0.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=ROWS-POLICY
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=ROWS-POLICY
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=NO-ROWS
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=512 -moe-gpu-configure=num-tokens=512 | FileCheck %s --check-prefix=NO-ROWS
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=ROWS-W8A8
// RUN: moe-opt %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=ROWS-W8A8
// RUN: moe-opt %moe_src_root/examples/quantized/mixtral_8x7b_int4_g128.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 weight-only-registers=false combine-rows-max-k=16384" | FileCheck %s --check-prefix=NO-ROWS
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 combine-rows-max-k=0" | FileCheck %s --check-prefix=NO-ROWS
// RUN: not moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-gpu-configure="combine-rows-max-k=-1" 2>&1 | FileCheck %s --check-prefix=ROWS-INVALID
// ROWS-POLICY: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = {{persistent|multistage}}, {{[^>]*}}, group_m = 1>
// ROWS-POLICY: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = {{persistent|multistage}}, {{[^>]*}}, group_m = 1, combine_rows = true>
// ROWS-W8A8: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, {{[^>]*}}>
// ROWS-W8A8-NOT: combine_rows
// ROWS-W8A8: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, {{[^>]*}}, combine_rows = true>
// NO-ROWS: moe.expert_matmul {{.*}}combine
// NO-ROWS-NOT: combine_rows
// ROWS-INVALID: error: moe-gpu-configure: combine-rows-max-k must be 0 (off) or positive, got -1
// PERSIST-POLICY: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = {{[0-9]+}}>
// PERSIST-POLICY: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = {{[0-9]+}}{{(, combine_rows = true)?}}>

// With staged-epilogue, the persistent matmuls that store rows (GEMM1, and
// the combine by combine_rows) with at most 32 K steps stage them in turn:
// Qwen3's (32 and 12 steps); not Mixtral's (64 steps of GEMM1, and a
// combine of 14336 without combine_rows).
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 staged-epilogue" | FileCheck %s --check-prefix=STAGED
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=256 -moe-gpu-configure="num-tokens=256 staged-epilogue" | FileCheck %s --check-prefix=STAGED-LONG-K
// STAGED: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, {{[^>]*}}, group_m = 1, staged_epilogue = true>
// STAGED: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, {{[^>]*}}, group_m = 1, combine_rows = true, staged_epilogue = true>
// STAGED-LONG-K: schedule = persistent
// STAGED-LONG-K-NOT: staged_epilogue

// input_tma: the multistage GEMM2, whose input rows are its slots, takes
// its A rows by TMA; GEMM1 gathers tokens and keeps cp.async. Mixtral's
// GEMM2 at M = 1024 keeps its K split. The persistent schedule has none.
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure="num-tokens=4096 input-tma" | FileCheck %s --check-prefix=INPUT-TMA
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 input-tma" | FileCheck %s --check-prefix=INPUT-TMA-SPLIT
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 input-tma" | FileCheck %s --check-prefix=INPUT-TMA-PERSISTENT
// INPUT-TMA: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>
// INPUT-TMA: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8, combine_rows = true, input_tma = true>
// INPUT-TMA-SPLIT: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<{{[^>]*}}group_m = 8>
// INPUT-TMA-SPLIT: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<{{[^>]*}}split_k = 2, group_m = 8, input_tma = true>
// INPUT-TMA-PERSISTENT-NOT: input_tma
// Where the wave split splits a combine it comes first: Mixtral at M = 512
// (128 rows per expert) with a bound of 128 takes the persistent GEMM1 and
// a split GEMM2.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=512 -moe-gpu-configure="num-tokens=512 persistent-max-rows=128" | FileCheck %s --check-prefix=PERSIST-SPLIT
// PERSIST-SPLIT: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256,
// PERSIST-SPLIT: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, split_k = 2,
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=PERSIST-NONE
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=PERSIST-NONE
// RUN: moe-opt %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=PERSIST-NONE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 block-k=128" | FileCheck %s --check-prefix=PERSIST-NONE
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=2048 -moe-gpu-configure=num-tokens=2048 | FileCheck %s --check-prefix=PERSIST-NONE
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=PERSIST-NONE
// PERSIST-NONE-COUNT-2: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_{{bf16|e4m3}}, schedule = multistage,
// PERSIST-NONE-NOT: schedule = persistent
// RUN: not moe-opt %s -split-input-file -moe-gpu-configure=persistent-max-rows=-1 2>&1 | FileCheck %s --check-prefix=PERSIST-ROWS-INVALID
// PERSIST-ROWS-INVALID: error: moe-gpu-configure: persistent-max-rows must be 0 (off) or positive, got -1
// The wave split: Mixtral M = 1024's GEMM2 expects ~2.5 128-row blocks per
// expert (256 +- 15 rows) x 16 column tiles = ~319 blocks, 2.4 waves of
// 132 run as 3; split in two, 4.8 run as 5 half-length waves (2.5): split.
// At M = 4096 (8.2 waves: 9 against 8.5) and for DeepSeek-V3 M = 4096
// (80 waves) the saving is under a tenth: no split. GEMM1 (no combine) and
// the warp-specialized schedule never take it.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure=num-tokens=1024 | FileCheck %s --check-prefix=WAVES-MIXTRAL-1024
// WAVES-MIXTRAL-1024: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>
// WAVES-MIXTRAL-1024: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, split_k = 2, group_m = 8>
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=WAVES-NONE
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-gpu-configure=num-tokens=4096 | FileCheck %s --check-prefix=WAVES-NONE
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 warp-specialize" | FileCheck %s --check-prefix=WAVES-NONE
// With fewer SMs the same grid fills 3.6 waves of 88 (4 against 3.75): no split.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 -moe-gpu-configure="num-tokens=1024 num-sms=88" | FileCheck %s --check-prefix=WAVES-NONE
// WAVES-NONE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<{{[^>]*}}consumer_warpgroups = 2, {{(producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, )?}}group_m = {{[0-9]+}}{{(, combine_rows = true)?}}>

// QWEN-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, fused_align_assignments = 128>, tile = #moe.tile<block_m = 64,
// QWEN-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1>
// Two warpgroups, 256 bytes of K per stage, the weights by cp.async over
// 128 weight rows.
// Except the gated GEMM1 whose weight rows hold at most 4 KB of K (Qwen3:
// 2048 bf16): one warpgroup, 64 weight rows per block, TMA, one span.
// SWAP-QWEN-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16,
// SWAP-QWEN-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>, tile = #moe.tile<block_m = 16,
// SWAP2-QWEN-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16,
// SWAP2-QWEN-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>, tile = #moe.tile<block_m = 16,
// DeepSeek-V3's GEMM1 streams 14 KB per weight row: two warpgroups on both.
// SWAP-DEEPSEEK-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16,
// Its GEMM2 keeps K whole: at M = 16 its expected grid (~120 experts x 56
// column tiles) already holds two tiles per SM, so a split would only
// shorten the tiles (GPT-OSS at M = 1 below, 4 experts x 23 tiles, splits).
// SWAP-DEEPSEEK-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>, tile = #moe.tile<block_m = 16,
// SWAP1-QWEN-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16,
// SWAP1-QWEN-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true>, tile = #moe.tile<block_m = 16,
// SWAP-TMA-QWEN-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16,
// SWAP-TMA-QWEN-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true>, tile = #moe.tile<block_m = 16,
// SWAP-GPT-OSS: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>
// SWAP-GPT-OSS: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 5, group_m = 1, swap_ab = true>
// SWAPPED-WARPGROUPS-INVALID: error: moe-gpu-configure: swapped-warpgroups must be 0 (the policy's choice), 1 or 2, got 3
// SWAPPED-BLOCKN-INVALID: error: moe-gpu-configure: block-n = 64 is one warpgroup's weight rows, but swapped-warpgroups = 2 splits each tile's rows over two (block-n 128 or 256)
// SWAP-BLOCKN64: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>
// SWAP-BLOCKN64: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 8, group_m = 1, swap_ab = true>
// SWAPPED-LOAD-INVALID: error: moe-gpu-configure: swapped-weight-load must be tma or cp_async (weight-only-registers asks for register operands), got 'ldg'
// 16 rows per expert on average: 16 + 2·4 = 24 rows fit 32.
// SWAP-QWEN-256: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true>, tile = #moe.tile<block_m = 32,
// SWAP-QWEN-256: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>, tile = #moe.tile<block_m = 32,
// SWAP-PIPELINE: moe.align {{.*}}block_m = 16
// SWAP-PIPELINE: moe.expert_matmul {{.*}}blocks({{.*}}block_m = 16 : i64{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async, fused_align_assignments = 128>
// SWAP-PIPELINE: moe.expert_matmul {{.*}}blocks({{.*}}block_m = 16 : i64{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, split_k = 8, group_m = 1, swap_ab = true, weight_load = cp_async>
// Qwen3's combine (K = 768) at M = 4096 (32768 assignments) stores rows per
// assignment by policy (combine-rows-max-k, 8192 assignments and up).
// TALL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 192, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 3, group_m = 1>, tile = #moe.tile<block_m = 192,
// TALL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 192, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 3, group_m = 1, combine_rows = true>, tile = #moe.tile<block_m = 192,
// TALL-WS: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256,
// TALL-WS: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256,
// QWEN-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>, tile = #moe.tile<block_m = 128,
// QWEN-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8, combine_rows = true>
// WS-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8>
// WS-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, combine_rows = true>
// WS-FP8-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 1>
// WS-FP8-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 1>
// PERSIST-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8>
// PERSIST-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, combine_rows = true>
// CLUSTER-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_m = 2, group_m = 8>
// CLUSTER-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_m = 2, group_m = 8, combine_rows = true>
// CLUSTER-INVALID: error: moe-gpu-configure: cluster-m must be 1 or 2, got 3
// BLOCKN-INVALID: error: moe-gpu-configure: block-n must be 0, 64, 128 or 256, got 96
// BLOCKK-INVALID: error: moe-gpu-configure: block-k must be 0, 64 or 128, got 96
// BLOCKK-SCHEDULE: error: moe-gpu-configure: block-k = 128 is built for the multistage schedule without a cluster, not with warp-specialize, persistent, pingpong or cluster-m = 2
// GPT-OSS's K of 2880 is not a multiple of 128: one span.
// BLOCKK-ODD-K: moe.expert_matmul {{.*}}gather{{.*}}block_k = 64,
// BLOCKK-ODD-K: moe.expert_matmul {{.*}}combine{{.*}}block_k = 64,
// BLOCKK-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1, group_m = 1, fused_align_assignments = 128>
// BLOCKK-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1, group_m = 1>
// STAGES-INVALID: error: moe-gpu-configure: stages must be 0 or between 2 and 16, got 1
// WS-CLUSTER-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, cluster_m = 2, group_m = 8>
// WS-CLUSTER-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, cluster_m = 2, group_m = 8, combine_rows = true>
// PINGPONG-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8>
// PINGPONG-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, combine_rows = true>
// Decode on few experts: the combine splits K by 8 (14336 / 64 steps).
// MIXTRAL-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, fused_align_assignments = 128>
// MIXTRAL-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 8, group_m = 1>
// fp8 with block scales: e4m3 wgmma, 128 of K per stage, N exactly 128.
// FP8-DECODE: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, group_m = 1, fused_align_assignments = 8>
// FP8-DECODE: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 1, split_k = 2, group_m = 1>
// FP8-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, group_m = 1>
// Weight-only 4-bit at prefill: the register operand with swapped
// operands, 128 slot rows as the wgmma's N, two warpgroups of 64 weight
// rows, persistent with a producer warpgroup (the cluster and block-k
// options are bf16's), at 128 rows per expert (Mixtral M = 512). From 256
// rows per expert (Mixtral M = 1024, 2048, 4096) the slot blocks hold 256
// rows (m64n256 wgmmas, 4 stages); not where the producer warpgroup is off
// (the multistage kernel is built for 128).
// INT4-PREFILL-WIDE-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 256, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8, swap_ab = true, weight_load = registers>, quantization = {{.*}}, tile = #moe.tile<block_m = 256,
// INT4-PREFILL-MULTISTAGE-COUNT-2: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, group_m = 8, swap_ab = true, weight_load = registers>
// INT4-PREFILL: moe.expert_matmul {{.*}}gather{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 16, swap_ab = true, weight_load = registers>
// INT4-PREFILL: moe.expert_matmul {{.*}}combine{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 1, swap_ab = true, weight_load = registers>
// PIPELINE: moe.align {{.*}}block_m = 128
// PIPELINE: moe.expert_matmul {{.*}}blocks({{.*}}block_m = 128 : i64{{.*}}moe.gpu_kernel = @moe_kernels::@expert_matmul, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>
// PIPELINE: moe.expert_matmul {{.*}}blocks({{.*}}block_m = 128 : i64{{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 2, group_m = 8, combine_rows = true>

// Decode tiles (8-row blocks, swapped operands) get 64-row blocks and the
// #moe.tile follows, since moe-align pads to it; a block_n that is not a
// power of two rounds down, one above 256 is capped. The combine's tile
// asks for split_k = 4; K = 128 has two steps, so it splits by 2.
// CHECK-LABEL: func.func @decode
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1>, tile = #moe.tile<block_m = 64, block_n = 96,
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 2, group_m = 1>, tile = #moe.tile<block_m = 64, block_n = 512,
// Two rows per expert (4 tokens, k = 2, E = 8) fit a 16-row block. The
// gated matmul's weight rows hold 1 KB of K: one warpgroup, 64 weight rows
// by TMA. The combine's two warpgroups copy the weights, 128 rows x 256
// bytes per stage: K = 128 is one step, so it does not split and the ring
// is two stages.
// SWAP-LABEL: func.func @decode
// SWAP: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1, swap_ab = true, fused_align_assignments = 128>, tile = #moe.tile<block_m = 16, block_n = 96,
// SWAP: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 2, consumer_warpgroups = 2, group_m = 1, swap_ab = true, weight_load = cp_async>, tile = #moe.tile<block_m = 16, block_n = 512,
// OVERRIDE-LABEL: func.func @decode
// OVERRIDE: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 3, consumer_warpgroups = 1, group_m = 1>
// OVERRIDE: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, split_k = 2, group_m = 1>
// REPORT: moe-tile-report: moe.expert_matmul
// REPORT: tile #moe.tile<block_m = 64, block_n = 96
// REPORT-NEXT: kernel #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 5, consumer_warpgroups = 1, group_m = 1>
func.func @decode(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 8, block_n = 96, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 8, block_n = 512, block_k = 64, stages = 5, split_k = 4, swap_ab = true, group_m = 1>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Large blocks become 128 rows (two consumer warpgroups), but one schedule
// takes the smaller block_m of its matmuls, so that one moe.align serves
// both.
// CHECK-LABEL: func.func @one_schedule
// CHECK: moe.expert_matmul {{.*}}block_m = 64, block_n = 128, {{.*}}consumer_warpgroups = 1, group_m = 8>, tile = #moe.tile<block_m = 64, block_n = 128,
// CHECK: moe.expert_matmul {{.*}}block_m = 64, block_n = 256, {{.*}}consumer_warpgroups = 1, group_m = 8>, tile = #moe.tile<block_m = 64, block_n = 256,
// CHECK-LABEL: func.func @prefill
// CHECK: moe.expert_matmul {{.*}}block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8>, tile = #moe.tile<block_m = 128, block_n = 256,
// CHECK: moe.expert_matmul {{.*}}block_m = 128, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 2, group_m = 8>, tile = #moe.tile<block_m = 128, block_n = 128,
func.func @one_schedule(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 256, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 32, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}
func.func @prefill(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 256, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 128, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// An aligned schedule keeps its block_m; a matmul with neither a tile nor
// an aligned schedule is left alone.
// CHECK-LABEL: func.func @aligned
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1>}
// CHECK: moe.expert_matmul
// CHECK-NOT: moe_gpu.config
// CHECK: return
func.func @aligned(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>) -> (tensor<?x256xbf16>, tensor<?x256xbf16>) {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  %u = moe.expert_matmul %x, %w slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64} : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h, %u : tensor<?x256xbf16>, tensor<?x256xbf16>
}

// -----

// A configuration written in the input is kept, and its block_m becomes the
// schedule's (the other matmul and both tiles follow it).
// CHECK-LABEL: func.func @kept
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 3, consumer_warpgroups = 1>, tile = #moe.tile<block_m = 64, block_n = 256,
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, group_m = 8>, tile = #moe.tile<block_m = 64, block_n = 128,
func.func @kept(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 256, block_n = 256, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 64, block_k = 64, stages = 3, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 128, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Persistent where a tile is one block's: the combine's split K keeps the
// warp-specialized grid.
// PERSIST-LABEL: func.func @persistent_split
// PERSIST: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8>
// PERSIST: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, split_k = 2, group_m = 8>
// PINGPONG-LABEL: func.func @persistent_split
// WS-CLUSTER-LABEL: func.func @persistent_split
// WS-CLUSTER: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, cluster_m = 2, group_m = 8>
// WS-CLUSTER: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, split_k = 2, group_m = 8>
// PINGPONG: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 128, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, group_m = 8>
// PINGPONG: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, {{.*}}producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, split_k = 2, group_m = 8>
func.func @persistent_split(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x512xbf16>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, tile = #moe.tile<block_m = 128, block_n = 128, block_k = 64, stages = 3, split_k = 1, swap_ab = false, group_m = 8>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 3, split_k = 2, swap_ab = false, group_m = 8>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// Weight-only schedules whose tiles asked for swapped operands. At 64
// tokens (16 rows per expert on average, 24 at mean + 2 sd) the short
// weight rows (1 KB of bf16 K) take 32 swapped rows over one warpgroup
// (and the policy's 64 weight rows per block for a short gated stream), the
// long ones (8 KB) 64 unswapped rows; at 4 tokens with swap-ab=false both
// stay unswapped. (These run with weight-only-registers=false: the bf16
// tile's configurations.)
// WEIGHT-ONLY-64-LABEL: func.func @weight_only_short
// WEIGHT-ONLY-64: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 64, block_k = 64, stages = 2, consumer_warpgroups = 1, group_m = 1, swap_ab = true>, {{.*}}tile = #moe.tile<block_m = 32,
// WEIGHT-ONLY-64-LABEL: func.func @weight_only_long
// WEIGHT-ONLY-64: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 2, consumer_warpgroups = 1, group_m = 1>, {{.*}}tile = #moe.tile<block_m = 64,
// A schedule that mixes a weight-only GEMM1 and a bf16 combine keeps its
// unswapped 64-row blocks (no policy was measured on such a mix).
// WEIGHT-ONLY-64-LABEL: func.func @mixed_formats
// WEIGHT-ONLY-64: moe.expert_matmul {{.*}}kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, {{.*}}group_m = 1>, {{.*}}tile = #moe.tile<block_m = 64,
// WEIGHT-ONLY-64: moe.expert_matmul {{.*}}kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, {{.*}}group_m = 1>, {{.*}}tile = #moe.tile<block_m = 64,
// WEIGHT-ONLY-UNSWAPPED-LABEL: func.func @weight_only_short
// WEIGHT-ONLY-UNSWAPPED: moe.expert_matmul {{.*}}kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, {{.*}}consumer_warpgroups = 1, group_m = 1>, {{.*}}tile = #moe.tile<block_m = 64,
func.func @weight_only_short(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x256xui8>, %s13: tensor<8x256x4xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      weight_scales(%s13 : tensor<8x256x4xf32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<int4_weight, group = 128>, tile = #moe.tile<block_m = 8, block_n = 128, block_k = 64, stages = 2, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x512xbf16>, tensor<8x256x256xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}
func.func @weight_only_long(%x: tensor<?x4096xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x2048xui8>, %s13: tensor<8x256x32xf32>) -> tensor<?x128xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      weight_scales(%s13 : tensor<8x256x32xf32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<int4_weight, group = 128>, tile = #moe.tile<block_m = 8, block_n = 128, block_k = 64, stages = 2, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x4096xbf16>, tensor<8x256x2048xui8> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}
func.func @mixed_formats(%x: tensor<?x512xbf16>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w13: tensor<8x256x256xui8>, %s13: tensor<8x256x4xf32>, %w2: tensor<8x512x128xbf16>, %rw: tensor<?x2xf32>) -> tensor<?x512xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      weight_scales(%s13 : tensor<8x256x4xf32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>, quantization = #moe.quant<int4_weight, group = 128>, tile = #moe.tile<block_m = 8, block_n = 128, block_k = 64, stages = 2, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x512xbf16>, tensor<8x256x256xui8> -> tensor<?x128xbf16>
  %o = moe.expert_matmul %h, %w2 slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>) combine(%rw : tensor<?x2xf32>)
      {k = 2 : i64, tile = #moe.tile<block_m = 8, block_n = 512, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x128xbf16>, tensor<8x512x128xbf16> -> tensor<?x512xbf16>
  return %o : tensor<?x512xbf16>
}

// -----

// int8 promotes nothing, so w8a8-swap-ab (the default) applies: at 64
// tokens (16 rows per expert on average, 24 at mean + 2 sd) an ungated int8
// matmul takes 32 swapped rows over two warpgroups, its weights by TMA (the
// default swapped-weight-load, cp_async, is built for bf16 only); with
// w8a8-swap-ab=false it keeps 64 unswapped rows.
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=64" | FileCheck %s --check-prefix=INT8-SWAP
// RUN: moe-opt %s -split-input-file -moe-gpu-configure="num-tokens=64 w8a8-swap-ab=false" | FileCheck %s --check-prefix=INT8-UNSWAPPED
// INT8-SWAP-LABEL: func.func @int8_ungated
// INT8-SWAP: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 32, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, group_m = 1, swap_ab = true>
// INT8-UNSWAPPED-LABEL: func.func @int8_ungated
// INT8-UNSWAPPED: moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1, group_m = 1>
func.func @int8_ungated(%x: tensor<?x512xi8>, %xs: tensor<?xf32>, %source: tensor<?xi32>, %offsets: tensor<9xi32>, %w: tensor<8x256x512xi8>, %ws: tensor<8x256xf32>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%source : tensor<?xi32>) offsets(%offsets : tensor<9xi32>)
      input_scales(%xs : tensor<?xf32>) weight_scales(%ws : tensor<8x256xf32>)
      {gather, k = 2 : i64, quantization = #moe.quant<int8, scales = per_token_channel>, tile = #moe.tile<block_m = 8, block_n = 128, block_k = 128, stages = 2, split_k = 1, swap_ab = true, group_m = 1>}
      : tensor<?x512xi8>, tensor<8x256x512xi8> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}
