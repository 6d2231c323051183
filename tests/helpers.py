import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def torch_and_mlx(seed=0, **kwargs):
    """A megabyte-pytorch model with random weights and the same model converted to MLX (both in eval)."""
    torch = pytest.importorskip("torch")
    from MEGABYTE_pytorch import MEGABYTE as TorchMEGABYTE

    from mlx_megabyte import MEGABYTE
    from mlx_megabyte.models.megabyte.convert import from_torch_state
    from mlx_megabyte.weights import load_weights

    torch.manual_seed(seed)
    reference = TorchMEGABYTE(**kwargs).eval()
    state = {k: mx.array(v.numpy()) for k, v in reference.state_dict().items()}
    given = {k: kwargs[k] for k in ("max_seq_len", "heads", "dim_head", "pad_id") if k in kwargs}
    config, weights, _ = from_torch_state(state, given)
    model = MEGABYTE(config)
    load_weights(model, weights)
    model.eval()
    return reference, model


def random_ids(rng, batch, length, vocab):
    return rng.integers(0, vocab, size=(batch, length), dtype=np.int64)


def run(*args, env=None, timeout=300, input=None):
    """Run a command in a fresh interpreter (as a user would) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=timeout, input=input
    )


def job_texts(job, timeout: float = 60) -> list[str]:
    """A batcher job's answer: each of its completions' text, read from its events up to the end (an
    exception among them fails the test)."""
    texts = [""] * job.n
    while (event := job.events.get(timeout=timeout)) is not None:
        assert not isinstance(event, Exception), event
        texts[event.index] += event.text
    return texts


def train_in_process(flags: list[str], width: int = 200):
    """`python -m mlx_megabyte.train FLAGS` in this process: (its summary, what it printed at `width`)."""
    import io

    from rich.console import Console

    from mlx_megabyte.train import build_parser, run

    console = Console(file=io.StringIO(), width=width)
    return run(build_parser().parse_args(flags), console), console.file.getvalue()


def one_line_error(result, *fragments):
    """Assert a command failed with a one-line message (no traceback) that contains every fragment."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def require_chromium() -> None:
    """Skip a browser test where no Chromium is installed, except on CI, which must have one (fail)."""
    from .browser import find_chromium

    if find_chromium() is None:
        if os.environ.get("MLX_MEGABYTE_REQUIRE_CHROMIUM"):
            pytest.fail("no chromium installed, and this machine (CI) must have one")
        pytest.skip("no chromium installed (apt-get install chromium)")
