"""The OpenAI-compatible protocol the server speaks, apart from HTTP: requests checked field by field
(completions, chat's after chat.py has made its messages a prompt, and media), the answers built from a
job's events (whole responses, stream chunks and their server-sent-event framing, usage, per-byte
logprobs), and the one error every refusal is, answered as OpenAI does. server.py moves these bytes.
"""

from __future__ import annotations

import base64
import codecs
import json
import secrets
import time
import uuid
from typing import Iterable, Iterator

import mlx.core as mx

from .batching import ByteLogprob, Chunk, Job
from .generation import DEFAULT_MAX_TOKENS, fit_context
from .guide import guide_for_prompt
from .sampling import SamplingSettings, make_sampler
from .settings import WrongKind, check_value
from .text import encode_prompt, instruct_prompt

MAX_LOGPROBS = 20  # alternatives per byte (OpenAI allows 5; a byte model's 20 are still cheap)
MAX_STOP = 4
MAX_MEDIA_SECONDS = 30.0  # of sound a /v1/media request may ask for
SSE_DONE = b"data: [DONE]\n\n"  # a stream's last event


class ApiError(Exception):
    """A request the server refuses, answered as OpenAI does: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# --- requests ------------------------------------------------------------------------------------------


def parse_json(data: bytes):
    """A request body's JSON (strict: UTF-8, and no NaN or Infinity), or ApiError."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not valid UTF-8", code="invalid_utf8") from None
    except json.JSONDecodeError as error:
        raise ApiError(400, f"the request body is not valid JSON ({error})", code="invalid_json") from None


def _no_constants(name: str):
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ApiError(400, f"the request body is not valid JSON ({name} is not a JSON number)", code="invalid_json")


def _get(body: dict, name: str, kinds, default, check=None, what: str = ""):
    """body[name] if it has one of `kinds` (bool is never a number) and passes `check`, else ApiError."""
    value = body.get(name, default)
    if value is None:
        return default
    numbers = kinds in (int, float, (int, float))
    if isinstance(value, bool) and numbers or not isinstance(value, kinds):
        raise ApiError(
            400, f"'{name}' must be {what or _kind_name(kinds)}, got {json.dumps(value)[:40]}", name, "invalid_type"
        )
    if kinds == (int, float):
        value = float(value)
    if kinds is str:
        checked_text(value, name)
    if check is not None and not check(value):
        raise ApiError(400, f"'{name}' must be {what}, got {value!r}", name, "invalid_value")
    return value


def _setting(body: dict, name: str, setting: str):
    """body[name] checked as the sampling setting `setting` is everywhere (settings.py: the same words as
    its flag and REPL command), or the setting's default where the body has none."""
    value = body.get(name)
    if value is None:
        return SamplingSettings.__dataclass_fields__[setting].default
    try:
        return check_value(SamplingSettings, setting, value)
    except WrongKind as error:
        raise ApiError(400, f"'{name}' {error}", name, "invalid_type") from None
    except ValueError as error:
        raise ApiError(400, f"'{name}' {error}", name, "invalid_value") from None


def checked_text(value: str, name: str) -> str:
    """`value` if it is text. JSON can carry a lone UTF-16 surrogate ("\\ud800") that no UTF-8 text holds:
    refused, naming the field, before anything tries to encode it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ApiError(
            400,
            f"'{name}' holds a lone UTF-16 surrogate (\\u{ord(value[error.start]):04x}), which is not text",
            name,
            "invalid_text",
        ) from None
    return value


def _kind_name(kinds) -> str:
    return {int: "an integer", bool: "true or false", str: "a string", (int, float): "a number", dict: "an object"}.get(
        kinds, str(kinds)
    )


def parse_media(body, kind: str, max_batch: int) -> dict:
    """Validate a /v1/media request: n, seed, temperature, top_p, min_p, top_k as for completions;
    `seconds` (sound); `prompt`: a base64 PNG or WAV file to complete, with `rows` (images: its top rows
    kept, default half) or `prompt_seconds` (sound: its start kept, default all)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", None, "invalid_body")
    temp = _setting(body, "temperature", "temp")
    top_p = _setting(body, "top_p", "top_p")
    min_p = _setting(body, "min_p", "min_p")
    top_k = _setting(body, "top_k", "top_k")
    seed = _setting(body, "seed", "seed")
    n = _get(body, "n", int, 1, lambda v: 1 <= v <= (max_batch if kind == "image" else 1),
             f"an integer from 1 to {max_batch if kind == 'image' else 1}")  # fmt: skip
    seconds = _get(body, "seconds", (int, float), 2.0, lambda v: 0 < v <= MAX_MEDIA_SECONDS,
                   f"a number of seconds in (0, {MAX_MEDIA_SECONDS:g}]")  # fmt: skip
    prompt = _get(body, "prompt", str, None)
    if prompt is not None:
        try:
            prompt = base64.b64decode(prompt, validate=True)
        except ValueError:
            raise ApiError(400, f"'prompt' must be a base64 {kind} file", "prompt", "invalid_value") from None
    rows = _get(body, "rows", int, None, lambda v: v >= 0, "a non-negative integer")
    prompt_seconds = _get(body, "prompt_seconds", (int, float), None, lambda v: v > 0, "a positive number")
    return {
        "sampler": make_sampler(temp, top_p, min_p, top_k),
        "seed": secrets.randbits(31) if seed is None else seed,
        "n": n,
        "seconds": seconds,
        "prompt": prompt,
        "rows": rows,
        "prompt_seconds": prompt_seconds,
    }


def parse_completion(
    body, config, max_tokens_cap: int, max_batch: int, guide_strength: float = 0.0
) -> tuple[Job, dict]:
    """Validate an OpenAI completions request; return the job and what the response needs.

    Unknown fields are ignored, as OpenAI's API does; `model` is ignored too (one model per server).
    `guide_strength`: the server's, for requests that give none (`_guide`).
    """
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", None, "invalid_body")
    if "messages" in body:  # not a story from an empty prompt
        raise ApiError(
            400,
            "'messages' makes this a chat request: send it to /v1/chat/completions (/v1/completions takes a 'prompt')",
            "messages",
            "wrong_endpoint",
        )
    prompt = _prompt(body)
    fields = {name: _get(body, name, str, "") for name in ("features", "words", "summary")}
    if any(fields.values()):  # TinyStories-Instruct, as `generate --instruct` builds it
        prefix = instruct_prompt(**fields)
        prompt = prefix.encode() + prompt if isinstance(prompt, bytes) else prefix + prompt

    max_tokens = _get(
        body, "max_tokens", int, min(DEFAULT_MAX_TOKENS, max_tokens_cap), lambda v: v >= 0, "a non-negative integer"
    )
    if max_tokens > max_tokens_cap:
        raise ApiError(
            400,
            f"'max_tokens' is {max_tokens}; this server allows at most {max_tokens_cap}",
            "max_tokens",
            "max_tokens_too_large",
        )
    temp = _setting(body, "temperature", "temp")
    top_p = _setting(body, "top_p", "top_p")
    min_p = _setting(body, "min_p", "min_p")
    top_k = _setting(body, "top_k", "top_k")
    seed = _setting(body, "seed", "seed")
    if seed is None:
        seed = secrets.randbits(31)
    n = _get(body, "n", int, 1, lambda v: 1 <= v <= max_batch, f"an integer from 1 to {max_batch}")
    stream = _get(body, "stream", bool, False)
    echo = _get(body, "echo", bool, False)
    logprobs = _get(
        body, "logprobs", int, None, lambda v: 0 <= v <= MAX_LOGPROBS, f"an integer from 0 to {MAX_LOGPROBS}"
    )
    options = _get(body, "stream_options", dict, {})
    stop = _stop(body)
    bias = _logit_bias(_get(body, "logit_bias", dict, {}), config.num_tokens)
    include_usage = _include_usage(options)

    raw = prompt if isinstance(prompt, bytes) else encode_prompt(prompt, story_start=False)
    fitted, notice = fit_context(encode_prompt(raw), config.context_length)
    guide = _guide(body, raw, guide_strength)
    settings = (temp, top_p, min_p, top_k)
    sampler = make_sampler(*settings)
    if bias:  # e.g. {"3": -100}: never end the story (the load test wants stories of one length)
        sampler = biased(sampler, bias, config.num_tokens)
    job = Job(
        prompt=fitted,
        prompt_text=raw,
        n=n,
        max_tokens=max_tokens,
        sampler=sampler,
        settings=(*settings, tuple(sorted(bias.items()))),
        seed=seed,
        stop=tuple(stop),
        logprobs=logprobs,
        echo=echo,
        guide=guide,
    )
    echoed = raw.decode("utf-8", "replace") if echo else ""
    return job, {
        "stream": stream,
        "echo": echoed,
        "include_usage": include_usage,
        "notice": notice,
        "instruct": any(fields.values()),
    }


def _prompt(body: dict) -> str | bytes:
    """The request's prompt: a string, a list of one string, or the bytes of a list of byte values."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in prompt
    ):
        prompt = bytes(prompt)  # a byte model's tokens are bytes
    elif not isinstance(prompt, str):
        raise ApiError(
            400,
            "'prompt' must be a string, a list of one string, or a list of byte values 0-255",
            "prompt",
            "invalid_type",
        )
    else:
        checked_text(prompt, "prompt")
    return prompt


def _guide(body: dict, prompt: bytes, default: float):
    """The request's guided decoding (guide.py), or None: `guide_strength` (the server's default where the
    request gives none), to `guide_words` (a string of comma-separated words, or a list of strings) or
    by default the prompt's Words line. A request that asks for guiding and has no words to guide to is
    refused; the server's default guides only the requests that have some."""
    asked = body.get("guide_strength") is not None
    strength = _setting(body, "guide_strength", "guide_strength") if asked else default
    words = body.get("guide_words")
    if isinstance(words, str):
        words = [w for w in (part.strip() for part in words.split(",")) if w]
    if words is not None and not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise ApiError(
            400, f"'guide_words' must be a string or a list of strings, got {json.dumps(words)[:40]}", "guide_words",
            "invalid_type",
        )  # fmt: skip
    for word in words or ():
        checked_text(word, "guide_words")
    if words and not strength:
        raise ApiError(
            400, "'guide_words' says which words 'guide_strength' guides to: give 'guide_strength' (above 0)",
            "guide_words", "invalid_value",
        )  # fmt: skip
    guide = guide_for_prompt(prompt, strength, words)
    if guide is None and asked and strength:
        raise ApiError(
            400, "'guide_strength' guides the story to its required words, and this request has none: give "
            "Words (a Words line or 'words') or 'guide_words'", "guide_strength", "no_words_to_guide",
        )  # fmt: skip
    return guide


def _stop(body: dict) -> list[str]:
    """The request's stop strings: one, or a list of up to MAX_STOP, none empty."""
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(
            400, f"'stop' must be a string or a list of up to {MAX_STOP} non-empty strings", "stop", "invalid_type"
        )
    for text in stop:
        checked_text(text, "stop")
    return stop


def _include_usage(options: dict) -> bool:
    """stream_options.include_usage, which must be a boolean when given."""
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise ApiError(
            400,
            f"'stream_options.include_usage' must be true or false, got {json.dumps(include_usage)[:40]}",
            "stream_options.include_usage",
            "invalid_type",
        )
    return include_usage is True


def _logit_bias(bias: dict, vocab: int) -> dict[int, float]:
    """OpenAI's logit_bias, checked: every key a token (here a byte value, "0" to "255" as written), every
    value a number from -100 to 100. Nothing is dropped or coerced: `true`, "5" and " 3" are refused."""
    out = {}
    for key, value in bias.items():
        if not (key.isascii() and key.isdigit() and str(int(key)) == key and int(key) < vocab):
            raise ApiError(
                400,
                f"'logit_bias' keys must be byte values written as integers 0-{vocab - 1}, got {json.dumps(key)[:40]}",
                "logit_bias",
                "invalid_value",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(
                400,
                f"'logit_bias' values must be numbers, got {json.dumps(value)[:40]} for {key}",
                "logit_bias",
                "invalid_type",
            )
        if not -100 <= value <= 100:
            raise ApiError(
                400,
                f"'logit_bias' values must be from -100 to 100, got {value} for {key}",
                "logit_bias",
                "invalid_value",
            )
        out[int(key)] = float(value)
    return out


def biased(sampler, bias: dict[int, float], vocab: int):
    """OpenAI's logit_bias: add a number to some bytes' logits before sampling."""
    values = [0.0] * vocab
    for byte, value in bias.items():
        values[byte] = value

    def sample(logits, keys=None):
        return sampler(logits + mx.array(values), keys)

    return sample


# --- answers -------------------------------------------------------------------------------------------


def finish_reason(reason: str | None) -> str | None:
    """Generation's reasons in OpenAI's words: the end-of-text byte and a stop string are both "stop"."""
    return None if reason is None else "length" if reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    """Token counts: a byte model's tokens are bytes (the prompt's include its end-of-text byte)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(body: dict) -> bytes:
    """One server-sent event of a stream: a chunk, or the error that ended it."""
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def completion_base(model: str) -> dict:
    """What every text_completion (and each of its chunks) starts with."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }


def text_choice(index: int, text: str, logprobs: dict | None = None, reason: str | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}


def completion_answer(job: Job, reply: dict, events: Iterable, model: str) -> dict | None:
    """The text_completion of a job from its events (parse_completion's `reply` says what it asked), or
    None when the client went away before it was done."""
    choices = [text_choice(i, reply["echo"]) for i in range(job.n)]
    entries: list[list[ByteLogprob]] = [[] for _ in range(job.n)]
    prompt = []
    for event in events:
        if isinstance(event, list):
            prompt = prompt_entries(event, job.prompt_text)
            continue
        choices[event.index]["text"] += event.text
        entries[event.index] += event.logprobs
        if event.finish_reason:
            choices[event.index]["finish_reason"] = finish_reason(event.finish_reason)
    if job.cancelled.is_set() and any(c["finish_reason"] is None for c in choices):
        return None
    if job.logprobs is not None:
        for choice, mine in zip(choices, entries):
            start = len(reply["echo"])
            choice["logprobs"] = _join(logprobs_json(prompt), logprobs_json(mine, start))
    body = {**completion_base(model), "choices": choices, "usage": usage(len(job.prompt), job.generated)}
    if reply["notice"]:
        body["warning"] = reply["notice"]
    return body


def completion_stream(job: Job, reply: dict, events: Iterable, model: str) -> Iterator[dict]:
    """The chunks of a streamed text_completion from the job's events: the echoed prompt (or its
    logprobs) first, then each new piece of a sample, then the usage chunk when it was asked for (not
    when the client went away)."""
    base = completion_base(model)
    echo = reply["echo"]
    offsets = [len(echo)] * job.n

    def chunk(choices, **extra):
        return {**base, "choices": choices, **extra}

    if echo and job.logprobs is None:
        yield chunk([text_choice(i, echo) for i in range(job.n)])
    for event in events:
        if isinstance(event, list):  # the prompt's own logprobs come first
            lp = logprobs_json(prompt_entries(event, job.prompt_text))
            yield chunk([text_choice(i, echo, lp) for i in range(job.n)])
            continue
        lp = logprobs_json(event.logprobs, offsets[event.index]) if job.logprobs is not None else None
        offsets[event.index] += len(event.text)
        yield chunk([text_choice(event.index, event.text, lp, finish_reason(event.finish_reason))])
    if not job.cancelled.is_set() and reply["include_usage"]:
        yield chunk([], usage=usage(len(job.prompt), job.generated))


def _join(prompt: dict, completion: dict) -> dict:
    return {key: prompt[key] + completion[key] for key in completion}


def model_card(app) -> dict:
    """GET /v1/models's entry for the served model (`app`: the server's App)."""
    return {
        "id": app.name,
        "object": "model",
        "created": app.created,
        "owned_by": "mlx-megabyte",
        "architecture": app.config.model_type,
        "context_length": app.config.context_length,
        "patching": app.config.patching(),
        "max_tokens": app.max_tokens_cap,
        "parameters": app.parameters,
        "instruct": app.untuned is None,
        "media": {"kind": app.media[0], "layout": app.media[1].to_dict()} if app.media else None,
    }


def media_answer(model: str, kind: str, layout, seed: int, files: list[tuple[str, bytes]]) -> dict:
    """A /v1/media answer: each file base64 in its field (b64_png or b64_wav)."""
    return {
        "object": "media",
        "created": int(time.time()),
        "model": model,
        "kind": kind,
        "layout": layout.to_dict(),
        "seed": seed,
        "data": [{"index": i, field: base64.b64encode(file).decode()} for i, (field, file) in enumerate(files)],
    }


def logprobs_json(entries: list[ByteLogprob], offset: int = 0) -> dict:
    """OpenAI's completions logprobs with one token per byte.

    A token is the text its byte completes, so the tokens join to the text: an ASCII byte is itself, the
    last byte of a multi-byte character carries the character and the bytes before it carry "". The
    byte values are in `bytes` (an extension, as chat logprobs have one), the alternatives in
    `top_logprobs` are keyed by `byte_token`, and `patch_start` marks bytes that begin a patch of the
    first stage. Logprobs are natural logs of the model's own distribution (temperature 1, unfiltered).
    """
    return {
        "tokens": [e.text for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{byte_token(b): lp for b, lp in e.top} if e.logprob is not None else None for e in entries],
        "text_offset": [offset + e.offset for e in entries],
        "bytes": [e.byte for e in entries],
        "patch_start": [e.patch_start for e in entries],
    }


def byte_token(byte: int) -> str:
    """A byte on its own as a string: ASCII as itself, other bytes (never valid UTF-8 alone) as "\\xNN"."""
    return chr(byte) if byte < 0x80 else f"\\x{byte:02x}"


def prompt_entries(entries: list[ByteLogprob], text: bytes) -> list[ByteLogprob]:
    """Give prompt bytes their text and character offsets as generated bytes have them."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    produced, pending = "", []
    for i, entry in enumerate(entries):
        pending.append(entry)
        piece = decoder.decode(text[i : i + 1], final=i == len(entries) - 1)
        if piece:
            for e in pending:
                e.offset = len(produced)
            pending[-1].text = piece
            produced += piece
            pending = []
    return entries


# --- chat answers --------------------------------------------------------------------------------------


def chat_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_completion(
    cid: str, model: str, texts: list[str], reasons: list[str | None], counts: dict, created: int | None = None
) -> dict:
    """A chat.completion: choice i is the assistant's message texts[i], finished for reasons[i]
    (generation's words: "eot", "stop", "length"); `counts` is `usage(...)`."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason(reason),
        }
        for i, (text, reason) in enumerate(zip(texts, reasons))
    ]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
        "usage": counts,
    }


def chat_chunk(cid: str, model: str, created: int, choices: list[dict], counts: dict | None = None) -> dict:
    """One chat.completion.chunk (a usage chunk has no choices and the counts)."""
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if counts is not None:
        chunk["usage"] = counts
    return chunk


def chat_chunks(
    cid: str, model: str, pieces: Iterable[tuple[int, str, str | None]], created: int | None = None
) -> Iterator[dict]:
    """The chunks of a streamed answer from generated pieces (sample index, new text, finish reason or
    None), in the order OpenAI sends them: each choice's first chunk gives the role, then its text, then
    a chunk with an empty delta and the finish reason. The usage chunk, when asked for, comes after
    (`chat_chunk(..., [], usage(...))`)."""
    created = int(time.time()) if created is None else created
    started = set()

    def choice(index, delta, reason=None):
        return chat_chunk(
            cid, model, created, [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}]
        )

    for index, text, reason in pieces:
        if index not in started:
            started.add(index)
            yield choice(index, {"role": "assistant", "content": ""})
        if text:
            yield choice(index, {"content": text})
        if reason is not None:
            yield choice(index, {}, finish_reason(reason))


def chat_answer(job: Job, reply: dict, events: Iterable, model: str) -> dict | None:
    """The chat.completion of a job from its events, or None when the client went away before it was
    done (`reply` as for completion_answer)."""
    texts, reasons = [""] * job.n, [None] * job.n
    for event in events:
        if isinstance(event, Chunk):
            texts[event.index] += event.text
            reasons[event.index] = event.finish_reason or reasons[event.index]
    if job.cancelled.is_set() and None in reasons:
        return None
    return chat_completion(chat_completion_id(), model, texts, reasons, usage(len(job.prompt), job.generated))


def chat_stream(job: Job, reply: dict, events: Iterable, model: str) -> Iterator[dict]:
    """The chat.completion.chunks of a job from its events, then the usage chunk when it was asked for
    (not when the client went away)."""
    cid, created = chat_completion_id(), int(time.time())
    pieces = ((e.index, e.text, e.finish_reason) for e in events if isinstance(e, Chunk))
    yield from chat_chunks(cid, model, pieces, created)
    if not job.cancelled.is_set() and reply["include_usage"]:
        yield chat_chunk(cid, model, created, [], usage(len(job.prompt), job.generated))
