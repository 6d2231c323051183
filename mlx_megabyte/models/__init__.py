"""The architectures this package trains and runs, by the `model_type` that config.json records.

Each is a package beside this file that keeps the contract written in base.py; registering one is a line
in ARCHITECTURES below. Training, evaluation, generation and serving take whichever they are given:
they use this registry and base.py, never an architecture's own module.
"""

from __future__ import annotations

from .base import Architecture, Config, DecodingState, Model, loss_fn, summed_loss, summed_training_loss
from .hnet import ARCHITECTURE as _HNET
from .megabyte import ARCHITECTURE as _MEGABYTE
from .spacebyte import ARCHITECTURE as _SPACEBYTE

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (_MEGABYTE, _SPACEBYTE, _HNET)}
DEFAULT_ARCHITECTURE = "megabyte"


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r} (choose from {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def config_from_dict(values: dict) -> Config:
    """The config a dict describes; `model_type` (default megabyte, as in configs written before it was
    recorded) names the architecture."""
    return architecture(values.get("model_type", DEFAULT_ARCHITECTURE)).config.from_dict(values)


def build(config: Config) -> Model:
    """A fresh model (random weights) of the architecture `config` belongs to."""
    return architecture(config.model_type).model(config)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Config",
    "DEFAULT_ARCHITECTURE",
    "DecodingState",
    "Model",
    "architecture",
    "build",
    "config_from_dict",
    "loss_fn",
    "summed_loss",
    "summed_training_loss",
]
