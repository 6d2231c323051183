"""Prompts computed once: a bounded in-memory cache of decoding states by prompt (the server's batcher and
generation start from the state of the longest prompt already seen that begins the new one), and
prompt-cache files (`generate --save-prompt-cache FILE`, then `--prompt-cache-file FILE`, as mlx-lm's
cache_prompt and --prompt-cache-file).

A cached state continues byte by byte (`DecodingState.step`), and a step costs about as much as
prefilling a hundred bytes at once (the `demo` MEGABYTE on two CPU cores: 5 ms a step, 0.05 ms a
prefilled byte), so a cached prefix is only worth continuing when little is left: at most
1/`step_ratio` of the prompt. Otherwise the whole prompt is prefilled from scratch, exactly as
without a cache. Either way the logits agree with a prefill from scratch (to float rounding; exactly
when the prompt itself is cached).

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
DEFAULT_ENTRIES = 64
STEP_RATIO = 64  # continue a cached prefix when at most 1/64 of the prompt is left (see the docstring)
FORMAT = "mlx-megabyte prompt cache 1"
MODELS_PACKAGE = "mlx_megabyte.models."  # the only classes a file may name


@dataclass
class _Entry:
    state: DecodingState  # one row
    logits: mx.array  # (1, vocab): the prediction of the byte after the prompt
    nbytes: int


class PromptCache:
    """Decoding states of prompts, one row each, keyed by the prompt's token ids, least recently used
    evicted first once more than `max_bytes` (the states' arrays, `DecodingState.nbytes`) or
    `max_entries` are held. Thread-safe; every state handed in or out is a copy."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES, max_entries: int = DEFAULT_ENTRIES, step_ratio=STEP_RATIO):
        self.max_bytes, self.max_entries, self.step_ratio = max_bytes, max_entries, step_ratio
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.nbytes = 0
        self.stats = {"hits": 0, "misses": 0, "bytes_reused": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[list[int]]:
        """The cached prompts' tokens, least recently used first."""
        with self._lock:
            return [np.frombuffer(key, dtype=np.int32).tolist() for key in self._entries]

    def lookup(self, tokens) -> tuple[DecodingState | None, mx.array | None, int]:
        """(a copy of the state of the longest cached prompt that begins `tokens`, its logits, its length),
        or (None, None, 0)."""
        key = _key(tokens)
        with self._lock:
            best = max((k for k in self._entries if key.startswith(k)), key=len, default=None)
            if best is None:
                return None, None, 0
            self._entries.move_to_end(best)
            entry = self._entries[best]
            return entry.state.copy(), entry.logits, len(best) // 4

    def insert(self, tokens, state: DecodingState, logits: mx.array) -> bool:
        """Keep a copy of `state` (one row, after `tokens`) and its logits; False if it alone is over budget."""
        if state.batch_size != 1:
            raise ValueError(f"a prompt cache keeps one row per prompt, not {state.batch_size}")
        kept = state.copy()
        mx.eval([a for a in kept.arrays() if isinstance(a, mx.array)], logits)  # computed now, and once
        entry = _Entry(kept, logits, kept.nbytes() + logits.nbytes)
        if entry.nbytes > self.max_bytes or self.max_entries < 1:
            return False
        key = _key(tokens)
        with self._lock:
            if key in self._entries:
                self.nbytes -= self._entries.pop(key).nbytes
            self._entries[key] = entry
            self.nbytes += entry.nbytes
            while self.nbytes > self.max_bytes or len(self._entries) > self.max_entries:
                self.nbytes -= self._entries.popitem(last=False)[1].nbytes
        return True

    def start(self, model, ids) -> tuple[DecodingState, mx.array]:
        """Prefill `ids` (N, L: every row the same prompt) through the cache: (the state, the logits (N,
        vocab) for the next byte), as `model.make_cache(N).prefill(ids)` gives them; the prompt is cached."""
        ids = mx.array(ids).astype(mx.int32)
        rows, tokens = ids.shape[0], np.array(ids[0])
        state, logits, matched = self.lookup(tokens)
        rest = tokens[matched:]
        if state is None or len(rest) * self.step_ratio > len(tokens):
            self.stats["misses"] += 1
            state = model.make_cache(rows)
            logits = state.prefill(ids)
            first = state.copy()  # row 0 is the prompt's state
            first.select([0])
            self.insert(tokens, first, logits[:1])
            return state, logits
        self.stats["hits"] += 1
        self.stats["bytes_reused"] += matched
        for byte in rest:
            logits = state.step(mx.array([int(byte)], dtype=mx.int32))
        if len(rest):
            self.insert(tokens, state, logits)
        if rows > 1:
            state.select([0] * rows)
            logits = mx.repeat(logits, rows, axis=0)
        return state, logits


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
    if metadata.get("format") != FORMAT:
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
    cache = PromptCache(max_bytes=1 << 62, max_entries=2)  # the file's state, and the prompt's own
    cache.insert(tokens, state, logits)
    return cache
