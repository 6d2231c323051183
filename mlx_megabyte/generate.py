"""Generation: a cached byte-by-byte engine, `stream_generate`, and `python -m mlx_megabyte.generate`.

    python -m mlx_megabyte.generate --prompt "Once upon a time"
    python -m mlx_megabyte.generate --interactive

Every prompt starts a new story: the end-of-text byte that separates stories in training is put in front
of it, so the model knows a story begins (unless the prompt has to be cut to fit the context).
"""

from __future__ import annotations

import codecs
import sys
import time
from dataclasses import dataclass, field
from argparse import ArgumentTypeError
from typing import Iterator

import mlx.core as mx
import numpy as np

from . import cpu
from .cli import check_seed, cli, number
from .errors import UserError
from .cli import parser as parser_for
from .cli import seed as seed_type
from .data import EOT
from .sampling import (DEFAULT_MIN_P, DEFAULT_TEMP, DEFAULT_TOP_K, DEFAULT_TOP_P, Sampler, make_sampler, row_keys,
                       split_keys)
from .weights import load, locate, quantize

DEFAULT_MAX_TOKENS = 512
DEFAULT_SEED = None

# The ranges of the sampling settings, for the flags and the REPL's commands alike.
TEMP = number(float, 0, 100)
TOP_P = number(float, 0, 1, low_open=True)
MIN_P = number(float, 0, 1, high_open=True)
LENGTH = number(int, 1)


@dataclass
class GenerationResponse:
    """One step of `stream_generate` (for several samples, `texts[i]` is sample i's new text)."""

    text: str  # new text of sample 0 since the last response ("" while a character is incomplete)
    texts: list[str]
    bytes_generated: int
    prompt_bytes: int
    prompt_seconds: float
    bytes_per_second: float
    peak_memory_gb: float
    finish_reason: str | None = None  # sample 0: None while running, else "eot", "stop" or "length"
    finish_reasons: list[str | None] = field(default_factory=list)
    notice: str | None = None  # e.g. the prompt was cut to fit the context


def encode_prompt(prompt: str | bytes, story_start: bool = True) -> bytes:
    data = prompt.encode("utf-8", "surrogateescape") if isinstance(prompt, str) else bytes(prompt)
    return (bytes([EOT]) if story_start else b"") + data


def fit_context(data: bytes, context: int) -> tuple[bytes, str | None]:
    """Keep the last `context` bytes of an encoded prompt; the notice says when some were cut."""
    if len(data) <= context:
        return data, None
    return data[-context:], f"the prompt has {len(data)} bytes; only its last {context} fit the context"


def keyed_sampler(sampler: Sampler, seed: int, rows: int) -> Sampler:
    """`sampler` drawing every row from its own random key (`sampling.row_keys`), advanced once per call:
    the same seed and settings give the same bytes however the rows are batched."""
    keys = row_keys(seed, rows)

    def sample(logits):
        nonlocal keys
        keys, now = split_keys(keys)
        return sampler(logits, now)

    return sample


def generate_step(model, prompt: mx.array, sampler: Sampler) -> Iterator[mx.array]:
    """Yield the next byte of each sequence (N,), forever, with the model's KV caches.

    The next step's graph is built and queued (mx.async_eval) before the current byte is handed out, so
    Python work overlaps the computation. While the generator is open, OpenBLAS (on Linux CPUs) runs on
    one thread, which suits single-row products; closing it restores the thread count.
    """
    cache = model.make_cache(prompt.shape[0])
    y = sampler(cache.prefill(prompt))
    mx.eval(y)  # the prompt's large products use every BLAS thread; the steps' single rows do better on one
    with cpu.single_threaded_blas():
        while True:
            next_y = sampler(cache.step(y))
            mx.async_eval(next_y)
            yield y
            y = next_y


def stream_generate(
    model,
    prompt: str | bytes,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    sampler: Sampler | None = None,
    stop: tuple[str, ...] = (),
    num_samples: int = 1,
    story_start: bool = True,
    seed: int | None = None,
) -> Iterator[GenerationResponse]:
    """Generate up to `max_tokens` bytes after `prompt`, yielding decoded text as it is produced.

    Stops at the end-of-text byte, at `max_tokens`, or when a `stop` string appears (it is not
    returned). Invalid UTF-8 becomes U+FFFD; a character split across steps is returned once complete.
    With a `seed`, sample i draws from its own random key (`keyed_sampler`), as the server does;
    without one, from MLX's global random state.
    """
    sampler = sampler or make_sampler(DEFAULT_TEMP, min_p=DEFAULT_MIN_P)
    if seed is not None:
        sampler = keyed_sampler(sampler, seed, num_samples)
    data, notice = fit_context(encode_prompt(prompt, story_start), model.config.context_length)
    ids = mx.array(np.frombuffer(data, dtype=np.uint8)[None].repeat(num_samples, axis=0))

    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(num_samples)]
    produced = [""] * num_samples  # text so far, for stop strings
    emitted = [0] * num_samples  # characters of `produced` already handed out
    reasons: list[str | None] = [None] * num_samples
    start = time.perf_counter()
    prompt_seconds = None
    count = 0
    for count, y in zip(range(1, max_tokens + 1), generate_step(model, ids, sampler)):
        values = y.tolist()
        if prompt_seconds is None:
            prompt_seconds = time.perf_counter() - start
            start = time.perf_counter()
        pieces = []
        for i, value in enumerate(values):
            if reasons[i] is not None:
                pieces.append("")
                continue
            if value == EOT:
                reasons[i] = "eot"
                produced[i] += decoders[i].decode(b"", final=True)
            else:
                produced[i] += decoders[i].decode(bytes([value]))
                if count == max_tokens:
                    reasons[i] = "length"
                    produced[i] += decoders[i].decode(b"", final=True)
            pieces.append(_take_new(produced, emitted, i, stop, reasons))
        elapsed = max(time.perf_counter() - start, 1e-9)
        yield GenerationResponse(
            text=pieces[0],
            texts=pieces,
            bytes_generated=count,
            prompt_bytes=len(data),
            prompt_seconds=prompt_seconds,
            bytes_per_second=(count - 1) / elapsed if count > 1 else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            finish_reason=reasons[0],
            finish_reasons=list(reasons),
            notice=notice if count == 1 else None,
        )
        if all(r is not None for r in reasons):
            break


def _take_new(produced, emitted, i, stop, reasons) -> str:
    """The part of sample i's text that can be handed out now: up to a stop string if one appeared, and
    never the tail that could still turn into one."""
    text = produced[i]
    for s in stop:
        at = text.find(s)
        if at != -1:
            reasons[i] = "stop"
            produced[i] = text = text[:at]
    hold = 0
    if reasons[i] is None:
        hold = max((len(s) - 1 for s in stop), default=0)
    safe = max(emitted[i], len(text) - hold)
    piece = text[emitted[i] : safe]
    emitted[i] = safe
    return piece


def generate(model, prompt: str | bytes = "", **kwargs) -> list[str]:
    """The full continuations of `prompt` (one per sample)."""
    texts = None
    for response in stream_generate(model, prompt, **kwargs):
        texts = response.texts if texts is None else [a + b for a, b in zip(texts, response.texts)]
    return texts or [""] * kwargs.get("num_samples", 1)


# --- command line ------------------------------------------------------------------------------------


def build_parser():
    parser = parser_for("python -m mlx_megabyte.generate", __doc__)
    parser.add_argument(
        "--model",
        help="a weights directory, a training run directory (its newest checkpoint), or a Hugging Face repo "
        "id; default: the newest weights under weights/",
    )
    parser.add_argument("--prompt", "-p", default="", help="the start of the story; '-' reads standard input")
    parser.add_argument("--max-tokens", "-m", type=LENGTH, default=DEFAULT_MAX_TOKENS, help="most bytes to generate")
    parser.add_argument("--temp", type=TEMP, default=DEFAULT_TEMP, help="sampling temperature (0 = greedy)")
    parser.add_argument("--top-p", type=TOP_P, default=DEFAULT_TOP_P, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--min-p", type=MIN_P, default=DEFAULT_MIN_P, help="drop bytes below this share of the top one")
    parser.add_argument("--top-k", type=number(int, 0), default=DEFAULT_TOP_K, help="keep only the k likeliest bytes (0 = off)")
    parser.add_argument(
        "--filter-thres", type=number(float, 0, 1, high_open=True), default=None,
        help="megabyte-pytorch's generate(filter_thres=...): top-k with k = (1 - thres) * vocab",
    )
    parser.add_argument(
        "--seed", type=seed_type, default=DEFAULT_SEED,
        help="random seed for reproducible samples (the same story as the server's `seed` with the same settings)",
    )
    parser.add_argument("--num-samples", "-n", type=number(int, 1, 1024), default=1, help="stories to generate in parallel")
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    parser.add_argument("--quantize", type=int, choices=(4, 8), help="quantize the weights to 4 or 8 bits")
    parser.add_argument("--interactive", "-i", action="store_true", help="a story REPL")
    parser.add_argument(
        "--instruct", action="store_true",
        help="build TinyStories-Instruct prompts from --features/--words/--summary (asked for in --interactive)",
    )
    parser.add_argument("--features", default="", help="instruct: e.g. 'Dialogue, Twist'")
    parser.add_argument("--words", default="", help="instruct: words the story should use, e.g. 'dog, ball, happy'")
    parser.add_argument("--summary", default="", help="instruct: what the story is about")
    parser.add_argument("--verbose", "-v", action="store_true", help="print speed and memory after each story")
    return parser


def instruct_prompt(features: str = "", words: str = "", summary: str = "") -> str:
    """A TinyStories-Instruct record up to where the story begins."""
    lines = []
    if features.strip():
        lines.append(f"Features: {features.strip()}")
    if words.strip():
        lines.append(f"Words: {words.strip()}")
    if summary.strip():
        lines.append(f"Summary: {summary.strip()}")
    lines.append("Story: \n\n")
    return "\n".join(lines)


def load_for_generation(args):
    on_cpu = mx.default_device() == mx.cpu
    model = load(locate(args.model), dtype=mx.float32 if on_cpu else None)
    if args.quantize:
        quantize(model, args.quantize)
    return model


def print_story(model, prompt, args, sampler, out=sys.stdout, seed=None) -> GenerationResponse | None:
    """Stream one or more stories to `out`; return the last response (for statistics)."""
    last = None
    shown = encode_prompt(prompt, story_start=False).decode("utf-8", "replace")  # printable under any locale
    if args.num_samples == 1:
        out.write(shown)
        out.flush()
    texts = [""] * args.num_samples
    for last in stream_generate(
        model, prompt, args.max_tokens, sampler, tuple(args.stop), args.num_samples, seed=seed
    ):
        if last.notice:
            print(f"note: {last.notice}", file=sys.stderr)
        if args.num_samples == 1:
            out.write(last.text)
            out.flush()
        else:
            texts = [a + b for a, b in zip(texts, last.texts)]
    if args.num_samples > 1:
        for i, text in enumerate(texts):
            out.write(f"--- sample {i + 1} ---\n{shown}{text}\n")
    else:
        out.write("\n")
    return last


def statistics(response: GenerationResponse) -> str:
    return (
        f"[{response.bytes_generated} bytes, prompt {response.prompt_bytes} bytes in "
        f"{response.prompt_seconds:.2f} s, {response.bytes_per_second:.1f} bytes/s, "
        f"peak memory {response.peak_memory_gb:.2f} GB, stop: {response.finish_reason}]"
    )


HELP = """Type the beginning of a story and press Enter; an empty line starts from nothing.
Commands:
  /temp T     sampling temperature (0 = greedy)      /length N   most bytes per story
  /top-p P    nucleus sampling (1 = off)             /min-p M    min-p filtering (0 = off)
  /seed S     reseed the sampler                     /reset      default settings
  /help       this text                              /quit       leave (or Ctrl-D)
Ctrl-C stops the story being written."""


def interactive(model, args, defaults):
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    print(f"mlx-megabyte story REPL ({model.num_parameters():,} parameters, {model.config.context_length}-byte context)")
    print("Type /help for commands, Ctrl-D to quit.")
    while True:
        try:
            if args.instruct:
                prompt = instruct_prompt(
                    input("features> "), input("words> "), input("summary> ")
                )
            else:
                prompt = input("> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            continue
        except UnicodeDecodeError:  # a strict UTF-8 terminal and bytes that are not UTF-8
            print("that line is not valid UTF-8; type it again")
            continue
        if prompt.startswith("/"):
            if not _command(prompt, args, defaults):
                return
            continue
        sampler = make_sampler(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
        try:
            response = print_story(model, prompt, args, sampler)
        except KeyboardInterrupt:
            print("\n[stopped]")
            continue
        if response is not None:
            print(statistics(response))


def _command(line, args, defaults) -> bool:
    """Apply a REPL command; False means quit."""
    name, _, value = line[1:].partition(" ")
    settings = {"temp": ("temp", TEMP), "length": ("max_tokens", LENGTH), "top-p": ("top_p", TOP_P), "min-p": ("min_p", MIN_P)}
    try:
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            print(HELP)
        elif name == "reset":
            for key, default in defaults.items():
                setattr(args, key, default)
            print("settings reset")
        elif name == "seed":
            mx.random.seed(check_seed(int(value)))
            print(f"seed {int(value)}")
        elif name in settings:
            attribute, kind = settings[name]
            setattr(args, attribute, kind(value))  # the flag's own range check: nothing changes if it fails
            print(f"{name} {getattr(args, attribute)}")
        else:
            print(f"unknown command /{name}; /help lists them")
    except (ValueError, ArgumentTypeError) as error:
        print(f"invalid value: {error}")
    return True


@cli
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.num_samples < 1:
        raise UserError("--max-tokens and --num-samples must be at least 1")
    try:
        sampler = make_sampler(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.seed is not None:
        mx.random.seed(args.seed)
    model = load_for_generation(args)
    if args.interactive:
        defaults = {k: getattr(args, k) for k in ("temp", "max_tokens", "top_p", "min_p")}
        interactive(model, args, defaults)
        return
    # Prompts are bytes: standard input is read as it is (not decoded, so invalid UTF-8 under a strict
    # locale is no error), and a command-line argument gets back its original bytes.
    prompt = sys.stdin.buffer.read() if args.prompt == "-" else encode_prompt(args.prompt, story_start=False)
    if args.instruct:
        prompt = encode_prompt(instruct_prompt(args.features, args.words, args.summary), story_start=False) + prompt
    response = print_story(model, prompt, args, sampler, seed=args.seed)
    if args.verbose and response is not None:
        print(statistics(response), file=sys.stderr)


if __name__ == "__main__":
    main()
