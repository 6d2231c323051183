"""SpaceByte's decoding state: a KV cache per local block, a slot cache per global block, and per row the
boundary rule's bookkeeping, so that the global blocks step only where a row's new byte is a boundary."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ...tokens import layout_of
from ..base import DecodingState
from ..kv_cache import KVCache, SlotCache
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
        natural = np.array(natural_boundaries(ids, config.num_tokens, self.offset))
        last_natural = natural.shape[1] - 1 - np.argmax(natural[:, ::-1], axis=1)
        self.gap = (natural.shape[1] - 1 - last_natural).astype(np.int64)  # positions since it
        self.spacelike = self.table[np.array(ids[:, -1])] if ids.shape[1] else np.ones(self.batch_size, bool)
        found = np.array(boundaries(ids, config.max_patch, config.num_tokens, self.offset))
        self.used = np.minimum(found.sum(axis=1), config.global_length)  # global slots filled
        self.started = found[:, -1] if ids.shape[1] else np.zeros(self.batch_size, bool)
        return model.logits(outputs[:, -1])

    def _step(self, byte: mx.array) -> mx.array:
        config, model = self.config, self.model
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        spacelike = self.table[np.array(byte)[:, 0]]
        natural = spacelike & ~self.spacelike
        self.spacelike = spacelike
        self.gap = np.where(natural, 0, self.gap + 1)
        self.started = self.gap % config.max_patch == 0
        active = self.started & (self.used < config.global_length)

        x = model.run_blocks(model.initial_blocks, model.embedding(byte), self.initial)  # (N, 1, d)
        if active.any():
            slots = np.minimum(self.used, config.global_length - 1)
            write = mx.array((np.arange(config.global_length)[None] == slots[:, None]) & active[:, None])
            visible = mx.array(np.arange(config.global_length)[None] <= slots[:, None])[:, None, None, :]
            for cache in self.globals:
                cache.write = write
            y = model.to_global(x, model.global_position[mx.array(slots)][:, None])
            y = model.run_blocks(model.global_blocks, y, self.globals, visible)
            x = x + mx.where(mx.array(active)[:, None, None], y[..., : config.local_dim], 0.0).astype(x.dtype)
            self.used = self.used + active
        x = model.run_blocks(model.final_blocks, x, self.final)
        return model.logits(x[:, -1])

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
