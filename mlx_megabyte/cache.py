"""Incremental decoding: per-stage KV caches that reproduce MEGABYTE's training-time function byte by byte.

Every stage keeps the cache of its *current* sequence. A new byte goes to the last stage. When it completes
an element of the stage above (a patch), that element is embedded and fed to the stage above, and so on up
the hierarchy; every stage below the highest one that moved then starts a fresh sequence: its cache is
reset, its context comes from the new output above, and its start token is fed. So the global stage steps
once per patch and each finer stage once per element, as in `MEGABYTE.__call__`.

Two quirks of megabyte-pytorch that this keeps:
- The first byte of a sequence is predicted by the start token of the last stage, which sees nothing else
  (megabyte-pytorch's `forward_empty` adds context there; its training forward, which we follow, does not).
- The byte after a completed patch is predicted by the *old* local sequence's last position, not by the
  new sequence's start.

When the context is full, the window slides: the last half is prefilled again from scratch.
"""

from __future__ import annotations

import mlx.core as mx


class LayerCache:
    """One transformer layer's keys and values, plus the last input row of each sublayer (token shift
    needs the previous position)."""

    def __init__(self):
        self.keys = None
        self.values = None
        self.offset = 0  # positions already cached, i.e. the rotary position of the next one
        self._last_rows = {}

    def update_and_fetch(self, keys, values):
        """Append (N, H, T, D) keys/values; return everything cached so far."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys = mx.concatenate([self.keys, keys], axis=2)
            self.values = mx.concatenate([self.values, values], axis=2)
        self.offset += keys.shape[2]
        return self.keys, self.values

    def previous_row(self, name: str, x: mx.array) -> mx.array | None:
        """The row that preceded x[:, 0] in sublayer `name` (None at a sequence start); remembers x's last."""
        previous = self._last_rows.get(name)
        self._last_rows[name] = x[:, -1:]
        return previous


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
        self._feed(last, self._elements(last, byte))
        logits = self._logits()

        # Carry completed elements up the hierarchy.
        s = last
        while s > 0 and self.counts[s] == config.max_seq_len[s]:
            s -= 1
            size = config.patch_size(s)
            first = self.bases[s] + self.counts[s] * size
            self._feed(s, self._elements(s, self.tokens[:, first : first + size]))
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
                cache.keys, cache.values = f(cache.keys), f(cache.values)
                cache._last_rows = {name: f(row) for name, row in sorted(cache._last_rows.items())}

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
                self._feed(s, self._elements(s, ids[:, base : base + complete * size]))
            base += complete * size

    def _open(self, s, base):
        """Start a fresh sequence at stage s, covering bytes from `base`: reset its cache, take its context
        from stage s - 1's latest output, and feed its start token."""
        config, stage = self.config, self.model.stages[s]
        if s > 0:
            seeds = self.model.stages[s - 1].to_next(self.outputs[s - 1])
            self.context[s] = seeds.reshape(self.batch_size, config.max_seq_len[s], config.dim[s])
        self.caches[s] = [LayerCache() for _ in stage.transformer.layers]
        self.counts[s], self.bases[s] = 0, base
        start = mx.broadcast_to(stage.start_token, (self.batch_size, 1, config.dim[s]))
        self._feed(s, start, elements=0)

    def _elements(self, s, ids):
        """Inputs (N, k, D) for the next k elements of stage s's current sequence: embedding + context
        (+ learned positions), exactly as in MEGABYTE.__call__."""
        stage = self.model.stages[s]
        x = stage.embed(ids, self.config.patch_size(s))
        positions = slice(self.counts[s], self.counts[s] + x.shape[1])
        if s > 0:
            x = x + self.context[s][:, positions]
        if self.config.pos_emb:
            x = x + stage.position_embedding.weight[positions]
        return x

    def _feed(self, s, x, elements=None):
        transformer, caches = self.model.stages[s].transformer, self.caches[s]
        # Only finer stages decode through the compiled step: their caches restart every element, so a
        # handful of cache lengths recur and each is traced once. The first stage's cache only grows, so
        # every step would be a new trace (~20 ms for the 40m model, more than the step itself).
        if s > 0 and x.shape[1] == 1 and caches and caches[0].keys is not None:
            out = _one_position(transformer, x, caches)
        else:
            out = transformer(x, caches)
        self.outputs[s] = out[:, -1]
        self.counts[s] += x.shape[1] if elements is None else elements

    def _logits(self):
        return self.model.to_logits(self.outputs[-1])


def _one_position(transformer, x, caches):
    """transformer(x, caches) for one new position, as one compiled function.

    A decoding step is ~30 tiny operations per layer, and on CPUs MLX's per-operation cost, not the
    arithmetic, dominated it; compiled, the elementwise ones fuse (1.7x faster for the 40m model's local
    stage). The function is the model's own code run on LayerCaches rebuilt from plain arrays, traced once
    per cache length and kept on the transformer; its weights are compile inputs, so later updates (a
    sample during training) are seen.
    """
    step = transformer.__dict__.get("_one_position_step")
    if step is None:

        def run(x, keys, values, attention_rows, feed_forward_rows):
            rebuilt = []
            for k, v, a, f in zip(keys, values, attention_rows, feed_forward_rows):
                cache = LayerCache()
                cache.keys, cache.values, cache.offset = k, v, k.shape[2]
                cache._last_rows = {"attention": a, "feed_forward": f}
                rebuilt.append(cache)
            out = transformer(x, rebuilt)
            rows = [c._last_rows for c in rebuilt]
            return (out, [c.keys for c in rebuilt], [c.values for c in rebuilt],
                    [r["attention"] for r in rows], [r["feed_forward"] for r in rows])

        step = mx.compile(run, inputs=[transformer.state])
        object.__setattr__(transformer, "_one_position_step", step)
    out, keys, values, attention_rows, feed_forward_rows = step(
        x, [c.keys for c in caches], [c.values for c in caches],
        [c._last_rows["attention"] for c in caches], [c._last_rows["feed_forward"] for c in caches],
    )
    for cache, k, v, a, f in zip(caches, keys, values, attention_rows, feed_forward_rows):
        cache.keys, cache.values, cache.offset = k, v, k.shape[2]
        cache._last_rows = {"attention": a, "feed_forward": f}
    return out
