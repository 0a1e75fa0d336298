// RUN: moe-opt %s -convert-moe-to-linalg | FileCheck %s

// The exchange ops become calls of the group's hooks on buffers: the
// operands read-only, the results fresh buffers of R·M·k rows (here R = 2,
// k = 2), and the serving table [R, E, 2] of the placement, computed at
// compile time: expert 0 has replicas on ranks 0 (slot 0) and 1 (slot 3), so
// source 0 sends it to rank 0 slot 0 and source 1 to rank 1 slot 3; experts
// 3 and 5 likewise (rank 0 slot 3 / rank 1 slot 4, rank 0 slot 4 / rank 1
// slot 1); the others have one place.
// CHECK-DAG: func.func private @moe_ep_dispatch_bf16(memref<?x?xbf16, strided<[?, ?], offset: ?>>, memref<?x?xi32, strided<[?, ?], offset: ?>>, memref<?x?x?xi32, strided<[?, ?, ?], offset: ?>>, memref<?x?xbf16, strided<[?, ?], offset: ?>>, memref<?x?xi32, strided<[?, ?], offset: ?>>, memref<?xi32, strided<[?], offset: ?>>, i32) attributes {llvm.emit_c_interface}
// CHECK-DAG: func.func private @moe_ep_combine(memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xi32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, f32, i32) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func @exchange
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>, %[[Y:.*]]: tensor<?x64xbf16>)
// CHECK: %[[SERVING:.*]] = arith.constant dense<{{\[\[}}[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [0, 4], [1, 2]], {{\[\[}}1, 3], [0, 1], [0, 2], [1, 4], [1, 0], [1, 1], [1, 2]]]> : tensor<2x7x2xi32>
// CHECK: %[[M:.*]] = tensor.dim %[[X]], %c0
// CHECK: %[[S:.*]] = arith.muli %[[M]], %c4
// CHECK: %[[ROWS:.*]] = memref.alloc(%[[S]]) : memref<?x64xbf16>
// CHECK: %[[LOCAL:.*]] = memref.alloc(%[[S]]) : memref<?x1xi32>
// CHECK: %[[ORIGIN:.*]] = memref.alloc(%[[S]]) : memref<?xi32>
// CHECK: bufferization.to_buffer %[[X]] read_only
// CHECK: bufferization.to_buffer %[[IDS]] read_only
// CHECK: bufferization.to_buffer %[[SERVING]] read_only
// CHECK: %[[ALL_TO_ALL:.*]] = arith.constant 1 : i32
// CHECK: call @moe_ep_dispatch_bf16({{.*}}, %[[ALL_TO_ALL]])
// CHECK: %[[ORIGIN_T:.*]] = bufferization.to_tensor %[[ORIGIN]] restrict writable
// The combine works in f32: bf16 rows are converted first, the sum after.
// CHECK: %[[Y32:.*]] = linalg.generic {{.*}} ins(%[[Y]] : tensor<?x64xbf16>) outs(%{{.*}} : tensor<?x64xf32>)
// CHECK: %[[SUM:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// CHECK: bufferization.to_buffer %[[Y32]] read_only
// CHECK: bufferization.to_buffer %[[ORIGIN_T]] read_only
// CHECK: bufferization.to_buffer %[[W]] read_only
// CHECK: %[[SCALE:.*]] = arith.constant 2.500000e+00 : f32
// CHECK: %[[ALL_TO_ALL_TOO:.*]] = arith.constant 1 : i32
// CHECK: call @moe_ep_combine({{.*}}, %[[SCALE]], %[[ALL_TO_ALL_TOO]])
// CHECK: %[[SUM_T:.*]] = bufferization.to_tensor %[[SUM]] restrict writable
// CHECK: %[[OUT:.*]] = linalg.generic {{.*}} ins(%[[SUM_T]] : tensor<?x64xf32>) outs(%{{.*}} : tensor<?x64xbf16>)
// CHECK: return %[[OUT]]
func.func @exchange(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %y: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %rows, %local, %origin = moe.ep_dispatch all_to_all %x, %ids
      {placement = #moe.placement<ranks = 2, experts = 7, slots = [[0, 1, 2, 3, 5], [4, 5, 6, 0, 3]]>}
      : tensor<?x64xbf16>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?xi32>
  %out = moe.ep_combine all_to_all %y, %origin, %w {ranks = 2 : i64, routed_scaling_factor = 2.5 : f32}
      : tensor<?x64xbf16>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xbf16>
  return %out : tensor<?x64xbf16>
}
