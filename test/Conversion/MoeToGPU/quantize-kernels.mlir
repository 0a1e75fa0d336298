// The moe.quantize kernels: a lane converts 8 adjacent columns per 16-byte
// load, the loads of up to 2048 columns of a row are issued before their
// values are used, and 8 codes go out in one 8-byte store. How they are
// launched is checked in emit-gpu-kernels.mlir.
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels -canonicalize -cse | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-emit-gpu-kernels 2>/dev/null | moe-opt -split-input-file --moe-gpu-kernels-to-binary="format=isa" | sed -e 's/\\0A/\n/g' | FileCheck %s --check-prefix=PTX

// Block scales over 384 columns: a whole span (256 columns, two blocks of
// 16 lanes each) and a half span that only lanes 0-15 load and store. A
// block's amax is a butterfly over its 16 lanes (offsets 8 to 1, never
// 16), its first lane stores the scale at block 2 * span + lane / 16.
// CHECK-LABEL: func.func @block_half_span
// CHECK: gpu.func @quantize(%[[IN:.*]]: memref<?x384xbf16>, %[[CODES:.*]]: memref<?x384xi8>, %[[SCALES:.*]]: memref<?x3xf32>)
// CHECK-DAG: %[[TID:.*]] = gpu.thread_id x
// CHECK-DAG: %[[LANE:.*]] = arith.remui %[[TID]], %c32
// CHECK: %[[RAW:.*]] = llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-NEXT: %[[VEC:.*]] = arith.extf %[[RAW]] : vector<8xbf16> to vector<8xf32>
// CHECK-NEXT: %[[V0:.*]] = llvm.extractelement %[[VEC]][%c0_i32 : i32]
// CHECK-NEXT: %[[V1:.*]] = llvm.extractelement %[[VEC]][%c1_i32 : i32]
// CHECK-NEXT: %[[V2:.*]] = llvm.extractelement %[[VEC]][%c2_i32 : i32]
// CHECK-NEXT: %[[V3:.*]] = llvm.extractelement %[[VEC]][%c3_i32 : i32]
// CHECK: %[[HALF:.*]] = arith.cmpi ult, %[[LANE]], %c16
// CHECK: scf.if %[[HALF]] -> (vector<8xf32>) {
// CHECK:   llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: } else {
// CHECK:   scf.yield %{{.*}} : vector<8xf32>
// CHECK-NOT: gpu.shuffle xor %{{.*}}, %c16_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c8_i32, %c32_i32
// CHECK-NEXT: arith.maxnumf
// CHECK-NEXT: gpu.shuffle xor %{{.*}}, %c4_i32, %c32_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32
// CHECK: %[[BLOCK:.*]] = arith.divui %[[LANE]], %c16
// CHECK: memref.store %[[SCALE:.*]], %[[SCALES]][%{{.*}}, %[[BLOCK]]]
// Column c's code is byte c of the stored word: each pair's first value is
// the converter's second operand (its low byte), pair p shifted by 16·p.
// CHECK: %[[Q0:.*]] = arith.divf %[[V0]], %[[SCALE]]
// CHECK-NEXT: %[[Q1:.*]] = arith.divf %[[V1]], %[[SCALE]]
// CHECK-NEXT: %[[Q2:.*]] = arith.divf %[[V2]], %[[SCALE]]
// CHECK-NEXT: %[[Q3:.*]] = arith.divf %[[V3]], %[[SCALE]]
// CHECK: %[[P0:.*]] = nvvm.convert.f32x2.to.f8x2 %[[Q1]], %[[Q0]]
// CHECK-NEXT: %[[P1:.*]] = nvvm.convert.f32x2.to.f8x2 %[[Q3]], %[[Q2]]
// CHECK-NEXT: %[[P2:.*]] = nvvm.convert.f32x2.to.f8x2
// CHECK-NEXT: %[[P3:.*]] = nvvm.convert.f32x2.to.f8x2
// CHECK-NEXT: %[[W0:.*]] = arith.extui %[[P0]] : i16 to i64
// CHECK-NEXT: %[[W1:.*]] = arith.extui %[[P1]] : i16 to i64
// CHECK-NEXT: %[[S1:.*]] = arith.shli %[[W1]], %c16_i64
// CHECK-NEXT: %[[O1:.*]] = arith.ori %[[W0]], %[[S1]]
// CHECK-NEXT: %[[W2:.*]] = arith.extui %[[P2]] : i16 to i64
// CHECK-NEXT: %[[S2:.*]] = arith.shli %[[W2]], %c32_i64
// CHECK-NEXT: %[[O2:.*]] = arith.ori %[[O1]], %[[S2]]
// CHECK-NEXT: %[[W3:.*]] = arith.extui %[[P3]] : i16 to i64
// CHECK-NEXT: %[[S3:.*]] = arith.shli %[[W3]], %c48_i64
// CHECK-NEXT: %[[WORD:.*]] = arith.ori %[[O2]], %[[S3]]
// CHECK: llvm.store %[[WORD]], %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// The half span: its one block's scale and its codes, lanes 0-15 only.
// CHECK-NOT: gpu.shuffle xor %{{.*}}, %c16_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32
// CHECK: %[[HALF_BLOCK:.*]] = arith.addi %[[BLOCK]], %c2
// CHECK: %[[STORES:.*]] = arith.andi %{{.*}}, %[[HALF]]
// CHECK: scf.if %[[STORES]] {
// CHECK-NEXT: memref.store %{{.*}}, %[[SCALES]][%{{.*}}, %[[HALF_BLOCK]]]
// CHECK: scf.if %[[HALF]] {
// CHECK: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK: gpu.return
// PTX: .entry quantize(
// PTX-NOT: ld.global.b16
// PTX: ld.global.v4.b32
// PTX: shfl.sync.bfly.b32 {{.*}}, 8, 31, -1;
// PTX: st.global.b64
// PTX: ret;
func.func @block_half_span(%x: tensor<?x384xbf16>) -> (tensor<?x384xf8E4M3FN>, tensor<?x3xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = block>}
      : tensor<?x384xbf16> -> tensor<?x384xf8E4M3FN>, tensor<?x3xf32>
  return %c, %s : tensor<?x384xf8E4M3FN>, tensor<?x3xf32>
}

// -----

// Per token, f32 rows of 768 columns: one chunk, so the three spans' loads
// come before anything else, the row's amax is a butterfly over the warp
// (offsets 16 to 1), lane 0 stores the scale, and the values held in
// registers become codes (int8: round, clamp, convert) without being read
// again.
// CHECK-LABEL: func.func @per_token_one_chunk
// CHECK: gpu.func @quantize(%{{.*}}: memref<?x768xf32>, %{{.*}}: memref<?x768xi8>, %[[SCALES:.*]]: memref<?xf32>)
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xf32>
// CHECK-NOT: llvm.store
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xf32>
// CHECK-NOT: llvm.store
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xf32>
// CHECK-NOT: llvm.load
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32, %c32_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32
// CHECK: memref.store %{{.*}}, %[[SCALES]][%{{.*}}] : memref<?xf32>
// CHECK-NOT: llvm.load
// CHECK: math.roundeven
// CHECK: arith.fptosi %{{.*}} : f32 to i8
// CHECK: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK-NOT: llvm.load
// CHECK: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK-NOT: llvm.load
// CHECK: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK-NOT: llvm.store
// CHECK: gpu.return
// PTX: .entry quantize(
// PTX-COUNT-6: ld.global.v4.b32
// PTX-NOT: st.global
// PTX: shfl.sync.bfly.b32 {{.*}}, 16, 31, -1;
// PTX: st.global.b64
func.func @per_token_one_chunk(%x: tensor<?x768xf32>) -> (tensor<?x768xi8>, tensor<?xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<int8, scales = per_token_channel>}
      : tensor<?x768xf32> -> tensor<?x768xi8>, tensor<?xf32>
  return %c, %s : tensor<?x768xi8>, tensor<?xf32>
}

// -----

// Per token over 4096 columns, two chunks of 8 spans: a loop of chunks
// carries the lane's amax (8 loads per iteration, no store), then a second
// loop reads each chunk again and stores its codes.
// CHECK-LABEL: func.func @per_token_two_chunks
// CHECK: gpu.func @quantize(
// CHECK: %[[AMAX:.*]] = scf.for %{{.*}} = %c0 to %c16 step %c8 iter_args(%{{.*}} = %{{.*}}) -> (f32) {
// CHECK-COUNT-8: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-NOT: llvm.store
// CHECK: scf.yield
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32, %c32_i32
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c8 {
// CHECK-COUNT-8: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-NOT: llvm.load
// CHECK-COUNT-8: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK-NOT: llvm.store
// CHECK: gpu.return
func.func @per_token_two_chunks(%x: tensor<?x4096xbf16>) -> (tensor<?x4096xf8E4M3FN>, tensor<?xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_token_channel>}
      : tensor<?x4096xbf16> -> tensor<?x4096xf8E4M3FN>, tensor<?xf32>
  return %c, %s : tensor<?x4096xf8E4M3FN>, tensor<?xf32>
}

// -----

// Per tensor over 2304 columns (one chunk of 8 spans, then a tail of one):
// the amax kernel's warps reduce their rows' loads into one atomic max of
// the f32 bits; the quantization kernel stores codes with the one scale.
// CHECK-LABEL: func.func @per_tensor
// CHECK: gpu.func @quantize(%{{.*}}: memref<?x2304xbf16>, %{{.*}}: memref<?x2304xi8>, %{{.*}}: memref<1xf32>, %[[WORD:.*]]: memref<1xi32>)
// CHECK: memref.load %[[WORD]]
// CHECK: %[[LANE_COLUMN:.*]] = arith.muli %{{.*}}, %c8 : index
// CHECK-COUNT-8: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK-COUNT-8: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// The tail's span starts at column 2048.
// CHECK: arith.addi %[[LANE_COLUMN]], %c2048 : index
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: llvm.store %{{.*}} {alignment = 8 : i64} : i64, !llvm.ptr<1>
// CHECK-NOT: llvm.store
// CHECK: gpu.return
// CHECK: gpu.func @quantize_amax(%{{.*}}: memref<?x2304xbf16>, %[[AWORD:.*]]: memref<1xi32>)
// CHECK: scf.for
// CHECK-COUNT-9: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: scf.yield
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32, %c32_i32
// CHECK: memref.atomic_rmw maxs %{{.*}}, %[[AWORD]]
// PTX: .entry quantize_amax(
// PTX-NOT: ld.global.b16
// PTX: ld.global.v4.b32
// PTX: atom.global.max.s32
func.func @per_tensor(%x: tensor<?x2304xbf16>) -> (tensor<?x2304xf8E4M3FN>, tensor<1xf32>) {
  %c, %s = moe.quantize %x {quantization = #moe.quant<fp8, scales = per_tensor>}
      : tensor<?x2304xbf16> -> tensor<?x2304xf8E4M3FN>, tensor<1xf32>
  return %c, %s : tensor<?x2304xf8E4M3FN>, tensor<1xf32>
}
