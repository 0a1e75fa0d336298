#!/usr/bin/env bash
# Installs what moe needs on a bare Debian machine. Idempotent: every step is
# skipped when its result is already present, so the README commands and CI
# can call it on every run.
set -euo pipefail

LLVM_PREFIX=/usr/lib/llvm-22
APT_PACKAGES=(llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools cmake ninja-build g++)
PY_PACKAGES=(numpy ml_dtypes pytest threadpoolctl)

missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || missing_apt+=("$pkg")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  echo "setup: installing ${missing_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing_apt[@]}" >/dev/null
fi

for f in "$LLVM_PREFIX/lib/cmake/mlir/MLIRConfig.cmake" "$LLVM_PREFIX/bin/FileCheck" \
         "$LLVM_PREFIX/bin/lit" "$LLVM_PREFIX/lib/libMLIR.so"; do
  [ -e "$f" ] || { echo "setup: error: $f is missing after installing LLVM/MLIR 22" >&2; exit 1; }
done

PYTHON=${PYTHON:-python3}
missing_py=()
for pkg in "${PY_PACKAGES[@]}"; do
  "$PYTHON" -c "import $pkg" 2>/dev/null || missing_py+=("$pkg")
done
if [ ${#missing_py[@]} -gt 0 ]; then
  echo "setup: pip installing ${missing_py[*]}"
  "$PYTHON" -m pip install -q "${missing_py[@]}" 2>/dev/null \
    || "$PYTHON" -m pip install -q --break-system-packages "${missing_py[@]}"
fi
