"""`python -m mlx_megabyte.info`: versions, the backend (Metal, CUDA or CPU) and device, and which BLAS
MLX's CPU matmuls use.

`--bench` also times 2048x2048x2048 matmuls in float32 and bfloat16 on the device: the ceiling that
model FLOPs utilisation is measured against. On a CPU, ~4 GFLOP/s in float32 means the slow reference
BLAS of the `mlx[cpu]` wheel, 100+ GFLOP/s on a 2-core x86 machine means OpenBLAS is in use, and
`openblas kernel` says which of its kernels runs and why (cpu.py chooses it where OpenBLAS would fall
back to a generic one). `cpu kernels` says whether the native fused CPU kernels (kernels.py) run.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata

import mlx.core as mx

from . import __version__, cpu, kernels
from .cli import cli, use_device
from .cli import parser as parser_for


def matmul_gflops(n: int = 2048, repeats: int = 3, dtype=mx.float32) -> float:
    """Best-of-`repeats` n x n x n matmul throughput in `dtype` on the default device, in GFLOP/s."""
    a, b = mx.random.normal((n, n)).astype(dtype), mx.random.normal((n, n)).astype(dtype)
    mx.eval(a, b, a @ b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def backend() -> str:
    """Metal (Apple GPUs), CUDA (NVIDIA GPUs) or CPU: what the default device runs on."""
    if mx.default_device().type == mx.DeviceType.gpu:
        return "Metal" if mx.metal.is_available() else "CUDA" if mx.cuda.is_available() else "GPU"
    return "CPU" + (" (a GPU is available: --device gpu)" if mx.is_available(mx.gpu) else "")


def device_description() -> str:
    """The default device, its name and its memory."""
    details = mx.device_info()
    name = details.get("device_name") or details.get("name") or details.get("architecture", "")
    memory = details.get("memory_size") or details.get("total_memory")
    if not memory and mx.default_device().type == mx.DeviceType.cpu and hasattr(os, "sysconf"):
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            memory = None
    text = f"{mx.default_device()} {name}".strip()
    return text + (f", {memory / 2**30:.1f} GiB" if memory else "")


def describe() -> dict[str, str]:
    provider = cpu.sgemm_provider()
    if platform.system() == "Darwin":
        matmul = "Accelerate / Metal"
    elif provider:
        matmul = provider
    else:
        matmul = "reference BLAS bundled with mlx[cpu] (slow: apt-get install libopenblas0-pthread)"
    info = {
        "mlx-megabyte": __version__,
        "mlx": mx.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "backend": backend(),
        "device": device_description(),
        "blas preload": cpu.status,
        "blas choice": cpu.blas_status,
        "allocator": cpu.allocator_status,
        "blas threads idle": cpu.wait_status,
        "cblas_sgemm from": matmul,
    }
    if config := cpu.openblas_config():
        info["openblas"] = config
        info["openblas kernel"] = cpu.coretype_status
    if version := cpu.mkl_version():
        info["onemkl"] = version
    info["cpu kernels"] = (
        "native: " + kernels.native_status
        if "native" in kernels.available_variants()
        else f"pure MLX (the native kernels: {kernels.native_status})"
    )
    installed = backend_packages()
    if installed:
        info["mlx backends"] = ", ".join(installed) + (
            " (each installs mlx/lib/libmlx.so: keep one, see docs/performance.md: NVIDIA GPUs)"
            if len(installed) > 1
            else ""
        )
    return info


def backend_packages() -> list[str]:
    """The MLX backend packages installed on Linux (mlx-cpu, mlx-cuda-12, mlx-cuda-13), with versions."""
    found = []
    for name in ("mlx-cpu", "mlx-cuda-12", "mlx-cuda-13"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


@cli
def main(argv=None):
    parser = parser_for("python -m mlx_megabyte.info", __doc__)
    parser.add_argument("--bench", action="store_true", help="also time 2048^3 matmuls in float32 and bfloat16")
    parser.add_argument(
        "--device", choices=("cpu", "gpu"), help="the device to describe (default: the GPU when MLX has one)"
    )
    args = parser.parse_args(argv)
    use_device(args.device)
    info = describe()
    if args.bench:
        info["fp32 matmul 2048^3"] = f"{matmul_gflops():.1f} GFLOP/s"
        info["bf16 matmul 2048^3"] = f"{matmul_gflops(dtype=mx.bfloat16):.1f} GFLOP/s"
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
