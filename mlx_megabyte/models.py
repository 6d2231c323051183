"""The architectures this package trains and runs, by the `model_type` that config.json records.

Each has a config dataclass (`from_dict`, `to_dict`, `context_length`, `pad_id`, `flops_per_byte`,
`describe`), a model class with the same contract (`model(ids, include_start)` -> logits whose [:, t]
predicts byte t + 1, `make_cache`, `num_parameters`, `set_grad_checkpoint`) and named presets. Training,
evaluation and generation take whichever they are given; `load()` picks the class from config.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import PRESETS as MEGABYTE_PRESETS
from .config import ModelConfig
from .model import MEGABYTE
from .spacebyte import PRESETS as SPACEBYTE_PRESETS
from .spacebyte import SpaceByte, SpaceByteConfig


@dataclass(frozen=True)
class Architecture:
    name: str  # the model_type
    title: str
    config: type
    model: type
    presets: dict


ARCHITECTURES = {
    "megabyte": Architecture("megabyte", "MEGABYTE", ModelConfig, MEGABYTE, MEGABYTE_PRESETS),
    "spacebyte": Architecture("spacebyte", "SpaceByte", SpaceByteConfig, SpaceByte, SPACEBYTE_PRESETS),
}
DEFAULT_ARCHITECTURE = "megabyte"
AnyConfig = ModelConfig | SpaceByteConfig


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r} (choose from {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def config_from_dict(values: dict) -> AnyConfig:
    """The config a dict describes; `model_type` (default megabyte) names the architecture."""
    return architecture(values.get("model_type", DEFAULT_ARCHITECTURE)).config.from_dict(values)


def build(config: AnyConfig):
    """A fresh model (random weights) of the architecture `config` belongs to."""
    return architecture(config.model_type).model(config)
