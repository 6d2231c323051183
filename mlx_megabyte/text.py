"""How text becomes the bytes a model sees: the end-of-text byte between stories, prompts, and the
TinyStories-Instruct record layout (written once here for the built-in corpus and for prompts alike)."""

from __future__ import annotations

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
