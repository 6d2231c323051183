"""mlx-megabyte: MEGABYTE byte-level hierarchical transformers in MLX.

Importing the package first tunes Linux CPUs (see `cpu.py`): it preloads a system OpenBLAS, which must
happen before `mlx.core` is imported anywhere in the process, and keeps glibc from unmapping freed memory.
"""

from __future__ import annotations

import sys

from . import cpu

__version__ = "0.1.0"

cpu.preload()
cpu.tune_allocator()


class MLXUnavailable(ImportError):
    """MLX itself cannot be imported; the message says how to install it."""


def _one_line_hook(previous):
    def hook(kind, value, traceback):
        if issubclass(kind, MLXUnavailable):
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    return hook


try:
    import mlx.core  # noqa: F401
except ImportError as error:
    # An uncaught MLXUnavailable in a command prints one line instead of a traceback.
    sys.excepthook = _one_line_hook(sys.excepthook)
    raise MLXUnavailable(
        f"MLX could not be imported ({error}). On Linux install the CPU build with "
        '`pip install "mlx[cpu]"` (plain `mlx` has no Linux backend); on macOS `pip install mlx`.'
    ) from None

from .models import ARCHITECTURES, DEFAULT_ARCHITECTURE, build, loss_fn  # noqa: E402
from .weights import load, save  # noqa: E402

# Every registered architecture's model and config classes by their own names (MEGABYTE, ModelConfig,
# SpaceByte, ...), and PRESETS: the default architecture's presets.
for _architecture in ARCHITECTURES.values():
    globals()[_architecture.model.__name__] = _architecture.model
    globals()[_architecture.config.__name__] = _architecture.config
PRESETS = ARCHITECTURES[DEFAULT_ARCHITECTURE].presets

__all__ = [
    *(a.model.__name__ for a in ARCHITECTURES.values()),
    *(a.config.__name__ for a in ARCHITECTURES.values()),
    "ARCHITECTURES",
    "PRESETS",
    "build",
    "load",
    "save",
    "loss_fn",
    "__version__",
]
