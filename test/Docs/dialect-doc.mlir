// The committed op reference is what ODS generates today.
// RUN: mlir-tblgen -gen-dialect-doc -dialect=moe -I %moe_src_root/include -I %mlir_include_dir %moe_src_root/include/moe/Dialect/Moe/IR/MoeOps.td | diff - %moe_src_root/docs/MoeDialect.md
