"""Samplers: functions from logits (N, vocab) (and optionally one random key per row) to the next byte ids (N,)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mlx.core as mx

from .runtime import SEEDS
from .settings import check_fields, setting

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


@dataclass(frozen=True)
class SamplingSettings:
    """How a story is sampled, each setting declared once (settings.py): generate's and evaluate's flags,
    the story REPL's commands and the server's JSON fields are all checked against these fields. The
    defaults are what a story gets unless told otherwise (generate, the REPL, training's samples): a
    little cooler than the model's distribution, without the long tail of unlikely bytes."""

    temp: float = setting(0.8, help="sampling temperature (0 = greedy)", kind=float, low=0, high=100)
    top_p: float = setting(1.0, help="nucleus sampling mass (1 = off)", kind=float, low=0, high=1, low_open=True)
    min_p: float = setting(
        0.05, help="drop bytes below this share of the top one", kind=float, low=0, high=1, high_open=True
    )
    top_k: int = setting(0, help="keep only the k likeliest bytes (0 = off)", low=0)
    filter_thres: float | None = setting(
        None,
        help="megabyte-pytorch's generate(filter_thres=...): top-k with k = (1 - thres) * vocab",
        kind=float,
        low=0,
        high=1,
        high_open=True,
        optional=True,
    )
    guide_strength: float = setting(
        0.0,
        help="guided decoding: nats added to the logits of the bytes that begin or continue a required word "
        "not yet used (0 = off; see docs/stories-on-command.md)",
        kind=float,
        low=0,
        high=100,
    )
    max_tokens: int = setting(512, help="most bytes to generate", low=1)
    seed: int | None = setting(
        None,
        help="random seed for reproducible samples (the same story as the server's `seed` with the same settings)",
        optional=True,
        **SEEDS,
    )

    def __post_init__(self):
        check_fields(self)


_DEFAULTS = SamplingSettings()
DEFAULT_TEMP = _DEFAULTS.temp
DEFAULT_TOP_P = _DEFAULTS.top_p
DEFAULT_MIN_P = _DEFAULTS.min_p
DEFAULT_TOP_K = _DEFAULTS.top_k
DEFAULT_MAX_TOKENS = _DEFAULTS.max_tokens


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
    # the settings' own ranges: ValueError naming the one that is out of it
    SamplingSettings(temp=temp, top_p=top_p, min_p=min_p, top_k=top_k, filter_thres=filter_thres)

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
