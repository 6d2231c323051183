"""Incremental decoding: per-stage KV caches that reproduce MEGABYTE's training-time function byte by byte.

Every stage keeps the cache of its *current* sequence. A new byte goes to the last stage. When it completes
an element of the stage above (a patch), that element is fed to the stage above, and so on up the
hierarchy; every stage below the highest one that moved then starts a fresh sequence: its cache is
emptied, its context comes from the new output above, and its start token is fed. So the global stage
steps once per patch and each finer stage once per element, as in `MEGABYTE.__call__`. The model's
stages do the work (`Stage.start`, `inputs`, `context_for_next`, `__call__`): this module only keeps
the state and decides what to feed when.

Two quirks of megabyte-pytorch that this keeps:
- The first byte of a sequence is predicted by the start token of the last stage, which sees nothing else
  (megabyte-pytorch's `forward_empty` adds context there; its training forward, which we follow, does not).
- The byte after a completed patch is predicted by the *old* local sequence's last position, not by the
  new sequence's start.

When the context is full, the window slides: the last half is prefilled again from scratch.
"""

from __future__ import annotations

import mlx.core as mx

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
        """(keys, values, last attention row, last feed-forward row), cut to what is cached."""
        keys, values = self.keys, self.values
        if keys.shape[2] != self.offset:
            keys, values = keys[..., : self.offset, :], values[..., : self.offset, :]
        return (keys, values, *(self.rows[name] for name in SUBLAYERS))

    @state.setter
    def state(self, value: tuple[mx.array, ...]) -> None:
        self.keys, self.values, *rows = value
        self.offset = self.keys.shape[2]
        self.rows = dict(zip(SUBLAYERS, rows))


class MegabyteCache:
    """The decoding state of `batch_size` sequences that all hold the same number of bytes."""

    def __init__(self, model, batch_size: int = 1, keep: int | None = None):
        self.model = model
        self.config = config = model.config
        self.batch_size = batch_size
        # On overflow keep this many bytes (default: half the context).
        self.keep = keep if keep is not None else config.context_length // 2
        if not 0 <= self.keep < config.context_length:
            raise ValueError(f"keep must be in [0, {config.context_length}), got {self.keep}")
        self.slid = 0  # how many times the window slid, for the caller's notices
        self._reset(mx.zeros((batch_size, 0), dtype=mx.int32))

    @property
    def length(self) -> int:
        """Bytes currently in the window."""
        return self.tokens.shape[1]

    def prefill(self, ids: mx.array) -> mx.array:
        """Start over from `ids` (N, L), L <= context; return the logits (N, vocab) for the next byte.

        All complete elements of every stage are processed in one call per stage, not byte by byte.
        """
        ids = mx.array(ids).astype(mx.int32)
        if ids.ndim != 2 or ids.shape[0] != self.batch_size:
            raise ValueError(f"expected ids of shape ({self.batch_size}, length), got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(f"{ids.shape[1]} bytes do not fit the context of {self.config.context_length}")
        if ids.shape[1] == 0:
            self._reset(ids)
            return self._logits()
        # The last byte goes through `step`, which knows that the byte after a completed patch is
        # predicted by the old local sequence.
        self._reset(ids[:, :-1])
        return self.step(ids[:, -1])

    def step(self, byte: mx.array) -> mx.array:
        """Append one byte per sequence (N,); return the logits (N, vocab) for the byte after it."""
        config, last = self.config, self.config.stages - 1
        byte = mx.array(byte).astype(mx.int32).reshape(self.batch_size, 1)
        if self.length == config.context_length:
            self.slid += 1
            return self.prefill(mx.concatenate([self.tokens[:, self.length - self.keep :], byte], axis=1))
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        self._feed_elements(last, byte)
        logits = self._logits()

        # Carry completed elements up the hierarchy.
        s = last
        while s > 0 and self.counts[s] == config.max_seq_len[s]:
            s -= 1
            size = config.patch_size(s)
            first = self.bases[s] + self.counts[s] * size
            self._feed_elements(s, self.tokens[:, first : first + size])
        for below in range(s + 1, config.stages):
            self._open(below, base=self.length)
        return logits

    # --- rows: what a server needs to batch requests that arrive at different times ---------------

    def select(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), e.g. to drop finished or abandoned sequences."""
        index = mx.array(rows, dtype=mx.int32)
        self._map_rows(lambda a: a[index])
        self.batch_size = len(rows)

    def merge(self, other: MegabyteCache) -> None:
        """Append `other`'s rows. Both must hold the same number of bytes: the state of every stage
        (which element, which position in it) is then the same, and only the arrays differ."""
        if (self.length, self.counts, self.bases) != (other.length, other.counts, other.bases):
            raise ValueError(f"cannot merge a cache of {other.length} bytes into one of {self.length}")
        theirs = []
        other._map_rows(lambda a: theirs.append(a) or a)
        theirs = iter(theirs)
        self._map_rows(lambda a: mx.concatenate([a, next(theirs)], axis=0))
        self.batch_size += other.batch_size

    def _map_rows(self, f):
        """Replace every per-row array of the state (first axis = row) by f(array), in a fixed order."""
        self.tokens = f(self.tokens)
        for s in range(self.config.stages):
            if self.context[s] is not None:
                self.context[s] = f(self.context[s])
            self.outputs[s] = f(self.outputs[s])
            for cache in self.caches[s]:
                cache.state = tuple(f(a) for a in cache.state)

    # --- internals ---------------------------------------------------------------------------------

    def _reset(self, ids):
        """Build every stage's state for the bytes `ids`, feeding whole elements per stage at once."""
        config = self.config
        self.tokens = ids
        self.caches, self.context, self.outputs = [None] * config.stages, [None] * config.stages, [None] * config.stages
        self.counts, self.bases = [0] * config.stages, [0] * config.stages
        base = 0
        for s in range(config.stages):
            self._open(s, base)
            size = config.patch_size(s)
            complete = (self.length - base) // size
            if complete:
                self._feed_elements(s, ids[:, base : base + complete * size])
            base += complete * size

    def _open(self, s, base):
        """Start a fresh sequence at stage s, covering bytes from `base`: empty its cache, take its context
        from stage s - 1's latest output, and feed its start token."""
        stage = self.model.stages[s]
        if s > 0:
            self.context[s] = self.model.stages[s - 1].context_for_next(self.outputs[s - 1])
        self.caches[s] = stage.make_cache()
        self.counts[s], self.bases[s] = 0, base
        self._run(s, stage.start(self.batch_size))

    def _feed_elements(self, s, ids):
        """Feed stage s the next elements of its current sequence, given their bytes (N, k * patch)."""
        x = self.model.stages[s].inputs(ids, self.context[s], first=self.counts[s])
        self._run(s, x)
        self.counts[s] += x.shape[1]

    def _run(self, s, x):
        stage, caches = self.model.stages[s], self.caches[s]
        # Only finer stages decode through the compiled step: their caches restart every element, so a
        # handful of cache lengths recur and each is traced once. The first stage's cache only grows, so
        # every step would be a new trace (~20 ms for the 40m model, more than the step itself).
        if s > 0 and x.shape[1] == 1 and caches and caches[0].offset > 0:
            out = _one_position(stage, x, caches)
        else:
            out = stage(x, caches)
        self.outputs[s] = out[:, -1]

    def _logits(self):
        return self.model.logits(self.outputs[-1])


def _one_position(stage, x, caches):
    """stage(x, caches) for one new position, as one compiled function.

    A decoding step is ~30 tiny operations per layer, and on CPUs MLX's per-operation cost, not the
    arithmetic, dominated it; compiled, the elementwise ones fuse (1.7x faster for the 40m model's local
    stage). The function is the stage's own code run on caches rebuilt from their `state`, traced once
    per cache length and kept on the stage; its weights are compile inputs, so later updates (a sample
    during training) are seen.
    """
    step = stage.__dict__.get("_one_position_step")
    if step is None:

        def run(x, states):
            rebuilt = []
            for state in states:
                cache = KVCache(max_length=state[0].shape[2] + 1)  # room for exactly the new position
                cache.state = state
                rebuilt.append(cache)
            return stage(x, rebuilt), [cache.state for cache in rebuilt]

        step = mx.compile(run, inputs=[stage.transformer.state])  # the only weights `run` reads
        object.__setattr__(stage, "_one_position_step", step)  # a plain attribute, not a child module
    out, states = step(x, [cache.state for cache in caches])
    for cache, state in zip(caches, states):
        cache.state = state
    return out
