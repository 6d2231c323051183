"""H-Net (Hwang, Wang & Gu 2025, arXiv 2507.07955): patch boundaries learned end to end, one stage.
config.py holds its settings and presets, ssd.py the Mamba-2 recurrence, mamba2.py the Mamba-2 layer,
chunking.py the router, chunking, de-chunking and ratio loss, model.py the model, cache.py its decoding
state."""

from ..base import Architecture
from .cache import HNetCache
from .config import PRESETS, HNetConfig
from .model import HNet

ARCHITECTURE = Architecture(
    name="hnet",
    title="H-Net",
    summary="learned patches (dynamic chunking)",
    config=HNetConfig,
    model=HNet,
    presets=PRESETS,
    paper="Hwang, Wang & Gu 2025, arXiv 2507.07955",
)

__all__ = ["ARCHITECTURE", "PRESETS", "HNet", "HNetCache", "HNetConfig"]
