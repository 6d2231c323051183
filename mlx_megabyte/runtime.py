"""Where things run and in which number formats: the device (`--device`), the dtypes with their one default
rule, and the range of random seeds. Shared by the library and its commands (cli.py builds flags on it)."""

from __future__ import annotations

import mlx.core as mx

from .errors import UserError

SEED_LIMIT = 2**32  # seeds are 0 .. 2**32 - 1: MLX's key is 64-bit, and training derives per-step seeds from it
SEEDS = {"low": 0, "high": SEED_LIMIT - 1}  # the range of every seed setting (settings.py)
DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def gpu_available() -> bool:
    return mx.is_available(mx.gpu)


def use_device(name: str | None) -> None:
    """Make `--device cpu|gpu` the default device (None: the GPU when MLX has one, as MLX itself does)."""
    if name == "gpu" and not gpu_available():
        raise UserError(
            "--device gpu: this MLX has no GPU backend (on Linux with an NVIDIA GPU: "
            "pip install -e '.[cuda]'; on a Mac: pip install mlx)"
        )
    if name is not None:
        mx.set_default_device(mx.gpu if name == "gpu" else mx.cpu)


def on_gpu() -> bool:
    return mx.default_device().type == mx.DeviceType.gpu


def default_dtype(training: bool) -> str | None:
    """The one rule for a dtype nobody chose: float32 on CPUs (half-precision matmuls skip BLAS there, and
    the native kernels are float32); on GPUs bfloat16 mixed precision for training, and for running a
    model the dtype its weights were stored in (None)."""
    if not on_gpu():
        return "float32"
    return "bfloat16" if training else None
