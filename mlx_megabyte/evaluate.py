"""`python -m mlx_megabyte.evaluate`: exact bits per byte of a model on a source, or (--instruct) how well
models follow TinyStories-Instruct prompts.

    python -m mlx_megabyte.evaluate --model weights/40m-tinystories/best --data tinystories
    python -m mlx_megabyte.evaluate --model weights/converted --data held_out.txt --json
    python -m mlx_megabyte.evaluate --instruct --model base=weights/demo --model tuned=weights/tuned/best

The source's bytes are cut into consecutive windows of the model's context (the last one shorter) and
every byte is scored once, exactly as megabyte-pytorch's `forward(window, return_loss=True)` scores it:
the first byte of each window from the start token, the rest from what precedes them in the window. The
result is the mean over all counted bytes (pad_id bytes are not counted), so it is deterministic and
does not depend on the batch size. Beside it: the mean patch length, scored bytes per byte that begins
a patch (the model's `patch_starts`: MEGABYTE's fixed patches, SpaceByte's words, H-Net's learned ones).

With --instruct every model writes one story for each of the first --prompts records of the data's
validation split (record i with seed --seed + i, the same sampler for all), and instruct.py scores them
(words used, dialogue when asked, stories that end, ...) with the stories' bits per byte given their
prompts: a table with a column per model, and with --out every story and score as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

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

from . import data, instruct, mixture
from .cli import (
    SAMPLING,
    SAMPLING_DEFAULTS,
    add_model_flags,
    add_sampling_flags,
    cli,
    model_flags,
    number,
    setting_flag,
    setting_type,
)
from .cli import parser as parser_for
from .errors import UserError
from .files import write_text
from .guide import WordGuide
from .models import summed_loss
from .tokens import TEXT, layout_of
from .weights import load_for_inference, locate, trained_on


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
    return {
        "loss": loss,
        "bpb": loss / math.log(2),
        "bytes": scored,
        "counted_bytes": counted,
        "patch_length": scored / max(patches, 1),
    }


def build_parser():
    parser = parser_for("python -m mlx_megabyte.evaluate", __doc__)
    parser.add_argument(
        "--model",
        action="append",
        help="weights directory, run directory or Hugging Face repo (default: as generate's --model); "
        "with --instruct repeatable, as NAME=PATH to name the model's column",
    )
    parser.add_argument(
        "--data",
        help="tinystories, tinystories-instruct, builtin, builtin-instruct (their validation split), "
        "or a local .txt/.jsonl/.parquet file, directory or glob (all of it), or the files a model of "
        "pictures or sound learned (read in its recorded layout); required, but for "
        "--instruct (default builtin-instruct)",
    )
    parser.add_argument(
        "--split",
        choices=("validation", "train", "all"),
        help="which part to score (default: validation for named sources, all for local files)",
    )
    parser.add_argument(
        "--batch-size", type=number(int, 1), default=8, help="windows per forward pass (does not change the result)"
    )
    parser.add_argument("--cache-dir", help="where encoded data is kept")
    add_model_flags(parser, "score the model quantized as generate --quantize does")
    parser.add_argument(
        "--max-bytes",
        type=number(int, 1),
        help="score only the first N bytes of the split (quantized models are slow on CPUs)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    following = parser.add_argument_group("--instruct: stories on command")
    following.add_argument(
        "--instruct", action="store_true", help="score how well each --model follows the instruct prompts of the data"
    )
    following.add_argument(
        "--prompts",
        type=number(int, 1),
        help=f"records whose prompts are scored (default: {INSTRUCT_DEFAULTS['prompts']})",
    )
    setting_flag(
        following,
        SAMPLING["seed"],
        default=None,
        help="record i's story is drawn with seed + i (generate --seed "
        f"writes it again) (default: {INSTRUCT_DEFAULTS['seed']})",
    )
    setting_flag(
        following,
        SAMPLING["max_tokens"],
        default=None,
        help="the length budget: a story that has not ended "
        f"by then counts as not ending (default: {INSTRUCT_DEFAULTS['max_tokens']})",
    )
    add_sampling_flags(following, defaults=False)
    following.add_argument(
        "--guide-strength",
        type=guide_strengths,
        metavar="S[,S...]",
        help="also write each model's stories with guided decoding at these strengths (nats; 0: on its own), a "
        "column each, named NAME+guide S: the words used then are the sampler's work as much as the model's "
        f"(default: {INSTRUCT_DEFAULTS['guide_strength'][0]:g}, not guided)",
    )
    following.add_argument("--out", help="write every story and its scores, and the table, to this JSON file")
    return parser


def guide_strengths(text: str) -> list[float]:
    """--guide-strength's comma-separated strengths, each checked as generate's --guide-strength is."""
    one = setting_type(SAMPLING["guide_strength"].metadata)
    values = [value.strip() for value in text.split(",")]
    if not all(values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return [one(value) for value in values]


INSTRUCT_DEFAULTS = {
    "prompts": 100,
    "seed": instruct.DEFAULT_SEED,
    "max_tokens": instruct.DEFAULT_STORY_BYTES,
    "out": None,
    "guide_strength": [0.0],
    **SAMPLING_DEFAULTS,
}


@cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.instruct:
        return follow_instructions(args)
    if args.data is None:
        raise UserError("--data is required (the source to score)")
    if args.model and len(args.model) > 1:
        raise UserError("give one --model (several are compared with --instruct)")
    given = [name for name in INSTRUCT_DEFAULTS if getattr(args, name) is not None]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} is for --instruct: add --instruct, or drop it")
    one_source(args.data)
    path = locate(args.model[0] if args.model else None)
    bits, dtype = model_flags(args)
    model = load_for_inference(str(path), bits, dtype)
    console = Console(stderr=True)
    named = args.data in data.HUB_DATASETS or args.data in data.BUILTIN
    corpus = data.prepare(
        args.data, cache_dir=args.cache_dir, console=console, val_fraction=0.05, **trained_layout(model, path)
    )
    split = args.split or ("validation" if named else "all")
    streams = {"validation": [corpus.val], "train": [corpus.train], "all": [corpus.train, corpus.val]}[split]
    if args.max_bytes is not None:
        streams = first_bytes(streams, args.max_bytes)
    size = sum(len(s) for s in streams)
    if size == 0:
        raise UserError(
            f"the {split} split of {args.data} holds no bytes to score"
            + (" (try --split all)" if split != "all" else "")
        )
    console.print(f"data: {corpus.describe()}", highlight=False, soft_wrap=True)
    end = corpus.layout.end  # one after each document, no other
    separators = sum(int(np.count_nonzero(s == end)) for s in streams)
    columns = (TextColumn("scoring"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task("score", total=size)
        result = evaluate(model, streams, args.batch_size, lambda n: progress.update(task, completed=n))
    result = {
        "model": str(path),
        "data": args.data,
        "split": split,
        "quantize": args.quantize,
        "max_bytes": args.max_bytes,
        **result,
        "text_bytes": size - separators,
        "end_of_text_bytes": separators,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['bpb']:.4f} bits per byte (loss {result['loss']:.4f} nats) over {result['bytes']:,} bytes "
            f"of {args.data} ({split}: {size - separators:,} bytes of {'text' if corpus.kind == 'text' else 'files'} "
            f"and {separators:,} end-of-{'text byte' if corpus.layout == TEXT else 'document token'}"
            f"{'s' * (separators != 1)}); mean patch length {result['patch_length']:.2f} bytes"
        )
    sys.stdout.flush()


def trained_layout(model, path) -> dict:
    """data.prepare's layout, kind and media for scoring a model as it was trained: its token layout,
    and for pictures and sound the kind and layout its training record names (so held-out files become
    the bytes the model learned)."""
    record = trained_on(path) or {}
    kind = record.get("data_kind")
    kind = kind if kind in ("bytes", "image", "audio") else None
    return {"layout": layout_of(model.config), "kind": kind, "media": record.get(kind) if kind else None}


# --- --instruct ------------------------------------------------------------------------------------------


def named_models(specs: list[str] | None, instruct: bool = False) -> dict[str, str]:
    """--model NAME=PATH (or PATH, named by itself) as {name: path}, names unique; no --model: the one
    weights.locate picks (`instruct`: for instruct prompts), named by its path."""
    if not specs:
        path = str(locate(None, instruct=instruct))
        return {path: path}
    named = {}
    for spec in specs:
        name, path = spec.split("=", 1) if "=" in spec and not Path(spec).exists() else (spec, spec)
        if not name or not path:
            raise UserError(f"--model {spec}: expected NAME=PATH or PATH")
        if name in named:
            raise UserError(f"--model: the name {name!r} is given twice; name each model once (NAME=PATH)")
        named[name] = path
    return named


def one_source(spec: str) -> None:
    """Refuse a --data mixture (training's SOURCE:WEIGHT,...) in one line: each source has its own
    held-out bytes and its own bits per byte, so they are scored one at a time."""
    parts = mixture.parse(spec)
    if parts is not None:
        raise UserError(
            f"--data {spec} is a mixture; evaluate scores one source at a time: "
            + ", ".join(f"--data {part.source}" for part in parts)
        )


def instruct_records(args, console) -> list[instruct.Record]:
    source = args.data or "builtin-instruct"
    one_source(source)
    named = source in data.HUB_DATASETS or source in data.BUILTIN
    corpus = data.prepare(source, cache_dir=args.cache_dir, console=console, val_fraction=0.05)
    split = args.split or ("validation" if named else "all")
    streams = {"validation": [corpus.val], "train": [corpus.train], "all": [corpus.train, corpus.val]}[split]
    records = []
    for stream in streams:
        records += instruct.records_from_stream(stream, limit=args.prompts - len(records))
        if len(records) == args.prompts:
            break
    if not records:
        raise UserError(
            f"the {split} split of {source} holds no instruct records (no line starting with 'Story:'): "
            "use builtin-instruct, tinystories-instruct or records in their layout"
        )
    return records


def follow_instructions(args) -> None:
    """evaluate --instruct: every model's stories for the same prompts, scored; a table and JSON."""
    console = Console(stderr=True)
    for name, default in INSTRUCT_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.max_bytes is not None:
        raise UserError("--max-bytes limits the bytes scored for bits per byte; with --instruct give --prompts")
    if len(set(args.guide_strength)) < len(args.guide_strength):
        raise UserError("--guide-strength: a strength is given twice; give each once")
    models = named_models(args.model, instruct=True)
    paths = {name: locate(path) for name, path in models.items()}  # every --model found before any work
    records = instruct_records(args, console)
    bits, dtype = model_flags(args)
    results = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} stories"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=args.json) as progress:
        for name, path in paths.items():
            model = load_for_inference(str(path), bits, dtype)
            if layout_of(model.config) != TEXT:
                raise UserError(f"--instruct scores text models; {path} learns every byte value (shift_bytes)")
            for strength in args.guide_strength:
                column = name if strength == 0 else f"{name}+guide {strength:g}"
                task = progress.add_task(f"{column}: writing stories", total=len(records))
                tick = lambda done, total, task=task: progress.update(task, completed=done)  # noqa: E731
                results[column] = instruct_result(model, path, records, args, strength, tick)
    report = {"data": args.data or "builtin-instruct", **instruct.comparison_json(results)}
    if args.out:
        write_text(
            Path(args.out),
            json.dumps({**report, "stories": {n: r["stories"] for n, r in results.items()}}, indent=1) + "\n",
        )
    if args.json:
        print(json.dumps(report))
    else:
        console.print(
            instruct.comparison_table(
                results, f"Stories on command: {len(records)} prompts of {report['data']}, seed {args.seed}"
            )
        )
    sys.stdout.flush()


def instruct_result(model, path, records, args, strength: float, progress) -> dict:
    """evaluate_instruct's result for one model at one guide strength (0: on its own), with what trained it."""
    guide = (lambda record: WordGuide(record.words, strength) if record.words else None) if strength else None
    result = instruct.evaluate_instruct(
        model,
        records,
        args.seed,
        args.max_tokens,
        args.temp,
        args.top_p,
        args.min_p,
        args.top_k,
        progress=progress,
        guide=guide,
    )
    record = trained_on(path)
    result["model"] = {
        "path": str(path),
        "trained_on": record and record["data"],
        "instruct_tuned": None if record is None else record.get("instruct", record["data"] in data.INSTRUCT_SOURCES),
    }
    return result


if __name__ == "__main__":
    main()
