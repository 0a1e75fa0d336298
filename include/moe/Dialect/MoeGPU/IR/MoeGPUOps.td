//===- MoeGPUOps.td - moe_gpu host types and ops -----------*- tablegen -*-===//
//
// The host side of a layer compiled for the GPU, as moe-gpu-outline-host
// writes it: the launches (upstream `gpu.launch_func`, checked against the
// kernels' signatures), the workspace layout and its buffers, the TMA
// descriptors and the zeroing, all on a stream. The host code is lowered
// from these ops (convert-moe-gpu-host-to-emitc), so the kernel signature,
// the grid, the workspace layout and the zeroing exist once, here.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_TD
#define MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_TD

include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.td"
include "mlir/Dialect/LLVMIR/LLVMTypes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/SymbolInterfaces.td"

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

def MoeGPU_StreamType : TypeDef<MoeGPU_Dialect, "Stream"> {
  let mnemonic = "stream";
  let summary = "the CUDA stream a host function enqueues its work on";
  let description = [{
    Work on a stream runs in order and asynchronously to the host; the
    generated code never waits for it, except to read a count back
    (`moe_gpu.read_count`).
  }];
}

def MoeGPU_GroupType : TypeDef<MoeGPU_Dialect, "Group"> {
  let mnemonic = "group";
  let summary = "the expert-parallel group a host function exchanges over";
  let description = [{
    The caller's communicator and its collectives (the runtime's
    `moe_rt_group`, e.g. over an NCCL communicator). A layer compiled for R
    ranks takes one; every rank calls it with the same token count, and the
    collectives are enqueued on the call's stream.
  }];
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

class MoeGPU_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoeGPU_Dialect, mnemonic, traits>;

def MoeGPU_WorkspaceLayoutOp : MoeGPU_Op<"workspace_layout", [Symbol]> {
  let summary = "the buffers a layer keeps in its caller's workspace";
  let description = [{
    The intermediates of a layer live in one workspace the caller provides.
    `buffers` gives the bytes of each buffer as an affine map of the token
    count (the map's one symbol); the buffers follow one another in that
    order, each starting on a 256-byte boundary. `names` says what each one
    holds. `invalid_id_counters` lists the buffers (one i32 each) in which
    `moe.align`'s kernels count the expert ids outside [-1, E).

    ```mlir
    moe_gpu.workspace_layout @moe_layer_block_workspace {
      buffers = [affine_map<()[s0] -> (s0 * 8 + 2016)>,
                 affine_map<()[s0] -> (4)>],
      names = ["moe.align sorted_ids", "invalid expert ids"],
      invalid_id_counters = array<i64: 1>}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       AffineMapArrayAttr:$buffers,
                       StrArrayAttr:$names,
                       DenseI64ArrayAttr:$invalid_id_counters);
  let assemblyFormat = "$sym_name attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The alignment of each buffer in the workspace, and of the workspace.
    static constexpr int64_t kBufferAlignment = 256;
  }];
}

def MoeGPU_WorkspaceBufferOp : MoeGPU_Op<"workspace_buffer", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "one buffer of a workspace layout, as a memref";
  let description = [{
    Views buffer `index` of `layout` in `workspace` for `num_tokens` tokens
    as a row-major memref; `sizes` are its dynamic dimensions. Its offset is
    the sum of the earlier buffers' bytes, each rounded up to 256.

    ```mlir
    %sorted = moe_gpu.workspace_buffer @ws[0] in %workspace for %num_tokens
        sizes(%slots) : memref<?xi8> -> memref<?xi32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$layout,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$index,
                       MemRefRankOf<[I8], [1]>:$workspace,
                       Index:$num_tokens,
                       Variadic<Index>:$sizes);
  let results = (outs AnyMemRef:$result);
  let assemblyFormat = [{
    $layout `[` $index `]` `in` $workspace `for` $num_tokens
    (`sizes` `(` $sizes^ `)`)? attr-dict `:` type($workspace) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def MoeGPU_WorkspaceBytesOp : MoeGPU_Op<"workspace_bytes", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "the bytes a workspace layout needs";
  let description = [{
    The size of the workspace `layout` needs for `num_tokens` tokens: the
    end of its last buffer, rounded up to 256.
  }];
  let arguments = (ins FlatSymbolRefAttr:$layout, Index:$num_tokens);
  let results = (outs Index:$bytes);
  let assemblyFormat = "$layout `for` $num_tokens attr-dict";
}

def MoeGPU_TensorMapOp : MoeGPU_Op<"tensor_map", [Pure]> {
  let summary = "a TMA descriptor of a weight or input tensor";
  let description = [{
    Encodes, on the host, the TMA descriptor of `source` viewed as a 2-D
    row-major [rows, cols] tensor (every dimension but the last folded into
    the rows), with a box of `box` = [box rows, box cols] elements and
    128-byte swizzle: a box row is one 128-byte swizzle span. Only the
    leading dimension may be dynamic (a workspace buffer sized by the call's
    token count); the rows are then counted at run time. Out-of-bounds
    reads fill zeros. The kernel receives the descriptor by value as a
    128-byte grid constant; in its signature it is a pointer, which is the
    type of the result.
  }];
  let arguments = (ins AnyMemRef:$source,
                       DenseI64ArrayAttr:$box);
  let results = (outs LLVM_AnyPointer:$descriptor);
  let assemblyFormat = [{
    $source `box` $box attr-dict `:` type($source) `->` type($descriptor)
  }];
  let hasVerifier = 1;
}

def MoeGPU_LeadingSliceOp : MoeGPU_Op<"leading_slice", [Pure]> {
  let summary = "a run of a buffer's outermost index, as a buffer of its own";
  let description = [{
    The entries `offset .. offset + n - 1` of `source`'s first dimension
    (`n` the result's first size), every other dimension whole: a contiguous
    row-major buffer that starts `offset` entries into `source`. It is how a
    layer hands a kernel some experts of its weights (the shared experts of
    a separate schedule, `tensor.extract_slice` before outlining).

    Example:
    ```mlir
    %shared = moe_gpu.leading_slice %w13[256]
        : memref<257x4096x7168xbf16> to memref<1x4096x7168xbf16>
    ```
  }];
  let arguments = (ins AnyStaticShapeMemRef:$source,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset);
  let results = (outs AnyStaticShapeMemRef:$result);
  let assemblyFormat = [{
    $source `[` $offset `]` attr-dict `:` type($source) `to` type($result)
  }];
  let hasVerifier = 1;
}

def MoeGPU_ZeroOp : MoeGPU_Op<"zero"> {
  let summary = "zeroes a buffer on a stream";
  let description = [{
    Sets every byte of `buffer` (row-major, contiguous) to zero, ordered on
    `stream` after the work already there.
  }];
  let arguments = (ins Arg<AnyMemRef, "", [MemWrite]>:$buffer,
                       MoeGPU_StreamType:$stream);
  let assemblyFormat = "$buffer `on` $stream attr-dict `:` type($buffer)";
  let hasVerifier = 1;
}

def MoeGPU_ReadCountOp : MoeGPU_Op<"read_count"> {
  let summary = "reads a device counter back to the host";
  let description = [{
    Waits for `stream`, then reads the one i32 of `counter`. Refused while
    the stream is being captured into a graph.
  }];
  let arguments = (ins Arg<MemRefOf<[I32]>, "", [MemRead]>:$counter,
                       MoeGPU_StreamType:$stream);
  let results = (outs I64:$count);
  let assemblyFormat = "$counter `on` $stream attr-dict `:` type($counter)";
  let hasVerifier = 1;
}

def MoeGPU_MultiprocessorCountOp : MoeGPU_Op<"multiprocessor_count"> {
  let summary = "the number of SMs of the stream's device";
  let description = [{
    The streaming multiprocessors of the device that runs `stream`'s work
    (the current context's device): a persistent kernel is launched on at
    most one block per SM.

    Example: `%sms = moe_gpu.multiprocessor_count on %stream`.
  }];
  let arguments = (ins MoeGPU_StreamType:$stream);
  let results = (outs Index:$count);
  let assemblyFormat = "`on` $stream attr-dict";
}

//===----------------------------------------------------------------------===//
// Collectives of an expert-parallel group
//===----------------------------------------------------------------------===//

def MoeGPU_StoreGroupRankOp : MoeGPU_Op<"store_group_rank"> {
  let summary = "stores the calling rank of a group into device memory";
  let description = [{
    Checks that `group` has `ranks` ranks (the call fails otherwise), and
    writes the calling rank, as one i32, into `rank`, ordered on `stream`:
    the kernels of a rank's program read it from there, so that one program
    serves every rank.

    ```mlir
    moe_gpu.store_group_rank %group into %rank on %stream {ranks = 4 : i64}
        : memref<1xi32>
    ```
  }];
  let arguments = (ins MoeGPU_GroupType:$group,
                       Arg<MemRefOf<[I32]>, "", [MemWrite]>:$rank,
                       MoeGPU_StreamType:$stream,
                       ConfinedAttr<I64Attr, [IntPositive]>:$ranks);
  let assemblyFormat = [{
    $group `into` $rank `on` $stream attr-dict `:` type($rank)
  }];
  let hasVerifier = 1;
}

def MoeGPU_AllGatherOp : MoeGPU_Op<"all_gather"> {
  let summary = "gathers a buffer of every rank of a group";
  let description = [{
    Row block `r` of `recv` (rows `r·n … (r+1)·n − 1`, `n` the rows of
    `send`) receives rank r's `send`, for every rank r of `group`'s
    `ranks`; ordered on `stream`. Both buffers are row-major and contiguous,
    of one element type, with the same trailing dimensions; `recv` has
    `ranks` times the rows of `send`.

    ```mlir
    moe_gpu.all_gather %ids into %all_ids over %group on %stream
        {ranks = 2 : i64} : memref<?x8xi32>, memref<?x8xi32>
    ```
  }];
  let arguments = (ins Arg<AnyMemRef, "", [MemRead]>:$send,
                       Arg<AnyMemRef, "", [MemWrite]>:$recv,
                       MoeGPU_GroupType:$group,
                       MoeGPU_StreamType:$stream,
                       ConfinedAttr<I64Attr, [IntPositive]>:$ranks);
  let assemblyFormat = [{
    $send `into` $recv `over` $group `on` $stream attr-dict `:` type($send)
    `,` type($recv)
  }];
  let hasVerifier = 1;
}

def MoeGPU_ReduceScatterOp : MoeGPU_Op<"reduce_scatter"> {
  let summary = "sums f32 buffers over a group and scatters the row blocks";
  let description = [{
    `recv` receives row block `rank` of the sum over every rank of `group`
    of its `send`, where `rank` is the calling rank and a row block is
    `recv`'s row count; ordered on `stream`. f32, row-major and contiguous,
    with the same trailing dimensions; `send` has `ranks` times the rows of
    `recv`.

    ```mlir
    moe_gpu.reduce_scatter %partial into %sums over %group on %stream
        {ranks = 2 : i64} : memref<?x4096xf32>, memref<?x4096xf32>
    ```
  }];
  let arguments = (ins Arg<MemRefOf<[F32]>, "", [MemRead]>:$send,
                       Arg<MemRefOf<[F32]>, "", [MemWrite]>:$recv,
                       MoeGPU_GroupType:$group,
                       MoeGPU_StreamType:$stream,
                       ConfinedAttr<I64Attr, [IntPositive]>:$ranks);
  let assemblyFormat = [{
    $send `into` $recv `over` $group `on` $stream attr-dict `:` type($send)
    `,` type($recv)
  }];
  let hasVerifier = 1;
}

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUOPS_TD
