"""Samplers: functions from logits (N, vocab) (and optionally one random key per row) to the next byte ids (N,)."""

from __future__ import annotations

import math
from typing import Callable

import mlx.core as mx

Sampler = Callable[..., mx.array]  # sampler(logits) or sampler(logits, keys)


def row_keys(seed: int, rows: int) -> mx.array:
    """(rows, 2) random keys, one per sample drawn with `seed`.

    With its own key a row's bytes depend on the seed, its index and its logits alone, never on which
    other rows share its batch: a server can decode requests together and each gets exactly the story
    it would get alone.
    """
    return mx.random.split(mx.random.key(seed), rows)


def split_keys(keys: mx.array) -> tuple[mx.array, mx.array]:
    """(keys for the next step, keys to draw with now), each (rows, 2)."""
    pairs = mx.vmap(mx.random.split)(keys)  # (rows, 2, 2)
    return pairs[:, 0], pairs[:, 1]


# The sampling a story gets unless told otherwise (generate, the REPL, training's samples): a little
# cooler than the model's distribution, without the long tail of unlikely bytes.
DEFAULT_TEMP = 0.8
DEFAULT_TOP_P = 1.0
DEFAULT_MIN_P = 0.05
DEFAULT_TOP_K = 0

# The ranges of the sampling settings, (kind, low, high, low excluded, high excluded): generate's flags, the
# REPL's commands and the server's fields check the same bounds.
RANGES = {
    "temp": (float, 0, 100, False, False),
    "top_p": (float, 0, 1, True, False),
    "min_p": (float, 0, 1, False, True),
    "max_tokens": (int, 1, None, False, False),
}


def make_sampler(
    temp: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    top_k: int = 0,
    filter_thres: float | None = None,
) -> Sampler:
    """A sampler: temperature (0 = greedy), then top-k, top-p (nucleus) and min-p filtering.

    `sample(logits, keys)` draws row i with keys[i] (see `row_keys`); without keys it uses MLX's global
    random state. filter_thres is megabyte-pytorch's `generate(filter_thres=...)`: keep the top
    max(int((1 - filter_thres) * vocab), 1) logits (it then Gumbel-samples at `temp`, which is the same
    distribution as sampling the tempered softmax).
    """
    process = _processing(temp, top_p, min_p, top_k, filter_thres)

    def sample(logits: mx.array, keys: mx.array | None = None) -> mx.array:
        logits = logits.astype(mx.float32)
        if temp == 0:
            return mx.argmax(logits, axis=-1).astype(mx.int32)
        logits = process(logits)
        if keys is None:
            return mx.random.categorical(logits, axis=-1).astype(mx.int32)
        # Gumbel-max with each row's own noise: the same distribution as categorical().
        noise = mx.vmap(lambda key: mx.random.gumbel(shape=logits.shape[-1:], key=key))(keys)
        return mx.argmax(logits + noise, axis=-1).astype(mx.int32)

    return sample


def make_distribution(
    temp: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    top_k: int = 0,
    filter_thres: float | None = None,
) -> Callable[[mx.array], mx.array]:
    """The distribution `make_sampler` with the same settings draws from: logits (..., vocab) ->
    probabilities (..., vocab), float32. Greedy (temp 0) is all the mass on the argmax (the first one,
    as mx.argmax picks). Speculative decoding's acceptance rule needs these exact probabilities."""
    process = _processing(temp, top_p, min_p, top_k, filter_thres)

    def distribution(logits: mx.array) -> mx.array:
        logits = logits.astype(mx.float32)
        if temp == 0:
            best = mx.argmax(logits, axis=-1, keepdims=True)
            return (mx.arange(logits.shape[-1]) == best).astype(mx.float32)
        return mx.softmax(process(logits), axis=-1)

    return distribution


def _processing(temp, top_p, min_p, top_k, filter_thres) -> Callable[[mx.array], mx.array]:
    """The settings checked, and the function from float32 logits to the logits a sampler draws from at
    temp > 0 (tempered, then top-k, min-p and top-p filtered: -inf where a token may not be drawn)."""
    if not 0 <= temp < math.inf:  # written so that NaN fails too
        raise ValueError(f"temp must be a number >= 0, got {temp}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not 0 <= min_p < 1:
        raise ValueError(f"min_p must be in [0, 1), got {min_p}")
    if not top_k >= 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if filter_thres is not None and not 0 <= filter_thres < 1:
        raise ValueError(f"filter_thres must be in [0, 1), got {filter_thres}")

    def process(logits: mx.array) -> mx.array:
        logits = logits / temp
        k = top_k
        if filter_thres is not None:
            k = max(int((1 - filter_thres) * logits.shape[-1]), 1)
        if 0 < k < logits.shape[-1]:
            kth = mx.sort(logits, axis=-1)[..., -k][..., None]
            logits = mx.where(logits >= kth, logits, -mx.inf)
        if top_p < 1 or min_p > 0:
            probs = mx.softmax(logits, axis=-1)
            if min_p > 0:
                logits = mx.where(probs >= min_p * mx.max(probs, axis=-1, keepdims=True), logits, -mx.inf)
            if top_p < 1:
                order = mx.argsort(-probs, axis=-1)
                sorted_probs = mx.take_along_axis(probs, order, axis=-1)
                # keep a token if the probability mass before it is below top_p (the top one always)
                before = mx.cumsum(sorted_probs, axis=-1) - sorted_probs
                keep_sorted = before < top_p
                keep = mx.put_along_axis(mx.zeros_like(keep_sorted), order, keep_sorted, axis=-1)
                logits = mx.where(keep, logits, -mx.inf)
        return logits

    return process
