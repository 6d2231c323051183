"""`python -m mlx_megabyte.info`: versions, device, and which BLAS MLX's CPU matmuls use.

`--bench` also times an fp32 2048x2048x2048 matmul: ~4 GFLOP/s means the slow reference BLAS of the
`mlx[cpu]` wheel, 100+ GFLOP/s on a 2-core x86 machine means OpenBLAS is in use.
"""

from __future__ import annotations

import platform
import time

import mlx.core as mx

from . import __version__, cpu
from .cli import cli
from .cli import parser as parser_for


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Best-of-`repeats` fp32 n x n x n matmul throughput on the default device, in GFLOP/s."""
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a, b, a @ b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


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
        "device": str(mx.default_device()),
        "blas preload": cpu.status,
        "allocator": cpu.allocator_status,
        "cblas_sgemm from": matmul,
    }
    if config := cpu.openblas_config():
        info["openblas"] = config
    return info


@cli
def main(argv=None):
    parser = parser_for("python -m mlx_megabyte.info", __doc__)
    parser.add_argument("--bench", action="store_true", help="also time an fp32 2048^3 matmul")
    args = parser.parse_args(argv)
    info = describe()
    if args.bench:
        info["fp32 matmul 2048^3"] = f"{matmul_gflops():.1f} GFLOP/s"
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
