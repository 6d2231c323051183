"""`python -m mlx_megabyte.evaluate`: exact bits per byte of a model on a source.

    python -m mlx_megabyte.evaluate --model weights/40m-tinystories/best --data tinystories
    python -m mlx_megabyte.evaluate --model weights/converted --data held_out.txt --json

The source's bytes are cut into consecutive windows of the model's context (the last one shorter) and
every byte is scored once, exactly as megabyte-pytorch's `forward(window, return_loss=True)` scores it:
the first byte of each window from the start token, the rest from what precedes them in the window. The
result is the mean over all counted bytes (pad_id bytes are not counted), so it is deterministic and
does not depend on the batch size. Beside it: the mean patch length, scored bytes per byte that begins
a patch (the model's `patch_starts`: MEGABYTE's fixed patches, SpaceByte's words, H-Net's learned ones).
"""

from __future__ import annotations

import json
import math
import sys

import mlx.core as mx
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from . import data
from .cli import add_model_flags, cli, model_flags, number
from .cli import parser as parser_for
from .errors import UserError
from .models import summed_loss
from .weights import load_for_inference, locate


def windows(streams: list[np.ndarray], length: int):
    """Consecutive windows of `length` bytes over the concatenated streams (the last may be shorter)."""
    whole = streams[0] if len(streams) == 1 else np.concatenate(streams)
    for start in range(0, len(whole), length):
        yield whole[start : start + length]


def first_bytes(streams: list[np.ndarray], count: int) -> list[np.ndarray]:
    """The streams cut to their first `count` bytes in all."""
    kept = []
    for stream in streams:
        kept.append(stream[: count - sum(len(k) for k in kept)])
    return [k for k in kept if len(k)]


def evaluate(model, streams: list[np.ndarray], batch_size: int = 8, progress=None) -> dict:
    """Loss (nats per counted byte), bits per byte, mean patch length and counts over every byte of `streams`."""
    length = model.config.context_length
    total, counted, scored, patches = 0.0, 0, 0, 0
    score = mx.compile(lambda ids: (*summed_loss(model, ids), mx.sum(model.patch_starts(ids))))
    pending = []

    def flush():
        nonlocal total, counted, patches
        if pending:
            loss, count, starts = score(mx.array(np.stack(pending)))
            total += loss.item()
            counted += int(count.item())
            patches += int(starts.item())
            pending.clear()

    for window in windows(streams, length):
        if len(window) < length:  # the tail has its own shape: score it alone
            flush()
            pending.append(window)
            flush()
        else:
            pending.append(window)
            if len(pending) == batch_size:
                flush()
        scored += len(window)
        if progress:
            progress(scored)
    flush()
    if counted == 0:
        raise UserError("the source holds no bytes to score")
    loss = total / counted
    return {"loss": loss, "bpb": loss / math.log(2), "bytes": scored, "counted_bytes": counted,
            "patch_length": scored / max(patches, 1)}


@cli
def main(argv=None):
    parser = parser_for("python -m mlx_megabyte.evaluate", __doc__)
    parser.add_argument("--model", help="weights directory, run directory or Hugging Face repo (default: newest under weights/)")
    parser.add_argument("--data", required=True,
                        help="tinystories, tinystories-instruct, builtin, builtin-instruct (their validation split), "
                        "or a local .txt/.jsonl/.parquet file, directory or glob (all of it)")
    parser.add_argument("--split", choices=("validation", "train", "all"),
                        help="which part to score (default: validation for named sources, all for local files)")
    parser.add_argument("--batch-size", type=number(int, 1), default=8, help="windows per forward pass (does not change the result)")
    parser.add_argument("--cache-dir", help="where encoded data is kept")
    add_model_flags(parser, "score the model quantized as generate --quantize does")
    parser.add_argument("--max-bytes", type=number(int, 1),
                        help="score only the first N bytes of the split (quantized models are slow on CPUs)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    path = locate(args.model)
    bits, dtype = model_flags(args)
    model = load_for_inference(str(path), bits, dtype)
    console = Console(stderr=True)
    named = args.data in data.HUB_DATASETS or args.data in data.BUILTIN
    corpus = data.prepare(args.data, cache_dir=args.cache_dir, console=console, val_fraction=0.05)
    split = args.split or ("validation" if named else "all")
    streams = {"validation": [corpus.val], "train": [corpus.train], "all": [corpus.train, corpus.val]}[split]
    if args.max_bytes is not None:
        streams = first_bytes(streams, args.max_bytes)
    size = sum(len(s) for s in streams)
    if size == 0:
        raise UserError(f"the {split} split of {args.data} holds no bytes to score"
                        + (" (try --split all)" if split != "all" else ""))
    console.print(f"data: {corpus.describe()}", highlight=False, soft_wrap=True)
    separators = sum(int(np.count_nonzero(s == data.EOT)) for s in streams)  # one after each document, no other
    columns = (TextColumn("scoring"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task("score", total=size)
        result = evaluate(model, streams, args.batch_size, lambda n: progress.update(task, completed=n))
    result = {"model": str(path), "data": args.data, "split": split, "quantize": args.quantize,
              "max_bytes": args.max_bytes, **result, "text_bytes": size - separators, "end_of_text_bytes": separators}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['bpb']:.4f} bits per byte (loss {result['loss']:.4f} nats) over {result['bytes']:,} bytes "
              f"of {args.data} ({split}: {size - separators:,} bytes of text and {separators:,} end-of-text "
              f"byte{'s' * (separators != 1)}); mean patch length {result['patch_length']:.2f} bytes")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
