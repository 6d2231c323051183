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

import copy

import mlx.core as mx

from ..base import DecodingState
from ..kv_cache import KVCache

# The sublayers whose input token shift looks one row back into: their last rows are kept.
SUBLAYERS = ("attention", "feed_forward")


class ShiftKVCache(KVCache):
    """A layer's KVCache plus the last input row of each sublayer: megabyte-pytorch's token shift looks
    one position back, and while decoding that position was fed in an earlier call."""

    def __init__(self, max_length: int | None = None):
        super().__init__(max_length)
        self.rows: dict[str, mx.array] = {}
        self.inputs: dict[str, mx.array] | None = None  # when recording: each sublayer's whole last input

    def previous_row(self, sublayer: str, x: mx.array) -> mx.array | None:
        """The row that preceded x[:, 0] in `sublayer` (None at a sequence start); remembers x's last."""
        previous = self.rows.get(sublayer)
        self.rows[sublayer] = x[:, -1:]
        if self.inputs is not None:
            self.inputs[sublayer] = x
        return previous

    def prefix(self, positions: int, index: int) -> ShiftKVCache:
        """A new cache holding the first `positions` of this one's, after a recorded call whose row
        `index` was the last of them."""
        cache = ShiftKVCache(self.max_length)
        keys, values = (mx.contiguous(a[..., :positions, :]) for a in KVCache.state.fget(self))
        cache.state = (keys, values, *(mx.contiguous(self.inputs[name][:, index : index + 1]) for name in SUBLAYERS))
        return cache

    @property
    def state(self) -> tuple[mx.array, ...]:
        """(keys, values, and the last rows kept, if any), cut to what is cached: all a compiled step
        (`_new_positions`) needs to rebuild the cache."""
        return (*super().state, *(self.rows[name] for name in SUBLAYERS if name in self.rows))

    @state.setter
    def state(self, value: tuple[mx.array, ...]) -> None:
        keys, values, *rows = value
        KVCache.state.fset(self, (keys, values))
        self.rows = dict(zip(SUBLAYERS, rows))


class MegabyteCache(DecodingState):
    """The decoding state of `batch_size` sequences that all hold the same number of bytes."""

    batched_extend = True
    resumes_as_prefill = True

    def __init__(self, model, batch_size: int = 1, keep: int | None = None):
        super().__init__(model, batch_size, keep)
        self._reset(self.tokens)

    def _prefill(self, ids: mx.array) -> mx.array:
        """All complete elements of every stage are processed in one call per stage, not byte by byte."""
        if ids.shape[1] == 0:
            self._reset(ids)
            return self._logits()
        # The last byte goes through `step`, which knows that the byte after a completed patch is
        # predicted by the old local sequence.
        self._reset(ids[:, :-1])
        return self.step(ids[:, -1])

    def _step(self, byte: mx.array) -> mx.array:
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        self._feed_elements(self.config.stages - 1, byte)
        logits = self._logits()
        self._carry()
        return logits

    def _extend(self, ids: mx.array, marks: list | None = None) -> mx.array:
        """The bytes that fall in one sequence of the last stage (one patch of the stage above) go to it in
        one call, whose every position gives a byte's logits; the stages above step where a patch
        completes, as after a `_step`. So k bytes cost about k / patch local calls, not k. With `marks`,
        the state after each such step is marked: a rejection past it keeps the global step."""
        last, logits, done = self.config.stages - 1, [], 0
        while done < ids.shape[1]:
            run = ids[:, done : done + self.config.max_seq_len[last] - self.counts[last]]
            self.tokens = mx.concatenate([self.tokens, run], axis=1)
            logits.append(self.model.logits(self._feed_elements(last, run)))
            completed = self.counts[last] == self.config.max_seq_len[last]
            self._carry()
            done += run.shape[1]
            if marks is not None and completed and done < ids.shape[1]:
                marks.append((done, self.mark()))
        return logits[0] if len(logits) == 1 else mx.concatenate(logits, axis=1)

    def _resume(self, ids: mx.array) -> mx.array:
        """A prefill that keeps what the first stage was already fed: its caches only grow, and the finer
        stages' caches start afresh every element, so they are rebuilt (`_reset`). k bytes cost one call
        per stage, about a prefill of k bytes; up to a patch, `_extend` costs fewer calls."""
        if self.config.stages == 1 or ids.shape[1] <= self.config.patch_size(0):
            return self._extend(ids)[:, -1]
        self._reset(mx.concatenate([self.tokens, ids], axis=1), resume=True)
        logits = self._logits()
        self._carry()
        return logits

    def _prefill_keeping(self, ids: mx.array, lengths: list[int]):
        """The states after global patch boundaries, from the one call that feeds the first stage the
        prompt's patches: each is that stage's caches cut to its patches (with the token shift's rows
        recorded on the way) and finer stages opened afresh, all in one call."""
        size = self.config.patch_size(0)
        points = sorted({c - c % size for c in lengths if c < ids.shape[1]} - {0})
        if not points:
            return self._prefill(ids), []
        kept = self._reset(ids[:, :-1], keep=points)
        return self.step(ids[:, -1]), kept

    def cheap_bytes(self, fed: int, wanted: int) -> int:
        size = self.config.patch_size(0)
        into = (self.length + fed) % size  # bytes of the current global patch, once `fed` are in
        room = size - 1 - into  # proposals that leave the patch one byte short of complete
        return min(wanted, room) if room > 0 else wanted

    def mark(self):
        """Where every cache reaches, not a copy: the caches only grow (a finer stage's is replaced, not
        emptied, when it opens), so going back is cutting each to its mark. It spares the deep copy a
        speculative check took of the whole state, and keeps the global caches' buffers updatable in
        place (MLX copies an array that another reference holds before writing into it)."""
        fields = {name: list(value) if isinstance(value, list) else value for name, value in vars(self).items()}
        fields["caches"] = [None if stage is None else list(stage) for stage in self.caches]
        reach = [
            (cache, cache.offset, cache.keys is None, dict(cache.rows))
            for stage in fields["caches"]
            if stage
            for cache in stage
        ]
        return fields, reach

    def rewind(self, mark) -> None:
        fields, reach = mark
        self.__dict__.update(fields)
        for cache, offset, empty, rows in reach:
            # Positions below `offset` were never written since the mark: only those past it change.
            cache.offset, cache.rows = offset, rows
            if empty:
                cache.keys = cache.values = None

    def patch_started(self) -> list[bool]:
        """Fixed patches: the byte at position p begins one when p is a multiple of the global patch."""
        return [(self.length - 1) % self.config.patch_size(0) == 0] * self.batch_size

    def merge_key(self) -> tuple:
        """Equal lengths mean equal stage states (which element, which position in it); the key makes sure."""
        return (type(self), self.length, tuple(self.counts), tuple(self.bases))

    def _map_rows(self, on_device, on_host):
        self.tokens = on_device(self.tokens)
        for s in range(self.config.stages):
            if self.context[s] is not None:
                self.context[s] = on_device(self.context[s])
            self.outputs[s] = on_device(self.outputs[s])
            for cache in self.caches[s]:
                cache.map_rows(on_device)

    # --- internals ---------------------------------------------------------------------------------

    def _reset(self, ids, resume=False, keep=()):
        """Build every stage's state for the bytes `ids`, feeding whole elements per stage at once, and
        return the states after the global patch boundaries `keep` (`_kept`). With `resume`, `ids` begin
        with the state's bytes, the first stage is fed only the elements after those it holds, and the
        last byte goes to the last stage in one call with the rest of its sequence: the stages above see
        only the bytes before it, as when `_prefill` steps it, and the caller carries it (`_carry`)."""
        config, last = self.config, self.config.stages - 1
        self.tokens = ids
        if not resume:
            self.caches, self.context, self.outputs = [None] * (last + 1), [None] * (last + 1), [None] * (last + 1)
            self.counts, self.bases = [0] * (last + 1), [0] * (last + 1)
        seen = self.length - 1 if resume else self.length  # the bytes the stages above the last see
        base, kept = 0, []
        for s in range(config.stages):
            if resume and s == last:
                self._open(s, base, ids[:, base:])
                break
            if s or not resume:
                self._open(s, base)
            size, fed = config.patch_size(s), self.counts[s]
            complete = (seen - base) // size
            if complete > fed and s == 0 and keep:
                kept = self._kept(ids, keep)
            elif complete > fed:
                self._feed_elements(s, ids[:, base + fed * size : base + complete * size])
            base += complete * size
        return kept

    def _kept(self, ids, points) -> list[MegabyteCache]:
        """Feed the first stage (freshly opened) all the complete patches of `ids`, recording its inputs;
        return the states after the first c bytes, c in `points` (multiples of the patch)."""
        first, size = self.caches[0], self.config.patch_size(0)
        for cache in first:
            cache.inputs = {}
        out = self._feed_elements(0, ids[:, : ids.shape[1] // size * size])  # (N, patches, D)
        # The finer stages of every kept state start from its last global output: open them for all at once.
        opened = copy.copy(self)
        opened.batch_size, stages = len(points) * self.batch_size, self.config.stages
        opened.outputs = [mx.concatenate([out[:, c // size - 1] for c in points])] + [None] * (stages - 1)
        opened.caches, opened.context = [None] * stages, [None] * stages
        opened.counts, opened.bases = [0] * stages, [0] * stages
        for s in range(1, stages):
            opened._open(s, 0)
        kept = []
        for i, c in enumerate(points):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            state = copy.copy(self)
            state.tokens = mx.contiguous(ids[:, :c])
            state.counts, state.bases = [c // size] + [0] * (stages - 1), [0] + [c] * (stages - 1)
            state.caches = [[cache.prefix(c // size + 1, c // size - 1) for cache in first]]
            state.caches += [[_rows_of(cache, rows) for cache in opened.caches[s]] for s in range(1, stages)]
            state.context = [None] + [mx.contiguous(opened.context[s][rows]) for s in range(1, stages)]
            state.outputs = [mx.contiguous(out[:, c // size - 1])] + [
                mx.contiguous(opened.outputs[s][rows]) for s in range(1, stages)
            ]
            kept.append(state)
        for cache in first:
            cache.inputs = None
        return kept

    def _carry(self):
        """Carry completed elements up the hierarchy; every stage below the highest that moved starts a
        fresh sequence."""
        config, s = self.config, self.config.stages - 1
        while s > 0 and self.counts[s] == config.max_seq_len[s]:
            s -= 1
            size = config.patch_size(s)
            first = self.bases[s] + self.counts[s] * size
            self._feed_elements(s, self.tokens[:, first : first + size])
        for below in range(s + 1, config.stages):
            self._open(below, base=self.length)

    def _open(self, s, base, ids=None):
        """Start a fresh sequence at stage s, covering bytes from `base`: empty its cache, take its context
        from stage s - 1's latest output, and feed its start token (and with it, in the same call, the
        first elements, given their bytes `ids`)."""
        stage = self.model.stages[s]
        if s > 0:
            self.context[s] = self.model.stages[s - 1].context_for_next(self.outputs[s - 1])
        self.caches[s] = stage.make_cache()
        self.bases[s] = base
        # A finer stage's start token sees nothing else (the coarser stage's context is added to the
        # elements after it), so its run alone is the same for every patch: run once per state, then reused
        # (the keys, values and token-shift rows it leaves, and its output). ~2 ms of a 30 ms patch on CPU.
        # start_runs[s]: (batch size, cache states, output); set here (a state loaded from an older prompt
        # cache file has none yet). With `ids` the start goes in one call with the first elements instead.
        runs = self.__dict__.setdefault("start_runs", [None] * self.config.stages)
        memo = runs[s]
        if ids is None and memo is not None and memo[0] == self.batch_size:
            for cache, state in zip(self.caches[s], memo[1]):
                cache.state = state
            self.outputs[s], self.counts[s] = memo[2], 0
            return
        x = stage.start(self.batch_size)
        if ids is not None:
            x = mx.concatenate([x, stage.inputs(ids, self.context[s])], axis=1)
        self._run(s, x)
        self.counts[s] = x.shape[1] - 1
        if s > 0 and ids is None:
            runs[s] = (self.batch_size, [cache.state for cache in self.caches[s]], self.outputs[s])

    def _feed_elements(self, s, ids):
        """Feed stage s the next elements of its current sequence, given their bytes (N, k * patch); return
        the stage's outputs (N, k, D)."""
        x = self.model.stages[s].inputs(ids, self.context[s], first=self.counts[s])
        out = self._run(s, x)
        self.counts[s] += x.shape[1]
        return out

    def _run(self, s, x):
        stage, caches = self.model.stages[s], self.caches[s]
        # Only finer stages decode through the compiled step: their caches restart every element, so a
        # handful of (cache length, new positions) pairs recur and each is traced once. The first stage's
        # cache only grows, so every step would be a new trace (~20 ms for the 40m model, more than the
        # step itself). Several positions at once are what `extend` feeds a speculative decoder's check.
        if s > 0 and caches and caches[0].offset > 0:
            out = _new_positions(stage, x, caches)
        else:
            out = stage(x, caches)
        self.outputs[s] = out[:, -1]
        return out

    def _logits(self):
        return self.model.logits(self.outputs[-1])


def _rows_of(cache: ShiftKVCache, rows: slice) -> ShiftKVCache:
    """A new cache holding these rows of `cache`."""
    part = ShiftKVCache(cache.max_length)
    part.state = tuple(mx.contiguous(a[rows]) for a in cache.state)
    return part


def _new_positions(stage, x, caches):
    """stage(x, caches) for a few new positions (usually one), as one compiled function.

    A decoding step is ~30 tiny operations per layer, and on CPUs MLX's per-operation cost, not the
    arithmetic, dominated it; compiled, the elementwise ones fuse (1.7x faster for the 40m model's local
    stage). The function is the stage's own code run on caches rebuilt from their `state`, traced once
    per cache length and number of new positions and kept on the stage; its weights are compile inputs,
    so later updates (a sample during training) are seen.
    """
    step = stage.__dict__.get("_one_position_step")
    if step is None:

        def run(x, states):
            rebuilt = []
            for state in states:
                cache = ShiftKVCache(max_length=state[0].shape[2] + x.shape[1])  # room for exactly the new ones
                cache.state = state
                rebuilt.append(cache)
            return stage(x, rebuilt), [cache.state for cache in rebuilt]

        step = mx.compile(run, inputs=[stage.transformer.state])  # the only weights `run` reads
        object.__setattr__(stage, "_one_position_step", step)  # a plain attribute, not a child module
    out, states = step(x, [cache.state for cache in caches])
    for cache, state in zip(caches, states):
        cache.state = state
    return out
