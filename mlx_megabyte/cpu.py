"""Linux CPU tuning, applied when mlx_megabyte is imported: the system OpenBLAS and the allocator.

1. BLAS. The `mlx[cpu]` wheel links a bundled *reference* BLAS (about 4 GFLOP/s for fp32 matmul on a
   2-core x86 machine). `libmlx.so` resolves `cblas_sgemm` through the process's global symbol scope
   first, so a BLAS loaded with RTLD_GLOBAL *before* `mlx.core` is imported wins: Debian's
   `libopenblas0-pthread` runs the same matmul ~35x faster. Too late once mlx.core is loaded.
2. Allocator. MLX's CPU backend allocates every intermediate with malloc, and glibc serves large blocks
   with fresh mmap()s that it unmaps on free: each training step then page-faults through gigabytes of
   new pages (a 37 MB elementwise product took 37 ms instead of 5). With mmap disabled and trimming
   raised, freed blocks stay in the heap and are reused. The cost: memory is not handed back to the
   system until the process exits, so the resident size stays at its peak.

On macOS MLX uses Accelerate and Metal, and nothing here applies. Opt out with
MLX_MEGABYTE_NO_BLAS_PRELOAD=1 and MLX_MEGABYTE_NO_MALLOC_TUNING=1.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import warnings

OPT_OUT_VARIABLE = "MLX_MEGABYTE_NO_BLAS_PRELOAD"
ALLOCATOR_OPT_OUT_VARIABLE = "MLX_MEGABYTE_NO_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt() parameter numbers

# Names to try, most specific first; found through the loader's normal search path, never a fixed path.
_CANDIDATES = ("openblas", "openblas64_", "openblasp")

#: What `preload()` and `tune_allocator()` did, for `python -m mlx_megabyte.info`.
status = "not attempted"
allocator_status = "not attempted"


def preload() -> str:
    """Load a system OpenBLAS with RTLD_GLOBAL if this is Linux and one is installed; return a status line."""
    global status
    if skipped := _skip_reason(OPT_OUT_VARIABLE):
        status = skipped
    elif "mlx.core" in sys.modules:
        status = "skipped: mlx.core was imported before mlx_megabyte"
        # Too late: libmlx.so bound its BLAS symbols when it was loaded. A ~35x slower matmul deserves
        # more than a status line.
        warnings.warn(
            "mlx.core was imported before mlx_megabyte, so MLX keeps the slow reference BLAS of mlx[cpu]; "
            "import mlx_megabyte first",
            RuntimeWarning,
            stacklevel=3,
        )
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


def tune_allocator() -> str:
    """Keep freed memory in glibc's heap for reuse instead of unmapping it (see the module docstring)."""
    global allocator_status
    if skipped := _skip_reason(ALLOCATOR_OPT_OUT_VARIABLE):
        allocator_status = skipped
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            allocator_status = "not glibc: left as it is"
        else:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            done = mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
            allocator_status = "glibc: large blocks reused, not unmapped" if done else "mallopt refused"
    return allocator_status


def _skip_reason(opt_out_variable: str) -> str | None:
    """Why a Linux-only tuning does not apply here, or None if it does."""
    if not sys.platform.startswith("linux"):
        return "not needed on this platform"
    if os.environ.get(opt_out_variable, "") not in ("", "0"):
        return f"disabled by {opt_out_variable}"
    return None


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


def _openblas(name: str):
    """The OpenBLAS function `name` from the global symbol scope (where MLX's BLAS calls go), or None."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def set_blas_threads(count: int) -> bool:
    """Set OpenBLAS's thread count, if OpenBLAS serves MLX; False otherwise."""
    function = _openblas("openblas_set_num_threads")
    if function is None:
        return False
    function.argtypes = [ctypes.c_int]
    function(max(1, count))
    return True


def blas_threads() -> int | None:
    """OpenBLAS's thread count, if OpenBLAS serves MLX; None otherwise."""
    function = _openblas("openblas_get_num_threads")
    return None if function is None else function()


@contextlib.contextmanager
def single_threaded_blas():
    """Run the body with one OpenBLAS thread (where OpenBLAS serves MLX), then restore the count.

    For decoding: multiplying one row by a weight matrix is bound by memory bandwidth, and splitting it
    across threads costs more than it gains (1x512 @ 512x2048 took 0.5 ms on one thread and 1.7 ms on
    two on the 2-core test machine; a 40m model decodes ~1.45x faster).
    """
    before = blas_threads()
    if before is not None:
        set_blas_threads(1)
    try:
        yield
    finally:
        if before is not None:
            set_blas_threads(before)


def openblas_config() -> str | None:
    """OpenBLAS's own description (version, kernel, threads) if it is loaded, else None."""
    function = _openblas("openblas_get_config")
    if function is None:
        return None
    function.restype = ctypes.c_char_p
    return function().decode(errors="replace").strip()
