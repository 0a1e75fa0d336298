// RUN: moe-opt %s -split-input-file -allow-unregistered-dialect | FileCheck %s
// RUN: moe-opt %s -split-input-file -allow-unregistered-dialect | moe-opt -split-input-file -allow-unregistered-dialect | FileCheck %s
// RUN: moe-opt %s -split-input-file -allow-unregistered-dialect --mlir-print-op-generic | moe-opt -split-input-file -allow-unregistered-dialect | FileCheck %s

// Parameters at their defaults (no producers, no rebalancing, split_k 1,
// no cluster) are elided.
// CHECK-LABEL: func @multistage
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 64, block_n = 48, block_k = 128, stages = 3, consumer_warpgroups = 1, split_k = 4, group_m = 8>
func.func @multistage() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 0, split_k = 1, cluster_m = 1, cluster_n = 1>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_s8, schedule = multistage, block_m = 64, block_n = 48, block_k = 128, stages = 3, consumer_warpgroups = 1, split_k = 4, group_m = 8>} : () -> ()
  return
}

// -----

// A combine that stores rows per assignment; combine_rows = false elided.
// CHECK-LABEL: func @combine_rows
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8, combine_rows = true>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2>
func.func @combine_rows() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, group_m = 8, combine_rows = true>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, combine_rows = false>} : () -> ()
  return
}

// -----

// The persistent schedule's rows staged in turn; staged_epilogue = false
// elided.
// CHECK-LABEL: func @staged_epilogue
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, combine_rows = true, staged_epilogue = true>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208>
func.func @staged_epilogue() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, staged_epilogue = true, combine_rows = true>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, staged_epilogue = false>} : () -> ()
  return
}

// -----

// The A rows by TMA; input_tma = false elided.
// CHECK-LABEL: func @input_tma
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, split_k = 2, input_tma = true>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2>
func.func @input_tma() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, input_tma = true, split_k = 2>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, input_tma = false>} : () -> ()
  return
}

// -----

// Swapped operands: 16 slot rows as the wgmma's N; swap_ab = false elided.
// CHECK-LABEL: func @swapped
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 4, swap_ab = true>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1>
func.func @swapped() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, split_k = 4, swap_ab = true>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = false>} : () -> ()
  return
}

// -----

// A swapped decode kernel that aligns its own slot block for calls of up to
// 256 assignments; fused_align_assignments = 0 elided.
// CHECK-LABEL: func @fused_align
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, fused_align_assignments = 256>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true>
func.func @fused_align() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, fused_align_assignments = 256>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 256, block_k = 64, stages = 5, consumer_warpgroups = 1, swap_ab = true, fused_align_assignments = 0>} : () -> ()
  return
}

// -----

// Swapped operands over two consumer warpgroups, the weights copied by every
// thread; weight_load = tma elided.
// CHECK-LABEL: func @swapped_copied
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, split_k = 2, swap_ab = true, weight_load = cp_async>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1>
func.func @swapped_copied() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 128, block_k = 128, stages = 4, consumer_warpgroups = 2, split_k = 2, swap_ab = true, weight_load = cp_async>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 1, weight_load = tma>} : () -> ()
  return
}

// -----

// Weight-only codes decoded into the wgmma's register operand; at prefill
// also with a producer warpgroup that copies the codes and slot rows, up to
// 128 slot rows per consumer warpgroup.
// CHECK-LABEL: func @swapped_registers
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 256, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>
func.func @swapped_registers() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 16, block_n = 64, block_k = 64, stages = 4, consumer_warpgroups = 1, swap_ab = true, weight_load = registers>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 256, block_n = 128, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 88, consumer_registers = 208, swap_ab = true, weight_load = registers>} : () -> ()
  return
}

// -----

// fp8 sums kept in the wgmma's accumulator over all of K.
// CHECK-LABEL: func @fast_accumulation
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, fast_accumulation = true>
func.func @fast_accumulation() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = multistage, block_m = 128, block_n = 256, block_k = 128, stages = 4, consumer_warpgroups = 2, fast_accumulation = true>} : () -> ()
  return
}

// -----

// CHECK-LABEL: func @warp_specialized
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>
// CHECK: config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 56, consumer_registers = 224, cluster_m = 2>
func.func @warp_specialized() {
  "test.op"() {config = #moe_gpu.kernel_config<mma = wgmma_e4m3, schedule = warp_specialized, block_m = 128, block_n = 128, block_k = 128, stages = 5, consumer_warpgroups = 2, producer_warpgroups = 1, producer_registers = 40, consumer_registers = 232>} : () -> ()
  "test.op"() {config = #moe_gpu.kernel_config<consumer_registers = 224, producer_registers = 56, cluster_m = 2, mma = wgmma_bf16, schedule = persistent, block_m = 128, block_n = 256, block_k = 64, stages = 4, consumer_warpgroups = 2, producer_warpgroups = 1>} : () -> ()
  return
}

// -----

// On its op: a configured aligned matmul.
// CHECK-LABEL: func @on_expert_matmul
// CHECK: moe.expert_matmul {{.*}}moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1>
func.func @on_expert_matmul(%x: tensor<?x512xbf16>, %sorted: tensor<?xi32>, %blocks: tensor<?xi32>, %padded: tensor<1xi32>, %w: tensor<8x256x512xbf16>) -> tensor<?x256xbf16> {
  %h = moe.expert_matmul %x, %w slots(%sorted : tensor<?xi32>) blocks(%blocks, %padded : tensor<?xi32>, tensor<1xi32>)
      {gather, k = 2 : i64, block_m = 64 : i64, moe_gpu.config = #moe_gpu.kernel_config<mma = wgmma_bf16, schedule = multistage, block_m = 64, block_n = 128, block_k = 64, stages = 5, consumer_warpgroups = 1>}
      : tensor<?x512xbf16>, tensor<8x256x512xbf16> -> tensor<?x256xbf16>
  return %h : tensor<?x256xbf16>
}

// -----

// The host ops: a workspace layout, its buffers and size, a TMA descriptor,
// zeroing and reading a counter on a stream, the SM count of its device.
// CHECK: moe_gpu.workspace_layout @ws {buffers = [#{{.*}}, #{{.*}}], invalid_id_counters = array<i64: 1>, names = ["sums", "errors"]}
// CHECK-LABEL: func @host
// CHECK: %[[SUMS:.+]] = moe_gpu.workspace_buffer @ws[0] in %{{.+}} for %[[M:.+]] sizes(%[[M]]) : memref<?xi8> -> memref<?x128xf32>
// CHECK: moe_gpu.zero %[[SUMS]] on %{{.+}} : memref<?x128xf32>
// CHECK: %[[ERRORS:.+]] = moe_gpu.workspace_buffer @ws[1] in %{{.+}} for %[[M]] : memref<?xi8> -> memref<1xi32>
// CHECK: moe_gpu.read_count %[[ERRORS]] on %{{.+}} : memref<1xi32>
// CHECK: %[[SLICE:.+]] = moe_gpu.leading_slice %{{.+}}[6] : memref<8x256x512xbf16> to memref<2x256x512xbf16>
// CHECK: moe_gpu.tensor_map %[[SLICE]] box [128, 64] : memref<2x256x512xbf16> -> !llvm.ptr
// CHECK: moe_gpu.workspace_bytes @ws for %[[M]]
// CHECK: moe_gpu.multiprocessor_count on %{{.+}}
moe_gpu.workspace_layout @ws {buffers = [affine_map<()[s0] -> (s0 * 512)>, affine_map<()[s0] -> (4)>], names = ["sums", "errors"], invalid_id_counters = array<i64: 1>}
func.func @host(%w: memref<8x256x512xbf16>, %m: index, %workspace: memref<?xi8>, %stream: !moe_gpu.stream) -> (i64, index) {
  %sums = moe_gpu.workspace_buffer @ws[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?x128xf32>
  moe_gpu.zero %sums on %stream : memref<?x128xf32>
  %errors = moe_gpu.workspace_buffer @ws[1] in %workspace for %m : memref<?xi8> -> memref<1xi32>
  %count = moe_gpu.read_count %errors on %stream : memref<1xi32>
  %shared = moe_gpu.leading_slice %w[6] : memref<8x256x512xbf16> to memref<2x256x512xbf16>
  %map = moe_gpu.tensor_map %shared box [128, 64] : memref<2x256x512xbf16> -> !llvm.ptr
  %bytes = moe_gpu.workspace_bytes @ws for %m
  %sms = moe_gpu.multiprocessor_count on %stream
  %total = arith.addi %bytes, %sms : index
  return %count, %total : i64, index
}

// -----

// A TMA descriptor of rows sized per call (a workspace buffer's leading
// dimension).
// CHECK-LABEL: func @tensor_map_rows
// CHECK: moe_gpu.tensor_map %{{.+}} box [128, 64] : memref<?x256xbf16> -> !llvm.ptr
func.func @tensor_map_rows(%rows: memref<?x256xbf16>) -> !llvm.ptr {
  %map = moe_gpu.tensor_map %rows box [128, 64] : memref<?x256xbf16> -> !llvm.ptr
  return %map : !llvm.ptr
}

// -----

// The collectives of an expert-parallel group: the rank, an all-gather and a
// reduce-scatter on a stream.
// CHECK-LABEL: func @collectives
// CHECK-SAME: (%[[GROUP:.+]]: !moe_gpu.group, %[[STREAM:.+]]: !moe_gpu.stream
// CHECK: moe_gpu.store_group_rank %[[GROUP]] into %{{.+}} on %[[STREAM]] {ranks = 4 : i64} : memref<1xi32>
// CHECK: moe_gpu.all_gather %{{.+}} into %{{.+}} over %[[GROUP]] on %[[STREAM]] {ranks = 4 : i64} : memref<?x8xi32>, memref<?x8xi32>
// CHECK: moe_gpu.all_gather %{{.+}} into %{{.+}} over %[[GROUP]] on %[[STREAM]] {ranks = 4 : i64} : memref<2x8xi32>, memref<8x8xi32>
// CHECK: moe_gpu.reduce_scatter %{{.+}} into %{{.+}} over %[[GROUP]] on %[[STREAM]] {ranks = 4 : i64} : memref<?x64xf32>, memref<?x64xf32>
func.func @collectives(%group: !moe_gpu.group, %stream: !moe_gpu.stream,
                       %rank: memref<1xi32>, %ids: memref<?x8xi32>,
                       %all_ids: memref<?x8xi32>, %two: memref<2x8xi32>,
                       %eight: memref<8x8xi32>, %partial: memref<?x64xf32>,
                       %sums: memref<?x64xf32>) {
  moe_gpu.store_group_rank %group into %rank on %stream {ranks = 4 : i64} : memref<1xi32>
  moe_gpu.all_gather %ids into %all_ids over %group on %stream {ranks = 4 : i64} : memref<?x8xi32>, memref<?x8xi32>
  moe_gpu.all_gather %two into %eight over %group on %stream {ranks = 4 : i64} : memref<2x8xi32>, memref<8x8xi32>
  moe_gpu.reduce_scatter %partial into %sums over %group on %stream {ranks = 4 : i64} : memref<?x64xf32>, memref<?x64xf32>
  return
}
