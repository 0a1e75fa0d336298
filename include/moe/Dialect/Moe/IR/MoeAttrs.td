//===- MoeAttrs.td - moe dialect attributes ----------------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_DIALECT_MOE_IR_MOEATTRS_TD

include "moe/Dialect/Moe/IR/MoeDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Moe_ScoringFunc : I32EnumAttr<"ScoringFunc",
    "expert scoring function", [
  I32EnumAttrCase<"Softmax", 0, "softmax">,
  I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
  I32EnumAttrCase<"TopkSoftmax", 2, "topk_softmax">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_ActivationKind : I32EnumAttr<"ActivationKind",
    "gated activation", [
  I32EnumAttrCase<"SiluAndMul", 0, "silu_and_mul">,
  I32EnumAttrCase<"GeluAndMul", 1, "gelu_and_mul">,
  I32EnumAttrCase<"Swiglu", 2, "swiglu">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

def Moe_QuantFormat : I32EnumAttr<"QuantFormat",
    "quantization format", [
  I32EnumAttrCase<"None", 0, "none">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::moe";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

def Moe_QuantizationAttr : AttrDef<Moe_Dialect, "Quantization"> {
  let mnemonic = "quant";
  let summary = "quantization format of a grouped matmul";
  let description = [{
    Names how the operands of `moe.grouped_matmul` are stored and scaled, and
    so which matmul pattern the lowering picks. Only `none` (operands in a
    plain floating-point type, f32 accumulation) exists so far; the
    quantized formats extend this attribute.

    Example: `#moe.quant<none>`.
  }];
  let parameters = (ins EnumParameter<Moe_QuantFormat>:$format);
  let assemblyFormat = "`<` $format `>`";
  let constBuilderCall =
      "::mlir::moe::QuantizationAttr::get($_builder.getContext(), $0)";
}

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD
