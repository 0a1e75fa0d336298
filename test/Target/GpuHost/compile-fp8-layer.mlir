// moe-compile of a w8a8 (fp8, 128x128 block scales) expert block: the
// activation quantization runs before GEMM1 (gathered by token) and between
// the GEMMs (rows bounded by the blocks that can hold an assignment), the
// weights' TMA descriptors have 1-byte elements and 128-element boxes, and
// the scales follow the descriptor among the kernel parameters; the source
// compiles and the PTX has the e4m3 wgmma.
// REQUIRES: ptxas
// RUN: rm -rf %t && moe-compile %s -o %t --name fp8_block --num-tokens 64 --ptx %t/fp8_block.ptx --kernels %t/host.mlir
// RUN: FileCheck %s --check-prefix=HOST < %t/host.mlir
// RUN: FileCheck %s --check-prefix=SOURCE < %t/fp8_block.cpp
// RUN: FileCheck %s --check-prefix=PTX < %t/fp8_block.ptx
// RUN: c++ -std=c++17 -fsyntax-only -Wall -Werror -I %t -I %moe_src_root/runtime/include -I %cuda_include %t/fp8_block.cpp

// SOURCE: static const char* kKernelNames[8] = {"align_count", "align_scatter", "align", "quantize", "expert_matmul", "quantize_0", "expert_matmul_0", "combine_finalize", };

// Per-token fp8 codes of the input: one warp per row, 4 rows per block.
// HOST-LABEL: func.func @moe_layer_fp8_block(
// HOST-SAME: %[[X:[a-z0-9]+]]: memref<?x256xbf16>, %{{.+}}: memref<?x2xi32>, %{{.+}}: memref<?x2xf32>, %[[W13:[a-z0-9]+]]: memref<8x256x256xi8>, %[[S13:[a-z0-9]+]]: memref<8x2x2xf32>, %[[W2:[a-z0-9]+]]: memref<8x256x128xi8>
// HOST: %[[CODES:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x256xi8>
// HOST-NEXT: %[[SCALES:.+]] = moe_gpu.workspace_buffer {{.*}} -> memref<?x2xf32>
// HOST-NEXT: %[[ROWS:.+]] = arith.addi %{{.+}}, %c3 : index
// HOST-NEXT: %[[ROWBLOCKS:.+]] = arith.divsi %[[ROWS]], %c4 : index
// HOST-NEXT: gpu.launch_func <%{{.+}} : !moe_gpu.stream> @moe_kernels::@quantize blocks in (%[[ROWBLOCKS]], %c1, %c1) threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c0_i32 args(%[[X]] : memref<?x256xbf16>, %[[CODES]] : memref<?x256xi8>, %[[SCALES]] : memref<?x2xf32>)
// The e4m3 weights by TMA in 128-byte (128-code) rows.
// HOST: %[[MAP1:.+]] = moe_gpu.tensor_map %[[W13]] box [64, 128] : memref<8x256x256xi8> -> !llvm.ptr
// HOST: arith.addi
// HOST-NEXT: %[[GRID:.+]] = arith.minsi %{{.+}}, %{{.+}} : index
// HOST-NEXT: gpu.launch_func {{.*}} @moe_kernels::@expert_matmul blocks in (%[[GRID]], {{.*}} args(%[[CODES]] : memref<?x256xi8>, {{.*}}, %[[MAP1]] : !llvm.ptr, %[[SCALES]] : memref<?x2xf32>, %[[S13]] : memref<8x2x2xf32>, %{{.+}} : memref<?x128xbf16>)
// The intermediate's codes: only the rows of the launched slot blocks.
// HOST: %[[LAUNCHED:.+]] = arith.muli %[[GRID]], %c64 : index
// HOST-NEXT: %[[ROWS2:.+]] = arith.addi %[[LAUNCHED]], %c3 : index
// HOST-NEXT: %[[ROWBLOCKS2:.+]] = arith.divsi %[[ROWS2]], %c4 : index
// HOST-NEXT: gpu.launch_func {{.*}} @moe_kernels::@quantize_0 blocks in (%[[ROWBLOCKS2]], %c1, %c1)
// HOST: moe_gpu.tensor_map %[[W2]] box [128, 128] : memref<8x256x128xi8> -> !llvm.ptr

// PTX: .entry quantize(
// PTX: cvt.rn.satfinite.e4m3x2.f32
// PTX: .entry expert_matmul(
// PTX: wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3

func.func @fp8_block(%x: tensor<?x256xbf16>, %ids: tensor<?x2xi32>, %weights: tensor<?x2xf32>, %w13: tensor<8x256x256xf8E4M3FN>, %w13_scales: tensor<8x2x2xf32>, %w2: tensor<8x256x128xf8E4M3FN>, %w2_scales: tensor<8x2x1xf32>) -> tensor<?x256xbf16> {
  %rows, %offsets, %source = moe.permute %x, %ids : tensor<?x256xbf16>, tensor<?x2xi32> -> tensor<?x256xbf16>, tensor<9xi32>, tensor<?xi32>
  %codes, %scales = moe.quantize %rows {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xbf16> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %gate_up = moe.grouped_matmul %codes, %w13, %offsets input_scales(%scales : tensor<?x2xf32>) weight_scales(%w13_scales : tensor<8x2x2xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x256xf8E4M3FN>, tensor<8x256x256xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %act = moe.activation silu_and_mul %gate_up : tensor<?x256xf32> -> tensor<?x128xbf16>
  %act_codes, %act_scales = moe.quantize %act {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xbf16> -> tensor<?x128xf8E4M3FN>, tensor<?x1xf32>
  %down = moe.grouped_matmul %act_codes, %w2, %offsets input_scales(%act_scales : tensor<?x1xf32>) weight_scales(%w2_scales : tensor<8x2x1xf32>) {quantization = #moe.quant<fp8, scales = block>} : tensor<?x128xf8E4M3FN>, tensor<8x256x128xf8E4M3FN>, tensor<9xi32> -> tensor<?x256xf32>
  %expert_out = moe.unpermute %down, %source : tensor<?x256xf32>, tensor<?xi32> -> tensor<?x2x256xf32>
  %out = moe.combine %expert_out, %weights : tensor<?x2x256xf32>, tensor<?x2xf32> -> tensor<?x256xbf16>
  return %out : tensor<?x256xbf16>
}

// q expert block: E=8, k=2, H=256, I=128, softmax routing, silu_and_mul, int4_g32_zp weights.
