// RUN: moe-opt %s -split-input-file -verify-diagnostics -allow-unregistered-dialect

//===----------------------------------------------------------------------===//
// #moe_gpu.kernel_config
//===----------------------------------------------------------------------===//

// one consumer at least
// expected-error @+1 {{needs at least one consumer warpgroup and no negative producer count, got 0 consumers and 0 producers}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 0, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 0>} : () -> ()

// -----

// too many threads
// expected-error @+1 {{9 warpgroups exceed the 1024 threads of a block}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 512, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 8, producer_warpgroups = 1>} : () -> ()

// -----

// multistage with a producer
// expected-error @+1 {{schedule multistage has no producer warpgroups, got 1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, producer_warpgroups = 1>} : () -> ()

// -----

// warp specialized without a producer
// expected-error @+1 {{schedule warp_specialized needs a producer warpgroup, got 0}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1>} : () -> ()

// -----

// setmaxnreg without warp specialization
// expected-error @+1 {{register rebalancing (setmaxnreg) needs a warp-specialized schedule}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>} : () -> ()

// -----

// setmaxnreg count
// expected-error @+1 {{setmaxnreg counts must be multiples of 8 in [24, 256], got producer_registers = 20 and consumer_registers = 232}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 20, consumer_registers = 232>} : () -> ()

// -----

// register file
// expected-error @+1 {{the roles need 98304 registers, more than the 64512 a block of 384 threads starts with (168 each)}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 256, consumer_registers = 256>} : () -> ()

// -----

// A pingpong warpgroup keeps a 64 x block_n accumulator per 64 rows.
// expected-error @+1 {{a consumer thread would hold 2 accumulators of block_n / 2 = 128 registers, more than the 255 a thread has}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = pingpong, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1>} : () -> ()

// -----

// setmaxnreg.dec for the producers, .inc for the consumers, from the 168 a
// thread of 384 starts with.
// expected-error @+1 {{setmaxnreg moves producers down and consumers up from the 168 registers a thread starts with, got 176 and 160}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 176, consumer_registers = 160>} : () -> ()

// -----

// The whole register file is more than a block of 384 threads starts with:
// 65536 / 384 rounds down to 168 per thread, and setmaxnreg.inc would wait
// forever for the rest.
// expected-error @+1 {{the roles need 65536 registers, more than the 64512 a block of 384 threads starts with (168 each)}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 96, consumer_registers = 208>} : () -> ()

// -----

// block_m per consumer
// expected-error @+1 {{block_m must be 64 rows per consumer warpgroup (128), got 64}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2>} : () -> ()

// -----

// bf16 wgmma N
// expected-error @+1 {{block_n = 100 is not an N of wgmma_bf16}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 100, block_k = 64, stages = 4, consumer_warpgroups = 1>} : () -> ()

// -----

// s8 wgmma N
// expected-error @+1 {{block_n = 40 is not an N of wgmma_s8}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 64, block_n = 40, block_k = 128, stages = 4, consumer_warpgroups = 1>} : () -> ()

// -----

// wgmma K
// expected-error @+1 {{block_k must be a positive multiple of wgmma_e4m3's K of 32, got 16}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 16, stages = 4, consumer_warpgroups = 1>} : () -> ()

// -----

// stages
// expected-error @+1 {{stages must be in [1, 16], got 0}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 0, consumer_warpgroups = 1>} : () -> ()

// -----

// shared memory
// expected-error @+1 {{a ring of 8 stages takes 393216 bytes of shared memory, more than the 232448 of a block}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 8, consumer_warpgroups = 2>} : () -> ()

// -----

// split_k
// expected-error @+1 {{split_k must be positive, got 0}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 0>} : () -> ()

// -----

// A persistent block walks whole tiles.
// expected-error @+1 {{a persistent schedule walks whole tiles: split_k must be 1, got 2}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, split_k = 2>} : () -> ()

// -----

// cluster
// expected-error @+1 {{cluster must hold 1, 2, 4 or 8 blocks, got 3x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, cluster_m = 3>} : () -> ()

// -----

// group_m
// expected-error @+1 {{group_m must not be negative, got -1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, group_m = -1>} : () -> ()

// -----

// swapped operands: the multistage schedule, or warp_specialized or persistent on the register operand
// expected-error @+1 {{swapped operands need the multistage schedule, or warp_specialized or persistent with weight_load = registers, got warp_specialized with weight_load = tma}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 16, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, producer_warpgroups = 1, swap_ab = true>} : () -> ()

// -----

// swapped operands: block_m is the wgmma's N
// expected-error @+1 {{with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (64), or 256 over two with weight_load = registers and a producer warpgroup, got 12}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 12, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>} : () -> ()

// -----

// swapped operands: at most 64 rows per consumer warpgroup
// expected-error @+1 {{with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (64), or 256 over two with weight_load = registers and a producer warpgroup, got 128}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>} : () -> ()

// -----

// ... also over two
// expected-error @+1 {{with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (128), or 256 over two with weight_load = registers and a producer warpgroup, got 256}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 256, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, swap_ab = true>} : () -> ()

// -----

// ... and 256 on the register operand with a producer warpgroup only over
// two consumer warpgroups
// expected-error @+1 {{with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (64), or 256 over two with weight_load = registers and a producer warpgroup, got 256}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 256, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, producer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()

// -----

// ... in passes of 128: not 192
// expected-error @+1 {{with swapped operands block_m is the wgmma's N: an N that wgmma_bf16 takes, at most 64 per consumer warpgroup (128), or 256 over two with weight_load = registers and a producer warpgroup, got 192}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 192, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()

// -----

// swapped operands: a consumer thread's accumulators fit its registers
// expected-error @+1 {{with swapped operands a consumer thread would hold 2 accumulators of block_m / 2 = 128 registers, more than the 255 a thread has}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 256, block_n = 256, block_k = 64, stages = 2, consumer_warpgroups = 2, producer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()

// -----

// swapped operands: the weight rows come in 64s
// expected-error @+1 {{with swapped operands block_n must be a multiple of the wgmma's 64 rows per consumer warpgroup (64), got 96}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 96, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true>} : () -> ()

// -----

// swapped operands: each consumer warpgroup takes whole 64s of weight rows
// expected-error @+1 {{with swapped operands block_n must be a multiple of the wgmma's 64 rows per consumer warpgroup (128), got 64}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 128, stages = 4, consumer_warpgroups = 2, swap_ab = true>} : () -> ()

// -----

// swapped operands: no cluster
// expected-error @+1 {{swapped operands take no cluster, got 2x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 32, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, cluster_m = 2, swap_ab = true>} : () -> ()

// -----

// A register operand needs swapped operands
// expected-error @+1 {{weight_load = registers needs swap_ab, wgmma_bf16 and block_k = 64, got swap_ab = false, mma = wgmma_bf16, block_k = 64}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, weight_load = registers>} : () -> ()

// -----

// ... of bf16 wgmmas
// expected-error @+1 {{weight_load = registers needs swap_ab, wgmma_bf16 and block_k = 64, got swap_ab = true, mma = wgmma_e4m3, block_k = 128}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 16, block_n = 64, block_k = 128, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()

// -----

// A kernel aligns its own slot block for a few rounds of ids at most
// expected-error @+1 {{fused_align_assignments must be in [0, 1024], got 2048}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, fused_align_assignments = 2048>} : () -> ()

// -----

// ... once, before its one tile: not with a persistent schedule
// expected-error @+1 {{fused_align_assignments needs a schedule of one tile per block (multistage or warp_specialized), got persistent}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 56, consumer_registers = 224, fused_align_assignments = 256>} : () -> ()

// -----

// ... and not in a cluster, whose blocks share one schedule's pairs
// expected-error @+1 {{fused_align_assignments takes no cluster, got 2x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, cluster_m = 2, fused_align_assignments = 256>} : () -> ()

// -----

// Only e4m3 sums are promoted: fast_accumulation is theirs alone
// expected-error @+1 {{fast_accumulation is an e4m3 choice, got mma = wgmma_s8}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, fast_accumulation = true>} : () -> ()

// -----

// ... one 64-wide K step per stage
// expected-error @+1 {{weight_load = registers needs swap_ab, wgmma_bf16 and block_k = 64, got swap_ab = true, mma = wgmma_bf16, block_k = 128}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 128, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()

// -----

// weights by cp.async: no cluster
// expected-error @+1 {{weight_load = cp_async takes no cluster (a cluster's blocks share weight tiles by TMA multicast), got 2x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, cluster_m = 2, weight_load = cp_async>} : () -> ()

// -----

// combine_rows: the swapped epilogue has no row stores
// expected-error @+1 {{combine_rows stores the rows of unswapped tiles, got swap_ab = true}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, combine_rows = true>} : () -> ()

// -----

// combine_rows: each row stored once, no K splits to add
// expected-error @+1 {{combine_rows stores each row once: split_k must be 1, got 2}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, split_k = 2, combine_rows = true>} : () -> ()

// -----

// staged_epilogue: the persistent schedule's table (multistage stages over
// its own ring)
// expected-error @+1 {{staged_epilogue needs schedule = persistent, got multistage}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, staged_epilogue = true>} : () -> ()

// -----

// staged_epilogue: rows of unswapped tiles
// expected-error @+1 {{staged_epilogue stages the rows of unswapped tiles, got swap_ab = true}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers, staged_epilogue = true>} : () -> ()

// -----

// staged_epilogue: no cluster
// expected-error @+1 {{staged_epilogue takes no cluster, got 2x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 56, consumer_registers = 224, cluster_m = 2, staged_epilogue = true>} : () -> ()

// -----

// input_tma: bf16 rows
// expected-error @+1 {{input_tma loads bf16 rows, got mma = wgmma_e4m3}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, input_tma = true>} : () -> ()

// -----

// input_tma: the multistage ring's full barriers
// expected-error @+1 {{input_tma needs schedule = multistage, got persistent}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, input_tma = true>} : () -> ()

// -----

// input_tma: beside the weights' TMA boxes
// expected-error @+1 {{input_tma shares the stage's full barrier with the weights' TMA boxes: weight_load must be tma, got cp_async}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, weight_load = cp_async, input_tma = true>} : () -> ()

// -----

// input_tma: A rows of unswapped tiles
// expected-error @+1 {{input_tma loads the A rows of unswapped tiles, got swap_ab = true}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, input_tma = true>} : () -> ()

// -----

// input_tma: no cluster
// expected-error @+1 {{input_tma takes no cluster, got 2x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, cluster_m = 2, input_tma = true>} : () -> ()

// -----

// weight_load is tma or cp_async
// expected-error @+2 {{expected ::mlir::moe_gpu::WeightLoad to be one of: tma, cp_async}}
// expected-error @+1 {{failed to parse MoeGPU_KernelConfigAttr parameter 'weight_load'}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 1, weight_load = ldg>} : () -> ()

// -----

//===----------------------------------------------------------------------===//
// moe_gpu.config on an op
//===----------------------------------------------------------------------===//

// expected-error @+1 {{unknown moe_gpu attribute 'moe_gpu.tile'}}
"test.op"() {moe_gpu.tile = 1 : i64} : () -> ()

// -----

// expected-error @+1 {{'moe_gpu.config' must be a #moe_gpu.kernel_config, got 1 : i64}}
"test.op"() {moe_gpu.config = 1 : i64} : () -> ()

// -----

// expected-error @+1 {{'moe_gpu.config' applies to moe.expert_matmul, not 'test.op'}}
"test.op"() {moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1>} : () -> ()

// -----

func.func @mma_of_format(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-error @+1 {{kernel config has mma = wgmma_e4m3, but the op's format 'none' needs wgmma_bf16}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// Block scales are applied as each K block's sums are promoted.
func.func @fast_accumulation_block_scales(%x: tensor<?x1536xf8E4M3FN>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x1536xf8E4M3FN>, %xs: tensor<?x12xf32>, %ws: tensor<8x2x12xf32>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{kernel config has fast_accumulation, but the op's block scales are applied as each K block's sums are promoted}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      input_scales(%xs : tensor<?x12xf32>) weight_scales(%ws : tensor<8x2x12xf32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>,
       quantization = #moe.quant<fp8, scales = block>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 64, block_n = 128, block_k = 128, stages = 3, consumer_warpgroups = 1, fast_accumulation = true>}
      : tensor<?x1536xf8E4M3FN>, tensor<8x256x1536xf8E4M3FN> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

func.func @block_m_of_schedule(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-error @+1 {{kernel config has block_m = 128, but the aligned schedule's slot blocks are 64 rows}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// A matmul that stores its products (no combine, no unpermuted rows)
// reduces its K splits in a cluster of its own:
// at most 8 blocks.
func.func @split_k_beyond_cluster(%x: tensor<?x4096xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x4096xbf16>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{kernel config has split_k = 16 and cluster 1x1, but a matmul that stores its products reduces its K splits in a cluster of its own: split_k at most 8 and cluster 1x1}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 16 : i64, activation = #moe.activation<silu_and_mul>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 16, swap_ab = true>}
      : tensor<?x4096xbf16>, tensor<8x256x4096xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

// -----

// ... and no other cluster beside it.
func.func @split_k_with_pairs(%x: tensor<?x4096xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x4096xbf16>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{kernel config has split_k = 2 and cluster 2x1, but a matmul that stores its products reduces its K splits in a cluster of its own: split_k at most 8 and cluster 1x1}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, activation = #moe.activation<silu_and_mul>, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, split_k = 2, cluster_m = 2>}
      : tensor<?x4096xbf16>, tensor<8x256x4096xbf16> -> tensor<?x128xbf16>
  return %h : tensor<?x128xbf16>
}

//===----------------------------------------------------------------------===//
// Host ops
//===----------------------------------------------------------------------===//

// -----

// expected-error @+1 {{has 1 buffers but 2 names}}
moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (4)>], names = ["a", "b"], invalid_id_counters = array<i64>}

// -----

// expected-error @+1 {{buffer 0 must be a map of one symbol (the token count) to one byte count, got affine_map<(d0) -> (d0)>}}
moe_gpu.workspace_layout @ws {buffers = [affine_map<(d0) -> (d0)>], names = ["a"], invalid_id_counters = array<i64>}

// -----

// expected-error @+1 {{invalid_id_counters: 1 is not a distinct buffer index in [0, 1)}}
moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (4)>], names = ["a"], invalid_id_counters = array<i64: 1>}

// -----

moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 4)>], names = ["a"], invalid_id_counters = array<i64>}
func.func @buffer_layout(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{the buffer must be row-major (identity layout), got 'memref<?xf32, strided<[2]>>'}}
  %b = moe_gpu.workspace_buffer @ws[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32, strided<[2]>>
  return
}

// -----

moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 4)>], names = ["a"], invalid_id_counters = array<i64>}
func.func @buffer_elements(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{the buffer must have whole-byte int or float elements, got 'i1'}}
  %b = moe_gpu.workspace_buffer @ws[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xi1>
  return
}

// -----

moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 4)>], names = ["a"], invalid_id_counters = array<i64>}
func.func @buffer_rank(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{the buffer must have rank 1 to 3, got 4}}
  %b = moe_gpu.workspace_buffer @ws[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?x1x1x1xf32>
  return
}

// -----

moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 4)>], names = ["a"], invalid_id_counters = array<i64>}
func.func @buffer_sizes(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{needs 1 sizes (the dynamic dimensions of 'memref<?x4xf32>'), got 0}}
  %b = moe_gpu.workspace_buffer @ws[0] in %workspace for %m : memref<?xi8> -> memref<?x4xf32>
  return
}

// -----

func.func @buffer_no_layout(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{refers to @missing, which is not a moe_gpu.workspace_layout}}
  %b = moe_gpu.workspace_buffer @missing[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
  return
}

// -----

moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 4)>], names = ["a"], invalid_id_counters = array<i64>}
func.func @buffer_index(%workspace: memref<?xi8>, %m: index) {
  // expected-error @+1 {{buffer index 1 is outside @ws, which has 1 buffers}}
  %b = moe_gpu.workspace_buffer @ws[1] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
  return
}

// -----

func.func @bytes_no_layout(%m: index) -> index {
  // expected-error @+1 {{refers to @missing, which is not a moe_gpu.workspace_layout}}
  %b = moe_gpu.workspace_bytes @missing for %m
  return %b : index
}

// -----

func.func @leading_slice_outside(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{expects the slice inside the source: offset 6 + 3 entries > 8}}
  %s = moe_gpu.leading_slice %w[6] : memref<8x64xbf16> to memref<3x64xbf16>
  return
}

// -----

func.func @leading_slice_inner(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{expects a result of the source's element type and inner sizes, got 'memref<2x32xbf16>' from 'memref<8x64xbf16>'}}
  %s = moe_gpu.leading_slice %w[0] : memref<8x64xbf16> to memref<2x32xbf16>
  return
}

// -----

func.func @leading_slice_element(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{expects a result of the source's element type and inner sizes}}
  %s = moe_gpu.leading_slice %w[0] : memref<8x64xbf16> to memref<2x64xf16>
  return
}

// -----

func.func @leading_slice_rank(%w: memref<bf16>) {
  // expected-error @+1 {{expects a source of rank 1 or more, got 'memref<bf16>'}}
  %s = moe_gpu.leading_slice %w[0] : memref<bf16> to memref<bf16>
  return
}

// -----

func.func @leading_slice_layout(%w: memref<8x64xbf16, strided<[128, 1]>>) {
  // expected-error @+1 {{the source must be row-major (identity layout)}}
  %s = moe_gpu.leading_slice %w[0] : memref<8x64xbf16, strided<[128, 1]>> to memref<2x64xbf16>
  return
}

// -----

func.func @leading_slice_negative(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{attribute 'offset' failed to satisfy constraint}}
  %s = moe_gpu.leading_slice %w[-1] : memref<8x64xbf16> to memref<2x64xbf16>
  return
}

// -----

func.func @tensor_map_layout(%w: memref<8x64xbf16, strided<[128, 1]>>) {
  // expected-error @+1 {{the source must be row-major (identity layout)}}
  %map = moe_gpu.tensor_map %w box [64, 64] : memref<8x64xbf16, strided<[128, 1]>> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_rank(%w: memref<512xbf16>) {
  // expected-error @+1 {{the source must have rank 2 or more, got 'memref<512xbf16>'}}
  %map = moe_gpu.tensor_map %w box [64, 64] : memref<512xbf16> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_inner_dynamic(%w: memref<8x?x64xbf16>) {
  // expected-error @+1 {{only the source's leading dimension may be dynamic, got 'memref<8x?x64xbf16>'}}
  %map = moe_gpu.tensor_map %w box [64, 64] : memref<8x?x64xbf16> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_elements(%w: memref<8x64xf32>) {
  // expected-error @+1 {{TMA elements must be 1 or 2 bytes, got 'f32'}}
  %map = moe_gpu.tensor_map %w box [8, 32] : memref<8x64xf32> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_box_rank(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{box must be [rows, cols], got 3 sizes}}
  %map = moe_gpu.tensor_map %w box [8, 64, 1] : memref<8x64xbf16> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_box_width(%w: memref<8x128xbf16>) {
  // expected-error @+1 {{a box row must be one 128-byte swizzle span: 128 elements of 2 bytes}}
  %map = moe_gpu.tensor_map %w box [8, 128] : memref<8x128xbf16> -> !llvm.ptr
  return
}

// -----

func.func @tensor_map_box_rows(%w: memref<8x64xbf16>) {
  // expected-error @+1 {{box rows must be in [1, 256], got 512}}
  %map = moe_gpu.tensor_map %w box [512, 64] : memref<8x64xbf16> -> !llvm.ptr
  return
}

// -----

func.func @zero_layout(%b: memref<?xf32, strided<[2]>>, %s: !moe_gpu.stream) {
  // expected-error @+1 {{the buffer must be row-major (identity layout)}}
  moe_gpu.zero %b on %s : memref<?xf32, strided<[2]>>
  return
}

// -----

func.func @zero_words(%b: memref<?xbf16>, %s: !moe_gpu.stream) {
  // expected-error @+1 {{zeroes 4-byte words: the buffer's elements must be 32 bits, got 'bf16'}}
  moe_gpu.zero %b on %s : memref<?xbf16>
  return
}

// -----

func.func @read_count_shape(%b: memref<2xi32>, %s: !moe_gpu.stream) -> i64 {
  // expected-error @+1 {{the counter must hold one i32, got 'memref<2xi32>'}}
  %c = moe_gpu.read_count %b on %s : memref<2xi32>
  return %c : i64
}

// -----

// expected-error @+1 {{'moe_gpu.workspace_layout' must be a symbol reference on a func.func}}
"test.op"() {moe_gpu.workspace_layout = 1 : i64} : () -> ()

// -----

// expected-error @+1 {{'moe_gpu.dependent_launch' must be a unit attribute}}
"test.op"() {moe_gpu.dependent_launch = 1 : i64} : () -> ()

// -----

// expected-error @+1 {{'moe_gpu.dependent_launch' applies to a gpu.func kernel or a gpu.launch_func, not 'test.op'}}
"test.op"() {moe_gpu.dependent_launch} : () -> ()

// -----

module attributes {gpu.container_module} {
  gpu.module @kernels {
    gpu.func @no_wait() kernel {
      gpu.return
    }
  }
  func.func @launch(%stream: !moe_gpu.stream) {
    %c1 = arith.constant 1 : index
    // expected-error @+1 {{dependent launch of @no_wait, which does not wait for the kernels before it (no 'moe_gpu.dependent_launch')}}
    gpu.launch_func <%stream : !moe_gpu.stream> @kernels::@no_wait blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) {moe_gpu.dependent_launch}
    return
  }
}

// -----

//===----------------------------------------------------------------------===//
// Collectives of an expert-parallel group
//===----------------------------------------------------------------------===//

func.func @group_rank_word(%g: !moe_gpu.group, %r: memref<2xi32>, %s: !moe_gpu.stream) {
  // expected-error @+1 {{the rank must be one i32, got 'memref<2xi32>'}}
  moe_gpu.store_group_rank %g into %r on %s {ranks = 2 : i64} : memref<2xi32>
  return
}

// -----

func.func @group_rank_ranks(%g: !moe_gpu.group, %r: memref<1xi32>, %s: !moe_gpu.stream) {
  // expected-error @+1 {{attribute 'ranks' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  moe_gpu.store_group_rank %g into %r on %s {ranks = 0 : i64} : memref<1xi32>
  return
}

// -----

func.func @all_gather_layout(%a: memref<?x8xi32, strided<[16, 1]>>, %b: memref<?x8xi32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{the send buffer must be row-major (identity layout)}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<?x8xi32, strided<[16, 1]>>, memref<?x8xi32>
  return
}

// -----

func.func @all_gather_element(%a: memref<?x8xi32>, %b: memref<?x8xf32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{expects the send buffer and the receive buffer of one element type, got 'i32' and 'f32'}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<?x8xi32>, memref<?x8xf32>
  return
}

// -----

func.func @all_gather_trailing(%a: memref<?x8xi32>, %b: memref<?x4xi32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{expects the receive buffer to have the trailing dimensions of the send buffer, got 'memref<?x4xi32>' and 'memref<?x8xi32>'}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<?x8xi32>, memref<?x4xi32>
  return
}

// -----

func.func @all_gather_rows(%a: memref<3x8xi32>, %b: memref<8x8xi32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{expects the receive buffer to have 2 x 3 rows, got 8}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<3x8xi32>, memref<8x8xi32>
  return
}

// -----

func.func @reduce_scatter_rows(%a: memref<4x64xf32>, %b: memref<3x64xf32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{expects the send buffer to have 2 x 3 rows, got 4}}
  moe_gpu.reduce_scatter %a into %b over %g on %s {ranks = 2 : i64} : memref<4x64xf32>, memref<3x64xf32>
  return
}

// -----

func.func @reduce_scatter_f32(%a: memref<?x64xbf16>, %b: memref<?x64xbf16>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{operand #0 must be memref of 32-bit float values}}
  moe_gpu.reduce_scatter %a into %b over %g on %s {ranks = 2 : i64} : memref<?x64xbf16>, memref<?x64xbf16>
  return
}

// -----

func.func @all_gather_receive_layout(%a: memref<?x8xi32>, %b: memref<?x8xi32, strided<[16, 1]>>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{the receive buffer must be row-major (identity layout)}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<?x8xi32>, memref<?x8xi32, strided<[16, 1]>>
  return
}

// -----

func.func @all_gather_bits(%a: memref<?x8xi1>, %b: memref<?x8xi1>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{the send buffer must have whole-byte int or float elements, got 'i1'}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<?x8xi1>, memref<?x8xi1>
  return
}

// -----

func.func @all_gather_scalar(%a: memref<i32>, %b: memref<i32>, %g: !moe_gpu.group, %s: !moe_gpu.stream) {
  // expected-error @+1 {{expects the receive buffer to have the trailing dimensions of the send buffer, got 'memref<i32>' and 'memref<i32>'}}
  moe_gpu.all_gather %a into %b over %g on %s {ranks = 2 : i64} : memref<i32>, memref<i32>
  return
}

// -----

// input_tma reads a slot block's rows as one box: not tokens gathered
// through the slots.
func.func @input_tma_gather(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-error @+1 {{kernel config has input_tma, but the op gathers its input rows through its slots; a TMA box reads contiguous rows}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, input_tma = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// input_tma shares the stage's full barrier with the bf16 weights' boxes:
// not weight-only codes, which are copied and dequantized in shared memory.
func.func @input_tma_weight_only(%h: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x128x128xui8>, %ws: tensor<8x128x2xf32>) -> tensor<?x128xbf16> {
  // expected-error @+1 {{kernel config has input_tma, which loads bf16 rows beside the bf16 weights' TMA boxes, but the op's format is 'int4_weight'}}
  %o = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      weight_scales(%ws : tensor<8x128x2xf32>)
      {k = 2 : i64, block_m = 128 : i64, quantization = #moe.quant<int4_weight, group = 128>,
       moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, input_tma = true>}
      : tensor<?x256xbf16>, tensor<8x128x128xui8> -> tensor<?x128xbf16>
  return %o : tensor<?x128xbf16>
}

// -----

// combine_rows is a way of combining: the op must be a combine.
func.func @combine_rows_not_combine(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-error @+1 {{kernel config has combine_rows, but the op is not a combine}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, combine_rows = true>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// combine_rows stores each row once: there are no f32 sums to start from.
func.func @combine_rows_accumulate(%h: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x256xbf16>, %weights: tensor<?x2xf32>, %partial: tensor<?x512xf32>) -> tensor<?x512xbf16> {
  // expected-error @+1 {{kernel config has combine_rows, but the op adds into accumulate(...) partial sums}}
  %out = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      combine(%weights : tensor<?x2xf32>) accumulate(%partial : tensor<?x512xf32>)
      {k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, combine_rows = true>}
      : tensor<?x256xbf16>, tensor<8x512x256xbf16> -> tensor<?x512xbf16>
  return %out : tensor<?x512xbf16>
}

// -----

// combine_rows rounds each row to the result's element type: bf16 only.
func.func @combine_rows_f32(%h: tensor<?x256xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x512x256xbf16>, %weights: tensor<?x2xf32>) -> tensor<?x512xf32> {
  // expected-error @+1 {{kernel config has combine_rows, which rounds each row to the result's element type: needs a bf16 result, got 'f32'}}
  %out = moe.expert_matmul %h, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      combine(%weights : tensor<?x2xf32>)
      {k = 2 : i64, block_m = 128 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, combine_rows = true>}
      : tensor<?x256xbf16>, tensor<8x512x256xbf16> -> tensor<?x512xf32>
  return %out : tensor<?x512xf32>
}
