#!/usr/bin/env bash
# The GPU benchmark on a bare NVIDIA Linux machine that has PyTorch (CUDA) but no internet.
#
#   # 1. where there is internet: fetch the wheels for the GPU machine's Python (here 3.12)
#   tools/gpu_benchmark.sh download WHEELS_DIR 3.12
#   # 2. copy this checkout and WHEELS_DIR to the GPU machine, then there:
#   tools/gpu_benchmark.sh run WHEELS_DIR [OUT_PREFIX]
#
# `run` installs mlx, mlx-cuda-13 and megabyte-pytorch (and the few pure-Python packages mlx-megabyte
# imports) from WHEELS_DIR into a folder of their own beside the machine's PyTorch, replacing nothing, prints what MLX sees (`info --bench`), then runs
# tools/benchmark.py --device gpu and writes the table to OUT_PREFIX.txt and OUT_PREFIX.json
# (default: gpu-benchmark). mlx-cuda-13 needs an NVIDIA driver >= 580 and the CUDA 13 runtime libraries,
# which a CUDA 13 build of PyTorch brings; without them use mlx-cuda-12 (driver >= 550.54.14).
# Planned to take under 8 minutes on an H100/H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

MLX_VERSION=${MLX_VERSION:-0.32.4}
PACKAGES="mlx==$MLX_VERSION megabyte-pytorch==0.3.6 einops beartype rich markdown-it-py mdurl pygments safetensors"

case "${1:-}" in
download)
    dir=${2:?usage: tools/gpu_benchmark.sh download WHEELS_DIR PYTHON_VERSION}
    python=${3:?usage: tools/gpu_benchmark.sh download WHEELS_DIR PYTHON_VERSION (e.g. 3.11)}
    mkdir -p "$dir"
    # The CUDA backend's own dependencies (cuBLAS, cuDNN, ...) are left out: PyTorch's CUDA build has them.
    pip download --no-deps --only-binary=:all: --python-version "$python" --implementation cp \
        --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dir" "mlx-cuda-13==$MLX_VERSION" $PACKAGES
    ls -la "$dir"
    ;;
run)
    dir=$(cd "${2:?usage: tools/gpu_benchmark.sh run WHEELS_DIR [OUT_PREFIX]}" && pwd)
    out=${3:-gpu-benchmark}
    site=${SITE:-/tmp/mlx-megabyte-site}
    python3 -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no CUDA GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
    # Installed into a folder of its own and put on the path: the machine's PyTorch and packages stay as
    # they are (a virtual environment made from a venv's python would not see them).
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$dir"/*.whl
    export PYTHONPATH=$site:$PWD  # and the checkout itself, not installed
    python3 -c "import mlx_megabyte, mlx.core as mx; assert mx.is_available(mx.gpu), 'MLX sees no GPU (driver, CUDA 13 libraries?)'"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -m mlx_megabyte.info --device gpu --bench | tee "$out.txt"
    timeout 900 python3 tools/benchmark.py --device gpu --configs seed,small --tasks train,train-bf16,forward,generate \
        --batch 32 --steps 10 --warmup 3 --rounds 2 --torch-compile --torch-generate-rounds 1 --json "$out.json" \
        | tee -a "$out.txt"
    echo "wrote $out.txt and $out.json"
    ;;
*)
    echo "usage: tools/gpu_benchmark.sh download WHEELS_DIR PYTHON_VERSION | run WHEELS_DIR [OUT_PREFIX]" >&2
    exit 2
    ;;
esac
