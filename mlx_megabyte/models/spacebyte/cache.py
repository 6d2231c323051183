"""SpaceByte's decoding state: a KV cache per local block, a slot cache per global block, and per row the
boundary rule's bookkeeping, so that the global blocks step only where a row's new byte is a boundary."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np

from ...kernels import one_position
from ...tokens import layout_of
from ..base import DecodingState
from ..kv_cache import KVCache, SlotCache, WindowCache
from .boundaries import boundaries, natural_boundaries, spacelike_table


class SpaceByteCache(DecodingState):
    """The decoding state of `batch_size` sequences that all hold the same number of bytes: a KV cache
    per local block, a slot cache per global block, and per row (on the host) what the boundary rule
    needs: whether the last byte was spacelike, positions since the last natural boundary, and how many
    global positions the row has used. The global blocks step only when some row's new byte is a
    boundary, and only those rows keep the result. Equal lengths are enough to merge two states: each
    row keeps its own boundary bookkeeping and global slots."""

    def __init__(self, model, batch_size: int = 1, keep: int | None = None):
        super().__init__(model, batch_size, keep)
        self.offset = layout_of(self.config).offset
        self.table = spacelike_table(self.config.num_tokens, self.offset)
        self.prefill(self.tokens)

    def _prefill(self, ids: mx.array) -> mx.array:
        config, model = self.config, self.model
        self.tokens = ids
        self.initial = [KVCache(config.context_length + 1) for _ in model.initial_blocks]
        self.final = [KVCache(config.context_length + 1) for _ in model.final_blocks]
        self.globals = [SlotCache(config.global_length) for _ in model.global_blocks]
        outputs = model.forward(ids, self)
        # Windowed from here on, so that two prefilled states merge and every step has the same shapes.
        self.initial = [WindowCache.of(c, config.window) for c in self.initial]
        self.final = [WindowCache.of(c, config.window) for c in self.final]
        natural = np.array(natural_boundaries(ids, config.num_tokens, self.offset))
        last_natural = natural.shape[1] - 1 - np.argmax(natural[:, ::-1], axis=1)
        self.gap = (natural.shape[1] - 1 - last_natural).astype(np.int64)  # positions since it
        self.spacelike = self.table[np.array(ids[:, -1])] if ids.shape[1] else np.ones(self.batch_size, bool)
        found = np.array(boundaries(ids, config.max_patch, config.num_tokens, self.offset))
        self.used = np.minimum(found.sum(axis=1), config.global_length)  # global slots filled
        self.started = found[:, -1] if ids.shape[1] else np.zeros(self.batch_size, bool)
        return model.logits(outputs[:, -1])

    def _step(self, byte: mx.array) -> mx.array:
        config = self.config
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        # The boundary rule reads the byte, so the host waits for it here: it decides whether the global
        # blocks run (a graph either has them or not). What follows is one compiled call, so the wait costs
        # only building that call, not the step's ~150 operations (tools/profile_step.py --mode decode).
        spacelike = self.table[np.array(byte)[:, 0]]
        natural = spacelike & ~self.spacelike
        self.spacelike = spacelike
        self.gap = np.where(natural, 0, self.gap + 1)
        self.started = self.gap % config.max_patch == 0
        active = self.started & (self.used < config.global_length)
        local = [(c.keys, c.values) for c in self.initial + self.final]
        position = mx.array(self.length, dtype=mx.int32)  # the new byte's: the start is position 0
        if active.any():
            slots = np.minimum(self.used, config.global_length - 1)
            glob = [(c.keys, c.values) for c in self.globals]
            logits, local, glob = _compiled(self.model, True)(
                byte, position, local, mx.array(slots, dtype=mx.int32), mx.array(active), glob
            )
            for cache, (keys, values) in zip(self.globals, glob):
                cache.keys, cache.values = keys, values
            self.used = self.used + active
        else:
            logits, local = _compiled(self.model, False)(byte, position, local)
        for cache, (keys, values) in zip(self.initial + self.final, local):
            cache.keys, cache.values, cache.offset = keys, values, self.length + 1
        return logits

    def patch_started(self) -> list[bool]:
        """The byte just appended is a boundary: spacelike after a non-spacelike one, or the fallback's."""
        return self.started.tolist()

    def _map_rows(self, on_device, on_host):
        self.tokens = on_device(self.tokens)
        for cache in self.initial + self.final + self.globals:
            cache.map_rows(on_device)
        self.gap, self.spacelike, self.used, self.started = (
            on_host(self.gap),
            on_host(self.spacelike),
            on_host(self.used),
            on_host(self.started),
        )


def _compiled(model, with_global: bool):
    """The model's step as one compiled function (two: with and without the global blocks), traced once
    for all positions (the local caches' shapes are fixed: WindowCache) and kept on the model. A step is
    ~150 tiny operations; uncompiled, MLX's cost per operation and the Python that builds them dominated
    it. The weights are compile inputs, so later updates to them are seen."""
    steps = model.__dict__.get("_decode_steps")
    if steps is None:
        steps = {}
        object.__setattr__(model, "_decode_steps", steps)  # a plain attribute, not a child module
    if with_global not in steps:
        steps[with_global] = mx.compile(partial(one_position()(_step), model, with_global), inputs=[model.state])
    return steps[with_global]


def _step(model, with_global, byte, position, local, slots=None, active=None, glob=None):
    """One byte through the model, from the caches' arrays: (logits, local caches' arrays[, global ones])."""
    config = model.config
    visible = WindowCache.visible(config.window, position)
    caches = [WindowCache(keys, values, position) for keys, values in local]
    initial, final = caches[: len(model.initial_blocks)], caches[len(model.initial_blocks) :]
    x = model.run_blocks(model.initial_blocks, model.embedding(byte), initial, visible)  # (N, 1, d)
    if with_global:
        G = config.global_length
        globals_ = []
        for keys, values in glob:
            cache = SlotCache(G)
            cache.keys, cache.values = keys, values
            cache.write = (mx.arange(G)[None] == slots[:, None]) & active[:, None]
            globals_.append(cache)
        seen = (mx.arange(G)[None] <= slots[:, None])[:, None, None, :]
        y = model.to_global(x, model.global_position[slots][:, None])
        y = model.run_blocks(model.global_blocks, y, globals_, seen)
        x = x + mx.where(active[:, None, None], y[..., : config.local_dim], 0.0).astype(x.dtype)
    x = model.run_blocks(model.final_blocks, x, final, visible)
    local = [(c.keys, c.values) for c in caches]
    logits = model.logits(x[:, -1])
    return (logits, local, [(c.keys, c.values) for c in globals_]) if with_global else (logits, local)
