"""How text becomes the bytes a model sees: the end-of-text byte between stories, prompts, and the
TinyStories-Instruct record layout (written once here for the built-in corpus and for prompts alike, and
read back by `story_mask`, which marks the story bytes a masked-prompt loss counts)."""

from __future__ import annotations

import re

import numpy as np

# ASCII ETX, not 0: megabyte-pytorch's loss ignores pad_id (0), and the model must learn where a story
# ends. Training joins stories with it, and generation puts it in front of a prompt to start a story.
EOT = 3


def encode_prompt(prompt: str | bytes, story_start: bool = True) -> bytes:
    """A prompt's bytes (a str as UTF-8; surrogate escapes give back undecodable input bytes), after the
    end-of-text byte that tells the model a story begins."""
    data = prompt.encode("utf-8", "surrogateescape") if isinstance(prompt, str) else bytes(prompt)
    return (bytes([EOT]) if story_start else b"") + data


def instruct_text(features="", words="", summary="", random_sentence: str = "", story: str = "") -> str:
    """A TinyStories-Instruct record: Features, Words, Summary and Random sentence (each only when
    given; lists are joined with commas), then 'Story: ', a blank line and the story. With no story,
    the prompt that asks for one."""
    fields = (("Features", features), ("Words", words), ("Summary", summary), ("Random sentence", random_sentence))
    lines = []
    for name, value in fields:
        value = ", ".join(value) if isinstance(value, (list, tuple)) else value.strip()
        if value:
            lines.append(f"{name}: {value}")
    lines.append(f"Story: \n\n{story}")
    return "\n".join(lines)


def instruct_prompt(features: str = "", words: str = "", summary: str = "") -> str:
    """The start of a TinyStories-Instruct record, up to where the story begins."""
    return instruct_text(features, words, summary)


# "Story:" at the start of a line, or right after the end-of-text byte that starts a record, and the
# whitespace after it.
_STORY_LABEL_BYTES = re.compile(rb"(?:^|(?<=[\n\x03]))Story:[ \t\r\n]*")


def byte_array(data) -> np.ndarray:
    """bytes, or a uint8 array (a memory-mapped split), as a uint8 array."""
    return np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8)


def story_mask(data) -> np.ndarray:
    """(len(data),) bool: the bytes of a stream of records that are story, each story with the end-of-text
    byte that closes it. A record's story starts after its first "Story:" label (at the start of a line)
    and the whitespace after it; bytes of documents without one are never marked.

    >>> story_mask(b"Words: a\\nStory: Hi\\x03").astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    """
    ids = byte_array(data)
    ends = np.flatnonzero(ids == EOT)
    mask = np.zeros(len(ids), dtype=bool)
    last = -1
    for label in _STORY_LABEL_BYTES.finditer(ids.tobytes()):
        record = int(np.searchsorted(ends, label.start()))  # its closing EOT is ends[record]
        if record == last:
            continue  # "Story:" inside a story is story
        last = record
        mask[label.end() : int(ends[record]) + 1 if record < len(ends) else len(ids)] = True
    return mask
