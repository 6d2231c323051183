"""Prompts computed once: a bounded in-memory cache of decoding states by prompt (the server's batcher and
generation start from the longest cached prefix of a new prompt), and prompt-cache files (`generate
--save-prompt-cache FILE`, then `--prompt-cache-file FILE`, as mlx-lm's cache_prompt and
--prompt-cache-file).

How a cached prefix goes on depends on the architecture (`DecodingState.resumes_as_prefill`):

- MEGABYTE resumes a state as a prefill of the rest (`DecodingState.resume`: its global stage's caches
  only grow, and the finer stages start afresh every patch), so any cached prefix of at least
  `min_prefix` bytes is worth starting from, however much is left. And when it prefills a prompt it also
  keeps states part-way through it (`DecodingState.prefill_keeping`, at global patch boundaries, from the
  same call: the prompt's own logits are exactly a prefill's), so that a later prompt that shares only a
  beginning with it (a shared system prompt or instruct fields, a retry with the end edited) starts there.
  Where the two prompts part is not known when the first is read, so the states are kept at prefix
  lengths L - L/2, L - L/4, L - L/8, ... (L the prompt's length, down to a tail of `min_tail` bytes):
  a later prompt that shares p bytes with this one then reads again fewer bytes than this one has after
  p (the kept state before p is at most half of L - p back), with log2(L / min_tail) states, which hold
  the global stage's caches of their prefix: about 4 L bytes' worth in all, the prompt's own state included.
  Prompts share their ends more often than their beginnings alone, so the points crowd towards the end.
- SpaceByte and H-Net go on byte by byte (`DecodingState.step`), and a step costs about as much as
  prefilling a hundred bytes at once, so a cached prompt is only worth continuing when little is left:
  at most 1/`step_ratio` of the new prompt; otherwise it is prefilled from scratch, exactly as without
  a cache, and only whole prompts are kept.

The logits agree with a prefill from scratch to float rounding, and are exactly its own when the prompt
itself is cached or nothing cached was used.

Files are safetensors: the state's arrays, and in the metadata JSON the model's identity, the prompt's
tokens, and the state's other fields (ints, lists, flags) with the classes that hold them, which must
be this package's models' own; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .errors import UserError
from .files import write_safetensors
from .generation import story_tokens
from .models import DecodingState

DEFAULT_BYTES = 256 << 20  # the server's --prompt-cache-bytes default
DEFAULT_ENTRIES = 256  # states, a prompt's part-way states included (a few per long prompt)
STEP_RATIO = 64  # continue a cached prefix byte by byte when at most 1/64 of the prompt is left
MIN_PREFIX = 128  # resume (as a prefill) from a cached prefix of at least this many bytes
MIN_TAIL = 16  # keep part-way states down to this many bytes before a prompt's end
# 2: SpaceByte's and H-Net's byte layers hold windowed caches (kv_cache.WindowCache) once prefilled;
# a file of format 1 holds their plain caches, which the compiled step can no longer read.
FORMAT = "mlx-megabyte prompt cache 2"
FORMAT_NAME = FORMAT.rsplit(" ", 1)[0]
MODELS_PACKAGE = "mlx_megabyte.models."  # the only classes a file may name


@dataclass
class _Entry:
    state: DecodingState  # one row
    logits: mx.array | None  # (1, vocab): the prediction of the byte after the prompt; None: a part-way state
    nbytes: int


class PromptCache:
    """Decoding states of prompts and of prefixes of them, one row each, keyed by their token ids, least
    recently used evicted first once more than `max_bytes` (the states' arrays, `DecodingState.nbytes`)
    or `max_entries` are held. Thread-safe; every state handed in or out is a copy."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_BYTES,
        max_entries: int = DEFAULT_ENTRIES,
        step_ratio=STEP_RATIO,
        min_prefix=MIN_PREFIX,
        min_tail=MIN_TAIL,
    ):
        self.max_bytes, self.max_entries, self.step_ratio = max_bytes, max_entries, step_ratio
        self.min_prefix, self.min_tail = min_prefix, min_tail
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.nbytes = 0
        self.stats = {"hits": 0, "misses": 0, "bytes_reused": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[list[int]]:
        """The cached prompts' and prefixes' tokens, least recently used first."""
        with self._lock:
            return [np.frombuffer(key, dtype=np.int32).tolist() for key in self._entries]

    def lookup(self, tokens) -> tuple[DecodingState | None, mx.array | None, int]:
        """(a copy of the state of the longest cached prompt or prefix that begins `tokens`, its logits
        (None for a part-way state), its length), or (None, None, 0). A part-way state of exactly `tokens`
        has no logits to give, so only a longer prompt uses it."""
        key = _key(tokens)
        with self._lock:
            usable = (k for k, e in self._entries.items() if key.startswith(k) and (e.logits is not None or k != key))
            best = max(usable, key=len, default=None)
            if best is None:
                return None, None, 0
            self._entries.move_to_end(best)
            entry = self._entries[best]
            return entry.state.copy(), entry.logits, len(best) // 4

    def insert(self, tokens, state: DecodingState, logits: mx.array | None) -> bool:
        """Keep a copy of `state` (one row, after `tokens`) and its logits (None: a part-way state, which
        never replaces a prompt's state); False if it alone is over budget."""
        if state.batch_size != 1:
            raise ValueError(f"a prompt cache keeps one row per prompt, not {state.batch_size}")
        kept = state.copy()
        mx.eval([a for a in kept.arrays() if isinstance(a, mx.array)], *([] if logits is None else [logits]))
        entry = _Entry(kept, logits, kept.nbytes() + (0 if logits is None else logits.nbytes))
        if entry.nbytes > self.max_bytes or self.max_entries < 1:
            return False
        key = _key(tokens)
        with self._lock:
            if key in self._entries:
                if logits is None and self._entries[key].logits is not None:
                    self._entries.move_to_end(key)
                    return True
                self.nbytes -= self._entries.pop(key).nbytes
            self._entries[key] = entry
            self.nbytes += entry.nbytes
            while self.nbytes > self.max_bytes or len(self._entries) > self.max_entries:
                self.nbytes -= self._entries.popitem(last=False)[1].nbytes
        return True

    def start(self, model, ids) -> tuple[DecodingState, mx.array]:
        """Prefill `ids` (N, L: every row the same prompt) through the cache: (the state, the logits (N,
        vocab) for the next byte), as `model.make_cache(N).prefill(ids)` gives them; the prompt is cached
        (and, where the architecture resumes as a prefill, states part-way through it)."""
        ids = mx.array(ids).astype(mx.int32)
        rows, tokens = ids.shape[0], np.array(ids[0])
        state, logits, matched = self.lookup(tokens)
        if state is None or not self._worth_going_on(state, matched, len(tokens)):
            self.stats["misses"] += 1
            state = model.make_cache(rows)
            points = self.part_way(len(tokens)) if state.resumes_as_prefill else []
            logits, kept = state.prefill_keeping(ids, points)
            mx.eval(logits, [a for part in kept for a in part.arrays() if isinstance(a, mx.array)])  # in one go
            for part in kept:
                if rows > 1:
                    part.select([0])
                self.insert(tokens[: part.length], part, None)
            first = state.copy()  # row 0 is the prompt's state
            if rows > 1:
                first.select([0])
            self.insert(tokens, first, logits[:1])
            return state, logits
        self.stats["hits"] += 1
        self.stats["bytes_reused"] += matched
        if matched < len(tokens):
            logits = state.resume(mx.array(tokens[None, matched:]))
            self.insert(tokens, state, logits)
        if rows > 1:
            state.select([0] * rows)
            logits = mx.repeat(logits, rows, axis=0)
        return state, logits

    def part_way(self, length: int) -> list[int]:
        """Where to keep states part-way through a prompt of `length` bytes: L - L/2, L - L/4, ... (see the
        module docstring), at least `min_prefix` bytes in."""
        points, tail = [], length // 2
        while tail >= max(self.min_tail, 1):
            if length - tail >= self.min_prefix:
                points.append(length - tail)
            tail //= 2
        return points

    def _worth_going_on(self, state: DecodingState, matched: int, length: int) -> bool:
        """Whether starting from a cached prefix of `matched` bytes beats prefilling all `length` (see the
        module docstring)."""
        small_rest = (length - matched) * self.step_ratio <= length
        return small_rest or (state.resumes_as_prefill and matched >= self.min_prefix)


def _key(tokens) -> bytes:
    """Token ids as bytes: one prompt begins another exactly when its key begins the other's key."""
    return np.asarray(tokens, dtype=np.int32).tobytes()


# --- files -------------------------------------------------------------------------------------------


def model_identity(model) -> str:
    """A digest of the model's config and of a sample of every weight: another checkpoint, or the same one
    loaded in another precision, gets another identity."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, value in sorted(tree_flatten(model.parameters()), key=lambda item: item[0]):
        flat = value.reshape(-1)
        sample = flat[:: max(1, flat.size // 64)][:64].astype(mx.float32)
        digest.update(f"{name} {value.shape} {value.dtype}".encode() + np.array(sample).tobytes())
    return digest.hexdigest()


def save_prompt_cache(path, model, tokens, state: DecodingState, logits: mx.array) -> None:
    """Write `state` (one row, after `tokens`) and its logits to a safetensors file, atomically."""
    arrays = {"logits": logits}
    fields = {k: v for k, v in vars(state).items() if k not in ("model", "config")}
    metadata = {
        "format": FORMAT,
        "model": model_identity(model),
        "tokens": json.dumps([int(t) for t in tokens]),
        "state": json.dumps(_encode_object(state, fields, arrays)),
    }
    write_safetensors(path, arrays, metadata)


def load_prompt_cache(path, model) -> tuple[list[int], DecodingState, mx.array]:
    """(the prompt's tokens, its decoding state, the logits for the byte after it) from a file that
    `save_prompt_cache` wrote for this model; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no prompt cache file at {path}")
    try:
        arrays, metadata = mx.load(str(path), format="safetensors", return_metadata=True)
    except Exception as error:  # MLX raises plain exceptions for damaged files
        raise UserError(f"{path} is not a readable prompt cache file ({str(error).splitlines()[0]})") from None
    written = str(metadata.get("format", ""))
    if written.startswith(FORMAT_NAME + " ") and written != FORMAT:
        raise UserError(
            f"{path} was saved by another version of mlx-megabyte ({written!r}; this one reads {FORMAT!r}): "
            "save it again with --save-prompt-cache"
        )
    if written != FORMAT:
        raise UserError(f"{path} is not a prompt cache file (write one with --save-prompt-cache)")
    if metadata.get("model") != model_identity(model):
        raise UserError(f"{path} was saved from another model (its config or weights differ from these)")
    try:
        tokens = json.loads(metadata["tokens"])
        state = _decode(json.loads(metadata["state"]), arrays, model)
        logits = arrays["logits"]
        if not isinstance(state, DecodingState) or state.length != len(tokens) or state.batch_size != 1:
            raise ValueError("the state does not match its prompt")
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is a damaged prompt cache file ({error})") from None
    return tokens, state, logits


def _encode_object(value, fields: dict, arrays: dict) -> dict:
    """An object of this package's models (a state, a KV cache) by its class and its fields."""
    cls = type(value)
    if not cls.__module__.startswith(MODELS_PACKAGE) or isinstance(value, nn.Module):
        raise ValueError(f"cannot save a decoding state that holds a {cls.__name__}")
    return {"object": f"{cls.__module__}:{cls.__qualname__}", "fields": _encode(fields, arrays)["dict"]}


def _encode(value, arrays: dict):
    """A JSON tree for `value` (arrays go into `arrays`, named by number): every JSON object is tagged."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return {"scalar": value.item(), "dtype": value.dtype.str}
    if isinstance(value, (mx.array, np.ndarray)):
        name = str(len(arrays))
        arrays[name] = value if isinstance(value, mx.array) else mx.array(value)
        return {"mx": name} if isinstance(value, mx.array) else {"np": name, "dtype": value.dtype.str}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("cannot save a decoding state with a dict keyed by anything but strings")
        return {"dict": {k: _encode(v, arrays) for k, v in value.items()}}
    if hasattr(value, "__dict__"):
        return _encode_object(value, vars(value), arrays)
    raise ValueError(f"cannot save a decoding state that holds a {type(value).__name__}")


def _decode(node, arrays: dict, model):
    if isinstance(node, list):
        return [_decode(v, arrays, model) for v in node]
    if not isinstance(node, dict):
        return node
    if "scalar" in node:
        return np.dtype(node["dtype"]).type(node["scalar"])
    if "mx" in node:
        return arrays[node["mx"]]
    if "np" in node:
        return np.array(arrays[node["np"]]).astype(np.dtype(node["dtype"]))
    if "tuple" in node:
        return tuple(_decode(v, arrays, model) for v in node["tuple"])
    if "dict" in node:
        return {k: _decode(v, arrays, model) for k, v in node["dict"].items()}
    cls = _class(node["object"])
    value = cls.__new__(cls)
    value.__dict__.update({k: _decode(v, arrays, model) for k, v in node["fields"].items()})
    if isinstance(value, DecodingState):
        value.model, value.config = model, model.config
    return value


def _class(name: str) -> type:
    """A class of this package's models, by "module:qualname", from the modules already imported: a file
    names no code to run."""
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name) if module_name.startswith(MODELS_PACKAGE) else None
    value = module
    for part in qualname.split(".") if module is not None else ():
        value = getattr(value, part, None)
    if not isinstance(value, type) or value.__module__ != module_name:
        raise ValueError(f"unknown class {name!r}")
    return value


# --- the command line's flags ------------------------------------------------------------------------


def save_prompt(path, model, prompt: bytes) -> str:
    """`generate --save-prompt-cache FILE`: prefill the story prompt and write its state; the line to print."""
    tokens = story_tokens(model.config, prompt)[0]
    state = model.make_cache(1)
    logits = state.prefill(mx.array(tokens[None]))
    mx.eval(logits)
    save_prompt_cache(path, model, tokens, state, logits)
    return f"wrote {path}: the decoding state after the prompt's {len(tokens)} bytes (the story start included)"


def from_file(path, model, prompt: bytes) -> PromptCache:
    """`generate --prompt-cache-file FILE`: a cache holding FILE's state, whose prompt must begin `prompt`."""
    tokens, state, logits = load_prompt_cache(path, model)
    if not _key(story_tokens(model.config, prompt)[0]).startswith(_key(tokens)):
        raise UserError(
            f"{path} holds the state of another prompt: --prompt must begin with the {len(tokens) - 1} bytes saved"
        )
    # the file's state and the prompt's own; no states part-way through a prompt that is read once
    cache = PromptCache(max_bytes=1 << 62, max_entries=2, min_tail=sys.maxsize)
    cache.insert(tokens, state, logits)
    return cache
