"""How bytes become the token ids a model reads and writes: two layouts, chosen by the model's
`shift_bytes` setting.

- **text** (the default, and every model before the setting existed): a token is its byte. Token 0 is
  megabyte-pytorch's `pad_id`, which the loss ignores, and 0x03 (text.EOT) ends a document, so documents
  must not hold those two bytes (data.py substitutes them). 256 tokens, streams of uint8.
- **bytes**: a token is its byte plus one, so all 256 byte values are learned and none is reserved. Token
  0 stays the pad id, bytes are 1..256, and 257 ends a document: 258 tokens, streams of uint16. This is
  the layout for pictures and sound, where every zero byte is a black pixel or a quiet sample; in
  megabyte-pytorch it is `MEGABYTE(num_tokens=258, pad_id=0)` with the ids shifted by the caller.

Everything that turns bytes into ids or ids back into bytes (data encoding, prompts, generation, the
server) asks the model's layout here instead of assuming a token is a byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .text import EOT


@dataclass(frozen=True)
class Layout:
    name: str  # "text" or "bytes"
    offset: int  # the token of byte 0
    end: int  # the token that ends a document (and, before a prompt, says one begins)
    num_tokens: int  # the smallest vocabulary that holds the layout
    dtype: type  # numpy dtype of an encoded stream

    def encode(self, data: bytes) -> np.ndarray:
        """A document's bytes as token ids (the text layout substitutes nothing here: see data.py)."""
        array = np.frombuffer(bytes(data), np.uint8)
        return array if self.offset == 0 else array.astype(self.dtype) + self.offset

    def prompt(self, data: bytes, story_start: bool = True) -> np.ndarray:
        """A prompt's tokens: the end-of-document token first (a document begins), then its bytes."""
        tokens = self.encode(data)
        return np.concatenate([np.array([self.end], self.dtype), tokens]) if story_start else tokens

    def decode(self, tokens) -> bytes:
        """Token ids back to bytes; the pad id and the end token (no byte of a document) are dropped."""
        ids = np.asarray(tokens).astype(np.int64).ravel()
        kept = ids[(ids != self.end) & (ids >= self.offset) & (ids < self.offset + 256)]
        return (kept - self.offset).astype(np.uint8).tobytes()

    def byte(self, token: int) -> int | None:
        """The byte a sampled token stands for; None for the end token (or any id that is no byte)."""
        value = token - self.offset
        return value if token != self.end and 0 <= value < 256 else None

    def allowed(self, num_tokens: int, end: bool = True) -> np.ndarray | None:
        """(num_tokens,) bool: the ids generation may sample (the bytes, and the end token unless `end` is
        False), or None where every id is one (the text layout's 256: nothing to mask, nothing to slow down)."""
        allowed = np.zeros(num_tokens, bool)
        allowed[self.offset : self.offset + 256] = True
        allowed[self.end] = end
        return None if allowed.all() else allowed

    def restrict(self, sampler, num_tokens: int, end: bool = True):
        """`sampler` that never draws an id which is no byte (the bytes layout's pad id 0, or spare ids of a
        vocabulary larger than the layout's), nor the end token with end=False (an image of a fixed size
        ends where its layout says, not where the model guesses)."""
        allowed = self.allowed(num_tokens, end)
        if allowed is None:
            return sampler
        penalty = mx.array(np.where(allowed, 0.0, -np.inf).astype(np.float32))

        def sample(logits, *args):
            return sampler(logits + penalty.astype(logits.dtype), *args)

        return sample


TEXT = Layout("text", offset=0, end=EOT, num_tokens=256, dtype=np.uint8)
BYTES = Layout("bytes", offset=1, end=257, num_tokens=258, dtype=np.uint16)
LAYOUTS = {layout.name: layout for layout in (TEXT, BYTES)}


def layout_of(config) -> Layout:
    """The layout a model config declares (`shift_bytes`; configs without the field are text)."""
    return BYTES if getattr(config, "shift_bytes", False) else TEXT
