"""KVCache: one attention layer's keys and values while decoding, grown in place (mlx-lm's shape)."""

from __future__ import annotations

import mlx.core as mx

# The sublayers whose input token shift looks one row back into (MEGABYTE's): their last rows are kept.
SUBLAYERS = ("attention", "feed_forward")


class KVCache:
    """One layer's keys and values, in buffers preallocated `step` positions at a time (mlx-lm's
    shape), plus the last input row of each sublayer: token shift looks one position back."""

    step = 256

    def __init__(self, max_length: int | None = None):
        self.max_length = max_length  # the longest this sequence gets, if known: no buffer beyond it
        self.keys = self.values = None  # (N, H, capacity, D)
        self.offset = 0  # positions cached, i.e. the rotary position of the next one
        self.rows: dict[str, mx.array] = {}

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Append (N, H, T, D) keys and values; return everything cached so far."""
        start, count = self.offset, keys.shape[2]
        if self.keys is None:  # the first positions (a start token, a prompt) are stored as they come
            self.keys, self.values, self.offset = keys, values, count
            return keys, values
        if start + count > self.keys.shape[2]:
            capacity = -(-(start + count) // self.step) * self.step
            if self.max_length:
                capacity = max(min(capacity, self.max_length), start + count)
            shape = (*keys.shape[:2], capacity - start, keys.shape[3])
            self.keys = mx.concatenate([self.keys[..., :start, :], mx.zeros(shape, keys.dtype)], axis=2)
            self.values = mx.concatenate([self.values[..., :start, :], mx.zeros(shape, values.dtype)], axis=2)
        self.offset += count
        self.keys[..., start : self.offset, :] = keys
        self.values[..., start : self.offset, :] = values
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]

    def previous_row(self, sublayer: str, x: mx.array) -> mx.array | None:
        """The row that preceded x[:, 0] in `sublayer` (None at a sequence start); remembers x's last."""
        previous = self.rows.get(sublayer)
        self.rows[sublayer] = x[:, -1:]
        return previous

    @property
    def state(self) -> tuple[mx.array, ...]:
        """(keys, values, and the last rows token shift keeps, if any), cut to what is cached."""
        keys, values = self.keys, self.values
        if keys.shape[2] != self.offset:
            keys, values = keys[..., : self.offset, :], values[..., : self.offset, :]
        return (keys, values, *(self.rows[name] for name in SUBLAYERS if name in self.rows))

    @state.setter
    def state(self, value: tuple[mx.array, ...]) -> None:
        self.keys, self.values, *rows = value
        self.offset = self.keys.shape[2]
        self.rows = dict(zip(SUBLAYERS, rows))
