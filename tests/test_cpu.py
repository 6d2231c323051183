"""The fast CPU path (system OpenBLAS preloaded before mlx.core) is really active, and a broken MLX
install gives one clear line."""

import sys
from pathlib import Path

import pytest

from mlx_megabyte import cpu

from .helpers import one_line_error, run

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload exists for Linux only")


MATMUL = "import mlx_megabyte, mlx.core as mx; mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64)))"


def sgemm_binding(folder, env=None) -> str:
    """The library that the dynamic linker bound libmlx.so's `cblas_sgemm` to, in a fresh process that ran
    a float32 matmul: glibc's own record of it (LD_DEBUG=bindings), not a guess from speed."""
    log = folder / "bindings"
    result = run("-c", MATMUL, env={"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(log), **(env or {})})
    assert result.returncode == 0, result.stderr
    lines = [
        line
        for path in folder.glob("bindings.*")
        for line in path.read_text(errors="replace").splitlines()
        if "libmlx.so" in line.split(" to ")[0] and "`cblas_sgemm'" in line
    ]
    assert lines, "libmlx.so's cblas_sgemm was never bound: did the matmul run on the CPU?"
    return lines[0].split(" to ", 1)[1].split(" [")[0]


@linux_only
def test_the_chosen_blas_serves_mlx_matmuls(tmp_path):
    """The mechanism, not a speed (a GFLOP/s bound failed on a loaded machine): MLX's cblas_sgemm resolves
    to the BLAS cpu.py chose (the system OpenBLAS or oneMKL), and without the preload to the reference
    BLAS bundled with mlx[cpu]."""
    assert cpu.status.startswith("preloaded"), (
        f"{cpu.status}: install the system OpenBLAS (apt-get install libopenblas0-pthread)"
    )
    chosen = {"openblas": "openblas", "mkl": "mkl_rt"}[cpu.blas]
    assert chosen in (cpu.sgemm_provider() or "").lower()
    (tmp_path / "preloaded").mkdir()
    assert chosen in Path(sgemm_binding(tmp_path / "preloaded", {"MLX_MEGABYTE_NO_BLAS_PRELOAD": ""})).name.lower()
    (tmp_path / "bundled").mkdir()  # the same check, shown able to fail
    bundled = sgemm_binding(tmp_path / "bundled", {"MLX_MEGABYTE_NO_BLAS_PRELOAD": "1"})
    assert chosen not in Path(bundled).name.lower() and "mlx" in bundled, bundled
    for name in cpu.blas_libraries():  # each installed library, chosen by hand, serves them in its turn
        (tmp_path / name).mkdir()
        forced = sgemm_binding(tmp_path / name, {"MLX_MEGABYTE_NO_BLAS_PRELOAD": "", cpu.BLAS_VARIABLE: name})
        assert {"openblas": "openblas", "mkl": "mkl_rt"}[name] in Path(forced).name.lower(), forced


@linux_only
def test_opt_out_keeps_the_bundled_blas():
    result = run("-m", "mlx_megabyte.info", env={"MLX_MEGABYTE_NO_BLAS_PRELOAD": "1"})
    assert result.returncode == 0
    assert "disabled by MLX_MEGABYTE_NO_BLAS_PRELOAD" in result.stdout
    assert "reference BLAS bundled" in result.stdout


def test_info_reports_versions_and_blas():
    result = run("-m", "mlx_megabyte.info")
    assert result.returncode == 0, result.stderr
    import mlx.core as mx

    assert f"mlx                 {mx.__version__}" in result.stdout or mx.__version__ in result.stdout
    assert "cblas_sgemm from" in result.stdout


def test_missing_mlx_gives_one_clear_line(tmp_path):
    # A stand-in `mlx` package whose core fails to import, as plain `mlx` does on Linux.
    (tmp_path / "mlx").mkdir()
    (tmp_path / "mlx" / "__init__.py").write_text("")
    (tmp_path / "mlx" / "core.py").write_text("raise ImportError('libmlx.so: cannot open shared object file')\n")
    result = run("-m", "mlx_megabyte.info", env={"PYTHONPATH": str(tmp_path)})
    one_line_error(result, "MLX could not be imported", "mlx[cpu]")


@linux_only
def test_importing_mlx_first_warns_about_the_slow_blas():
    result = run(
        "-W",
        "always",
        "-c",
        "import mlx.core; import mlx_megabyte; from mlx_megabyte import cpu; print(cpu.status)",
        env={"MLX_MEGABYTE_NO_BLAS_PRELOAD": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "skipped: mlx.core was imported before mlx_megabyte" in result.stdout
    assert "RuntimeWarning" in result.stderr and "import mlx_megabyte first" in result.stderr
