"""OpenAI chat requests for a story model, which is not a chat model: how messages become a story prompt
(the chat.completion answers, and their chunks, are protocol.py's).

The rule:

1. `messages` is a non-empty list of objects, each with a `role` (system, developer, user or assistant)
   and a `content`: a string, or a list of text parts ({"type": "text", "text": ...}, joined with line
   breaks). Images, audio, files, tool messages and tool calls are refused.
2. The last message must be the user's: it is the story request. System and developer messages are
   ignored (a story model follows no instructions in prose), and so are earlier turns: every request
   writes one new story, so a chat client that sends the whole history gets a story for its latest
   message. Ignored messages are still checked.
3. Lines at the start of the request of the form "Features: ...", "Words: ...", "Summary: ..." or
   "Random sentence: ..." (any order, labels in any case, each at most once, optionally closed by a
   "Story:" line) are TinyStories-Instruct fields; the rest of the text starts the story. The request's
   own `features`, `words` (a string or a list of strings), `summary` and `random_sentence` fields add
   to them; a field given both ways is refused.
4. With a field, the prompt is the instruct layout (text.instruct_text: the fields, "Story:", then the
   story's start); without one, the text itself is the start of a story. An empty request (no text and
   no field) is refused.

    >>> story_request({"messages": [{"role": "user", "content": "Words: hat, run\\nOnce upon a time"}]}).prompt
    'Words: hat, run\\nStory: \\n\\nOnce upon a time'

Every refusal is a `protocol.ApiError` with HTTP status 400 (message, param, code), as the server's other
errors are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .instruct import FIELDS
from .protocol import ApiError, checked_text
from .text import instruct_text

ROLES = ("system", "developer", "user", "assistant")
IGNORED_ROLES = ("system", "developer")
# Fields of a chat request passed on, as they are, to the completions request that writes the story.
PASSED_ON = (
    *("temperature", "top_p", "min_p", "top_k", "seed", "n", "stream", "stream_options", "stop", "logit_bias"),
    *("guide_strength", "guide_words"),  # guided decoding (guide.py), an extension
)
_HEADER_LINE = re.compile(r"[ \t]*(Features|Words|Summary|Random sentence):[ \t]*(.*)", re.IGNORECASE)
_STORY_LINE = re.compile(r"[ \t]*Story:[ \t]?(.*)", re.IGNORECASE)
_LABELS = {label.lower(): name for name, label in FIELDS.items()}


@dataclass(frozen=True)
class StoryRequest:
    """What a chat request asks the story model for."""

    prompt: str  # the model's prompt (generation puts the end-of-text byte in front)
    fields: dict  # the instruct fields given: features, words, summary, random_sentence (absent: not given)
    story_start: str  # the user's text that starts the story

    @property
    def instruct(self) -> bool:
        return bool(self.fields)


# --- requests --------------------------------------------------------------------------------------------


def _json_type(value) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def message_text(message, param: str) -> str:
    """The text of one message's content: a string, or text parts joined with line breaks."""
    content = message.get("content")
    if isinstance(content, str):
        return checked_text(content, f"{param}.content")
    if not isinstance(content, list):
        raise ApiError(
            400,
            f"'{param}.content' must be a string or a list of text parts, got {_json_type(content)}",
            f"{param}.content",
            "invalid_type",
        )
    texts = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        if not isinstance(part, dict):
            raise ApiError(400, f"'{where}' must be an object, got {_json_type(part)}", where, "invalid_type")
        if part.get("type") != "text":
            kind = part.get("type")
            raise ApiError(
                400,
                f'\'{where}.type\' is {kind!r}: a story model reads text parts only ({{"type": "text", '
                '"text": ...}})',
                f"{where}.type",
                "unsupported_content",
            )
        if not isinstance(part.get("text"), str):
            raise ApiError(
                400,
                f"'{where}.text' must be a string, got {_json_type(part.get('text'))}",
                f"{where}.text",
                "invalid_type",
            )
        texts.append(checked_text(part["text"], f"{where}.text"))
    return "\n".join(texts)


def _check_message(message, i: int) -> str:
    """Message i's role, once the message has been checked (its text too, even when it is ignored)."""
    param = f"messages[{i}]"
    if not isinstance(message, dict):
        raise ApiError(
            400,
            f"'{param}' must be an object with a role and a content, got {_json_type(message)}",
            param,
            "invalid_type",
        )
    role = message.get("role")
    if not isinstance(role, str):
        raise ApiError(400, f"'{param}.role' must be a string, got {_json_type(role)}", f"{param}.role", "invalid_type")
    if role in ("tool", "function"):
        raise ApiError(
            400, f"'{param}.role' is {role!r}: a story model calls no tools", f"{param}.role", "unsupported_role"
        )
    if role not in ROLES:
        raise ApiError(
            400,
            f"'{param}.role' must be one of {', '.join(ROLES)}, got {role[:40]!r}",
            f"{param}.role",
            "invalid_value",
        )
    for name in ("tool_calls", "function_call"):
        if message.get(name):
            raise ApiError(
                400, f"'{param}.{name}': a story model calls no tools", f"{param}.{name}", "unsupported_parameter"
            )
    message_text(message, param)
    return role


def split_request(text: str, param: str = "content") -> tuple[dict, str]:
    """(instruct fields, the story's start) of a request's text: the field lines at its start (blank lines
    between them allowed, a closing "Story:" line optional), then the rest, leading whitespace removed.

    >>> split_request("summary: A cat naps.\\nFeatures: Dialogue\\nStory:\\nThe cat")
    ({'summary': 'A cat naps.', 'features': 'Dialogue'}, 'The cat')
    """
    fields: dict[str, str] = {}
    lines = text.split("\n")
    at = 0
    while at < len(lines):
        match = _HEADER_LINE.fullmatch(lines[at].rstrip("\r"))
        if not match and lines[at].strip():
            break
        at += 1
        if match:
            name = _LABELS[match[1].lower()]
            if name in fields:
                raise ApiError(400, f"'{param}' gives the {FIELDS[name]} field twice", param, "duplicate_field")
            if match[2].strip():
                fields[name] = match[2].strip()
    if not fields:
        return {}, text  # not the instruct layout: all of it starts the story
    rest = lines[at:]
    story = _STORY_LINE.fullmatch(rest[0].rstrip("\r")) if rest else None
    if story:
        rest = [story[1], *rest[1:]]
    return fields, "\n".join(rest).lstrip()


def _request_fields(body: dict) -> dict:
    """The instruct fields given as request fields (lists of strings joined with commas)."""
    fields = {}
    for name in FIELDS:
        value = body.get(name)
        if value is None or value == "":
            continue
        listed = name in ("features", "words") and isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not isinstance(value, str) and not listed:
            what = "a string or a list of strings" if name in ("features", "words") else "a string"
            raise ApiError(400, f"'{name}' must be {what}, got {_json_type(value)}", name, "invalid_type")
        value = ", ".join(v.strip() for v in value if v.strip()) if listed else value.strip()
        if value:
            fields[name] = checked_text(value, name)
    return fields


_UNSUPPORTED = {  # request fields a story model cannot honour, and the values that ask for nothing
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none"),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False),
    "top_logprobs": (None,),
    "audio": (None,),
    "modalities": (None, ["text"]),
}


def story_request(body) -> StoryRequest:
    """What a chat completions request asks the story model for (the rule in the module's docstring);
    ApiError for anything else."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", None, "invalid_body")
    for name, harmless in _UNSUPPORTED.items():
        if name in body and body[name] not in harmless:
            raise ApiError(
                400,
                f"'{name}' is not supported: a story model writes plain text, calls no tools and "
                "returns no logprobs in chat form",
                name,
                "unsupported_parameter",
            )
    messages = body.get("messages")
    if messages is None:
        raise ApiError(
            400,
            "'messages' is required: a list of messages whose last is the user's story request",
            "messages",
            "missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise ApiError(
            400, f"'messages' must be a list of messages, got {_json_type(messages)}", "messages", "invalid_type"
        )
    if not messages:
        raise ApiError(
            400, "'messages' is empty: the last message must be the user's story request", "messages", "empty_array"
        )
    roles = [_check_message(message, i) for i, message in enumerate(messages)]
    last = len(messages) - 1
    if roles[last] != "user":
        raise ApiError(
            400,
            f"the last message is the {roles[last]}'s: it must be the user's story request (earlier turns are ignored)",
            f"messages[{last}].role",
            "last_message_not_user",
        )
    param = f"messages[{last}].content"
    fields, start = split_request(message_text(messages[last], f"messages[{last}]"), param)
    extra = _request_fields(body)
    twice = [name for name in FIELDS if name in fields and name in extra]
    if twice:
        raise ApiError(
            400,
            f"the {FIELDS[twice[0]]} field is given both in the message and as '{twice[0]}': give it once",
            twice[0],
            "conflicting_fields",
        )
    fields = {**fields, **extra}
    if not fields and not start.strip():
        raise ApiError(
            400,
            f"'{param}' is empty: write the start of a story, or Features:/Words:/Summary: lines",
            param,
            "empty_content",
        )
    prompt = instruct_text(story=start, **fields) if fields else start
    return StoryRequest(prompt=prompt, fields=fields, story_start=start)


def completion_request(body) -> tuple[dict, StoryRequest]:
    """(the /v1/completions request that writes the story, what was asked): the prompt from the messages,
    `max_completion_tokens` (or `max_tokens`) as max_tokens, and the sampling fields in PASSED_ON; other
    fields are not passed on (the completions parser checks the values)."""
    request = story_request(body)
    completion = {"prompt": request.prompt, **{name: body[name] for name in PASSED_ON if name in body}}
    newer, older = body.get("max_completion_tokens"), body.get("max_tokens")
    if newer is not None:
        if isinstance(newer, bool) or not isinstance(newer, int):
            raise ApiError(
                400,
                f"'max_completion_tokens' must be a non-negative integer, got {_json_type(newer)}",
                "max_completion_tokens",
                "invalid_type",
            )
        if newer < 0:
            raise ApiError(
                400,
                f"'max_completion_tokens' must be a non-negative integer, got {newer}",
                "max_completion_tokens",
                "invalid_value",
            )
        if older is not None and older != newer:
            raise ApiError(
                400,
                f"'max_tokens' ({older}) and 'max_completion_tokens' ({newer}) differ: give one",
                "max_completion_tokens",
                "conflicting_fields",
            )
    if newer is not None or older is not None:
        completion["max_tokens"] = newer if newer is not None else older
    return completion, request
