"""Guided decoding: a sampler option that makes a story's required words likelier, byte by byte.

A byte trie holds every form of every required word that `instruct.uses_word` accepts
(`instruct.word_forms`: kite, kites, kited, ...). Where a word may begin (the story's start, or after any
character that is no letter, as uses_word's whole-word rule has it), the first bytes of the words not yet
used get `strength` nats added to their logits; inside a word that is still a prefix of some unused
word's form, the bytes that continue it do. Nothing is forced: the model may write anything else, and
once a word goes another way (a byte no form continues) nothing is added until the next word begins. A
word is dropped from the trie once it has been written whole (a form followed by a character that is no
letter, as uses_word judges it).

- Case: matching ignores ASCII case, and a letter's bonus goes to both its cases, so the model's own
  preference between "K" and "k" (a sentence start, say) is left as it was. Other scripts' letters are
  matched as the word spells them.
- A prefix that already spells a form of a word asks for no more of that word ("kite" does not push
  towards "kites"): the word is done as soon as the word ends.
- Strength 0 is off: `guided` then returns the sampler it was given, so the draws are the plain ones
  bit for bit.

What a guided model writes is the sampler's work as much as the model's: evaluate reports a guided arm
as its own column (docs/stories-on-command.md), and the story bits per byte stay the model's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .instruct import is_letter, parse_record, word_forms

ROOT = 0  # the trie node of a word that has not begun: where every word may start


@dataclass(frozen=True)
class RowState:
    """One row's progress: the words it has used, the trie node of the word it is writing (None: the word
    went another way, nothing matches until the next word), the node where the character now being
    written began, and that character's bytes so far (a UTF-8 character may take several)."""

    used: frozenset = frozenset()
    node: int | None = ROOT
    before: int | None = ROOT
    pending: bytes = b""


class WordGuide:
    """The trie over `words`' forms, and the bonus each row's state earns; `strength` in nats (0: off).
    `story`: the story's bytes the prompt already holds (b"": the story begins where the prompt ends),
    where every row starts (`first`)."""

    def __init__(self, words, strength: float, story: bytes = b""):
        self.words = tuple(w.strip() for w in words if w.strip())
        self.strength = float(strength)
        self.story = bytes(story)
        self.children: list[dict[int, int]] = [{}]  # node -> {lower-case byte: child node}
        self.through: list[set[int]] = [set()]  # node -> the words with a form that starts with its bytes
        self.ends: list[set[int]] = [set()]  # node -> the words with a form that is exactly its bytes
        for index, word in enumerate(self.words):
            for form in word_forms(word):
                node = ROOT
                for byte in form.encode():
                    if byte not in self.children[node]:
                        self.children[node][byte] = len(self.children)
                        self.children.append({})
                        self.through.append(set())
                        self.ends.append(set())
                    node = self.children[node][byte]
                    self.through[node].add(index)
                self.ends[node].add(index)

    def first(self) -> RowState:
        """A row's state where generation starts: after `story` (b"": where a word may begin)."""
        state = RowState()
        for byte in self.story:
            state = self.advance(state, byte)
        return state

    def advance(self, state: RowState, byte: int | None) -> RowState:
        """The state after one more byte (None, the end token: the state stays, nothing follows it)."""
        if byte is None:
            return state
        node = None if state.node is None else self.children[state.node].get(_fold(byte))
        pending = state.pending + bytes([byte])
        char = _character(pending)
        if char is None:  # inside a multi-byte character
            return RowState(state.used, node, state.before, pending)
        if is_letter(char):
            return RowState(state.used, node, node, b"")
        # a word ends here: what it spelled before this character counts, and a new word may begin
        used = state.used | self.ends[state.before] if state.before is not None else state.used
        return RowState(frozenset(used), ROOT, ROOT, b"")

    def bonus_bytes(self, state: RowState) -> list[int]:
        """The byte values that earn the bonus in `state` (both cases of an ASCII letter), sorted."""
        if state.node is None:
            return []
        done = state.used | self.ends[state.node]  # a form spelled here needs no more bytes
        out = set()
        for byte, child in self.children[state.node].items():
            if self.through[child] - done:
                out.add(byte)
                if 0x61 <= byte <= 0x7A:
                    out.add(byte - 0x20)
        return sorted(out)

    def bonus(self, states: list[RowState], layout, num_tokens: int) -> np.ndarray:
        """(rows, num_tokens) float32: `strength` on the token ids of each row's bonus bytes, 0 elsewhere."""
        out = np.zeros((len(states), num_tokens), np.float32)
        for row, state in enumerate(states):
            out[row, np.array(self.bonus_bytes(state), np.int64) + layout.offset] = self.strength
        return out

    def sampler(self, sampler, rows: int, layout):
        """`sampler` with the bonus added to each row's logits, for `generation.generate_step`'s loop (one
        call a step, `rows` fixed rows, each from `first`): each call first moves every row on by the
        token the previous call drew. At strength 0 the sampler itself: the plain draws, bit for bit."""
        if self.strength == 0:
            return sampler
        states = [self.first()] * rows
        drawn = None

        def sample(logits, *keys):
            nonlocal drawn
            if drawn is not None:  # (drawn a step ago: generate_step has evaluated it by now)
                for row, token in enumerate(drawn.tolist()):
                    states[row] = self.advance(states[row], layout.byte(token))
            drawn = sampler(logits + mx.array(self.bonus(states, layout, logits.shape[-1])), *keys)
            return drawn

        return sample


def _fold(byte: int) -> int:
    return byte + 0x20 if 0x41 <= byte <= 0x5A else byte


def _character(pending: bytes) -> str | None:
    """The character `pending` completes; None while it is a valid start of one; U+FFFD for bytes no UTF-8
    character begins with (no letter, as the story's decoding with errors="replace" makes them)."""
    try:
        return pending.decode("utf-8")
    except UnicodeDecodeError as error:
        return None if error.reason == "unexpected end of data" else "\ufffd"


def guide_for_prompt(prompt, strength: float, words=None) -> WordGuide | None:
    """The guide for a prompt (str or bytes): to `words`, or by default to the Words line of an instruct
    prompt (text up to a "Story:" line, whose rest is the story so far; a prompt without one is all
    story). None at strength 0 or without words: nothing to guide."""
    text = prompt if isinstance(prompt, str) else bytes(prompt).decode("utf-8", "surrogateescape")
    try:
        record = parse_record(text)
    except ValueError:
        record = None
    story = (record.story if record is not None else text).encode("utf-8", "surrogateescape")
    if words is None:
        words = record.words if record is not None else ()
    guide = WordGuide(words, strength, story)
    return guide if strength > 0 and guide.words else None
