"""The contract every architecture keeps, and the code they share to keep it.

An architecture is a package under models/ (megabyte/, spacebyte/, ...) registered in models/__init__.py.
It provides:

- a **config**: a frozen dataclass subclassing `Config` (or `BlockConfig`, which declares the settings of
  the shared attention and feed-forward blocks), one `setting(...)` per field (settings.py: its help text,
  kind and range: the command line's flags and the validation both come from them), with
  `model_type` (what config.json records), `context_length`, `pad_id`, `num_tokens` and `shift_bytes`
  (which token layout it reads: tokens.py), and the methods
  `describe()`, `patching()` and `flops_per_byte()`;
- a **model**: an nn.Module subclassing `Model`: `model(ids, include_start=False)` -> logits whose
  [:, t] predicts byte t + 1 (with `include_start`, one more position first: the prediction of byte 0),
  `make_cache(batch_size)` -> its `DecodingState`, `patch_starts(ids)` (which bytes begin a patch, for
  the playground's marks), `set_grad_checkpoint`, `weight_bytes_per_byte()` (what decoding one byte
  reads of the weights: the benchmark's bandwidth floor); optionally `forward_with_stats(ids)` (the logits with
  the start, and scalars from the same pass that training logs beside the loss) and
  `auxiliary_loss(stats)` (a term training adds to the cross-entropy, e.g. H-Net's ratio loss; `loss_fn`,
  `summed_loss` and so bits per byte never include it: see `summed_training_loss`);
- a **decoding state** subclassing `DecodingState`: the model's caches for a batch of sequences that all
  hold the same number of bytes, fed byte by byte (`prefill`, `step`) or a few bytes at once (`extend`,
  written once in base.py as steps; an architecture may do it faster), whose rows can be dropped
  (`select`) or joined with another state's (`merge`, when `can_merge` says their positions agree),
  and copied (`copy`: written once in base.py, an architecture provides nothing for it);
- **presets** (name -> config) and, optionally, measured training defaults per preset.

The trainer, evaluate, generate, the batcher and the server use this contract and the registry only.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, ClassVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ..kernels import cross_entropy

# Declared in settings.py, which every setting of the package shares; here too, where architectures find them.
from ..settings import STAGES, check_fields, setting  # noqa: F401


def shift_bytes_setting():
    """The `shift_bytes` field every architecture's config has (tokens.py: the two layouts)."""
    return setting(
        False,
        help="learn every byte value, for pictures, sound and other binary data: token = byte + 1 (0 stays the "
        "pad id, 257 ends a document; num_tokens 258) instead of text's layout, where bytes 0x00 and 0x03 are "
        "reserved",
        kind=bool,
    )


def check_token_layout(config) -> None:
    """pad_id is a token, and a model that learns every byte value has room for them all and pads with the
    one id that is no byte (any other pad id would be a byte the loss ignores)."""
    if not config.pad_id < config.num_tokens:
        raise ValueError(f"pad_id must be a token id in [0, {config.num_tokens}), got {config.pad_id!r}")
    if config.shift_bytes:
        if config.num_tokens < 258:
            raise ValueError(
                f"shift_bytes needs num_tokens of at least 258 (pad, 256 bytes, end), got {config.num_tokens}"
            )
        if config.pad_id != 0:
            raise ValueError(f"shift_bytes pads with token 0 (no byte); pad_id {config.pad_id} would be a byte")


def ints(name: str, value) -> tuple[int, ...]:
    """A per-stage value as a tuple of ints (a JSON list, or one int for a single stage)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a list of integers (one per stage), got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Config:
    """What every architecture's config has besides its fields (see the module docstring)."""

    model_type: ClassVar[str]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict):
        """Build from a dict, ignoring keys that are not fields (e.g. `model_type`, `flash_attn`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes):
        """This config with some fields changed (as flags change a preset's); an architecture whose
        fields depend on each other says here what a change implies."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def describe(self) -> str:
        raise NotImplementedError

    def patching(self) -> str:
        """Where patches begin, in words (the server's model card, the playground)."""
        raise NotImplementedError

    def flops_per_byte(self, training: bool = True) -> float:
        raise NotImplementedError


class Model(nn.Module):
    """What every architecture's model has besides its forward pass (see the module docstring)."""

    config: Config

    def num_parameters(self) -> int:
        return sum(v.size for _, v in tree_flatten(self.parameters()))

    def patch_starts(self, ids: mx.array) -> mx.array:
        """(B, L) bool: which bytes of ids (B, L) begin a patch."""
        raise NotImplementedError

    def make_cache(self, batch_size: int = 1) -> DecodingState:
        raise NotImplementedError

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        raise NotImplementedError

    def weight_bytes_per_byte(self) -> float:
        """Bytes of weights one decoded byte reads, on average (`weight_bytes` of every layer it goes
        through, the coarser layers' divided by the bytes they run once for): memory bandwidth divided by
        this bounds decoding's bytes per second."""
        raise NotImplementedError

    def forward_with_stats(self, ids: mx.array) -> tuple[mx.array, dict[str, mx.array]]:
        """`self(ids, include_start=True)` and scalars by name from the same pass, each a sum over the
        batch's sequences (so that the parts of a batch, micro-batches and ranks, add up); training logs
        them per sequence. None by default."""
        return self(ids, include_start=True), {}

    def auxiliary_loss(self, stats: dict[str, mx.array]) -> mx.array | None:
        """What training adds to the mean cross-entropy, summed over the batch's sequences like `stats`
        (training divides it by their number); None: nothing."""
        return None


def weight_bytes(*modules: nn.Module) -> float:
    """Bytes of the weights one call of these modules reads: every array of their layers (quantized ones
    at their packed size), but of an embedding table only one row (a lookup reads just that). Arrays that
    a module holds outside its layers (start tokens, learned positions) are vectors per sequence or per
    position and are left out."""
    total = 0.0
    for module in modules:
        for leaf in (m for m in module.modules() if not m.children()):
            size = sum(v.nbytes for _, v in tree_flatten(leaf.parameters()))
            if isinstance(leaf, (nn.Embedding, nn.QuantizedEmbedding)):
                size /= leaf.weight.shape[0]
            total += size
    return total


def checkpointed(layer: nn.Module, *args) -> mx.array:
    """layer(*args), keeping only its inputs for the backward pass, which runs the layer again."""

    def run(parameters, *args):
        layer.update(parameters)
        return layer(*args)

    return mx.checkpoint(run)(layer.trainable_parameters(), *args)


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: what the registry (models/__init__.py) knows of it."""

    name: str  # the model_type config.json records, and --arch on the command line
    title: str  # its name in prose
    summary: str  # what sets it apart, in a few words (train --help)
    config: type  # its Config subclass
    model: type  # its Model subclass
    presets: dict  # name -> config: tiny (for tests), small, 40m, ...
    paper: str = ""  # where it comes from, for model cards
    training_defaults: dict = field(default_factory=dict)  # preset -> TrainingConfig values measured best
    reference: str | None = None  # a reference implementation it converts to and from, if any
    card_section: Callable | None = None  # config -> a model card's markdown about that reference


# --- the loss ----------------------------------------------------------------------------------------


def loss_fn(model: Model, ids: mx.array, mask: mx.array | None = None) -> mx.array:
    """Mean next-byte cross-entropy (nats) over bytes != pad_id (and, with a mask, only the bytes it
    marks), byte 0 predicted by the start; for MEGABYTE megabyte-pytorch's forward(ids, return_loss=True)."""
    total, counted = summed_loss(model, ids, mask)
    return total / mx.maximum(counted, 1)


def summed_loss(model: Model, ids: mx.array, mask: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """(summed cross-entropy, number of bytes counted: != pad_id, and marked by `mask` (B, L) if given,
    each as many times as its mask value): sums that add up exactly across batches and windows of any
    length, for validation and evaluation."""
    return _summed(model, model(ids, include_start=True), ids, mask)


def summed_training_loss(model: Model, ids: mx.array, mask: mx.array | None = None):
    """What a training step needs from one forward pass, as sums over the batch that add up across
    micro-batches and ranks: (summed cross-entropy, bytes counted as summed_loss counts them, the model's
    auxiliary loss or None, its stats), the last two summed over the sequences. Training minimises the
    mean cross-entropy plus the auxiliary loss per sequence; for most models that is loss_fn."""
    logits, stats = model.forward_with_stats(ids)
    total, counted = _summed(model, logits, ids, mask)
    return total, counted, model.auxiliary_loss(stats), stats


def _summed(model: Model, logits: mx.array, ids: mx.array, mask: mx.array | None):
    losses = cross_entropy(logits[:, :-1], ids)  # [:, t] predicts byte t; float32 whatever the logits' dtype
    counted = ids != model.config.pad_id
    if mask is None:
        return mx.sum(losses * counted), mx.sum(counted)
    # A mask counts each byte as many times as its value: 1 on --mask-prompt's story bytes, more on the
    # required words' first uses under --words-weight (sums of small integers: exact in float32).
    weights = (counted * mask).astype(mx.float32)
    return mx.sum(losses * weights), mx.sum(weights)


# --- decoding ----------------------------------------------------------------------------------------


class DecodingState:
    """The decoding state of `batch_size` sequences that all hold the same number of bytes.

    Written once here: the shape checks, and the window that slides when the context is full (the
    last `keep` bytes, default half the context, are prefilled again; `slid` counts it for the
    caller's notices). An architecture supplies `_prefill`, `_step`, `_map_rows` and, where equal
    lengths are not enough to join two states, `merge_key`; and `patch_started` after each step;
    optionally `_extend`, several bytes in fewer calls than one per byte, and `_resume` and
    `_prefill_keeping`, for a prompt cache that goes on from states part-way through earlier prompts."""

    # Whether `extend` feeds k bytes in fewer calls than k `step`s: then bytes fed again cost little (a
    # speculative decoder re-feeds kept bytes with its next check rather than in a call of their own).
    batched_extend: ClassVar[bool] = False
    # Whether `resume` costs about what prefilling its bytes costs (a prefill that goes on from the state),
    # rather than a step per byte: then a prompt cache continues a cached prefix whatever is left of the
    # prompt, and keeps states part-way through the prompts it prefills (prompt_cache.py).
    resumes_as_prefill: ClassVar[bool] = False

    def __init__(self, model: Model, batch_size: int = 1, keep: int | None = None):
        self.model, self.config, self.batch_size = model, model.config, batch_size
        context = self.config.context_length
        self.keep = keep if keep is not None else context // 2
        if not 0 <= self.keep < context:
            raise ValueError(f"keep must be in [0, {context}), got {self.keep}")
        self.slid = 0
        self.tokens = mx.zeros((batch_size, 0), dtype=mx.int32)

    @property
    def length(self) -> int:
        """Bytes currently in the window."""
        return self.tokens.shape[1]

    def prefill(self, ids) -> mx.array:
        """Start over from `ids` (N, L), L <= context; return the logits (N, vocab) for the next byte."""
        return self._prefill(self._prompt(ids))

    def prefill_keeping(self, ids, lengths) -> tuple[mx.array, list[DecodingState]]:
        """`prefill(ids)`, and new states part-way through it, for a prompt cache: for each c of `lengths`,
        the state after the longest prefix ids[:, :c'] (c' <= c) that the architecture keeps on the way
        (`_prefill_keeping`; MEGABYTE: a global patch boundary; none by default), each a state as
        `prefill(ids[:, :c'])` leaves it, to `resume` from. Where none is kept this is `prefill` exactly."""
        return self._prefill_keeping(self._prompt(ids), sorted(set(lengths)))

    def _prompt(self, ids) -> mx.array:
        ids = mx.array(ids).astype(mx.int32)
        if ids.ndim != 2 or ids.shape[0] != self.batch_size:
            raise ValueError(f"expected ids of shape ({self.batch_size}, length), got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(f"{ids.shape[1]} bytes do not fit the context of {self.config.context_length}")
        return ids

    def step(self, byte) -> mx.array:
        """Append one byte per sequence (N,); return the logits (N, vocab) for the byte after it."""
        byte = mx.array(byte).astype(mx.int32).reshape(self.batch_size, 1)
        if self.length == self.config.context_length:
            self.slid += 1
            return self.prefill(mx.concatenate([self.tokens[:, self.length - self.keep :], byte], axis=1))
        return self._step(byte)

    def extend(self, ids, marks: list | None = None) -> mx.array:
        """Append k bytes per sequence (N, k); return the logits (N, k, vocab) after each of them: the same
        as k `step`s (speculative decoding checks k proposed bytes with it). An architecture may feed them
        in fewer calls (`_extend`); where the window would slide, the bytes past the full context go one
        `step` at a time. With `marks` (a list), (j, mark) pairs are appended for states part-way, after
        ids[:, :j], that the architecture passes on its way and marks cheaply (MEGABYTE: after a global
        step), so that a speculative decoder rewinds to the last one before a rejection, not to the start."""
        ids = mx.array(ids).astype(mx.int32)
        if ids.ndim != 2 or ids.shape[0] != self.batch_size:
            raise ValueError(f"expected ids of shape ({self.batch_size}, k), got {tuple(ids.shape)}")
        fits = min(ids.shape[1], self.config.context_length - self.length)
        logits = [self._extend(ids[:, :fits], marks)] if fits > 0 else []
        logits += [self.step(ids[:, i])[:, None] for i in range(max(fits, 0), ids.shape[1])]
        if not logits:
            return mx.zeros((self.batch_size, 0, self.config.num_tokens))
        return logits[0] if len(logits) == 1 else mx.concatenate(logits, axis=1)

    def resume(self, ids) -> mx.array:
        """Append k >= 1 bytes per sequence (N, k), all fitting the context; return the logits (N, vocab) for
        the byte after the last: `extend(ids)[:, -1]`, without the logits of the bytes before (a prompt
        going on from a cached prefix). An architecture may do it as a prefill continuing the state
        (`_resume`; see `resumes_as_prefill`)."""
        ids = mx.array(ids).astype(mx.int32)
        if ids.ndim != 2 or ids.shape[0] != self.batch_size or ids.shape[1] == 0:
            raise ValueError(f"expected ids of shape ({self.batch_size}, k >= 1), got {tuple(ids.shape)}")
        if self.length + ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"{self.length + ids.shape[1]} bytes do not fit the context of {self.config.context_length}"
            )
        return self._resume(ids)

    def patch_started(self) -> list[bool]:
        """For each row, whether the byte the last `step` (or `extend`) appended began a patch."""
        raise NotImplementedError

    def copy(self) -> DecodingState:
        """An independent copy that shares the model: stepping either never changes the other (a prompt
        cache keeps one per prompt; speculative decoding keeps one to go back to). Written once here:
        every per-row array and every counter an architecture keeps is copied, the model is not."""
        return copy.deepcopy(self, memo={id(self.model): self.model, id(self.config): self.config})

    def cheap_bytes(self, fed: int, wanted: int) -> int:
        """How many of `wanted` bytes to propose after `fed` more bytes: as many as the architecture
        checks at one cost (MEGABYTE: those before the byte that completes a patch and would take a global
        step before they are known to stand); here all `wanted`."""
        return wanted

    def mark(self):
        """A point to go back to with `rewind` (speculative decoding marks the state before a check and
        rewinds it after a rejection). Here a `copy`; an architecture whose caches only grow may instead
        note how far they reach (MEGABYTE), so that the steps in between keep writing in place: in MLX an
        array that a copy still holds cannot be updated in place, and a copy of every cache on every check
        costs more than noting where each ends."""
        return self.copy()

    def rewind(self, mark) -> None:
        """Go back to the state `mark()` returned; a mark is used at most once, and only on its state."""
        self.__dict__.update(mark.__dict__)

    def arrays(self) -> list:
        """Every MLX and numpy array reachable from the state's fields, each once (the model's weights are
        not the state's): what holds its memory, and what to evaluate to compute all of it."""
        found, seen = [], {id(self.model), id(self.config)}
        todo = list(vars(self).values())
        while todo:
            value = todo.pop()
            if id(value) in seen or isinstance(value, (int, float, str, bool, type(None))):
                continue
            seen.add(id(value))
            if isinstance(value, (mx.array, np.ndarray)):
                found.append(value)
            elif isinstance(value, dict):
                todo.extend(value.values())
            elif isinstance(value, (list, tuple)):
                todo.extend(value)
            elif hasattr(value, "__dict__") and not isinstance(value, nn.Module):
                todo.extend(vars(value).values())
        return found

    def nbytes(self) -> int:
        """Bytes of memory held by the state's arrays, buffers at their allocated size (what a prompt
        cache budgets)."""
        return sum(a.nbytes for a in self.arrays())

    # --- rows: what a server needs to batch requests that arrive at different times ---------------

    def merge_key(self) -> tuple:
        """Two states whose keys are equal can be merged: their positions in every part of the model agree."""
        return (type(self), self.length)

    def can_merge(self, other: DecodingState) -> bool:
        return self.merge_key() == other.merge_key()

    def select(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), e.g. to drop finished or abandoned sequences."""
        index, host = mx.array(rows, dtype=mx.int32), np.array(rows, dtype=np.int64)
        self._map_rows(lambda a: a[index], lambda a: a[host])
        self.batch_size = len(rows)

    def merge(self, other: DecodingState) -> None:
        """Append `other`'s rows (see can_merge)."""
        if not self.can_merge(other):
            raise ValueError(
                f"cannot merge a decoding state of {other.length} bytes into one of {self.length}"
                + ("" if self.length != other.length else " (their positions differ)")
            )
        theirs, host = [], []
        other._map_rows(lambda a: theirs.append(a) or a, lambda a: host.append(a) or a)
        theirs, host = iter(theirs), iter(host)
        self._map_rows(lambda a: mx.concatenate([a, next(theirs)]), lambda a: np.concatenate([a, next(host)]))
        self.batch_size += other.batch_size

    # --- for the architecture ----------------------------------------------------------------------

    def _prefill(self, ids: mx.array) -> mx.array:
        raise NotImplementedError

    def _step(self, byte: mx.array) -> mx.array:
        raise NotImplementedError

    def _extend(self, ids: mx.array, marks: list | None = None) -> mx.array:
        """Bytes (N, k) that fit the context -> logits (N, k, vocab), and marks on the way if asked (see
        extend). Here one `_step` each and no marks (what SpaceByte and H-Net use); MEGABYTE feeds a
        patch's bytes to its local stage in one call."""
        return mx.stack([self._step(ids[:, i : i + 1]) for i in range(ids.shape[1])], axis=1)

    def _prefill_keeping(self, ids: mx.array, lengths: list[int]) -> tuple[mx.array, list[DecodingState]]:
        return self._prefill(ids), []

    def _resume(self, ids: mx.array) -> mx.array:
        """Bytes (N, k >= 1) that fit the context -> the logits (N, vocab) after the last: here `_extend`."""
        return self._extend(ids)[:, -1]

    def _map_rows(self, on_device: Callable, on_host: Callable) -> None:
        """Replace every per-row array of the state (first axis = row) by on_device(array), or
        on_host(array) for numpy ones, always in the same order."""
        raise NotImplementedError


@dataclass(frozen=True)
class BlockConfig(Config):
    """The settings that the architectures built from this package's attention and feed-forward blocks
    (models/layers.py) share, declared once: SpaceByte's and H-Net's configs subclass it, and their own
    fields follow these. (MEGABYTE keeps lucidrains' names and defaults in its own config.)"""

    num_tokens: int = setting(256, help="vocabulary (at least 256 for bytes)", low=1)
    context_length: int = setting(1024, help="bytes per sequence", low=1)
    dim_head: int = setting(32, help="width of one attention head", low=1)  # heads: width / dim_head
    ff_mult: int = setting(4, help="feed-forward width as a multiple of the width", low=1)
    attn_dropout: float = setting(
        0.0, help="dropout on attention probabilities", kind=float, low=0, high=1, high_open=True, tunable=True
    )
    ff_dropout: float = setting(
        0.0, help="dropout after the feed-forward GELU", kind=float, low=0, high=1, high_open=True, tunable=True
    )
    pad_id: int = setting(0, help="token ignored by the loss", low=0, tunable=True)
    shift_bytes: bool = shift_bytes_setting()
