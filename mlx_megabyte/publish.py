"""Publishing to the Hugging Face hub: a model card for a weights directory, and the upload itself."""

from __future__ import annotations

import json
from pathlib import Path

from mlx.utils import tree_flatten

from .errors import UserError
from .models import architecture
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
    """A model card (README.md) for a weights directory: architecture, size, data, quality, how to load
    (and, for an architecture with a reference implementation, how to convert to it)."""
    model = load(model_dir)
    config = model.config
    arch = architecture(config.model_type)
    facts = training_facts(model_dir)
    data = data or facts.get("data") or "not recorded"
    bpb = bpb if bpb is not None else facts.get("val_bpb", facts.get("best_val_bpb"))
    quality = f"{bpb:.4f} bits per byte on held-out text" if bpb is not None else "not recorded"
    steps = f" after {facts['step']:,} steps" if "step" in facts else ""
    name = repo_id.split("/")[-1]
    dtype = next(v.dtype for _, v in tree_flatten(model.parameters()))
    settings = [(k, tuple(v) if isinstance(v, list) else v) for k, v in config.to_dict().items()]
    rows = "\n".join(
        f"| {k} | {v} |"
        for k, v in (
            *settings,
            ("context", f"{config.context_length:,} bytes"),
            ("patching", config.patching()),
            ("parameters", f"{model.num_parameters():,}"),
            ("weights dtype", str(dtype)),
        )
    )
    card = f"""---
library_name: mlx-megabyte
tags:
- mlx
- {arch.name}
- byte-level
- text-generation
pipeline_tag: text-generation
---

# {name}

A {arch.title} byte-level language model ({arch.paper}), trained with mlx-megabyte in MLX. No tokenizer:
it reads and writes UTF-8 bytes.

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
"""
    return card + (arch.card_section(config) if arch.card_section else "")


def push(
    model_dir: Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    card: str | None = None,
    endpoint: str | None = None,
) -> str:
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
        commit = api.create_commit(repo_id, operations, commit_message="Upload weights from mlx-megabyte")
    except Exception as error:  # huggingface_hub raises many kinds; the user needs the first line
        raise UserError(f"could not upload to {repo_id}: {str(error).splitlines()[0]}") from None
    return commit.commit_url
