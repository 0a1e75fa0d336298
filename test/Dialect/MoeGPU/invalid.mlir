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
// expected-error @+1 {{the roles need 98304 registers, more than the 65536 of an SM}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 256, consumer_registers = 256>} : () -> ()

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

// cluster
// expected-error @+1 {{cluster must hold 1, 2, 4 or 8 blocks, got 3x1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, cluster_m = 3>} : () -> ()

// -----

// group_m
// expected-error @+1 {{group_m must not be negative, got -1}}
"test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, group_m = -1>} : () -> ()

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

func.func @block_m_of_schedule(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  // expected-error @+1 {{kernel config has block_m = 128, but the aligned schedule's slot blocks are 64 rows}}
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}
