// RUN: moe-opt %s --convert-moe-gpu-host-to-emitc | FileCheck %s
// RUN: moe-opt %s --convert-moe-gpu-host-to-emitc | mlir-translate --mlir-to-cpp | FileCheck %s --check-prefix=CPP

// The program: the object's bytes, the launched kernels' names in order of
// first launch, and the moe_rt_program over both.
// CHECK: emitc.include "moe/Runtime/Runtime.h"
// CHECK: emitc.global static const @kImage : !emitc.array<4xui8> = dense<[1, 2, 3, 4]>
// CHECK: emitc.global static @kKernelNames : !emitc.array<2x!emitc.ptr<!emitc.opaque<"const char">>> = #emitc.opaque<"{\22zero_then_sum\22, \22finalize\22, }">
// CHECK: emitc.global static @kProgram : !emitc.opaque<"moe_rt_program"> = #emitc.opaque<"{kImage, sizeof(kImage), kKernelNames, 2}">

// CPP-LABEL: extern "C" int32_t moe_layer_t(const void* v1, const void* v2, void* v3, int64_t v4, void* v5, size_t v6, CUstream v7) {
// The call opens a launcher over the program and checks its arguments:
// tensors non-null and 16-byte aligned (the kernels' row loads and TMA).
// CPP: moe_rt_launcher_begin(
// CPP: moe_rt_launcher_require_tokens({{v[0-9]+}}, v4, "moe_layer_t: the token count is out of range");
// CPP: moe_rt_launcher_require_tensor({{v[0-9]+}}, v1, "moe_layer_t: a null tensor pointer, or one not 16-byte aligned");
// CPP: = moe_rt_memref_2d(v1, {{v[0-9]+}}, v4, {{v[0-9]+}});
// CPP: moe_rt_launcher_require_tensor({{v[0-9]+}}, v2,
// CPP: [[W:v[0-9]+]] = moe_rt_memref_3d(v2,
// CPP: moe_rt_launcher_require_tensor({{v[0-9]+}}, v3,
// The workspace must hold the whole layout: 512·M rounded up to 256, then 4
// bytes rounded up to 256.
// CPP: moe_rt_launcher_require_workspace({{v[0-9]+}}, v5, v6, [[BYTES:v[0-9]+]], "moe_layer_t: the workspace is missing, too small or not 128-byte aligned");
// CPP: moe_rt_launcher_finish_if_empty({{v[0-9]+}}, v4);
// Buffer 1 starts after buffer 0, rounded up to 256 bytes.
// CPP: void* [[AT:v[0-9]+]] = moe_rt_memref_at({{v[0-9]+}}, {{v[0-9]+}});
// CPP: moe_rt_memref [[SUMS:v[0-9]+]] = moe_rt_memref_2d([[AT]], {{v[0-9]+}}, v4, {{v[0-9]+}});
// A branch on the token count is a C if.
// CPP: bool [[MANY:v[0-9]+]] = v4 > {{v[0-9]+}};
// CPP-NEXT: if ([[MANY]]) {
// CPP-NEXT: moe_rt_launcher_zero({{v[0-9]+}}, [[SUMS]]);
// CPP-NEXT: }
// A descriptor of rows sized per call: the leading dimension read from the
// memref at run time, times the rows of the others (1 here).
// CPP: int64_t [[LEADING:v[0-9]+]] = moe_rt_memref_size({{v[0-9]+}}, {{v[0-9]+}});
// CPP-NEXT: int64_t [[INPUT_ROWS:v[0-9]+]] = [[LEADING]] * {{v[0-9]+}};
// CPP-NEXT: int64_t [[INPUT_COLS:v[0-9]+]] = 128;
// CPP: moe_rt_launcher_encode_tma_2d({{v[0-9]+}}, {{v[0-9]+}}, {{v[0-9]+}}, [[INPUT_ROWS]], [[INPUT_COLS]],
// A leading slice (experts 2..5) is a descriptor 2·128·128 bf16 = 65536
// bytes into the weights; the TMA descriptor views its 512 rows.
// CPP: int64_t [[SKIP:v[0-9]+]] = 65536;
// CPP-NEXT: void* [[FIRST:v[0-9]+]] = moe_rt_memref_at([[W]], [[SKIP]]);
// CPP: moe_rt_memref [[EXPERTS:v[0-9]+]] = moe_rt_memref_3d([[FIRST]], {{v[0-9]+}}, {{v[0-9]+}}, {{v[0-9]+}}, {{v[0-9]+}});
// CPP: = moe_rt_memref_at([[EXPERTS]],
// CPP: int64_t [[ROWS:v[0-9]+]] = 512;
// CPP: moe_rt_launcher_encode_tma_2d({{v[0-9]+}}, [[MAP:v[0-9]+]], {{v[0-9]+}}, [[ROWS]],
// A persistent grid: at most one block per SM of the launcher's device.
// CPP: int64_t [[SMS:v[0-9]+]] = moe_rt_launcher_multiprocessor_count([[LAUNCHER:v[0-9]+]]);
// CPP-NEXT: bool [[FEWER:v[0-9]+]] = v4 < [[SMS]];
// CPP-NEXT: int64_t [[BLOCKS:v[0-9]+]] = [[FEWER]] ? v4 : [[SMS]];
// The launch's arguments: exactly its three, the TMA descriptor by address.
// CPP: moe_rt_kernel_arg [[ARGS:v[0-9]+]][3];
// CPP: = moe_rt_memref_arg(
// CPP: = moe_rt_tensor_map_arg([[MAP]]);
// CPP: = moe_rt_memref_arg([[SUMS]]);
// CPP: moe_rt_launcher_launch([[LAUNCHER]], {{v[0-9]+}}, [[BLOCKS]], {{v[0-9]+}}, {{v[0-9]+}}, {{v[0-9]+}}, {{v[0-9]+}}, [[ARGS]], {{v[0-9]+}});
// A launch marked by moe-gpu-dependent-launch is a programmatic dependent.
// CPP: moe_rt_kernel_arg {{v[0-9]+}}[2];
// CPP: moe_rt_launcher_launch_dependent(
// CPP: = moe_rt_launcher_end(
// CPP-LABEL: extern "C" size_t moe_layer_t_workspace_bytes(int64_t
// CPP-LABEL: extern "C" int32_t moe_layer_t_invalid_ids(void* v1, size_t v2, int64_t v3, CUstream v4, int64_t* v5) {
// CPP: moe_rt_launcher_require_pointer({{v[0-9]+}}, v5, "moe_layer_t_invalid_ids: a null result pointer");
// The counter, buffer 1, starts after buffer 0's 512·M bytes (already a
// multiple of 256).
// CPP: int64_t [[ROW:v[0-9]+]] = 512;
// CPP-NEXT: int64_t [[OFFSET:v[0-9]+]] = v3 * [[ROW]];
// CPP-NEXT: void* {{v[0-9]+}} = moe_rt_memref_at({{v[0-9]+}}, [[OFFSET]]);
// CPP: moe_rt_launcher_add_counter({{v[0-9]+}}, {{v[0-9]+}}, [[COUNT:v[0-9]+]]);
// CPP: moe_rt_launcher_store_i64({{v[0-9]+}}, v5, {{v[0-9]+}});
// CPP: = moe_rt_launcher_end(

module attributes {gpu.container_module} {
  moe_gpu.workspace_layout @moe_layer_t_workspace {buffers = [affine_map<()[s0] -> (s0 * 512)>, affine_map<()[s0] -> (4)>], names = ["sums", "counter"], invalid_id_counters = array<i64: 1>}
  func.func @moe_layer_t(%x: memref<?x128xbf16>, %w: memref<8x128x128xbf16>, %out: memref<?x128xbf16> {moe_gpu.result}, %m: index, %workspace: memref<?xi8> {moe_gpu.workspace}, %stream: !moe_gpu.stream) attributes {moe_gpu.workspace_layout = @moe_layer_t_workspace} {
    %c1 = arith.constant 1 : index
    %c128 = arith.constant 128 : index
    %c0 = arith.constant 0 : i32
    %sums = moe_gpu.workspace_buffer @moe_layer_t_workspace[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?x128xf32>
    %many = arith.cmpi sgt, %m, %c128 : index
    scf.if %many {
      moe_gpu.zero %sums on %stream : memref<?x128xf32>
    }
    %rows = moe_gpu.tensor_map %x box [128, 64] : memref<?x128xbf16> -> !llvm.ptr
    %experts = moe_gpu.leading_slice %w[2] : memref<8x128x128xbf16> to memref<4x128x128xbf16>
    %map = moe_gpu.tensor_map %experts box [128, 64] : memref<4x128x128xbf16> -> !llvm.ptr
    %sms = moe_gpu.multiprocessor_count on %stream
    %blocks = arith.minsi %m, %sms : index
    gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@zero_then_sum blocks in (%blocks, %c1, %c1) threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c0 args(%x : memref<?x128xbf16>, %map : !llvm.ptr, %sums : memref<?x128xf32>)
    gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@finalize blocks in (%m, %c1, %c1) threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c0 args(%sums : memref<?x128xf32>, %out : memref<?x128xbf16>) {moe_gpu.dependent_launch}
    return
  }
  func.func @moe_layer_t_workspace_bytes(%m: index) -> index {
    %bytes = moe_gpu.workspace_bytes @moe_layer_t_workspace for %m
    return %bytes : index
  }
  func.func @moe_layer_t_invalid_ids(%workspace: memref<?xi8> {moe_gpu.workspace}, %m: index, %stream: !moe_gpu.stream) -> i64 attributes {moe_gpu.workspace_layout = @moe_layer_t_workspace} {
    %counter = moe_gpu.workspace_buffer @moe_layer_t_workspace[1] in %workspace for %m : memref<?xi8> -> memref<1xi32>
    %count = moe_gpu.read_count %counter on %stream : memref<1xi32>
    return %count : i64
  }
  gpu.binary @moe_kernels [#gpu.object<#nvvm.target<chip = "sm_90a">, bin = "\01\02\03\04">]
}
