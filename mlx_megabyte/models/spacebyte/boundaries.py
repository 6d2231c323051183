"""Where SpaceByte's patches begin (the paper's rule, and our fallback for text without spaces), and
how the positions there are gathered for the global blocks and their outputs scattered back."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def spacelike_table(num_tokens: int = 256, offset: int = 0) -> np.ndarray:
    """(num_tokens,) bool: which ids are spacelike (not a letter, digit or UTF-8 continuation byte).
    `offset` is the token of byte 0 (1 where every byte value is learned, tokens.py): the rule reads the
    byte a token stands for, and the pad and end tokens are spacelike. On pictures or sound the rule sees
    byte values, not words: a patch starts wherever a byte outside those ranges follows one inside them,
    and `max_patch` still bounds every patch."""
    table = np.ones(max(num_tokens, 256 + offset), dtype=bool)
    for first, last in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z")), (0x80, 0xBF)):
        table[offset + first : offset + last + 1] = False
    return table[:num_tokens]


def natural_boundaries(ids: mx.array, num_tokens: int = 256, offset: int = 0) -> mx.array:
    """(B, L) tokens -> (B, L + 1) bool: the start, and every spacelike byte after a non-spacelike one."""
    spacelike = mx.array(spacelike_table(num_tokens, offset))[ids.astype(mx.int32)]  # (B, L)
    start = mx.ones((ids.shape[0], 1), dtype=mx.bool_)
    before = mx.concatenate([start, spacelike], axis=1)[:, :-1]  # the start counts as spacelike
    return mx.concatenate([start, spacelike & ~before], axis=1)


def boundaries(ids: mx.array, max_patch: int, num_tokens: int = 256, offset: int = 0) -> mx.array:
    """(B, L) tokens -> (B, L + 1) bool: natural boundaries plus the fallback, a boundary every
    `max_patch` positions after the last natural one."""
    natural = natural_boundaries(ids, num_tokens, offset)
    positions = mx.arange(natural.shape[1])
    last = mx.cummax(mx.where(natural, positions, 0), axis=1)  # the latest natural boundary so far
    return (positions - last) % max_patch == 0


def gather_boundaries(x: mx.array, boundary: mx.array, length: int) -> tuple[mx.array, mx.array]:
    """The rows of x (B, T, d) at boundary positions, in order, in a (B, min(length, T), d) layout (the
    rest of each row filled with other positions: padding), and for every position its slot in that
    layout, or the layout's length where it has none (not a boundary, or past the last slot)."""
    B, T = boundary.shape
    width = min(length, T)
    positions = mx.arange(T)
    order = mx.argsort(mx.where(boundary, positions, positions + T), axis=1)[:, :width]  # boundaries first
    gathered = mx.take_along_axis(x, order[..., None], axis=1)
    slot = mx.cumsum(boundary.astype(mx.int32), axis=1) - 1
    slot = mx.where(boundary & (slot < width), slot, width)
    return gathered, slot


def scatter_back(x: mx.array, y: mx.array, slot: mx.array) -> mx.array:
    """x (B, T, d) plus, at each position with a slot, y's row (B, G, d) of that slot (a gather, so the
    gradient is a scatter-add)."""
    padded = mx.concatenate([y, mx.zeros((y.shape[0], 1, y.shape[2]), y.dtype)], axis=1)
    return x + mx.take_along_axis(padded, slot[..., None], axis=1)
