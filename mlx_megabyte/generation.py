"""Generation: a cached byte-by-byte engine (`generate_step`, `stream_generate`, `generate`), a library
with no terminal code. `python -m mlx_megabyte.generate` is its command line (generate.py; the story
REPL is repl.py).

    python -m mlx_megabyte.generate --prompt "Once upon a time"
    python -m mlx_megabyte.generate --interactive

Every prompt starts a new story: the end-of-text byte that separates stories in training is put in front
of it, so the model knows a story begins (unless the prompt has to be cut to fit the context).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import mlx.core as mx
import numpy as np

from . import cpu
from .sampling import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_P,
    DEFAULT_TEMP,
    Sampler,
    make_sampler,
    row_keys,
    split_keys,
)
from .text import EOT, encode_prompt
from .textstream import TextStream
from .tokens import TEXT, layout_of


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


def generate_step(model, prompt: mx.array, sampler: Sampler, prompt_cache=None) -> Iterator[mx.array]:
    """Yield the next byte of each sequence (N,), forever, with the model's KV caches (starting from a
    cached prefix of the prompt where `prompt_cache`, a prompt_cache.PromptCache, has one).

    The next step's graph is built and queued (mx.async_eval) before the current byte is handed out, so
    Python work overlaps the computation. While the generator is open, OpenBLAS (on Linux CPUs) runs on
    one thread, which suits single-row products; closing it restores the thread count.
    """
    if prompt_cache is None:
        cache = model.make_cache(prompt.shape[0])
        logits = cache.prefill(prompt)
    else:
        cache, logits = prompt_cache.start(model, prompt)
    y = sampler(logits)
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
    prompt_cache=None,
    speculation=None,
    guide=None,
) -> Iterator[GenerationResponse]:
    """Generate up to `max_tokens` bytes after `prompt`, yielding decoded text as it is produced.

    Stops at the end-of-text byte, at `max_tokens`, or when a `stop` string appears (it is not
    returned). Invalid UTF-8 becomes U+FFFD; a character split across steps is returned once complete
    (each sample is a textstream.TextStream: the server's batched rows follow the same rule).
    With a `seed`, sample i draws from its own random key (`keyed_sampler`), as the server does;
    without one, from MLX's global random state. `prompt_cache`: see generate_step. `speculation` (a
    speculative.Speculator, one sample, no prompt cache): a draft proposes bytes that the model checks
    several at a time; the output is distributed as the sampler's (greedy: the same bytes), drawn from
    the Speculator's own random stream (seeded by `seed`), so a seeded sample differs from a plain one. `guide`: a
    guide.WordGuide (guide_for_prompt) that makes the required words likelier in every sample.
    """
    sampler = sampler or make_sampler(DEFAULT_TEMP, min_p=DEFAULT_MIN_P)
    layout = layout_of(model.config)
    if guide is not None:
        sampler = guide.sampler(sampler, num_samples, layout)
    if seed is not None:
        sampler = keyed_sampler(sampler, seed, num_samples)
    sampler = layout.restrict(sampler, model.config.num_tokens)
    tokens, notice = story_tokens(model.config, prompt, story_start)
    ids = mx.array(tokens[None].repeat(num_samples, axis=0))
    if speculation is None:
        steps = generate_step(model, ids, sampler, prompt_cache)
    elif num_samples != 1 or prompt_cache is not None or guide is not None:
        raise ValueError("speculative decoding writes one sample, unguided, and starts from no prompt cache")
    else:
        steps = speculation.steps(model, ids, layout.restrict, seed)

    streams = [TextStream(layout, stop, max_tokens) for _ in range(num_samples)]
    start = time.perf_counter()
    prompt_seconds = None
    count = 0
    for count, y in zip(range(1, max_tokens + 1), steps):
        values = y.tolist()
        if prompt_seconds is None:
            prompt_seconds = time.perf_counter() - start
            start = time.perf_counter()
        pieces = [stream.push(value).text for stream, value in zip(streams, values)]  # "" once a sample is done
        reasons = [stream.finish_reason for stream in streams]
        elapsed = max(time.perf_counter() - start, 1e-9)
        yield GenerationResponse(
            text=pieces[0],
            texts=pieces,
            bytes_generated=count,
            prompt_bytes=len(tokens),
            prompt_seconds=prompt_seconds,
            bytes_per_second=(count - 1) / elapsed if count > 1 else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            finish_reason=reasons[0],
            finish_reasons=reasons,
            notice=notice if count == 1 else None,
        )
        if all(stream.done for stream in streams):
            break


def story_tokens(config, prompt: str | bytes, story_start: bool = True) -> tuple[np.ndarray, str | None]:
    """The tokens stream_generate feeds the model for `prompt` (the story start in front, cut to fit the
    context), and the notice when it was cut: a prompt cache file records exactly these."""
    data, notice = fit_context(encode_prompt(prompt, story_start), config.context_length)
    return prompt_tokens(layout_of(config), data), notice


def prompt_tokens(layout, data: bytes) -> np.ndarray:
    """An encoded prompt (text.encode_prompt: the end-of-text byte first where a story starts) as the
    layout's tokens: in the bytes layout its leading EOT is the end token, every other byte shifted."""
    if layout is TEXT or not data.startswith(bytes([EOT])):
        return layout.encode(data).astype(np.int32)
    return layout.prompt(data[1:]).astype(np.int32)


def generate_bytes(
    model,
    prompt: bytes = b"",
    max_bytes: int = DEFAULT_MAX_TOKENS,
    sampler: Sampler | None = None,
    num_samples: int = 1,
    seed: int | None = None,
    progress=None,
    may_end: bool = True,
) -> list[bytes]:
    """Raw bytes after `prompt` (no text decoding, no stop strings): what pictures and sound need. Each
    sample is a new document (the end token first, then the prompt), and ends at the end token or after
    `max_bytes` bytes; with may_end=False always after `max_bytes` (the end token is never drawn: a
    picture of a fixed size). progress(bytes so far) is called after each step."""
    layout = layout_of(model.config)
    sampler = sampler or make_sampler(DEFAULT_TEMP, min_p=DEFAULT_MIN_P)
    sampler = layout.restrict(sampler, model.config.num_tokens, end=may_end)
    if seed is not None:
        sampler = keyed_sampler(sampler, seed, num_samples)
    context = model.config.context_length
    tokens = layout.prompt(bytes(prompt))[-context:].astype(np.int32)
    ids = mx.array(tokens[None].repeat(num_samples, axis=0))
    out = [bytearray() for _ in range(num_samples)]
    done = [False] * num_samples
    for count, y in zip(range(1, max_bytes + 1), generate_step(model, ids, sampler)):
        for i, value in enumerate(y.tolist()):
            byte = None if done[i] else layout.byte(value)
            done[i] = done[i] or byte is None
            if byte is not None:
                out[i].append(byte)
        if progress:
            progress(count)
        if all(done):
            break
    return [bytes(b) for b in out]


def generate(model, prompt: str | bytes = "", **kwargs) -> list[str]:
    """The full continuations of `prompt` (one per sample)."""
    texts = None
    for response in stream_generate(model, prompt, **kwargs):
        texts = response.texts if texts is None else [a + b for a, b in zip(texts, response.texts)]
    return texts or [""] * kwargs.get("num_samples", 1)
