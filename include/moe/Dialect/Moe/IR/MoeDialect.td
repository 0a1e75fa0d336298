//===- MoeDialect.td - Mixture-of-Experts dialect ----------*- tablegen -*-===//
//
// The `moe` dialect states the steps of a Mixture-of-Experts layer with
// tensor semantics.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEDIALECT_TD
#define MOE_DIALECT_MOE_IR_MOEDIALECT_TD

include "mlir/IR/OpBase.td"

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts layers with tensor semantics";
  let description = [{
    The `moe` dialect describes *what* a Mixture-of-Experts (MoE) layer
    computes, step by step, and nothing about *how*:

    ```
    router -> topk -> permute -> grouped_matmul -> activation
           -> grouped_matmul -> unpermute -> combine
    ```

    All ops have value (tensor) semantics. The token count `M` is usually
    dynamic (`tensor<?x...>`); the number of experts `E`, the experts per
    token `k`, the hidden size `H` and the intermediate size `I` are static.
    Expert weights are stored `[E, N, K]` (output features first), as in
    public checkpoints, so a grouped matmul computes `rows · W[e]ᵀ`.

    Assignments are numbered `token * k + slot`; `moe.permute` groups them by
    expert, stable within an expert, and `moe.unpermute` scatters them back.
  }];
  let dependentDialects = [
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Moe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Moe_Dialect, mnemonic, traits>;

#endif // MOE_DIALECT_MOE_IR_MOEDIALECT_TD
