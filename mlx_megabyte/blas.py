"""Make MLX's CPU matmuls fast on Linux by preloading the system OpenBLAS.

The `mlx[cpu]` wheel links a bundled *reference* BLAS (about 4 GFLOP/s for fp32 matmul on a 2-core x86
machine). `libmlx.so` resolves `cblas_sgemm` through the process's global symbol scope first, so a BLAS
loaded with RTLD_GLOBAL *before* `mlx.core` is imported wins: Debian's `libopenblas0-pthread` runs the same
matmul ~35x faster. On macOS MLX uses Accelerate and Metal, and nothing here applies.

Set MLX_MEGABYTE_NO_BLAS_PRELOAD=1 to keep MLX's bundled BLAS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

OPT_OUT_VARIABLE = "MLX_MEGABYTE_NO_BLAS_PRELOAD"

# Names to try, most specific first; found through the loader's normal search path, never a fixed path.
_CANDIDATES = ("openblas", "openblas64_", "openblasp")

#: What `preload()` did, for `python -m mlx_megabyte.info`.
status = "not attempted"


def preload() -> str:
    """Load a system OpenBLAS with RTLD_GLOBAL if this is Linux and one is installed; return a status line."""
    global status
    if not sys.platform.startswith("linux"):
        status = "not needed on this platform"
    elif os.environ.get(OPT_OUT_VARIABLE, "") not in ("", "0"):
        status = f"disabled by {OPT_OUT_VARIABLE}"
    elif "mlx.core" in sys.modules:
        status = "skipped: mlx.core was imported before mlx_megabyte"
    else:
        status = "no system OpenBLAS found (apt-get install libopenblas0-pthread)"
        for name in _CANDIDATES:
            path = ctypes.util.find_library(name)
            if path is None:
                continue
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as error:
                status = f"could not load {path}: {error}"
                continue
            status = f"preloaded {path}"
            break
    return status


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def sgemm_provider() -> str | None:
    """The file of the library that the global symbol scope resolves `cblas_sgemm` to, or None.

    None means no globally visible BLAS: MLX then uses the copy bundled with its wheel (on Linux the slow
    reference BLAS). Only meaningful on Linux/glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        dlsym, dladdr = libc.dlsym, libc.dladdr
    except (OSError, AttributeError):
        return None
    dlsym.restype = ctypes.c_void_p
    dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    address = dlsym(None, b"cblas_sgemm")  # handle NULL is RTLD_DEFAULT on glibc
    if not address:
        return None
    info = _DlInfo()
    if not dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return info.dli_fname.decode(errors="replace")


def openblas_config() -> str | None:
    """OpenBLAS's own description (version, kernel, threads) if it is loaded, else None."""
    try:
        function = ctypes.CDLL(None).openblas_get_config
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    return function().decode(errors="replace").strip()
