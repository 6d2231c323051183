"""Imported by pytest before any test module: mlx_megabyte must load before mlx.core (OpenBLAS preload)."""

import mlx_megabyte  # noqa: F401
