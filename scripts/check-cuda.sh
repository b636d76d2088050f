#!/usr/bin/env bash
# Proves that `cargo check --features cuda` compiles, on a machine without a GPU
# and without a system CUDA toolkit. Manual only: CI never runs it (it downloads
# ~150 MB of NVIDIA wheels (366 MB unpacked) and compiles candle-kernels' CUDA
# sources: 23 minutes the first time on the 2-core machine with other builds
# running, 12 of them in candle-kernels' build script; seconds after that).
#
#   scripts/check-cuda.sh                  # cargo check --features cuda
#   scripts/check-cuda.sh --all-targets    # extra arguments go to cargo check
#
# Where the toolkit comes from: NVIDIA's PyPI wheels, installed into a
# throw-away venv through the `cuda-toolkit` metapackage
# (`pip install "cuda-toolkit[nvcc,cudart,cccl]==13.4.3"`), which pins matching
# versions of nvidia-cuda-nvcc, nvidia-nvvm (cicc), nvidia-cuda-crt,
# nvidia-cuda-runtime (cuda.h, cuda_runtime.h, libcudart) and nvidia-cuda-cccl
# (thrust/cub). The CUDA 13 wheels all unpack into one toolkit tree,
# site-packages/nvidia/cu13/{bin,include,lib,nvvm}. The CUDA 12 wheels
# (nvidia-cuda-nvcc-cu12, up to 12.9.86) cannot do this: they ship ptxas and
# libnvvm but no `nvcc` and no `cicc`.
# Why 13.4 and not the newest: cudarc 0.19.10 (used by candle 0.11.1) knows
# CUDA versions up to 13.4 and panics on any other `nvcc --version`.
#
# Nothing is linked: `cargo check` does not link, so libcuda.so (the driver,
# which no wheel ships) is not needed. candle-kernels' build script still runs
# nvcc: it compiles its kernels to PTX and builds libmoe.a for sm_$CUDA_COMPUTE_CAP.
#
# Environment:
#   CUDA_VENV             venv holding the wheels (default /tmp/repro-cuda-venv;
#                         created when missing, reused otherwise)
#   CUDA_TARGET_DIR       CARGO_TARGET_DIR of the check (default /tmp/repro-cuda-target),
#                         so the main target/ is never touched
#   CUDA_WHEEL_VERSION    version of the `cuda-toolkit` metapackage (default 13.4.3)
#   CUDA_COMPUTE_CAP      GPU architecture to compile for (default 80: A100)
#   CUDARC_CUDA_VERSION   cudarc's CUDA version (default: from `nvcc --version`,
#                         e.g. 13040 for 13.4)
#   CUDA_CHECK_NICE       nice level of the build (default 19)
#
# Exit status: 0 when `cargo check --features cuda` passes; non-zero, with the
# failing step named on stderr, otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CUDA_VENV:-/tmp/repro-cuda-venv}"
TARGET="${CUDA_TARGET_DIR:-/tmp/repro-cuda-target}"
WHEEL_VERSION="${CUDA_WHEEL_VERSION:-13.4.3}"
NICE="${CUDA_CHECK_NICE:-19}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"

step() { echo "== $*" >&2; }
die() { echo "check-cuda: FAILED: $*" >&2; exit 1; }

for tool in python3 cargo g++; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (nvcc needs g++ as its host compiler)"
done

# 1. The toolkit wheels, in a throw-away venv.
stamp="$VENV/.repro-cuda-toolkit-$WHEEL_VERSION"
if [[ ! -f "$stamp" ]]; then
    step "installing cuda-toolkit[nvcc,cudart,cccl]==$WHEEL_VERSION into $VENV"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "python3 -m venv $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip \
        || die "pip upgrade in $VENV"
    "$VENV/bin/python" -m pip install --quiet "cuda-toolkit[nvcc,cudart,cccl]==$WHEEL_VERSION" \
        || die "pip install cuda-toolkit[nvcc,cudart,cccl]==$WHEEL_VERSION (is PyPI reachable? does that version exist: pip index versions cuda-toolkit)"
    touch "$stamp"
else
    step "reusing $VENV (cuda-toolkit $WHEEL_VERSION)"
fi

# 2. Find the toolkit tree inside the venv and check it has what candle-kernels needs.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    || die "cannot ask $VENV/bin/python for its site-packages"
CUDA_TREE=""
for d in "$site"/nvidia/cu*; do
    [[ -x "$d/bin/nvcc" ]] && CUDA_TREE="$d"
done
[[ -n "$CUDA_TREE" ]] || die "no bin/nvcc under $site/nvidia/cu*/ (the wheels did not install a compiler)"
missing=()
for f in bin/nvcc bin/ptxas bin/cudafe++ bin/fatbinary nvvm/bin/cicc nvvm/libdevice \
         include/cuda.h include/cuda_runtime.h include/cuda_fp16.h include/cuda_bf16.h \
         include/cuda_fp8.h include/mma.h include/crt/host_config.h \
         include/cccl/cub/cub.cuh include/cccl/thrust/scan.h include/cccl/cuda/std/limits; do
    [[ -e "$CUDA_TREE/$f" ]] || missing+=("$f")
done
[[ ${#missing[@]} -eq 0 ]] || die "the toolkit tree $CUDA_TREE lacks: ${missing[*]}"
# cudaforge (candle-kernels' build helper) and most CUDA build scripts expect lib64/.
[[ -e "$CUDA_TREE/lib64" ]] || ln -s lib "$CUDA_TREE/lib64"

export PATH="$CUDA_TREE/bin:$PATH"
export CUDA_ROOT="$CUDA_TREE" CUDA_PATH="$CUDA_TREE" CUDA_HOME="$CUDA_TREE" \
       CUDA_TOOLKIT_ROOT_DIR="$CUDA_TREE" NVCC="$CUDA_TREE/bin/nvcc"
export LD_LIBRARY_PATH="$CUDA_TREE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvcc_version="$(nvcc --version 2>&1)" || die "nvcc --version failed:
$nvcc_version"
release="$(sed -n 's/.*release \([0-9]*\)\.\([0-9]*\),.*/\1 \2/p' <<<"$nvcc_version")"
[[ -n "$release" ]] || die "cannot read the CUDA release from nvcc --version:
$nvcc_version"
read -r major minor <<<"$release"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-${major}0${minor}0}"
step "nvcc $major.$minor at $CUDA_TREE/bin/nvcc; CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"

# 3. Smoke test: nvcc + host g++ + headers, on a kernel that uses cuda_fp16/bf16.
smoke="$(mktemp -d)"
trap 'rm -rf "$smoke"' EXIT
cat >"$smoke/smoke.cu" <<'EOF'
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cub/cub.cuh>
extern "C" __global__ void axpy(const __half *x, __nv_bfloat16 *y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16(a * __half2float(x[i]) + __bfloat162float(y[i]));
}
EOF
if ! out="$(nvcc -gencode="arch=compute_${CUDA_COMPUTE_CAP},code=sm_${CUDA_COMPUTE_CAP}" --ptx \
        -std=c++17 -O3 -o "$smoke/smoke.ptx" "$smoke/smoke.cu" 2>&1)"; then
    die "nvcc cannot compile a small kernel for sm_$CUDA_COMPUTE_CAP:
$out"
fi
step "nvcc smoke test passed (PTX for sm_$CUDA_COMPUTE_CAP)"

# 4. The real check, in its own target directory.
mkdir -p "$TARGET"
log="$TARGET/check-cuda.log"
step "cargo check --locked --features cuda $* (CARGO_TARGET_DIR=$TARGET, log $log)"
start=$SECONDS
set +e
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" nice -n "$NICE" \
    cargo check --locked --features cuda "$@") 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
    echo >&2
    echo "check-cuda: FAILED: cargo check --features cuda exited $status after $((SECONDS - start)) s." >&2
    failing="$(grep -oE '(failed to run custom build command for|could not compile) `[^`]+`' "$log" | sort -u || true)"
    [[ -n "$failing" ]] && echo "check-cuda: failing crate(s): $failing" >&2
    grep -m5 -E 'fatal error|No such file|NvccNotFound|panicked|error:' "$log" | sed 's/^/check-cuda:   /' >&2 || true
    echo "check-cuda: full log: $log" >&2
    exit "$status"
fi
echo "check-cuda: OK: cargo check --features cuda passed in $((SECONDS - start)) s (nvcc $major.$minor, sm_$CUDA_COMPUTE_CAP)" >&2
