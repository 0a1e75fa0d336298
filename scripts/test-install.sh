#!/usr/bin/env bash
# Installs the build into a fresh prefix, builds the out-of-tree embedding
# example (examples/embedding) against the installed moe package, runs it
# on an example layer, and builds the host code it wrote into a shared
# library against the installed runtime, as an engine would. Then
# pip-installs the Python package (python/) into a fresh virtual
# environment and compiles a layer through it with the installed tool.
#   MOE_BUILD_DIR: the build to install (default build/).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOE_BUILD_DIR:-$repo_root/build}
work="$build_dir/install-test"
cuda=${CUDA_HOME:-/usr/local/cuda}
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$repo_root/examples/embedding" -B "$work/example" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/example" >/dev/null
echo "test-install: built examples/embedding against $work/prefix"
if [ ! -x "$cuda/bin/ptxas" ] && ! command -v ptxas >/dev/null; then
  echo "test-install: no ptxas (CUDA toolkit): the example is built, not run"
  exit 0
fi
"$work/example/moe-embedding-example" \
  "$repo_root/examples/mixtral_8x7b.mlir" "$work/layer"
c++ -O1 -std=c++17 -shared -fPIC "$work/layer/layer.cpp" \
  -I "$work/layer" -I "$work/prefix/include" -I "$cuda/include" \
  -L "$work/prefix/lib" -lmoe_runtime -L "$cuda/lib64/stubs" -lcuda \
  -o "$work/layer/libmoe_layer.so"
# Parsed without the parser's names, the inputs are numbered.
if ! grep -q 'int32_t moe_layer_layer(const void\* input0, const void\* input1' \
    "$work/layer/layer.h"; then
  echo "test-install: unexpected declaration in layer.h" >&2
  exit 1
fi
for symbol in moe_layer_layer moe_layer_layer_workspace_bytes \
    moe_layer_layer_invalid_ids; do
  if ! nm -D --defined-only "$work/layer/libmoe_layer.so" |
      grep -qw "$symbol"; then
    echo "test-install: $symbol missing from the layer library" >&2
    exit 1
  fi
done
echo "test-install: the layer's host code builds against the installed runtime"

# The system's numpy and ml_dtypes satisfy the package's dependencies.
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install -q "$repo_root/python"
(cd "$work" && "$work/venv/bin/python" - "$work/prefix/bin/moe-compile" \
    "$repo_root/examples/scaled/mixtral_8x7b.mlir" "$work/cache" <<'EOF'
import sys
from moe_compiler import gpu
tool, source, cache = sys.argv[1:]
layer = gpu.compile(source, name="mixtral", num_tokens=64, moe_compile=tool, cache_dir=cache)
again = gpu.compile(source, name="mixtral", num_tokens=64, moe_compile=tool, cache_dir=cache)
assert not layer.from_cache and again.from_cache and again.library == layer.library
assert gpu.__file__.startswith(sys.prefix), gpu.__file__
print(f"test-install: pip-installed moe_compiler compiled {layer}")
EOF
)
