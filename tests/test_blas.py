"""The OpenBLAS kernel choice (cpu.py): a generic fallback core on a CPU that allows a better one is
replaced, checked numerically first, and a value the user set is never touched."""

import os
import sys

import pytest

from mlx_megabyte import cpu

from .helpers import run

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the OpenBLAS preload exists for Linux only"
)
AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}


def test_a_generic_fallback_is_replaced_by_what_the_flags_allow():
    assert cpu.better_core("Prescott", AVX512) == "SkylakeX"
    assert cpu.better_core("prescott", {"avx", "avx2", "fma"}) == "Haswell"
    assert cpu.better_core("Nehalem", {"avx"}) == "Sandybridge"
    assert cpu.better_core("Prescott", {"sse2", "sse3"}) is None  # nothing better to run
    assert cpu.better_core("Core2", {"avx2"}) is None  # AVX2 without FMA: Haswell's kernels need both
    # a core OpenBLAS recognised is its own business, even when another would run
    for known in ("SkylakeX", "Cooperlake", "Haswell", "Zen", "SapphireRapids"):
        assert cpu.better_core(known, AVX512) is None


def test_the_decision_and_its_reason():
    assert cpu.decide_coretype("Prescott", AVX512, lambda core: True) == (
        "SkylakeX",
        "SkylakeX: chosen by mlx-megabyte; OpenBLAS did not recognise this CPU and picked its generic "
        "Prescott, the CPU's flags allow SkylakeX (checked against numpy)",
    )
    tried = []
    core, why = cpu.decide_coretype("Prescott", AVX512, lambda core: tried.append(core) or False)
    assert core is None and tried == ["SkylakeX"] and "its check failed" in why
    assert cpu.decide_coretype("Zen", AVX512, lambda core: pytest.fail("no check needed")) == (
        None,
        "Zen: OpenBLAS's own choice",
    )
    assert cpu.decide_coretype(None, AVX512, lambda core: True)[0] is None  # OpenBLAS could not be asked


@linux_only
@pytest.mark.parametrize("core", ["Haswell", "Sandybridge"])
def test_the_numerical_check_runs_a_real_product(core):
    """The child process loads the system OpenBLAS with the core and compares its sgemm with numpy's
    float64 product (cores this CPU supports; on an AVX2 machine SkylakeX would crash the child)."""
    if not {"avx2", "fma"} <= cpu.cpu_flags():
        pytest.skip("needs a CPU with AVX2 and FMA")
    library = next(p for p in map(__import__("ctypes.util").util.find_library, cpu._CANDIDATES) if p)
    result = cpu.probe(library, core, check=True)
    assert result["core"].lower() == core.lower()
    assert result["error"] < cpu.CHECK_TOLERANCE
    assert cpu.probe("/nonexistent/libopenblas.so.0", core, check=True) is None


def unset_for_this_test(monkeypatch, name):
    """Unset `name` for one test and restore it afterwards, even where the code under test sets it
    itself: monkeypatch.delenv of an absent variable records nothing to undo, so a value the code set
    would leak into every later test (OPENBLAS_CORETYPE=SkylakeX then kills each OpenBLAS child on an
    AVX2 CPU with an illegal instruction)."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


@linux_only
def test_a_generic_pick_is_replaced_end_to_end(tmp_path, monkeypatch):
    """As on a CPU newer than the OpenBLAS build: the child reports Prescott for the default, the check
    of the better core passes, and OPENBLAS_CORETYPE is set before the library loads; the answer is
    cached, and a variable the user set wins over everything."""
    monkeypatch.setattr(cpu, "CACHE_FILE", tmp_path / "openblas.json")
    unset_for_this_test(monkeypatch, cpu.CORETYPE_VARIABLE)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX512)
    calls = []

    def fake_probe(library, coretype=None, check=False, timeout=60):
        calls.append(coretype)
        return {"core": coretype or "Prescott", "error": 1e-7 if check else None}

    monkeypatch.setattr(cpu, "probe", fake_probe)
    status = cpu.choose_coretype("libopenblas.so.0")
    assert os.environ[cpu.CORETYPE_VARIABLE] == "SkylakeX" and status.startswith("SkylakeX: chosen by mlx-megabyte")
    assert calls == [None, "SkylakeX"]
    monkeypatch.delenv(cpu.CORETYPE_VARIABLE)
    assert cpu.choose_coretype("libopenblas.so.0") == status and calls == [None, "SkylakeX"]  # from the cache
    monkeypatch.setenv(cpu.CORETYPE_VARIABLE, "Haswell")
    assert cpu.choose_coretype("libopenblas.so.0") == "Haswell: OPENBLAS_CORETYPE set by you"
    assert os.environ[cpu.CORETYPE_VARIABLE] == "Haswell"


@linux_only
def test_info_shows_the_kernel_and_why():
    result = run("-m", "mlx_megabyte.info", env={"OPENBLAS_CORETYPE": "Haswell", cpu.BLAS_VARIABLE: "openblas"})
    assert result.returncode == 0, result.stderr
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in result.stdout.splitlines()}
    assert lines["openblas kernel"] == "Haswell: OPENBLAS_CORETYPE set by you"
    assert " Haswell " in lines["openblas"]  # OpenBLAS's own description confirms it


# --- which library: OpenBLAS or oneMKL -----------------------------------------------------------------


def test_the_faster_library_is_chosen_and_the_reason_says_by_how_much():
    timed = lambda: {"mkl": 0.02, "openblas": 0.05}  # noqa: E731
    assert cpu.decide_blas(["mkl", "openblas"], None, timed) == (
        "mkl",
        "mkl: the fastest at the presets' matmuls here (openblas took 2.50x as long)",
    )
    assert cpu.decide_blas(["mkl", "openblas"], None, lambda: {"mkl": 0.05, "openblas": 0.04})[0] == "openblas"
    # a library whose timing failed (a crash, a wrong product) is not chosen
    name, why = cpu.decide_blas(["mkl", "openblas"], None, lambda: {"mkl": None, "openblas": 0.05})
    assert name == "openblas" and "mkl failed its timing" in why
    # one library, or one chosen by hand: nothing is timed
    never = lambda: pytest.fail("nothing needs timing")  # noqa: E731
    assert cpu.decide_blas(["openblas"], None, never) == ("openblas", "openblas: the only BLAS installed")
    assert cpu.decide_blas(["mkl", "openblas"], "openblas", never) == (
        "openblas",
        "openblas: MLX_MEGABYTE_BLAS set by you",
    )
    assert cpu.decide_blas(["openblas"], "mkl", never) == (
        "openblas",
        "openblas: MLX_MEGABYTE_BLAS=mkl, but mkl is not installed",
    )


@linux_only
def test_each_installed_library_is_timed_for_real(tmp_path, monkeypatch):
    """The timing runs each library's sgemm in a child at the presets' shapes, checked against numpy's
    float64 products; the choice is cached per machine."""
    found = cpu.blas_libraries()
    assert "openblas" in found, "the system OpenBLAS is a prerequisite (apt-get install libopenblas0-pthread)"
    for path in found.values():
        seconds = cpu.time_blas(path)
        assert seconds is not None and 0 < seconds < 60
    assert cpu.time_blas("/nonexistent/libblas.so") is None
    monkeypatch.setattr(cpu, "BLAS_CACHE_FILE", tmp_path / "blas.json")
    unset_for_this_test(monkeypatch, cpu.BLAS_VARIABLE)
    calls = []
    monkeypatch.setattr(cpu, "time_blas", lambda path: calls.append(path) or (1.0 if "mkl" in path else 2.0))
    both = {"mkl": "/x/libmkl_rt.so.3", "openblas": "libopenblas.so.0"}
    assert cpu.choose_blas(both) == "mkl" and sorted(calls) == sorted(both.values())
    assert cpu.choose_blas(both) == "mkl" and len(calls) == 2  # from the cache: not timed again
    monkeypatch.setenv(cpu.BLAS_VARIABLE, "openblas")
    assert cpu.choose_blas(both) == "openblas" and len(calls) == 2


def test_idle_onemkl_threads_sleep_unless_the_user_chose(monkeypatch):
    unset_for_this_test(monkeypatch, cpu.WAIT_VARIABLE)
    assert cpu.blas_wait("openblas") == "not needed" and cpu.WAIT_VARIABLE not in os.environ
    assert cpu.blas_wait("mkl").startswith("KMP_BLOCKTIME=0") and os.environ[cpu.WAIT_VARIABLE] == "0"
    monkeypatch.setenv(cpu.WAIT_VARIABLE, "50")
    assert cpu.blas_wait("mkl") == "KMP_BLOCKTIME=50: set by you" and os.environ[cpu.WAIT_VARIABLE] == "50"


def test_a_process_that_preloads_onemkl_has_it_set():
    code = "import os, mlx_megabyte, mlx_megabyte.cpu as c; print(c.blas, repr(os.environ['KMP_BLOCKTIME']))"
    blas, value = run("-c", code, env={"KMP_BLOCKTIME": ""}).stdout.split()
    assert value == ("'0'" if blas == "mkl" else "''")
