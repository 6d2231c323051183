"""Linux CPU tuning, applied when mlx_megabyte is imported: the system OpenBLAS and the allocator.

1. BLAS. The `mlx[cpu]` wheel links a bundled *reference* BLAS (about 4 GFLOP/s for fp32 matmul on a
   2-core x86 machine). `libmlx.so` resolves `cblas_sgemm` through the process's global symbol scope
   first, so a BLAS loaded with RTLD_GLOBAL *before* `mlx.core` is imported wins: Debian's
   `libopenblas0-pthread` runs the same matmul ~35x faster, and Intel's oneMKL (the `mkl` wheel, a
   dependency on x86-64 Linux) twice as fast again on an AVX-512 Xeon (330-355 against 150-195 GFLOP/s
   at the shapes of the presets, measured in one sitting). Where both are installed, `choose_blas`
   times the two once in child processes, at those shapes, and keeps the faster (cached per machine
   in ~/.cache/mlx-megabyte/blas.json): no CPU vendor is assumed to favour either.
   MLX_MEGABYTE_BLAS=openblas|mkl chooses by hand. Too late once mlx.core is loaded.
2. Allocator. MLX's CPU backend allocates every intermediate with malloc, and glibc serves large blocks
   with fresh mmap()s that it unmaps on free: each training step then page-faults through gigabytes of
   new pages (a 37 MB elementwise product took 37 ms instead of 5). With mmap disabled and trimming
   raised, freed blocks stay in the heap and are reused. The cost: memory is not handed back to the
   system until the process exits, so the resident size stays at its peak.

3. BLAS kernel. OpenBLAS picks its kernels from the CPU model it recognises; a CPU newer than the
   OpenBLAS build (Debian 12's 0.3.21 and an Intel Xeon of family 6 model 207, say) gets its generic
   `Prescott` kernel, 6-7x slower at fp32 matmuls than the AVX-512 one the CPU supports. The variable
   OPENBLAS_CORETYPE overrides the choice, but only before the library loads. So, before loading it,
   `choose_coretype` asks a child process which core OpenBLAS picks on its own; when that is a generic
   fallback and the CPU's flags allow a better one (AVX-512 -> SkylakeX, AVX2 + FMA -> Haswell, AVX ->
   Sandybridge), the child also loads it with that core and checks a product against numpy's float64
   one (an illegal instruction or a wrong product there only costs the child). The answer is cached
   per library and CPU (~/.cache/mlx-megabyte/openblas.json), and a value the user set is never changed.

4. Idle BLAS threads. oneMKL's OpenMP threads spin for 200 ms after every product (KMP_BLOCKTIME), on
   the cores where MLX's CPU stream and the native kernels' threads run the work between products: on
   two cores the spinning thread takes one of them. `blas_wait` sets KMP_BLOCKTIME=0 (idle threads sleep
   at once; a sleeping thread wakes in microseconds, a product takes milliseconds) unless you set it.

On macOS MLX uses Accelerate and Metal, and nothing here applies. Opt out with
MLX_MEGABYTE_NO_BLAS_PRELOAD=1 (which also skips 3) and MLX_MEGABYTE_NO_MALLOC_TUNING=1.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

OPT_OUT_VARIABLE = "MLX_MEGABYTE_NO_BLAS_PRELOAD"
ALLOCATOR_OPT_OUT_VARIABLE = "MLX_MEGABYTE_NO_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt() parameter numbers

# Names to try, most specific first; found through the loader's normal search path, never a fixed path.
_CANDIDATES = ("openblas", "openblas64_", "openblasp")

CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"
BLAS_VARIABLE = "MLX_MEGABYTE_BLAS"  # openblas or mkl: no measurement, this one
CACHE_DIR = Path(os.environ.get("MLX_MEGABYTE_CACHE", Path.home() / ".cache" / "mlx-megabyte"))
CACHE_FILE = CACHE_DIR / "openblas.json"
BLAS_CACHE_FILE = CACHE_DIR / "blas.json"

#: What `preload()`, `choose_blas()`, `choose_coretype()` and `tune_allocator()` did, for
#: `python -m mlx_megabyte.info`.
status = "not attempted"
blas = None  # "openblas" or "mkl": the library that serves MLX's matmuls, once preloaded
blas_status = "not attempted"
coretype_status = "not attempted"
allocator_status = "not attempted"
wait_status = "not attempted"
WAIT_VARIABLE = "KMP_BLOCKTIME"  # oneMKL's OpenMP: how long (ms) an idle thread spins before it sleeps


def preload() -> str:
    """Load the faster installed BLAS (OpenBLAS from the system, oneMKL from pip) with RTLD_GLOBAL if
    this is Linux; return a status line."""
    global status, blas
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
        found = blas_libraries()
        if not found:
            status = "no system OpenBLAS found (apt-get install libopenblas0-pthread)"
            return status
        if "openblas" in found:
            choose_coretype(found["openblas"])  # before it loads, whichever is chosen: a child may load it
        name = choose_blas(found)
        blas_wait(name)
        for name in [name] + [other for other in found if other != name]:  # the next if one fails to load
            try:
                ctypes.CDLL(found[name], mode=ctypes.RTLD_GLOBAL)
            except OSError as error:
                status = f"could not load {found[name]}: {error}"
                continue
            status, blas = f"preloaded {found[name]}", name
            break
    return status


def blas_wait(name: str) -> str:
    """Before oneMKL loads: its idle threads sleep at once instead of spinning (point 4 above), unless
    the user set KMP_BLOCKTIME. OpenBLAS's idle threads yield the core already."""
    global wait_status
    if name != "mkl":
        wait_status = "not needed"
    elif os.environ.get(WAIT_VARIABLE):
        wait_status = f"{WAIT_VARIABLE}={os.environ[WAIT_VARIABLE]}: set by you"
    else:
        os.environ[WAIT_VARIABLE] = "0"
        wait_status = f"{WAIT_VARIABLE}=0: idle oneMKL threads sleep instead of spinning"
    return wait_status


def blas_libraries() -> dict[str, str]:
    """The BLAS libraries installed: {"mkl": libmkl_rt (the `mkl` wheel puts it in <prefix>/lib),
    "openblas": the system's OpenBLAS}, found by name, never at a fixed path."""
    found = {}
    for directory in dict.fromkeys((Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib")):
        for name in ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"):
            if (directory / name).is_file():
                found.setdefault("mkl", str(directory / name))
    if "mkl" not in found and (path := ctypes.util.find_library("mkl_rt")):
        found["mkl"] = path
    for name in _CANDIDATES:
        if path := ctypes.util.find_library(name):
            found["openblas"] = path
            break
    return found


# Run in a child interpreter: the seconds that a library's sgemm takes for products of the presets'
# shapes (best of several), and its largest relative error against numpy's float64 product.
_SPEED_PROBE = r"""
import ctypes, json, sys, time
lib = ctypes.CDLL(sys.argv[1])
import numpy as np
rng = np.random.default_rng(0)
shapes = ((516, 256, 768), (4608, 128, 512), (1028, 512, 2048), (9216, 256, 1024))
products, total = [], 0.0
for m, k, n in shapes:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    p = lambda x: x.ctypes.data_as(ctypes.c_void_p)
    def run():
        lib.cblas_sgemm(101, 111, 111, m, n, k, ctypes.c_float(1.0), p(a), k, p(b), n, ctypes.c_float(0.0), p(c), n)
    run()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    total += best
    products.append((a, b, c))
# numpy's own BLAS threads spin for a while after a product: its references come after all timings
worst = max(float(np.abs(c - a.astype(np.float64) @ b.astype(np.float64)).max()
                  / np.abs(a.astype(np.float64) @ b.astype(np.float64)).max()) for a, b, c in products)
print(json.dumps({"seconds": total, "error": worst}))
"""


def time_blas(library: str, timeout: float = 120) -> float | None:
    """Seconds of `library`'s sgemm over the presets' product shapes, in a child process; None if the
    child failed or a product was wrong."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SPEED_PROBE, library], capture_output=True, text=True, timeout=timeout
        )
        result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return result["seconds"] if result and result["error"] < CHECK_TOLERANCE else None


def decide_blas(found: list[str], forced: str | None, timings) -> tuple[str, str]:
    """(the library to load, why), from the names of those installed, a name the user forced, and
    `timings()` -> {name: seconds or None} for measuring them."""
    if forced:
        if forced in found:
            return forced, f"{forced}: {BLAS_VARIABLE} set by you"
        chosen = found[0]
        return chosen, f"{chosen}: {BLAS_VARIABLE}={forced}, but {forced} is not installed"
    if len(found) == 1:
        return found[0], f"{found[0]}: the only BLAS installed"
    seconds = timings()
    usable = {name: s for name, s in seconds.items() if s}
    if not usable:
        return found[0], f"{found[0]}: the timing of {' and '.join(found)} failed"
    best = min(usable, key=usable.get)
    slower = [f"{name} took {usable[name] / usable[best]:.2f}x as long" for name in usable if name != best]
    failed = [f"{name} failed its timing" for name in found if name not in usable]
    return best, f"{best}: the fastest at the presets' matmuls here ({'; '.join(slower + failed)})"


def choose_blas(found: dict[str, str]) -> str:
    """The library of `found` to load: the user's, the only one, or the faster one here (timed once in
    child processes, cached per library set and CPU). Records a status line."""
    global blas_status
    forced = os.environ.get(BLAS_VARIABLE, "").strip().lower() or None
    key = _cache_key(" ".join(sorted(found.values())), cpu_flags())
    cache = _read_cache(BLAS_CACHE_FILE)
    if not forced and len(found) > 1 and key in cache and cache[key][0] in found:
        name, blas_status = cache[key]
        return name
    measured = {}

    def timings():
        measured.update({name: time_blas(path) for name, path in found.items()})
        return measured

    name, blas_status = decide_blas(sorted(found), forced, timings)
    if measured and any(measured.values()):
        _write_cache(BLAS_CACHE_FILE, {**cache, key: [name, blas_status]})
    return name


# --- the BLAS kernel -------------------------------------------------------------------------------------

# What OpenBLAS falls back to when it does not know a CPU (its generic x86 kernels), lower case.
GENERIC_CORES = {
    "prescott",
    "core2",
    "penryn",
    "dunnington",
    "nehalem",
    "katmai",
    "coppermine",
    "northwood",
    "banias",
    "atom",
    "generic",
    "opteron",
    "opteron_sse3",
    "barcelona",
    "bobcat",
}
# Better cores by the CPU flags they need, best first.
CORES_BY_FLAGS = (
    ("SkylakeX", {"avx512f", "avx512bw", "avx512dq", "avx512vl"}),
    ("Haswell", {"avx2", "fma"}),
    ("Sandybridge", {"avx"}),
)


def better_core(default: str, flags: set[str]) -> str | None:
    """The core to ask OpenBLAS for instead of `default` (its own pick), or None: only when its pick is
    a generic fallback and the CPU's flags allow something better."""
    if default.strip().lower() not in GENERIC_CORES:
        return None
    return next((core for core, needed in CORES_BY_FLAGS if needed <= flags), None)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo), empty if unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Run in a child interpreter: load OpenBLAS (with OPENBLAS_CORETYPE from the environment, if any),
# report the core it chose and whether its sgemm agrees with numpy's float64 product.
_PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.openblas_get_corename.restype = ctypes.c_char_p
core = lib.openblas_get_corename().decode()
worst = None
if len(sys.argv) > 2:
    import numpy as np
    rng = np.random.default_rng(0)
    worst = 0.0
    for m, k, n in ((7, 5, 3), (64, 64, 64), (129, 256, 97), (512, 300, 256)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.zeros((m, n), np.float32)
        p = lambda x: x.ctypes.data_as(ctypes.c_void_p)
        lib.cblas_sgemm(101, 111, 111, m, n, k, ctypes.c_float(1.0), p(a), k, p(b), n, ctypes.c_float(0.0), p(c), n)
        want = a.astype(np.float64) @ b.astype(np.float64)
        worst = max(worst, float(np.abs(c - want).max() / np.abs(want).max()))
print(json.dumps({"core": core, "error": worst}))
"""
CHECK_TOLERANCE = 1e-5  # float32 products of these sizes agree with float64 within ~1e-6 relative


def probe(library: str, coretype: str | None = None, check: bool = False, timeout: float = 60) -> dict | None:
    """What OpenBLAS does in a child process: {"core": its core, "error": the product's relative error
    against numpy's (with `check`)}, or None if the child failed (an illegal instruction, say)."""
    env = {k: v for k, v in os.environ.items() if k != CORETYPE_VARIABLE}
    if coretype:
        env[CORETYPE_VARIABLE] = coretype
    command = [sys.executable, "-c", _PROBE, library] + (["check"] if check else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def decide_coretype(default: str | None, flags: set[str], checked) -> tuple[str | None, str]:
    """(the OPENBLAS_CORETYPE to set or None, why). `default` is OpenBLAS's own pick (None: unknown);
    `checked(core)` says whether that core loads and multiplies correctly."""
    if default is None:
        return None, "OpenBLAS's own choice (it could not be asked which)"
    better = better_core(default, flags)
    if better is None:
        return None, f"{default}: OpenBLAS's own choice"
    if not checked(better):
        return None, f"{default}: OpenBLAS's own choice (this CPU allows {better}, but its check failed)"
    return better, (
        f"{better}: chosen by mlx-megabyte; OpenBLAS did not recognise this CPU and picked its "
        f"generic {default}, the CPU's flags allow {better} (checked against numpy)"
    )


def choose_coretype(library: str) -> str:
    """Set OPENBLAS_CORETYPE for `library` before it loads, if OpenBLAS would pick a generic kernel on a
    CPU that allows a better one (see the module docstring). Returns and records a status line."""
    global coretype_status
    if os.environ.get(CORETYPE_VARIABLE):
        coretype_status = f"{os.environ[CORETYPE_VARIABLE]}: {CORETYPE_VARIABLE} set by you"
        return coretype_status
    flags = cpu_flags()
    key = _cache_key(library, flags)
    cache = _read_cache(CACHE_FILE)
    if key in cache:
        coretype, coretype_status = cache[key]
    else:
        found = probe(library)

        def checked(core):
            result = probe(library, core, check=True)
            return bool(result) and result["core"].lower() == core.lower() and result["error"] < CHECK_TOLERANCE

        coretype, coretype_status = decide_coretype(found["core"] if found else None, flags, checked)
        if found is not None:
            _write_cache(CACHE_FILE, {**cache, key: [coretype, coretype_status]})
    if coretype:
        os.environ[CORETYPE_VARIABLE] = coretype  # read by OpenBLAS as it loads, in this process
    return coretype_status


def _cache_key(library: str, flags: set[str]) -> str:
    try:
        real = os.path.realpath(library)
        stat = os.stat(real)
        identity = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        identity = library
    model = ""
    try:
        model = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), ""
        )
    except OSError:
        pass
    return hashlib.sha256(f"{identity}|{model}|{' '.join(sorted(flags))}".encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, value: dict) -> None:
    try:  # a cache only: an unwritable home just means asking again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(value, indent=1))
        os.replace(temporary, path)
    except OSError:
        pass


def openblas_core() -> str | None:
    """The core OpenBLAS runs in this process (where it serves MLX), or None."""
    function = _openblas("openblas_get_corename")
    if function is None:
        return None
    function.restype = ctypes.c_char_p
    return function().decode(errors="replace").strip()


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
    """The BLAS function `name` from the global symbol scope (where MLX's BLAS calls go), or None."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def set_blas_threads(count: int) -> bool:
    """Set the thread count of the BLAS that serves MLX (OpenBLAS or oneMKL); False if neither does."""
    for name in ("openblas_set_num_threads", "MKL_Set_Num_Threads"):
        function = _openblas(name)
        if function is not None:
            function.argtypes = [ctypes.c_int]
            function(max(1, count))
            return True
    return False


def blas_threads() -> int | None:
    """The thread count of the BLAS that serves MLX (OpenBLAS or oneMKL), or None."""
    for name in ("openblas_get_num_threads", "MKL_Get_Max_Threads"):
        function = _openblas(name)
        if function is not None:
            return function()
    return None


def mkl_version() -> str | None:
    """oneMKL's own description if it is loaded, else None."""
    function = _openblas("mkl_get_version_string")
    if function is None:
        return None
    buffer = ctypes.create_string_buffer(256)
    function.argtypes = [ctypes.c_char_p, ctypes.c_int]
    function(buffer, len(buffer))
    return buffer.value.decode(errors="replace").strip()


@contextlib.contextmanager
def single_threaded_blas():
    """Run the body with one BLAS thread (where OpenBLAS or oneMKL serves MLX), then restore the count.

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
