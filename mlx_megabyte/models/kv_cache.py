"""The attention caches the architectures share while decoding: KVCache, one layer's keys and values
grown in place (mlx-lm's shape); WindowCache, the last `window` positions of a windowed layer in a buffer
of fixed shape (SpaceByte's local blocks, H-Net's byte layers, whose compiled steps are traced once for
every position); and SlotCache, keys and values in a fixed number of slots per row for the blocks that
step only where a row's patch begins (SpaceByte's global blocks, H-Net's main network)."""

from __future__ import annotations

import mlx.core as mx


class KVCache:
    """One layer's keys and values, in buffers preallocated `step` positions at a time (mlx-lm's shape)."""

    step = 256

    def __init__(self, max_length: int | None = None):
        self.max_length = max_length  # the longest this sequence gets, if known: no buffer beyond it
        self.keys = self.values = None  # (N, H, capacity, D)
        self.offset = 0  # positions cached, i.e. the rotary position of the next one

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

    @property
    def state(self) -> tuple[mx.array, ...]:
        """(keys, values), cut to what is cached."""
        keys, values = self.keys, self.values
        if keys.shape[2] != self.offset:
            keys, values = keys[..., : self.offset, :], values[..., : self.offset, :]
        return keys, values

    @state.setter
    def state(self, value: tuple[mx.array, ...]) -> None:
        self.keys, self.values = value
        self.offset = self.keys.shape[2]

    def map_rows(self, on_device) -> None:
        """Replace each per-row array by on_device(array) (for a DecodingState's `_map_rows`)."""
        self.state = tuple(on_device(a) for a in self.state)


class WindowCache:
    """A windowed attention layer's keys and values for one-position steps: the last `window` positions,
    oldest first, in (N, H, window, D) buffers that slide by one position a step, so that every step has
    the same shapes (a compiled step is traced once, not once per position). Slots before the sequence's
    first position hold zeros: the caller masks them (`visible`). `offset` is the rotary position of the
    next position, an int or a scalar array (a compiled step takes it as an input)."""

    def __init__(self, keys: mx.array, values: mx.array, offset):
        self.keys, self.values, self.offset = keys, values, offset

    @classmethod
    def of(cls, cache: KVCache, window: int) -> WindowCache:
        """The window of a prefilled KVCache (a cache already windowed is returned as it is)."""
        if isinstance(cache, WindowCache):
            return cache
        keys, values = cache.state
        pad = [(0, 0), (0, 0), (max(window - keys.shape[2], 0), 0), (0, 0)]
        keys, values = mx.pad(keys[..., -window:, :], pad), mx.pad(values[..., -window:, :], pad)
        return cls(keys, values, cache.offset)

    @staticmethod
    def visible(window: int, offset) -> mx.array:
        """(window,) bool: the slots that hold a position once the one at `offset` is written (the rest
        are the zeros before the sequence's start)."""
        return mx.arange(window) >= window - 1 - offset

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Append one position (N, H, 1, D): the oldest slides out. Returns the whole window."""
        self.keys = mx.concatenate([self.keys[..., 1:, :], keys], axis=2)
        self.values = mx.concatenate([self.values[..., 1:, :], values], axis=2)
        return self.keys, self.values

    def map_rows(self, on_device) -> None:
        """Replace each per-row array by on_device(array) (for a DecodingState's `_map_rows`)."""
        self.keys, self.values = on_device(self.keys), on_device(self.values)


class SlotCache:
    """One block's keys and values in `length` slots per row. Rows begin patches at different bytes, so
    each fills its own slots: for a step, `write` (N, G) marks the one slot each stepping row writes. The
    prefill fills slots 0.. of every row. `offset` is what layers.Attention reads as the rotary position:
    an architecture with rotary positions over the slots sets it to each row's slot (N,); 0 otherwise."""

    def __init__(self, length: int):
        self.length = length
        self.keys = self.values = None  # (N, H, G, D)
        self.write = None
        self.offset = 0

    def update_and_fetch(self, keys, values):
        if self.keys is None:  # prefill: slots 0.. of every row (patches, then padding), then empty slots
            pad = [(0, 0), (0, 0), (0, self.length - keys.shape[2]), (0, 0)]
            self.keys, self.values = mx.pad(keys, pad), mx.pad(values, pad)
            return keys, values
        write = self.write[:, None, :, None]
        self.keys = mx.where(write, keys, self.keys)
        self.values = mx.where(write, values, self.values)
        return self.keys, self.values

    def map_rows(self, on_device) -> None:
        """Replace each per-row array by on_device(array) (for a DecodingState's `_map_rows`)."""
        self.keys, self.values = on_device(self.keys), on_device(self.values)
