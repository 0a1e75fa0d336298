//===- moe-opt.cpp - moe optimizer driver ---------------------------------===//
//
// Parses, verifies, transforms and prints IR that mixes the moe dialect with
// the upstream dialects.
//
//===----------------------------------------------------------------------===//

#include "moe/InitAllMoe.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::moe::registerAllPasses();
  mlir::DialectRegistry registry;
  mlir::moe::registerAllDialects(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "moe optimizer driver\n", registry));
}
