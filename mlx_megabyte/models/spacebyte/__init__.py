"""SpaceByte (Slagle 2024, arXiv 2404.14408): local blocks over every byte, larger global blocks only at
word boundaries. config.py holds its settings and presets, boundaries.py the boundary rule, model.py the
model, cache.py its decoding state."""

from ..base import Architecture
from .cache import SpaceByteCache
from .config import PRESETS, SpaceByteConfig
from .model import SpaceByte

ARCHITECTURE = Architecture(
    name="spacebyte",
    title="SpaceByte",
    summary="global blocks at word boundaries",
    config=SpaceByteConfig,
    model=SpaceByte,
    presets=PRESETS,
    paper="Slagle 2024, arXiv 2404.14408",
    # The `small` preset's learning rate and batch size, chosen by an equal-wall-clock sweep on a CPU
    # (docs/training.md: "Defaults chosen by measurement").
    training_defaults={"small": {"learning_rate": 1e-3, "batch_size": 4}},
)

__all__ = ["ARCHITECTURE", "PRESETS", "SpaceByte", "SpaceByteCache", "SpaceByteConfig"]
