"""A model card's section on megabyte-pytorch: the weights map one to one onto lucidrains' MEGABYTE."""

from __future__ import annotations


def card_section(config) -> str:
    load_config = (
        "{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(open('megabyte.config.json')).items()}"
    )
    return f"""
## Use it with megabyte-pytorch 0.3.6

The weights map one to one onto lucidrains' `MEGABYTE` (logits agree within 1e-4):

```bash
python tools/convert_to_torch.py --mlx-path <downloaded folder> --torch-path megabyte.safetensors
```

```python
import json, safetensors.torch
from MEGABYTE_pytorch import MEGABYTE
model = MEGABYTE(**{load_config})
model.load_state_dict(safetensors.torch.load_file("megabyte.safetensors"), strict=True)
```
""" + (
        "\nThis model learns every byte value: its ids are bytes + 1 (0 pads, 257 ends a document), so add 1 to "
        "the bytes you give it and subtract 1 from the ids it gives back.\n"
        if getattr(config, "shift_bytes", False)
        else ""
    )
