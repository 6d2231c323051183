"""SpaceByte (Slagle 2024, arXiv 2404.14408) in MLX: a byte-level transformer whose larger global blocks
run only at word boundaries.

How bytes flow (B sequences of L bytes; d = local_dim, D = global_dim, G = global_length):

    [start, byte_0, ..., byte_{L-1}] -> embedded (B, L + 1, d) -> the first half of the local blocks
    (windowed causal attention: each position sees the last `window` positions)
    boundary positions (the start, and each spacelike byte that follows a non-spacelike one, plus the
    fallback below) -> gathered in order into (B, G, d), zero-padded to D, plus a learned global position
    -> global blocks (causal) -> their first d features added back at the positions they came from
    -> the rest of the local blocks -> norm -> logits (B, L + 1, num_tokens)

Position p holds byte p - 1 (position 0 the start), so its output predicts byte p: `logits[:, t]` of
`model(ids)` predicts byte t + 1, and with include_start the first position predicts byte 0, as MEGABYTE's.

The boundary rule (the paper's): a byte is *spacelike* unless it is an ASCII letter or digit or a UTF-8
continuation byte (0x80-0xBF); ids >= 256 are spacelike. A byte starts a global position when it is
spacelike and the byte before it is not (the start counts as spacelike). Fallback (ours): text without
spaces (a long identifier, base64, DNA) would leave the global model idle, so a position whose last
boundary is `max_patch` positions back is a boundary too: no patch is longer than `max_patch` bytes.
(Multi-byte UTF-8 characters need no fallback: their leading bytes 0xC0-0xFF are spacelike, so
Chinese or Thai text gets a boundary at every character after the first of a run.)

A sequence has at most G global positions, the start included; boundaries after the G-th get no global
block (the paper stops the loss there; here those bytes are still predicted, by the local blocks with
the global outputs earlier in their window, and counted, so that bits per byte cover every byte).

Differences from the paper's code: rotary positions in the local blocks (the global ones keep learned
positions, which lets each row of a decoding batch sit at its own global position), RMSNorm and GELU
as in model.py, no query/key norms, a learned start vector instead of a BOS byte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .cache import KVCache
from .kernels import attention, projection, self_attention
from .model import FeedForward, RMSNorm, _checkpointed

BYTES_PER_GLOBAL = 4  # default global_length = context_length / this (the paper uses 6 for its corpora)


def spacelike_table(num_tokens: int = 256) -> np.ndarray:
    """(num_tokens,) bool: which ids are spacelike (not a letter, digit or UTF-8 continuation byte)."""
    table = np.ones(max(num_tokens, 256), dtype=bool)
    for first, last in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z")), (0x80, 0xBF)):
        table[first : last + 1] = False
    return table[:num_tokens]


@dataclass(frozen=True)
class SpaceByteConfig:
    """A SpaceByte model. Local blocks run over every byte, global blocks over the boundary positions."""

    model_type: ClassVar[str] = "spacebyte"

    num_tokens: int = 256
    context_length: int = 1024  # bytes in one full sequence
    local_dim: int = 128
    global_dim: int = 256  # >= local_dim: local vectors are zero-padded into the global width and back
    local_depth: int = 2  # local blocks in all: local_depth // 2 before the global blocks, the rest after
    global_depth: int = 4
    global_length: int | None = None  # global positions per sequence, start included (default: context / 4)
    window: int | None = None  # positions a local query sees, its own included (default: local_dim)
    max_patch: int = 16  # the fallback: at most this many bytes between boundaries
    dim_head: int = 32  # heads = dim // dim_head, in both widths
    ff_mult: int = 4
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    pad_id: int = 0

    def __post_init__(self):
        for name in ("num_tokens", "context_length", "local_dim", "global_dim", "dim_head", "ff_mult", "max_patch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("local_depth", "global_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.global_length is None:
            object.__setattr__(self, "global_length", -(-self.context_length // BYTES_PER_GLOBAL))
        if self.window is None:
            object.__setattr__(self, "window", self.local_dim)
        for name in ("global_length", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.global_dim < self.local_dim:
            raise ValueError(f"global_dim ({self.global_dim}) must be at least local_dim ({self.local_dim})")
        for name in ("local_dim", "global_dim"):
            if getattr(self, name) % self.dim_head:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of dim_head ({self.dim_head})")
        if self.dim_head % 2:
            raise ValueError(f"dim_head must be even (rotary embeddings), got {self.dim_head}")
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.num_tokens:
            raise ValueError(f"pad_id must be a token id in [0, {self.num_tokens}), got {self.pad_id!r}")
        for name in ("attn_dropout", "ff_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

    @property
    def initial_depth(self) -> int:
        return self.local_depth // 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SpaceByteConfig:
        """Build from a dict, ignoring keys that are not fields (e.g. `model_type`, `quantization`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def describe(self) -> str:
        return (f"SpaceByte, local {self.local_depth} x {self.local_dim} (window {self.window}), global "
                f"{self.global_depth} x {self.global_dim} over {self.global_length} positions, "
                f"{self.context_length}-byte context")

    def flops_per_byte(self, training: bool = True) -> float:
        """Matmul FLOPs per byte of one forward (x3 with backward), attention included: every local block
        runs over the L + 1 positions (start included) and sees min(p + 1, window) keys at position p (the
        useful work: kernels.attention computes about twice as many scores, in blocks); every global
        block runs over all global_length positions, padding included, with causal attention."""
        L, d, D, G = self.context_length, self.local_dim, self.global_dim, self.global_length
        ff = self.ff_mult
        keys = sum(min(p + 1, self.window) for p in range(L + 1))  # summed over positions
        local = self.local_depth * ((L + 1) * (2 * 4 * d * d + 2 * 2 * ff * d * d) + 2 * 2 * d * keys)
        glob = self.global_depth * (G * (2 * 4 * D * D + 2 * 2 * ff * D * D) + 2 * 2 * D * G * (G + 1) / 2)
        logits = (L + 1) * 2 * d * self.num_tokens
        return (local + glob + logits) / L * (3 if training else 1)


# Sizes chosen to cost about the training FLOPs per byte of MEGABYTE's presets of the same names
# (config.PRESETS; the README's table lists both), over the same contexts, with the paper's shape:
# the global width twice the local one, local window = local width, as many global blocks as local ones
# or more. They have fewer parameters than MEGABYTE's: its global model runs once per 8 bytes.
PRESETS: dict[str, SpaceByteConfig] = {
    "tiny": SpaceByteConfig(context_length=256, local_dim=32, global_dim=64, local_depth=2, global_depth=2,
                            dim_head=16),
    "small": SpaceByteConfig(context_length=1024, local_dim=96, global_dim=192, local_depth=4, global_depth=5,
                             dim_head=32),
    "40m": SpaceByteConfig(context_length=2048, local_dim=192, global_dim=384, local_depth=8, global_depth=12,
                           dim_head=64),
}


# --- boundaries ---------------------------------------------------------------------------------------


def natural_boundaries(ids: mx.array, num_tokens: int = 256) -> mx.array:
    """(B, L) bytes -> (B, L + 1) bool: the start, and every spacelike byte after a non-spacelike one."""
    spacelike = mx.array(spacelike_table(num_tokens))[ids.astype(mx.int32)]  # (B, L)
    start = mx.ones((ids.shape[0], 1), dtype=mx.bool_)
    before = mx.concatenate([start, spacelike], axis=1)[:, :-1]  # the start counts as spacelike
    return mx.concatenate([start, spacelike & ~before], axis=1)


def boundaries(ids: mx.array, max_patch: int, num_tokens: int = 256) -> mx.array:
    """(B, L) bytes -> (B, L + 1) bool: natural boundaries plus the fallback, a boundary every
    `max_patch` positions after the last natural one."""
    natural = natural_boundaries(ids, num_tokens)
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


# --- modules ------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Pre-norm multi-head attention: causal, windowed (local) or masked by the caller (global decoding);
    rotary positions if `rotary`."""

    def __init__(self, dims: int, dim_head: int, dropout: float, window: int | None, rotary: bool):
        super().__init__()
        self.heads, self.dim_head, self.dropout = dims // dim_head, dim_head, dropout
        self.window, self.rotary, self.scale = window, rotary, dim_head**-0.5
        self.norm = RMSNorm(dims)
        self.query = nn.Linear(dims, dims, bias=False)
        self.key_value = nn.Linear(dims, 2 * dims, bias=False)
        self.out = nn.Linear(dims, dims, bias=False)

    def __call__(self, x, cache=None, mask=None):
        N, T, _ = x.shape
        x = self.norm(x)
        dropout = self.dropout if self.training else 0.0
        if cache is None and mask is None:
            qkv = projection(x, self.query.weight, self.key_value.weight)  # lucidrains' to_q and to_kv in one
            return self.out(self_attention(qkv, self.heads, self.scale, dropout, window=self.window, rotary=self.rotary))
        q = self.query(x)
        k, v = mx.split(self.key_value(x), 2, axis=-1)
        q, k, v = (t.reshape(N, T, self.heads, self.dim_head).transpose(0, 2, 1, 3) for t in (q, k, v))
        if self.rotary:
            offset = 0 if cache is None else cache.offset
            q = mx.fast.rope(q, self.dim_head, traditional=False, base=10000.0, scale=1.0, offset=offset)
            k = mx.fast.rope(k, self.dim_head, traditional=False, base=10000.0, scale=1.0, offset=offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
            if self.window is not None and k.shape[2] > self.window + T - 1:  # older keys are out of sight
                k, v = k[..., -(self.window + T - 1) :, :], v[..., -(self.window + T - 1) :, :]
        out = attention(q, k, v, self.scale, dropout, window=self.window, mask=mask)
        return self.out(out.transpose(0, 2, 1, 3).reshape(N, T, -1))


class Block(nn.Module):
    def __init__(self, config: SpaceByteConfig, dims: int, window: int | None):
        super().__init__()
        self.attention = Attention(dims, config.dim_head, config.attn_dropout, window, rotary=window is not None)
        self.feed_forward = FeedForward(dims, config.ff_mult, config.ff_dropout)

    def __call__(self, x, cache=None, mask=None):
        x = x + self.attention(x, cache, mask)
        return x + self.feed_forward(x)


class SpaceByte(nn.Module):
    def __init__(self, config: SpaceByteConfig):
        super().__init__()
        self.config = config
        d, D = config.local_dim, config.global_dim
        self.embedding = nn.Embedding(config.num_tokens, d)
        self.embedding.weight = mx.random.normal(self.embedding.weight.shape)
        self.start_token = mx.random.normal((d,))
        self.initial_blocks = [Block(config, d, config.window) for _ in range(config.initial_depth)]
        self.global_position = mx.random.normal((config.global_length, D))
        self.global_blocks = [Block(config, D, None) for _ in range(config.global_depth)]
        self.final_blocks = [Block(config, d, config.window) for _ in range(config.local_depth - config.initial_depth)]
        self.norm = RMSNorm(d)
        self.to_logits = nn.Linear(d, config.num_tokens)
        self.grad_checkpoint = False

    def __call__(self, ids: mx.array, include_start: bool = False) -> mx.array:
        """ids (B, L) -> logits (B, L, num_tokens); logits[:, t] predicts byte t + 1. With include_start
        (B, L + 1, num_tokens), [:, t] predicting byte t (position 0: the start's prediction of byte 0)."""
        if ids.ndim != 2:
            raise ValueError(f"expected ids of shape (batch, length), got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(f"{ids.shape[1]} bytes do not fit the model's context of {self.config.context_length} bytes")
        logits = self.logits(self.forward(ids))
        return logits if include_start else logits[:, 1:]

    def forward(self, ids: mx.array, cache: SpaceByteCache | None = None) -> mx.array:
        """The last local block's outputs (B, L + 1, d) for [start, ids]; fills `cache`'s layers if given."""
        config = self.config
        x = mx.concatenate([self.start(ids.shape[0]), self.embedding(ids)], axis=1)  # (B, L + 1, d)
        x = self._run(self.initial_blocks, x, None if cache is None else cache.initial)
        boundary = boundaries(ids, config.max_patch, config.num_tokens)
        y, slot = gather_boundaries(x, boundary, config.global_length)  # (B, G', d)
        y = self.to_global(y, self.global_position[: y.shape[1]])
        y = self._run(self.global_blocks, y, None if cache is None else cache.globals)
        x = scatter_back(x, y[..., : config.local_dim], slot)
        return self._run(self.final_blocks, x, None if cache is None else cache.final)

    def _run(self, blocks, x, caches=None, mask=None):
        for i, block in enumerate(blocks):
            if caches is not None:
                x = block(x, caches[i], mask)
            else:
                x = _checkpointed(block, x) if self.grad_checkpoint else block(x)
        return x

    # Pieces shared with decoding (SpaceByteCache).

    def start(self, n: int) -> mx.array:
        return mx.broadcast_to(self.start_token, (n, 1, self.start_token.shape[0]))

    def to_global(self, x: mx.array, positions: mx.array) -> mx.array:
        """Local vectors (B, T, d) in the global width: zero-padded, plus their learned positions."""
        padding = mx.zeros((*x.shape[:-1], self.config.global_dim - self.config.local_dim), x.dtype)
        return mx.concatenate([x, padding], axis=-1) + positions.astype(x.dtype)

    def logits(self, outputs: mx.array) -> mx.array:
        return self.to_logits(self.norm(outputs))

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        self.grad_checkpoint = enabled

    def make_cache(self, batch_size: int = 1) -> SpaceByteCache:
        return SpaceByteCache(self, batch_size)

    def num_parameters(self) -> int:
        return sum(v.size for _, v in tree_flatten(self.parameters()))


# --- decoding -----------------------------------------------------------------------------------------


class SlotCache:
    """One global block's keys and values in global_length slots per row. Rows reach boundaries at
    different bytes, so each fills its own slots: `write` (N, G) marks, for the next step, the one slot
    each stepping row writes."""

    def __init__(self, length: int):
        self.length = length
        self.keys = self.values = None  # (N, H, G, D)
        self.write = None
        self.offset = 0  # unused: the global blocks have learned positions, not rotary ones

    def update_and_fetch(self, keys, values):
        if self.keys is None:  # prefill: positions 0.. of every row, then empty slots
            pad = [(0, 0), (0, 0), (0, self.length - keys.shape[2]), (0, 0)]
            self.keys, self.values = mx.pad(keys, pad), mx.pad(values, pad)
            return keys, values
        write = self.write[:, None, :, None]
        self.keys = mx.where(write, keys, self.keys)
        self.values = mx.where(write, values, self.values)
        return self.keys, self.values


class SpaceByteCache:
    """The decoding state of `batch_size` sequences that all hold the same number of bytes: a KV cache
    per local block, a slot cache per global block, and per row (on the host) what the boundary rule
    needs: whether the last byte was spacelike, positions since the last natural boundary, and how many
    global positions the row has used. The global blocks step only when some row's new byte is a
    boundary, and only those rows keep the result. When the context is full, the window slides: the
    last `keep` bytes (default half the context) are prefilled again."""

    def __init__(self, model: SpaceByte, batch_size: int = 1, keep: int | None = None):
        self.model, self.config, self.batch_size = model, model.config, batch_size
        self.keep = keep if keep is not None else self.config.context_length // 2
        if not 0 <= self.keep < self.config.context_length:
            raise ValueError(f"keep must be in [0, {self.config.context_length}), got {self.keep}")
        self.table = spacelike_table(self.config.num_tokens)
        self.slid = 0
        self.prefill(mx.zeros((batch_size, 0), dtype=mx.int32))

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def prefill(self, ids: mx.array) -> mx.array:
        """Start over from `ids` (N, L), L <= context; return the logits (N, vocab) for the next byte."""
        config, model = self.config, self.model
        ids = mx.array(ids).astype(mx.int32)
        if ids.ndim != 2 or ids.shape[0] != self.batch_size:
            raise ValueError(f"expected ids of shape ({self.batch_size}, length), got {tuple(ids.shape)}")
        if ids.shape[1] > config.context_length:
            raise ValueError(f"{ids.shape[1]} bytes do not fit the context of {config.context_length}")
        self.tokens = ids
        self.initial = [KVCache(config.context_length + 1) for _ in model.initial_blocks]
        self.final = [KVCache(config.context_length + 1) for _ in model.final_blocks]
        self.globals = [SlotCache(config.global_length) for _ in model.global_blocks]
        outputs = model.forward(ids, self)
        natural = np.array(natural_boundaries(ids, config.num_tokens))
        last_natural = natural.shape[1] - 1 - np.argmax(natural[:, ::-1], axis=1)
        self.gap = (natural.shape[1] - 1 - last_natural).astype(np.int64)  # positions since it
        self.spacelike = self.table[np.array(ids[:, -1])] if ids.shape[1] else np.ones(self.batch_size, bool)
        used = np.array(boundaries(ids, config.max_patch, config.num_tokens)).sum(axis=1)
        self.used = np.minimum(used, config.global_length)  # global slots filled
        return model.logits(outputs[:, -1])

    def step(self, byte: mx.array) -> mx.array:
        """Append one byte per sequence (N,); return the logits (N, vocab) for the byte after it."""
        config, model = self.config, self.model
        byte = mx.array(byte).astype(mx.int32).reshape(self.batch_size, 1)
        if self.length == config.context_length:
            self.slid += 1
            return self.prefill(mx.concatenate([self.tokens[:, self.length - self.keep :], byte], axis=1))
        self.tokens = mx.concatenate([self.tokens, byte], axis=1)
        spacelike = self.table[np.array(byte)[:, 0]]
        natural = spacelike & ~self.spacelike
        self.spacelike = spacelike
        self.gap = np.where(natural, 0, self.gap + 1)
        active = (self.gap % config.max_patch == 0) & (self.used < config.global_length)

        x = model._run(model.initial_blocks, model.embedding(byte), self.initial)  # (N, 1, d)
        if active.any():
            slots = np.minimum(self.used, config.global_length - 1)
            write = mx.array((np.arange(config.global_length)[None] == slots[:, None]) & active[:, None])
            visible = mx.array(np.arange(config.global_length)[None] <= slots[:, None])[:, None, None, :]
            for cache in self.globals:
                cache.write = write
            y = model.to_global(x, model.global_position[mx.array(slots)][:, None])
            y = model._run(model.global_blocks, y, self.globals, visible)
            x = x + mx.where(mx.array(active)[:, None, None], y[..., : config.local_dim], 0.0).astype(x.dtype)
            self.used = self.used + active
        x = model._run(model.final_blocks, x, self.final)
        return model.logits(x[:, -1])

    # --- rows (as MegabyteCache: drop finished rows, join caches of equal length) ---

    def select(self, rows: list[int]) -> None:
        index = mx.array(rows, dtype=mx.int32)
        self._map_rows(lambda a: a[index], lambda a: a[np.array(rows, dtype=np.int64)])
        self.batch_size = len(rows)

    def merge(self, other: SpaceByteCache) -> None:
        if self.length != other.length:
            raise ValueError(f"cannot merge a cache of {other.length} bytes into one of {self.length}")
        theirs, host = [], []
        other._map_rows(lambda a: theirs.append(a) or a, lambda a: host.append(a) or a)
        theirs, host = iter(theirs), iter(host)
        self._map_rows(lambda a: mx.concatenate([a, next(theirs)]), lambda a: np.concatenate([a, next(host)]))
        self.batch_size += other.batch_size

    def _map_rows(self, f, g):
        self.tokens = f(self.tokens)
        for cache in self.initial + self.final:
            end = cache.offset
            cache.keys, cache.values = f(cache.keys[..., :end, :]), f(cache.values[..., :end, :])
        for cache in self.globals:
            cache.keys, cache.values = f(cache.keys), f(cache.values)
        self.gap, self.spacelike, self.used = g(self.gap), g(self.spacelike), g(self.used)
