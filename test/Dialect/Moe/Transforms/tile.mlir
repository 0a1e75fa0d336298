// Cost-model decisions move the right way.
//
// One row per expert (decode) against 4096 (prefill), Mixtral's GEMM1
// shape: decode takes the smallest row tile and swaps operands so the
// weights fill the MMA's M; prefill takes large tiles and a swizzle.
// RUN: moe-opt %s -split-input-file -moe-tile=num-tokens=4 | FileCheck %s --check-prefix=DECODE
// RUN: moe-opt %s -split-input-file -moe-tile=num-tokens=16384 | FileCheck %s --check-prefix=PREFILL
//
// Few output tiles at decode (N = 256, one expert): split-K fills the SMs,
// more for K = 14336 than for K = 2048 (each split needs 4 K-steps), and
// less on a 16-SM part than on 132 SMs.
// RUN: moe-opt %s -split-input-file -moe-tile=num-tokens=1 | FileCheck %s --check-prefix=SPLIT132
// RUN: moe-opt %s -split-input-file -moe-tile="num-tokens=1 num-sms=16" | FileCheck %s --check-prefix=SPLIT16
//
// The raster: about one row block per expert walks column tiles first
// (Qwen3 M = 1024: 6 MB experts; DeepSeek M = 4096: 470 MB of gathered
// rows), except where experts spill into a second block, their weights
// overflow L2 and the rows fit (Mixtral M = 256: all 16 row blocks first);
// several blocks per expert share weights in groups of 8 (Mixtral M = 4096).
// Each RUN sees both matmuls of the example.
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=256 | FileCheck %s --check-prefix=RASTER-MIXTRAL-256
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile="num-tokens=256 l2-bytes=268435456" | FileCheck %s --check-prefix=RASTER-LARGE-L2
// RUN: moe-opt %moe_src_root/examples/mixtral_8x7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 | FileCheck %s --check-prefix=RASTER-MIXTRAL-4096
// RUN: moe-opt %moe_src_root/examples/qwen3_30b_a3b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1024 | FileCheck %s --check-prefix=RASTER-QWEN-1024
// RUN: moe-opt %moe_src_root/examples/deepseek_v3.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 | FileCheck %s --check-prefix=RASTER-DEEPSEEK-4096
// RASTER-MIXTRAL-256-COUNT-2: tile = #moe.tile<block_m = 64, {{.*}}group_m = 16>
// RASTER-LARGE-L2-COUNT-2: tile = #moe.tile<block_m = 64, {{.*}}group_m = 1>
// RASTER-MIXTRAL-4096-COUNT-2: tile = #moe.tile<block_m = 128, {{.*}}group_m = 8>
// RASTER-QWEN-1024-COUNT-2: tile = #moe.tile<block_m = 64, {{.*}}group_m = 1>
// RASTER-DEEPSEEK-4096-COUNT-2: tile = #moe.tile<block_m = 128, {{.*}}group_m = 1>
//
// A shared expert receives all M rows; the routed experts keep their
// M·k / E: DeepSeek-V3 with its shared expert tiles as DeepSeek-V3 does
// (spreading the 4096 shared rows over all 257 experts, 143 rows each,
// chose block_m = 64), and the report names the shared expert.
// RUN: moe-opt %moe_src_root/examples/deepseek_v3_shared.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 -moe-tile-report=num-tokens=4096 | FileCheck %s --check-prefix=SHARED-4096
// SHARED-4096: moe-tile-report: moe.expert_matmul
// SHARED-4096-NEXT: M=4096 rows=36864 E=257
// SHARED-4096-NEXT: tile #moe.tile<block_m = 128, block_n = 256, block_k = 64, stages = 3
// SHARED-4096-NEXT: 256.0 experts x 128.00 rows, 1 shared x 4096 rows, {{.*}} 4608 blocks
//
// 4-bit codes are stored two per byte ([E, N, K/2] ui8): the model takes
// the rows' K and half a byte per weight, so GPT-OSS's K = 2880 (1440
// bytes a row, no multiple of 64) gets tiles of 64 of K, swapped at decode,
// the bytes of the codes (33.2 MB for 3.8 experts' 5760 x 2880) and the
// FLOPs of the whole K, rather than the fallback tile of a K no candidate
// divides.
// RUN: moe-opt %moe_src_root/examples/quantized/gpt_oss_20b_mxfp4.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=1 -moe-tile-report=num-tokens=1 | FileCheck %s --check-prefix=MXFP4-DECODE
// MXFP4-DECODE: moe-tile-report: moe.expert_matmul
// MXFP4-DECODE-NEXT: M=1 rows=4 E=32 N=5760 K=2880 on 132 SMs
// MXFP4-DECODE-NEXT: tile #moe.tile<block_m = 8, block_n = 256, block_k = 64, stages = 5, split_k = 1, swap_ab = true, group_m = 1>
// MXFP4-DECODE-NEXT: 3.8 experts x 1.05 rows, reuse 2.1, 0.133 GFLOP {{.*}}, 33.2 MB,
// MXFP4-DECODE: moe-tile-report: moe.expert_matmul
// MXFP4-DECODE-NEXT: M=1 rows=4 E=32 N=2880 K=2880 on 132 SMs
// MXFP4-DECODE-NEXT: tile #moe.tile<{{.*}}swap_ab = true
//
// Compute-bound, a 64-row tile leaves one warpgroup per SM issuing MMAs
// (GpuTarget::singleWarpgroupMmaFraction): Qwen1.5-MoE at M = 4096 keeps
// 128-row tiles on both GEMMs although 64 rows would pad 10% less.
// RUN: moe-opt %moe_src_root/examples/qwen1_5_moe_a2_7b.mlir -moe-fuse-routing -moe-fuse-experts -moe-tile=num-tokens=4096 | FileCheck %s --check-prefix=QWEN15-4096
// QWEN15-4096-COUNT-2: tile = #moe.tile<block_m = 128, block_n = 256,
//
// The report explains the choice.
// RUN: moe-opt %s -split-input-file -moe-tile=num-tokens=4 -moe-tile-report=num-tokens=4 | FileCheck %s --check-prefix=REPORT-DECODE
// RUN: moe-opt %s -split-input-file -moe-tile=num-tokens=16384 -moe-tile-report=num-tokens=16384 | FileCheck %s --check-prefix=REPORT-PREFILL

// DECODE-LABEL: func @mixtral_gemm1
// DECODE: tile = #moe.tile<block_m = 8, block_n = {{[0-9]+}}, block_k = {{[0-9]+}}, stages = {{[0-9]+}}, split_k = {{[0-9]+}}, swap_ab = true, group_m = 1>
// PREFILL-LABEL: func @mixtral_gemm1
// PREFILL: tile = #moe.tile<block_m = {{128|256}}, block_n = {{128|256}}, block_k = {{[0-9]+}}, stages = {{[0-9]+}}, split_k = 1, swap_ab = false, group_m = 8>
// REPORT-DECODE: moe-tile-report: moe.expert_matmul
// REPORT-DECODE-NEXT: M=4 rows=8 E=8 N=28672 K=4096 on 132 SMs
// REPORT-DECODE-NEXT: tile #moe.tile<block_m = 8,
// REPORT-DECODE-NEXT: 5.3 experts x 1.52 rows, reuse 3.0, {{.*}} memory bound,
// REPORT-PREFILL: M=16384 rows=32768 E=8 N=28672 K=4096 on 132 SMs
// REPORT-PREFILL-NEXT: tile #moe.tile<block_m = {{128|256}},
// REPORT-PREFILL-NEXT: 8.0 experts x 4096.00 rows, reuse 170.7, {{.*}} compute bound,
func.func @mixtral_gemm1(%x: tensor<?x4096xbf16>, %src: tensor<?xi32>, %off: tensor<9xi32>, %w13: tensor<8x28672x4096xbf16>) -> tensor<?x14336xbf16> {
  %h = moe.expert_matmul %x, %w13 slots(%src : tensor<?xi32>) offsets(%off : tensor<9xi32>)
      {gather, k = 2 : i64, activation = #moe.activation<silu_and_mul>}
      : tensor<?x4096xbf16>, tensor<8x28672x4096xbf16> -> tensor<?x14336xbf16>
  return %h : tensor<?x14336xbf16>
}

// -----

// SPLIT132-LABEL: func @narrow
// SPLIT132: moe.grouped_matmul {{.*}}tile = #moe.tile<{{.*}}split_k = 8,
// SPLIT132: moe.grouped_matmul {{.*}}tile = #moe.tile<{{.*}}split_k = 16,
// SPLIT16-LABEL: func @narrow
// SPLIT16: moe.grouped_matmul {{.*}}tile = #moe.tile<{{.*}}split_k = 2,
// SPLIT16: moe.grouped_matmul {{.*}}tile = #moe.tile<{{.*}}split_k = 2,
func.func @narrow(%r: tensor<?x2048xbf16>, %w: tensor<1x256x2048xbf16>, %o: tensor<2xi32>, %r2: tensor<?x14336xbf16>, %w2: tensor<1x256x14336xbf16>) -> (tensor<?x256xbf16>, tensor<?x256xbf16>) {
  %0 = moe.grouped_matmul %r, %w, %o : tensor<?x2048xbf16>, tensor<1x256x2048xbf16>, tensor<2xi32> -> tensor<?x256xbf16>
  %1 = moe.grouped_matmul %r2, %w2, %o : tensor<?x14336xbf16>, tensor<1x256x14336xbf16>, tensor<2xi32> -> tensor<?x256xbf16>
  return %0, %1 : tensor<?x256xbf16>, tensor<?x256xbf16>
}

// -----

// A tile already chosen is kept.
// DECODE-LABEL: func @kept
// DECODE: tile = #moe.tile<block_m = 32, block_n = 32, block_k = 32, stages = 2, split_k = 1, swap_ab = false, group_m = 1>
func.func @kept(%r: tensor<?x64xbf16>, %w: tensor<8x64x64xbf16>, %o: tensor<9xi32>) -> tensor<?x64xbf16> {
  %0 = moe.grouped_matmul %r, %w, %o {tile = #moe.tile<block_m = 32, block_n = 32, block_k = 32, stages = 2, split_k = 1, swap_ab = false, group_m = 1>} : tensor<?x64xbf16>, tensor<8x64x64xbf16>, tensor<9xi32> -> tensor<?x64xbf16>
  return %0 : tensor<?x64xbf16>
}
