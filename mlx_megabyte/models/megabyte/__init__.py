"""MEGABYTE (Yu et al. 2023, arXiv 2305.07185), lucidrains' megabyte-pytorch 0.3.6 function: a global model
over fixed patches of bytes, a local model inside each (any number of stages). config.py holds its
settings and presets, model.py the model, cache.py its decoding state, convert.py the two-way weight
conversion with megabyte-pytorch."""

from ..base import Architecture
from .cache import MegabyteCache
from .card import card_section
from .config import PRESETS, ModelConfig
from .model import MEGABYTE

ARCHITECTURE = Architecture(
    name="megabyte",
    title="MEGABYTE",
    summary="fixed patches",
    config=ModelConfig,
    model=MEGABYTE,
    presets=PRESETS,
    paper="Yu et al. 2023, arXiv 2305.07185",
    # The `small` preset's learning rate and batch size, chosen by an equal-wall-clock sweep on a CPU
    # (docs/training.md: "Defaults chosen by measurement"); every other preset starts from TrainingConfig's.
    training_defaults={"small": {"learning_rate": 4e-4, "batch_size": 4}},
    reference="megabyte-pytorch 0.3.6",
    card_section=card_section,
)

__all__ = ["ARCHITECTURE", "MEGABYTE", "MegabyteCache", "ModelConfig", "PRESETS"]
