// Every quantization kernel of the fp8 example
// layers reads its rows by 16-byte loads (no 2-byte ones) and writes 8
// codes per store; ptxas assembles them without spills. Covered: DeepSeek's
// block scales at prefill (7168 input columns: 3 chunks and a tail of 4
// spans; the 2048-column intermediate in one chunk), Qwen3's per-token
// scales at decode (768 intermediate columns in registers) and Mixtral's
// per-tensor scales with their amax kernels (14336 intermediate columns:
// 7 chunks).
// REQUIRES: ptxas
// RUN: rm -rf %t && mkdir -p %t
// RUN: moe-compile %moe_src_root/examples/quantized/deepseek_v3_fp8_block.mlir -o %t --name blocks --num-tokens 4096 --ptx %t/blocks.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/qwen3_30b_a3b_fp8_channel.mlir -o %t --name tokens --num-tokens 1 --ptx %t/tokens.ptx
// RUN: moe-compile %moe_src_root/examples/quantized/mixtral_8x7b_fp8_tensor.mlir -o %t --name tensor --num-tokens 256 --ptx %t/tensor.ptx
// RUN: FileCheck %s < %t/blocks.ptx
// RUN: FileCheck %s < %t/tokens.ptx
// RUN: FileCheck %s < %t/tensor.ptx
// RUN: FileCheck %s --check-prefix=AMAX < %t/tensor.ptx
// RUN: ptxas -arch=sm_90a -v %t/blocks.ptx -o /dev/null > %t/blocks.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/tokens.ptx -o /dev/null > %t/tokens.log 2>&1
// RUN: ptxas -arch=sm_90a -v %t/tensor.ptx -o /dev/null > %t/tensor.log 2>&1
// RUN: not grep -q "[1-9][0-9]* bytes spill" %t/blocks.log %t/tokens.log %t/tensor.log

// CHECK: .entry quantize(
// CHECK-NOT: ld.global.b16
// CHECK: ld.global.v4.b32
// CHECK-NOT: ld.global.b16
// CHECK: st.global.b64
// CHECK-NOT: ld.global.b16
// CHECK: ret;

// The amax passes of the per-tensor input and intermediate.
// AMAX: .entry quantize_amax(
// AMAX-NOT: ld.global.b16
// AMAX: ld.global.v4.b32
// AMAX: atom.global.max.s32
// AMAX: .entry quantize_amax_0(
// AMAX-NOT: ld.global.b16
// AMAX: ld.global.v4.b32
// AMAX: atom.global.max.s32

// The intermediate's quantization.
// CHECK: .entry quantize_0(
// CHECK-NOT: ld.global.b16
// CHECK: ld.global.v4.b32
// CHECK-NOT: ld.global.b16
// CHECK: st.global.b64
// CHECK-NOT: ld.global.b16
// CHECK: ret;
