"""Publishing to the Hugging Face hub: a model card for a weights directory, and the upload itself."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .weights import CONFIG_FILE, WEIGHTS_FILE, load


def training_facts(model_dir: Path) -> dict:
    """What a weights directory says about its training: trainer_state.json of a checkpoint or of best/."""
    state_file = Path(model_dir) / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    except (OSError, ValueError):
        state = {}
    return {k: state[k] for k in ("data", "step", "val_bpb", "best_val_bpb") if state.get(k) is not None}


def model_card(model_dir: Path, repo_id: str, data: str | None = None, bpb: float | None = None) -> str:
    """A model card (README.md) for a weights directory: architecture, size, data, quality, how to load."""
    model = load(model_dir)
    config = model.config
    if config.model_type != "megabyte":
        raise UserError(f"{model_dir} holds a {config.model_type} model: model cards and uploads are for MEGABYTE "
                        "models only for now")
    facts = training_facts(model_dir)
    data = data or facts.get("data") or "not recorded"
    bpb = bpb if bpb is not None else facts.get("val_bpb", facts.get("best_val_bpb"))
    quality = f"{bpb:.4f} bits per byte on held-out text" if bpb is not None else "not recorded"
    steps = f" after {facts['step']:,} steps" if "step" in facts else ""
    name = repo_id.split("/")[-1]
    rows = "\n".join(f"| {k} | {v} |" for k, v in (
        ("stages", config.stages), ("dim", config.dim), ("depth", config.depth),
        ("max_seq_len (context)", f"{config.max_seq_len} ({config.context_length:,} bytes)"),
        ("heads x dim_head", f"{config.heads} x {config.dim_head}"), ("ff_mult", config.ff_mult),
        ("rel_pos / pos_emb", f"{config.rel_pos} / {config.pos_emb}"), ("vocabulary", f"{config.num_tokens} (bytes)"),
        ("parameters", f"{model.num_parameters():,}"), ("weights dtype", str(model.to_logits.weight.dtype)),
    ))
    torch_config = "{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(open('megabyte.config.json')).items()}"
    return f"""---
library_name: mlx-megabyte
tags:
- mlx
- megabyte
- byte-level
- text-generation
pipeline_tag: text-generation
---

# {name}

A MEGABYTE byte-level language model (Yu et al. 2023, arXiv 2305.07185), trained with
mlx-megabyte in MLX. No tokenizer: it reads and writes UTF-8 bytes.

## Architecture

| | |
|---|---|
{rows}

## Training and evaluation

- Data: {data}{steps}
- Quality: {quality}

## Use it with mlx-megabyte

```bash
pip install mlx-megabyte
python -m mlx_megabyte.generate --model {repo_id} --prompt "Once upon a time"
```

```python
from mlx_megabyte import load
from mlx_megabyte.weights import locate
model = load(locate("{repo_id}"))
```

## Use it with megabyte-pytorch 0.3.6

The weights map one to one onto lucidrains' `MEGABYTE` (logits agree within 1e-4):

```bash
python tools/convert_to_torch.py --mlx-path <downloaded folder> --torch-path megabyte.safetensors
```

```python
import json, safetensors.torch
from MEGABYTE_pytorch import MEGABYTE
model = MEGABYTE(**{torch_config})
model.load_state_dict(safetensors.torch.load_file("megabyte.safetensors"), strict=True)
```
"""


def push(model_dir: Path, repo_id: str, token: str | None = None, private: bool = False,
         card: str | None = None, endpoint: str | None = None) -> str:
    """Create `repo_id` if needed and upload config.json, model.safetensors and a model card in one commit.
    Returns the commit URL."""
    from huggingface_hub import (  # imported when used: it is slow to import
        CommitOperationAdd,
        HfApi,
    )

    model_dir = Path(model_dir)
    api = HfApi(endpoint=endpoint, token=token)
    card = card if card is not None else model_card(model_dir, repo_id)
    operations = [
        CommitOperationAdd(path_in_repo=CONFIG_FILE, path_or_fileobj=str(model_dir / CONFIG_FILE)),
        CommitOperationAdd(path_in_repo=WEIGHTS_FILE, path_or_fileobj=str(model_dir / WEIGHTS_FILE)),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()),
    ]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(repo_id, operations, commit_message="Upload MEGABYTE weights from mlx-megabyte")
    except Exception as error:  # huggingface_hub raises many kinds; the user needs the first line
        raise UserError(f"could not upload to {repo_id}: {str(error).splitlines()[0]}") from None
    return commit.commit_url
