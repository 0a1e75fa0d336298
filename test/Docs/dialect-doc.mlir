// The committed op and pass references are what ODS generates today.
// RUN: mlir-tblgen -gen-dialect-doc -dialect=moe -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Dialect/Moe/IR/MoeOps.td | diff - %moe_src_root/docs/MoeDialect.md
// RUN: mlir-tblgen -gen-pass-doc -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Dialect/Moe/Transforms/Passes.td | diff - %moe_src_root/docs/MoeDialectPasses.md
// RUN: mlir-tblgen -gen-pass-doc -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Conversion/Passes.td | diff - %moe_src_root/docs/MoeConversionPasses.md
// RUN: mlir-tblgen -gen-pass-doc -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Transforms/Passes.td | diff - %moe_src_root/docs/MoeCodegenPasses.md
// RUN: mlir-tblgen -gen-dialect-doc -dialect=moe_gpu -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Dialect/MoeGPU/IR/MoeGPUOps.td | diff - %moe_src_root/docs/MoeGPUDialect.md
// RUN: mlir-tblgen -gen-pass-doc -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Dialect/MoeGPU/Transforms/Passes.td | diff - %moe_src_root/docs/MoeGPUPasses.md
