"""H-Net's decoding state. Per byte: the encoder steps (a Mamba-2 layer keeps a fixed-size state, an
attention block a KV cache), the router compares the new encoder state with the previous one, the main
network steps only for rows whose byte begins a patch (and that have a slot left), the EMA carries each
row's smoothed patch, and the decoder steps."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..base import DecodingState
from ..kv_cache import KVCache, SlotCache
from . import chunking
from .mamba2 import MambaState


class HNetCache(DecodingState):
    """The decoding state of `batch_size` sequences that all hold the same number of bytes: a state per
    byte layer, a slot cache per main-network block, and per row the last encoder state (the router's
    h_{t-1}), the smoothed output of the row's current patch, and on the host the slots used and whether
    the last byte began a patch. Equal lengths are enough to merge two states: each row keeps its own
    slots, positions and EMA."""

    def __init__(self, model, batch_size: int = 1, keep: int | None = None):
        super().__init__(model, batch_size, keep)
        self.prefill(self.tokens)

    def _layer_states(self, stack) -> list:
        if self.config.mamba:
            return [MambaState() for _ in stack.layers]
        return [KVCache(self.config.context_length + 1) for _ in stack.layers]

    def _prefill(self, ids: mx.array) -> mx.array:
        model, config = self.model, self.config
        self.tokens = ids
        self.encoder, self.decoder = self._layer_states(model.encoder), self._layer_states(model.decoder)
        self.main = [SlotCache(config.max_patches) for _ in model.main.layers]
        result = model.forward(ids, self)
        self.previous = result.h[:, -1:]  # (N, 1, d): the router's h_{t-1} for the next byte
        self.smoothed = result.smoothed[:, -1:]  # (N, 1, d): the EMA of the row's current patch
        boundary = np.array(result.boundary)
        self.used = np.minimum(boundary.sum(axis=1), config.max_patches)  # slots filled, the start's included
        self.started = boundary[:, -1] if ids.shape[1] else np.zeros(self.batch_size, bool)
        return model.logits(result.outputs[:, -1])

    def _step(self, byte: mx.array) -> mx.array:
        model, G = self.model, self.config.max_patches
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        h = model.encode(byte, self.encoder, start=False)  # (N, 1, d)
        p = model.router.probability(self.previous, h)  # (N, 1)
        self.previous = h
        self.started = np.array(chunking.boundaries(p))[:, 0]
        active = self.started & (self.used < G)  # rows whose new patch gets a main-network slot
        if active.any():
            slots = np.minimum(self.used, G - 1)
            write = mx.array((np.arange(G)[None] == slots[:, None]) & active[:, None])
            visible = mx.array(np.arange(G)[None] <= slots[:, None])[:, None, None, :]
            for cache in self.main:
                cache.write, cache.offset = write, mx.array(slots)
            z = model.main_network(h, self.main, visible)  # (N, 1, d)
            smoothed = chunking.smooth_step(z, p, self.smoothed)
            self.smoothed = mx.where(mx.array(active)[:, None, None], smoothed, self.smoothed)
            self.used = self.used + active
        y = self.smoothed + model.residual(h)  # the straight-through confidence is 1 here
        return model.logits(model.decoder(y, self.decoder)[:, -1])

    def patch_started(self) -> list[bool]:
        """The router put a boundary at the byte just appended (with or without a slot for it)."""
        return self.started.tolist()

    def _map_rows(self, on_device, on_host):
        self.tokens = on_device(self.tokens)
        for state in self.encoder + self.decoder + self.main:
            state.map_rows(on_device)
        self.previous, self.smoothed = on_device(self.previous), on_device(self.smoothed)
        self.used, self.started = on_host(self.used), on_host(self.started)
