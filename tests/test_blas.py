"""The OpenBLAS kernel choice (cpu.py): a generic fallback core on a CPU that allows a better one is
replaced, checked numerically first, and a value the user set is never touched."""

import os
import sys

import pytest

from mlx_megabyte import cpu

from .helpers import run

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OpenBLAS preload exists for Linux only")
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
        "SkylakeX", "SkylakeX: chosen by mlx-megabyte; OpenBLAS did not recognise this CPU and picked its generic "
        "Prescott, the CPU's flags allow SkylakeX (checked against numpy)")
    tried = []
    core, why = cpu.decide_coretype("Prescott", AVX512, lambda core: tried.append(core) or False)
    assert core is None and tried == ["SkylakeX"] and "its check failed" in why
    assert cpu.decide_coretype("Zen", AVX512, lambda core: pytest.fail("no check needed")) == (None, "Zen: OpenBLAS's own choice")
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


@linux_only
def test_a_generic_pick_is_replaced_end_to_end(tmp_path, monkeypatch):
    """As on a CPU newer than the OpenBLAS build: the child reports Prescott for the default, the check
    of the better core passes, and OPENBLAS_CORETYPE is set before the library loads; the answer is
    cached, and a variable the user set wins over everything."""
    monkeypatch.setattr(cpu, "CACHE_FILE", tmp_path / "openblas.json")
    monkeypatch.delenv(cpu.CORETYPE_VARIABLE, raising=False)
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
    result = run("-m", "mlx_megabyte.info", env={"OPENBLAS_CORETYPE": "Haswell"})
    assert result.returncode == 0, result.stderr
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in result.stdout.splitlines()}
    assert lines["openblas kernel"] == "Haswell: OPENBLAS_CORETYPE set by you"
    assert " Haswell " in lines["openblas"]  # OpenBLAS's own description confirms it
