# -*- Python -*-
import os
import sys

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%moe_src_root", config.moe_src_root))
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%mlir_include_dir", config.mlir_include_dir))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

tool_dirs = [config.moe_tools_dir, config.llvm_tools_dir]
tools = ["moe-opt", "moe-run", "moe-compile"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# ptxas from the CUDA toolkit assembles sm_90a cubins; tests that need it say
# REQUIRES: ptxas.
cuda_root = os.environ.get("CUDA_HOME", "/usr/local/cuda")
if os.path.exists(os.path.join(cuda_root, "bin", "ptxas")):
    config.available_features.add("ptxas")
    config.substitutions.append(("%cuda_include", os.path.join(cuda_root, "include")))
    # libdevice (for math functions in kernels) is found through it.
    config.environment["CUDA_HOME"] = cuda_root
    config.environment["PATH"] = os.path.join(cuda_root, "bin") + os.pathsep + config.environment["PATH"]
