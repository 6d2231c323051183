"""H-Net's decoding state. Per byte: the encoder steps (a Mamba-2 layer keeps a fixed-size state, an
attention block a KV cache), the router compares the new encoder state with the previous one, the main
network steps only for rows whose byte begins a patch (and that have a slot left), the EMA carries each
row's smoothed patch, and the decoder steps."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np

from ...kernels import one_position
from ..base import DecodingState
from ..kv_cache import KVCache, SlotCache, WindowCache
from ..layers import embed
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
        if not config.mamba:  # windowed from here on: two prefilled states merge, every step has one shape
            self.encoder = [WindowCache.of(c, config.window) for c in self.encoder]
            self.decoder = [WindowCache.of(c, config.window) for c in self.decoder]
        self.previous = result.h[:, -1:]  # (N, 1, d): the router's h_{t-1} for the next byte
        self.smoothed = result.smoothed[:, -1:]  # (N, 1, d): the EMA of the row's current patch
        boundary = np.array(result.boundary)
        self.used = np.minimum(boundary.sum(axis=1), config.max_patches)  # slots filled, the start's included
        self.started = boundary[:, -1] if ids.shape[1] else np.zeros(self.batch_size, bool)
        return model.logits(result.outputs[:, -1])

    def _step(self, byte: mx.array) -> mx.array:
        model, G = self.model, self.config.max_patches
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        position = mx.array(self.length, dtype=mx.int32)  # the new byte's: the start is position 0
        h, p, boundary, encoder = _compiled(model, "encode")(byte, position, self.previous, _arrays(self.encoder))
        _restore(self.encoder, encoder, self.length + 1)
        self.previous = h
        # The host waits for the encoder here: the router's decision says whether the main network runs.
        # Both halves of the step are compiled calls, so the wait costs little more than building them.
        self.started = np.array(boundary)[:, 0]
        active = self.started & (self.used < G)  # rows whose new patch gets a main-network slot
        decoder = _arrays(self.decoder)
        if active.any():
            slots = mx.array(np.minimum(self.used, G - 1), dtype=mx.int32)
            logits, self.smoothed, main, decoder = _compiled(model, "main")(
                h, p, position, self.smoothed, slots, mx.array(active), [(c.keys, c.values) for c in self.main], decoder
            )
            for cache, (keys, values) in zip(self.main, main):
                cache.keys, cache.values = keys, values
            self.used = self.used + active
        else:
            logits, decoder = _compiled(model, "decode")(h, position, self.smoothed, decoder)
        _restore(self.decoder, decoder, self.length + 1)
        return logits

    def patch_started(self) -> list[bool]:
        """The router put a boundary at the byte just appended (with or without a slot for it)."""
        return self.started.tolist()

    def _map_rows(self, on_device, on_host):
        self.tokens = on_device(self.tokens)
        for state in self.encoder + self.decoder + self.main:
            state.map_rows(on_device)
        self.previous, self.smoothed = on_device(self.previous), on_device(self.smoothed)
        self.used, self.started = on_host(self.used), on_host(self.started)


def _arrays(states) -> list:
    """The arrays of byte-layer states (WindowCache or MambaState), for a compiled step."""
    return [(c.keys, c.values) if isinstance(c, WindowCache) else (c.conv, c.ssm) for c in states]


def _restore(states, arrays, offset: int) -> None:
    for state, (first, second) in zip(states, arrays):
        if isinstance(state, WindowCache):
            state.keys, state.values, state.offset = first, second, offset
        else:
            state.conv, state.ssm = first, second


def _compiled(model, part: str):
    """One part of the step as a compiled function, traced once for all positions (the byte layers'
    states have fixed shapes) and kept on the model: "encode" (encoder and router), then "main" (main
    network, EMA and decoder) where a row begins a patch, else "decode" (the decoder alone). Uncompiled,
    MLX's cost per operation and the Python that builds them dominated a step. The weights are compile
    inputs, so later updates to them are seen."""
    steps = model.__dict__.get("_decode_steps")
    if steps is None:
        steps = {}
        object.__setattr__(model, "_decode_steps", steps)  # a plain attribute, not a child module
    if part not in steps:
        steps[part] = mx.compile(partial(one_position()(_PARTS[part]), model), inputs=[model.state])
    return steps[part]


def _layers(model, arrays, position):
    """Byte-layer states rebuilt from their arrays inside a compiled step, and the mask of the window."""
    config = model.config
    if config.mamba:
        states = []
        for conv, ssm in arrays:
            state = MambaState()
            state.conv, state.ssm = conv, ssm
            states.append(state)
        return states, None
    return [WindowCache(k, v, position) for k, v in arrays], WindowCache.visible(config.window, position)


def _encode(model, byte, position, previous, encoder):
    states, visible = _layers(model, encoder, position)
    h = model.encoder(embed(model.embedding, byte), states, visible)  # (N, 1, d)
    p = model.router.probability(previous, h)  # (N, 1)
    return h, p, chunking.boundaries(p), _arrays(states)


def _decode(model, h, position, smoothed, decoder):
    states, visible = _layers(model, decoder, position)
    y = smoothed + model.residual(h)  # the straight-through confidence is 1 here
    return model.logits(model.decoder(y, states, visible)[:, -1]), _arrays(states)


def _main(model, h, p, position, smoothed, slots, active, main, decoder):
    G = model.config.max_patches
    caches = []
    for keys, values in main:
        cache = SlotCache(G)
        cache.keys, cache.values, cache.offset = keys, values, slots
        cache.write = (mx.arange(G)[None] == slots[:, None]) & active[:, None]
        caches.append(cache)
    visible = (mx.arange(G)[None] <= slots[:, None])[:, None, None, :]
    z = model.main_network(h, caches, visible)  # (N, 1, d)
    smoothed = mx.where(active[:, None, None], chunking.smooth_step(z, p, smoothed), smoothed)
    logits, decoder = _decode(model, h, position, smoothed, decoder)
    return logits, smoothed, [(c.keys, c.values) for c in caches], decoder


_PARTS = {"encode": _encode, "main": _main, "decode": _decode}
