"""The build step of the optional native CPU kernels (`mlx_megabyte._native`), run by `pip install`.

setuptools' build_ext hands the extension to CMake (CMakeLists.txt beside this file), which compiles it
against the MLX and nanobind of the build environment with the system's C++ compiler. The extension is
optional: where it cannot be built (no compiler, not Linux) the install goes on without it, says why,
and kernels.py uses the pure-MLX kernels. MLX_MEGABYTE_NO_NATIVE_BUILD=1 skips it on purpose.

Loaded by setuptools from pyproject.toml's [tool.setuptools.cmdclass], as a file: it must not import the
package it builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SKIP_VARIABLE = "MLX_MEGABYTE_NO_NATIVE_BUILD"


class BuildNative(build_ext):
    """build_ext that builds mlx_megabyte._native with CMake, or leaves it out with a warning."""

    def run(self):
        self.left_out = []
        super().run()

    def build_extension(self, ext):
        reason = self._skip_reason()
        if reason is None:
            try:
                self._cmake(ext)
                return
            except (OSError, subprocess.CalledProcessError) as error:
                reason = f"the build failed ({error})"
        self.left_out.append(ext)
        print(
            f"warning: mlx-megabyte's native CPU kernels were not built: {reason}. Everything works "
            "without them, more slowly on CPUs (python -m mlx_megabyte.info says which kernels run).",
            file=sys.stderr,
        )

    def copy_extensions_to_source(self):  # editable installs: only what was built
        built = self.extensions
        self.extensions = [e for e in built if e not in self.left_out]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = built

    def get_outputs(self):
        return [path for path in super().get_outputs() if os.path.exists(path)]

    @staticmethod
    def _skip_reason() -> str | None:
        if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
            return f"{SKIP_VARIABLE} is set"
        if not sys.platform.startswith("linux"):
            return "they are for Linux CPUs (macOS has Accelerate and Metal)"
        if shutil.which("cmake") is None:
            return "cmake is not installed"
        return None

    def _cmake(self, ext):
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        build = Path(self.build_temp).resolve() / "native"
        build.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake",
            "-S",
            str(HERE),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={target.parent}",
        ]
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)], check=True)
        if not target.is_file():
            raise OSError(f"CMake did not produce {target.name}")
