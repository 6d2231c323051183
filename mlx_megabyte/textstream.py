"""One sample's sampled tokens as text: the rule `generation.stream_generate` and the server's batched rows
(batching.py) both hand out, kept in one place so the two cannot drift apart.

A `TextStream` is fed one sampled token at a time and says what text may be handed out now:

- UTF-8 is decoded incrementally (errors="replace": invalid bytes become U+FFFD), so a character split
  across steps comes out once, when its last byte arrives;
- a stop string ends the sample and is not handed out; text that could still grow into one is held back
  until it cannot;
- the layout's end token ends the sample ("eot"), and so does the `max_tokens`-th token ("length").
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from .tokens import Layout


@dataclass
class Step:
    """What one token gave."""

    text: str  # new text to hand out ("" while a character is incomplete or could begin a stop string)
    byte: int | None  # the byte the token stands for; None for the end token
    finish_reason: str | None  # None while the sample goes on, else "eot", "stop" or "length"
    # (start, end) in `TextStream.text` of what each decoder call added (the token's byte, then the flush
    # at the end), before a stop string cut the text: which characters the byte made, for logprobs
    spans: list[tuple[int, int]] = field(default_factory=list)


class TextStream:
    """One sample's text as its tokens arrive (see the module's docstring for the rules)."""

    def __init__(self, layout: Layout, stop: tuple[str, ...] = (), max_tokens: int | None = None):
        self.layout, self.stop, self.max_tokens = layout, tuple(stop), max_tokens
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # the longest tail that may be the start of a stop string (a whole one would have been cut)
        self.hold = max((len(s) - 1 for s in self.stop), default=0)
        self.text = ""  # everything decoded so far (cut at a stop string once one appears)
        self.emitted = 0  # characters of `text` already handed out
        self.count = 0  # tokens taken
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token: int) -> Step:
        """Take the next sampled token. Once the stream is done, tokens are ignored (no text, no spans):
        a batch may still sample for a row that has finished."""
        byte = self.layout.byte(token)
        if self.done:
            return Step("", byte, self.finish_reason)
        self.count += 1
        spans = []
        if byte is None:
            self.finish_reason = "eot"
        else:
            spans.append(self._decode(bytes([byte])))
            if self.count == self.max_tokens:
                self.finish_reason = "length"
        if self.done:  # bytes still held by the decoder (an unfinished character) become U+FFFD
            spans.append(self._decode(b"", final=True))
        return Step(self._take(), byte, self.finish_reason, spans)

    def _decode(self, data: bytes, final: bool = False) -> tuple[int, int]:
        start = len(self.text)
        self.text += self.decoder.decode(data, final=final)
        return start, len(self.text)

    def _take(self) -> str:
        """The new text that can be handed out: up to a stop string if one appeared, and never the tail
        that could still turn into one."""
        for s in self.stop:
            at = self.text.find(s)
            if at != -1:
                self.finish_reason = "stop"
                self.text = self.text[:at]
        hold = 0 if self.done else self.hold
        safe = max(self.emitted, len(self.text) - hold)
        piece = self.text[self.emitted : safe]
        self.emitted = safe
        return piece
