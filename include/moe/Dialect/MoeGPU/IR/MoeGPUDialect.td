//===- MoeGPUDialect.td - GPU layer below the moe dialect --*- tablegen -*-===//
//
// The `moe_gpu` dialect holds what is specific to GPU code generation for
// the `moe` dialect, kept apart from it as TritonNvidiaGPU is kept apart
// from Triton: the kernel configuration that a target's configure pass
// chooses and that the kernel emitters and the host lowering read.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUDIALECT_TD
#define MOE_DIALECT_MOEGPU_IR_MOEGPUDIALECT_TD

include "mlir/IR/OpBase.td"

def MoeGPU_Dialect : Dialect {
  let name = "moe_gpu";
  let cppNamespace = "::mlir::moe_gpu";
  let summary = "GPU kernel configuration of moe layers";
  let description = [{
    The layer between the target-neutral `moe` dialect and the `gpu`,
    `nvgpu` and `nvvm` ops the kernels are built from. A configure pass
    (`moe-gpu-configure`) writes one `#moe_gpu.kernel_config` on each
    `moe.expert_matmul` as its discardable attribute `moe_gpu.config`; the
    kernel emitters read the decisions from it (block shape, ring depth,
    warpgroup roles, MMA kind, schedule) instead of deciding for themselves,
    so every decision is visible in the IR, verified, and testable with
    FileCheck.

    The dialect verifies the attribute where it is attached: it must sit on a
    `moe.expert_matmul`, its MMA kind must be the one the operands' format
    needs, and its `block_m` must be the op's slot-block height once the
    schedule is aligned.

    The dialect also holds the host side of a compiled layer
    (`moe-gpu-outline-host`): a host function launches the kernels with
    upstream `gpu.launch_func` on a `!moe_gpu.stream`, keeps its
    intermediates in the buffers of a `moe_gpu.workspace_layout`, encodes
    TMA descriptors (`moe_gpu.tensor_map`) and zeroes accumulators
    (`moe_gpu.zero`). `convert-moe-gpu-host-to-emitc` lowers it to C++ over
    the moe runtime.

    A host function carries `moe_gpu.workspace_layout = @layout` when it
    keeps buffers in a workspace; its arguments may carry `moe_gpu.result`
    (a result the function writes) or `moe_gpu.workspace` (the workspace).
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
  let hasOperationAttrVerify = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();

    /// The discardable attributes of a host function and its arguments.
    static constexpr ::llvm::StringLiteral getWorkspaceLayoutAttrName() {
      return ::llvm::StringLiteral("moe_gpu.workspace_layout");
    }
    static constexpr ::llvm::StringLiteral getResultAttrName() {
      return ::llvm::StringLiteral("moe_gpu.result");
    }
    static constexpr ::llvm::StringLiteral getWorkspaceAttrName() {
      return ::llvm::StringLiteral("moe_gpu.workspace");
    }

    /// The unit attribute of a kernel (`gpu.func`) that waits for the
    /// kernels before it on the stream (griddepcontrol.wait) before it
    /// touches memory, and of a `gpu.launch_func` of such a kernel, which
    /// the host launches as a programmatic dependent of the previous kernel
    /// (moe-gpu-dependent-launch).
    static constexpr ::llvm::StringLiteral getDependentLaunchAttrName() {
      return ::llvm::StringLiteral("moe_gpu.dependent_launch");
    }

    /// The name of the discardable attribute that carries an op's
    /// `#moe_gpu.kernel_config`.
    static constexpr ::llvm::StringLiteral getConfigAttrName() {
      return ::llvm::StringLiteral("moe_gpu.config");
    }
  }];
}

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUDIALECT_TD
