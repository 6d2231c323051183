"""The fast CPU path (system OpenBLAS preloaded before mlx.core) is really active, and a broken MLX
install gives one clear line."""

import sys

import pytest

from mlx_megabyte import cpu
from mlx_megabyte.info import matmul_gflops

from .helpers import one_line_error, run

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload exists for Linux only")


@linux_only
def test_openblas_serves_mlx_matmuls():
    assert cpu.status.startswith("preloaded"), (
        f"{cpu.status}: install the system OpenBLAS (apt-get install libopenblas0-pthread)"
    )
    assert "openblas" in (cpu.sgemm_provider() or "").lower()
    # The reference BLAS of mlx[cpu] manages ~4 GFLOP/s here, OpenBLAS 100+; 25 leaves room for noise.
    assert matmul_gflops(1024) > 25


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
    one_line_error(result, "MLX could not be imported", 'mlx[cpu]')


@linux_only
def test_importing_mlx_first_warns_about_the_slow_blas():
    result = run("-W", "always", "-c", "import mlx.core; import mlx_megabyte; from mlx_megabyte import cpu; print(cpu.status)",
                 env={"MLX_MEGABYTE_NO_BLAS_PRELOAD": ""})
    assert result.returncode == 0, result.stderr
    assert "skipped: mlx.core was imported before mlx_megabyte" in result.stdout
    assert "RuntimeWarning" in result.stderr and "import mlx_megabyte first" in result.stderr
