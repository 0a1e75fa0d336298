// RUN: moe-opt %s --moe-gpu-dependent-launch | FileCheck %s

// Every kernel waits for the kernels before it first thing, then lets the
// next be scheduled.
// CHECK-LABEL: gpu.module @moe_kernels
// CHECK: gpu.func @produce({{.*}}) kernel attributes {moe_gpu.dependent_launch}
// CHECK-NEXT: nvvm.griddepcontrol wait
// CHECK-NEXT: nvvm.griddepcontrol launch_dependents
// CHECK-NEXT: arith.constant
// CHECK: gpu.func @consume({{.*}}) kernel attributes {moe_gpu.dependent_launch}
// CHECK-NEXT: nvvm.griddepcontrol wait
// CHECK-NEXT: nvvm.griddepcontrol launch_dependents
// A device function is not launched: left alone.
// CHECK: gpu.func @helper() {
// CHECK-NEXT: gpu.return

// The zeroing of buffer 1 moves, with its buffer, above the launch that
// does not use it (the constants stay first), so that the kernels follow
// one another; the zeroing of buffer 0 stays below the launch that reads
// buffer 0.
// CHECK-LABEL: func.func @moe_layer_t
// CHECK-NEXT: arith.constant
// CHECK-NEXT: %[[B1:.*]] = moe_gpu.workspace_buffer @moe_layer_t_workspace[1]
// CHECK-NEXT: moe_gpu.zero %[[B1]]
// CHECK-NEXT: %[[B0:.*]] = moe_gpu.workspace_buffer @moe_layer_t_workspace[0]
// CHECK-NEXT: gpu.launch_func <{{.*}}> @moe_kernels::@produce {{.*}} args(%[[B0]] : memref<?xf32>) {moe_gpu.dependent_launch}
// CHECK-NEXT: gpu.launch_func <{{.*}}> @moe_kernels::@consume {{.*}} args(%[[B0]] : memref<?xf32>, %[[B1]] : memref<?xf32>) {moe_gpu.dependent_launch}
// CHECK-NEXT: moe_gpu.zero %[[B0]]
// CHECK-NEXT: return
// A zeroing passes a branch whose launches do not use its buffer, and
// stops below one whose launch does.
// CHECK-LABEL: func.func @branches
// CHECK: %[[B:.*]] = moe_gpu.workspace_buffer @moe_layer_t_workspace[1]
// CHECK-NEXT: scf.if
// CHECK-NEXT: @moe_kernels::@produce {{.*}} args(%[[B]] : memref<?xf32>) {moe_gpu.dependent_launch}
// CHECK-NEXT: }
// CHECK-NEXT: moe_gpu.zero %[[B]]
// CHECK-NEXT: scf.if
// CHECK-NEXT: @moe_kernels::@produce {{.*}} {moe_gpu.dependent_launch}
// CHECK-NEXT: }
// CHECK-NEXT: return
// A zeroing never passes a launch that takes the whole workspace.
// CHECK-LABEL: func.func @whole_workspace
// CHECK: gpu.launch_func
// CHECK-NEXT: moe_gpu.workspace_buffer
// CHECK-NEXT: moe_gpu.zero
module attributes {gpu.container_module} {
  moe_gpu.workspace_layout @moe_layer_t_workspace {buffers = [affine_map<()[s0] -> (s0 * 4)>, affine_map<()[s0] -> (s0 * 4)>], names = ["a", "b"], invalid_id_counters = array<i64>}
  gpu.module @moe_kernels {
    gpu.func @produce(%a: memref<?xf32>) kernel {
      %c0 = arith.constant 0 : index
      %one = arith.constant 1.0 : f32
      memref.store %one, %a[%c0] : memref<?xf32>
      gpu.return
    }
    gpu.func @consume(%a: memref<?xf32>, %b: memref<?xf32>) kernel {
      gpu.return
    }
    gpu.func @helper() {
      gpu.return
    }
    gpu.func @touch(%w: memref<?xi8>) kernel {
      gpu.return
    }
  }
  func.func @moe_layer_t(%m: index, %workspace: memref<?xi8> {moe_gpu.workspace}, %stream: !moe_gpu.stream) attributes {moe_gpu.workspace_layout = @moe_layer_t_workspace} {
    %c1 = arith.constant 1 : index
    %a = moe_gpu.workspace_buffer @moe_layer_t_workspace[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
    gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@produce blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<?xf32>)
    %b = moe_gpu.workspace_buffer @moe_layer_t_workspace[1] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
    moe_gpu.zero %b on %stream : memref<?xf32>
    gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@consume blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<?xf32>, %b : memref<?xf32>)
    moe_gpu.zero %a on %stream : memref<?xf32>
    return
  }
  func.func @branches(%m: index, %flag: i1, %workspace: memref<?xi8> {moe_gpu.workspace}, %stream: !moe_gpu.stream) attributes {moe_gpu.workspace_layout = @moe_layer_t_workspace} {
    %c1 = arith.constant 1 : index
    %a = moe_gpu.workspace_buffer @moe_layer_t_workspace[0] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
    %b = moe_gpu.workspace_buffer @moe_layer_t_workspace[1] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
    scf.if %flag {
      gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@produce blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%b : memref<?xf32>)
    }
    scf.if %flag {
      gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@produce blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%a : memref<?xf32>)
    }
    moe_gpu.zero %b on %stream : memref<?xf32>
    return
  }
  func.func @whole_workspace(%m: index, %workspace: memref<?xi8> {moe_gpu.workspace}, %stream: !moe_gpu.stream) attributes {moe_gpu.workspace_layout = @moe_layer_t_workspace} {
    %c1 = arith.constant 1 : index
    gpu.launch_func <%stream : !moe_gpu.stream> @moe_kernels::@touch blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%workspace : memref<?xi8>)
    %b = moe_gpu.workspace_buffer @moe_layer_t_workspace[1] in %workspace for %m sizes(%m) : memref<?xi8> -> memref<?xf32>
    moe_gpu.zero %b on %stream : memref<?xf32>
    return
  }
}
