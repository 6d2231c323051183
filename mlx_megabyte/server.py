"""A local model server: an OpenAI-compatible completions API and a story playground in the browser.

    python -m mlx_megabyte.server --model weights/demo
    open http://127.0.0.1:8080/

Endpoints: POST /v1/completions (streaming with server-sent events, per-byte logprobs), POST
/v1/chat/completions (the same stories for OpenAI chat clients: chat.py says how messages become a
prompt), GET /v1/models, GET /health, and the playground at /. Built on the standard library's HTTP server: a thread per
connection parses and answers requests, one generation thread (batching.py) owns the model and decodes
concurrent requests together.

Other web pages cannot use it (access.py): on a loopback address only requests for localhost, *.localhost
and loopback addresses are served (against DNS rebinding; --allow-host adds names); a request that a web
page sends (it has an Origin header) is served only from the playground itself or from an --allow-origin
origin, which gets CORS headers; and the API reads only bodies sent as application/json, which another
site's page cannot send without a preflight.
"""

from __future__ import annotations

import base64
import codecs
import hmac
import json
import os
import queue
import secrets
import select
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import mlx.core as mx

from . import chat, media, media_samples
from .access import Access, host_flag, is_loopback, origin_flag
from .batching import Batcher, Busy, ByteLogprob, Chunk, Job
from .cli import SEED_LIMIT, add_model_flags, cli, model_flags, number
from .cli import parser as parser_for
from .errors import UserError
from .generation import DEFAULT_MAX_TOKENS, fit_context
from .sampling import (
    DEFAULT_MIN_P,
    DEFAULT_TEMP,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    make_sampler,
)
from .text import encode_prompt, instruct_prompt
from .tokens import BYTES, TEXT, layout_of
from .weights import check_instruct_tuned, load_for_inference, locate, trained_on

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_TOKENS_CAP = 4096  # the most bytes one request may ask for
DEFAULT_MAX_BATCH = 16  # rows decoded together
DEFAULT_QUEUE_SIZE = 32  # requests waiting for a row before 503
DEFAULT_MAX_BODY = 1 << 20  # bytes of a request body
DEFAULT_TIMEOUT = 10.0  # seconds a client may take to send its request
DEFAULT_MAX_CONNECTIONS = 64
MAX_LOGPROBS = 20  # alternatives per byte (OpenAI allows 5; a byte model's 20 are still cheap)
MAX_STOP = 4
API_KEY_VARIABLE = "MLX_MEGABYTE_API_KEY"
PLAYGROUND = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
}
# Every path and the methods it takes (the Allow header of a 405)
ROUTES = {
    **{path: "GET, HEAD, OPTIONS" for path in (*PLAYGROUND, "/health", "/v1/models")},
    "/v1/completions": "POST, OPTIONS",
    "/v1/chat/completions": "POST, OPTIONS",
    "/v1/media": "POST, OPTIONS",
}
MAX_MEDIA_SECONDS = 30.0  # of sound a /v1/media request may ask for
# The standard library's own refusals, coded as the API's errors are
STDLIB_ERRORS = {
    400: "bad_request",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}


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
        _text(value, name)
    if check is not None and not check(value):
        raise ApiError(400, f"'{name}' must be {what}, got {value!r}", name, "invalid_value")
    return value


def _text(value: str, name: str) -> str:
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
    temp = _get(body, "temperature", (int, float), DEFAULT_TEMP, lambda v: 0 <= v <= 100, "a number from 0 to 100")
    top_p = _get(body, "top_p", (int, float), DEFAULT_TOP_P, lambda v: 0 < v <= 1, "a number in (0, 1]")
    min_p = _get(body, "min_p", (int, float), DEFAULT_MIN_P, lambda v: 0 <= v < 1, "a number in [0, 1)")
    top_k = _get(body, "top_k", int, DEFAULT_TOP_K, lambda v: v >= 0, "a non-negative integer")
    seed = _get(body, "seed", int, None, lambda v: 0 <= v < SEED_LIMIT, f"an integer from 0 to {SEED_LIMIT - 1}")
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


def parse_completion(body, config, max_tokens_cap: int, max_batch: int) -> tuple[Job, dict]:
    """Validate an OpenAI completions request; return the job and what the response needs.

    Unknown fields are ignored, as OpenAI's API does; `model` is ignored too (one model per server).
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
    temp = _get(body, "temperature", (int, float), DEFAULT_TEMP, lambda v: 0 <= v <= 100, "a number from 0 to 100")
    top_p = _get(body, "top_p", (int, float), DEFAULT_TOP_P, lambda v: 0 < v <= 1, "a number in (0, 1]")
    min_p = _get(body, "min_p", (int, float), DEFAULT_MIN_P, lambda v: 0 <= v < 1, "a number in [0, 1)")
    top_k = _get(body, "top_k", int, DEFAULT_TOP_K, lambda v: v >= 0, "a non-negative integer")
    seed = _get(body, "seed", int, None, lambda v: 0 <= v < SEED_LIMIT, f"an integer from 0 to {SEED_LIMIT - 1}")
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
    settings = (temp, top_p, min_p, top_k)
    sampler = make_sampler(*settings)
    if bias:  # e.g. {"3": -100}: never end the story (the load test wants stories of one length)
        sampler = _biased(sampler, bias, config.num_tokens)
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
        _text(prompt, "prompt")
    return prompt


def _stop(body: dict) -> list[str]:
    """The request's stop strings: one, or a list of up to MAX_STOP, none empty."""
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(
            400, f"'stop' must be a string or a list of up to {MAX_STOP} non-empty strings", "stop", "invalid_type"
        )
    for text in stop:
        _text(text, "stop")
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


def _no_constants(name: str):
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ApiError(400, f"the request body is not valid JSON ({name} is not a JSON number)", code="invalid_json")


def _biased(sampler, bias: dict[int, float], vocab: int):
    """OpenAI's logit_bias: add a number to some bytes' logits before sampling."""
    values = [0.0] * vocab
    for byte, value in bias.items():
        values[byte] = value

    def sample(logits, keys=None):
        return sampler(logits + mx.array(values), keys)

    return sample


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


# --- HTTP ----------------------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on open connections (more get an immediate 503)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: clients that connect at the same moment are not reset

    def __init__(self, address, handler, app: App):
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.slots = threading.BoundedSemaphore(app.max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            error = ApiError(
                503,
                f"the server has {self.app.max_connections} open connections; retry in a moment",
                code="too_many_connections",
                kind="server_error",
            )
            data = json.dumps(error.body()).encode()
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" % len(data) + data
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        """What escaped a handler (a bug: clients that go away are handled there), in one write so that
        concurrent connections' lines do not interleave."""
        sys.stderr.write(f"{client_address[0]} - internal error:\n{traceback.format_exc()}")


class App:
    """What the handlers share: the model's description, the batcher, and the limits."""

    def __init__(self, load, name: str, args, untuned: str | None = None, path=None):
        self.untuned = untuned  # why instruct prompts are refused (a model never tuned on them), or None
        self.batcher = Batcher(load, max_rows=args.max_batch, queue_size=args.queue_size).start()
        self.model, self.name = self.batcher.model, name
        self.config = self.model.config
        # A model of pictures or sound answers /v1/media (its kind and layout from the training record);
        # the text endpoints serve text. One media request runs at a time, on the handler's thread.
        record = (trained_on(path) or {}) if path is not None else {}
        kind = record.get("data_kind") if layout_of(self.config) == BYTES else None
        self.media = (kind, media_samples.media_layout(self.model, path, kind)) if kind in ("image", "audio") else None
        self.media_lock = threading.Lock()
        self.parameters = self.model.num_parameters()
        self.api_key = args.api_key
        self.access = Access(args.host, args.allow_host, args.allow_origin)
        self.max_tokens_cap, self.max_batch = args.max_tokens, args.max_batch
        self.max_body, self.timeout, self.max_connections = args.max_body_bytes, args.timeout, args.max_connections
        self.created = int(time.time())


class Handler(BaseHTTPRequestHandler):
    """One connection, one request (Connection: close): the body must arrive within `timeout` seconds.

    Every answer is JSON in the API's error shape, the standard library's own refusals included (a garbled
    request line, too many headers, an unknown method), and a client that goes away or is cut off costs
    at most one line in the log, never a traceback.
    """

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line (0.9 has none)
    server_version = "mlx-megabyte"
    server: Server

    def setup(self):
        self.timeout = self.server.app.timeout  # every read waits at most this long...
        super().setup()
        self._dropped, self._drop_lock = False, threading.Lock()
        self._answered = False
        self._body_pending = False  # a body the client sends that was not read (yet)
        self._cors = None  # the --allow-origin origin this request came from: its answer carries CORS headers
        # ...and the whole request must have arrived by then too, however slowly it trickles in.
        self._deadline = threading.Timer(self.timeout, self._cut_off)
        self._deadline.daemon = True
        self._deadline.start()

    def finish(self):
        self._deadline.cancel()
        super().finish()

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as error:  # the client left while it was read or answered
            self._dropped_client(f"the connection broke ({type(error).__name__})")

    def _cut_off(self):
        """The deadline passed with the request still incomplete: close the connection under the reader."""
        self._dropped_client(f"its request did not arrive within {self.timeout:g} s")
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dropped_client(self, why: str):
        """Log a client that went away or was cut off: once, and only if it had begun a request (browsers
        open spare connections that they never use, and closing those is no news)."""
        with self._drop_lock:
            if self._dropped:
                return
            self._dropped = True
        if getattr(self, "raw_requestline", b""):
            self.log_message("dropped: %s", why)

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")  # one write: lines do not interleave

    def log_error(self, format, *args):
        if args and isinstance(args[-1], TimeoutError):  # handle_one_request: a read or a write timed out
            return self._dropped_client(f"it sent nothing for {self.timeout:g} s")
        self.log_message(format, *args)

    # --- what every request must be ---

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self._dropped:  # cut off while its headers trickled in: there is no one to answer
            return False
        problem = self._malformed()
        if problem:
            self.send_error(400, problem)
            return False
        lengths = self.headers.get_all("Content-Length") or ["0"]
        self._body_pending = int(lengths[0]) > 0 or "Transfer-Encoding" in self.headers
        return True

    def _malformed(self) -> str | None:
        """Why a parsed request cannot be served safely (RFC 9112 sections 3.2 and 6.3), or None. Two
        Content-Length headers are refused, not "the first wins": a proxy in front that took the other
        one would see a different request (request smuggling)."""
        if len(self.requestline.split()) == 2:
            return "HTTP/0.9 requests are not served; send HTTP/1.1"
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            return "the request has more than one Host header"
        if not hosts and self.request_version != "HTTP/1.0":
            return "an HTTP/1.1 request needs a Host header"
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            return "the request has more than one Content-Length header"
        if lengths and not (lengths[0].strip().isascii() and lengths[0].strip().isdigit()):
            return f"Content-Length must be a number of bytes, got {lengths[0][:40]!r}"
        return None

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (and _malformed's) in the API's JSON shape instead of its
        HTML page. What the client sent is usually not all read: see _linger."""
        if self._dropped:
            return
        text = message or HTTPStatus(code).phrase
        if explain:
            text += f" ({explain})"
        self._send_json(code, ApiError(code, text, code=STDLIB_ERRORS.get(code, "bad_request")).body())
        self._linger()

    # --- dispatch ---

    def do_GET(self):
        self._handle(self._get)

    def do_HEAD(self):  # wherever GET works: the same status and headers, no body (see _send)
        self._handle(self._get)

    def do_POST(self):
        self._handle(self._post)

    def do_OPTIONS(self):
        self._handle(self._options)

    def _other_method(self):  # no path here takes PUT, DELETE, PATCH, TRACE or CONNECT: 405 (or 404)
        self._handle(self._not_allowed)

    do_PUT = do_DELETE = do_PATCH = do_TRACE = do_CONNECT = _other_method

    def _handle(self, method):
        self.close_connection = True
        try:
            self._check_access()
            method()
        except ApiError as error:
            self._send_json(error.status, error.body(), error.headers)
            if self._body_pending:
                self._linger()
        except (ConnectionError, TimeoutError):
            raise  # handle() logs it
        except Exception:  # a bug: the client gets a 500 if nothing was sent yet, the log the traceback
            sys.stderr.write(
                f"{self.address_string()} - internal error in {self.requestline!r}:\n{traceback.format_exc()}"
            )
            if not self._answered:
                self._send_json(
                    500, ApiError(500, "internal server error", code="internal_error", kind="server_error").body()
                )

    def _not_allowed(self):
        raise self._refusal(self._path())

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _refusal(self, path: str) -> ApiError:
        """404 for a path that is not here, 405 (with the methods that are) for one that is."""
        if path not in ROUTES:
            return ApiError(404, f"no endpoint {path}", code="not_found")
        return ApiError(
            405,
            f"{self.command} is not allowed on {path} (allowed: {ROUTES[path]})",
            code="method_not_allowed",
            headers={"Allow": ROUTES[path]},
        )

    def _linger(self, limit: int = 64 << 20, seconds: float = 2.0):
        """After refusing a body unread, take in what the client is still sending (for a moment, up to a
        limit) before closing: closing on unread data resets the connection, and the client would see
        a broken pipe instead of the refusal."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(seconds)
            deadline = time.monotonic() + seconds
            while limit > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass

    def _check_access(self):
        """Host and Origin, for every method and path before anything else (access.py says why)."""
        access = self.server.app.access
        host = self.headers.get("Host")
        problem = access.host_problem(host)
        if problem:
            raise ApiError(problem[0], problem[1], code="invalid_host" if problem[0] == 400 else "host_not_allowed")
        origin = self.headers.get("Origin")
        verdict = access.origin(origin, host)
        if verdict == "refused":
            raise ApiError(
                403,
                f"requests from web pages at {origin[:80]} are refused (start the server with "
                f"--allow-origin {origin[:80]} to let them use it)",
                code="origin_not_allowed",
            )
        if verdict == "allowed":
            self._cors = origin

    def _get(self):
        path = self._path()
        if path in PLAYGROUND:
            name, kind = PLAYGROUND[path]
            data = resources.files(__package__).joinpath("playground", name).read_bytes()
            return self._send(200, data, kind)
        self._authorize()
        app = self.server.app
        if path == "/health":
            return self._send_json(200, {"status": "ok", **app.batcher.status()})
        if path == "/v1/models":
            return self._send_json(200, {"object": "list", "data": [self._model_card()]})
        raise self._refusal(path)

    def _options(self):
        path = self._path()
        if self._cors and "Access-Control-Request-Method" in self.headers:  # an --allow-origin page's preflight
            methods = ROUTES.get(path, "GET, HEAD, POST, OPTIONS")
            return self._send(
                204,
                b"",
                None,
                {
                    "Access-Control-Allow-Methods": methods,
                    "Access-Control-Max-Age": "600",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                },
            )
        self._send(204, b"", None, {"Allow": ROUTES[path]} if path in ROUTES else None)

    def _post(self):
        path = self._path()
        self._authorize()
        if path not in ("/v1/completions", "/v1/chat/completions", "/v1/media"):
            raise self._refusal(path)
        self._expect_json()
        body = self._read_body()
        try:
            request = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        except UnicodeDecodeError:
            raise ApiError(400, "the request body is not valid UTF-8", code="invalid_utf8") from None
        except json.JSONDecodeError as error:
            raise ApiError(400, f"the request body is not valid JSON ({error})", code="invalid_json") from None
        app = self.server.app
        if path == "/v1/media":
            return self._media(request)
        if app.media:
            raise ApiError(
                400, f"this model writes {app.media[0]} files, not text: ask /v1/media", code="model_not_text"
            )
        if layout_of(app.config) != TEXT:  # the batcher's rows, logprobs and stop rules are text's bytes
            raise ApiError(
                400,
                "this model learns every byte value (shift_bytes): the text endpoints serve models in the text "
                "layout; use python -m mlx_megabyte.generate with it",
                code="model_not_text",
            )
        answers, instruct = (self._stream, self._complete), False
        if path == "/v1/chat/completions":
            try:
                request, story = chat.completion_request(request)
            except chat.ChatError as error:
                raise ApiError(error.status, error.message, error.param, error.code) from None
            answers, instruct = (self._stream_chat, self._complete_chat), story.instruct
        job, reply = parse_completion(request, app.config, app.max_tokens_cap, app.max_batch)
        if (instruct or reply["instruct"]) and app.untuned:
            raise ApiError(400, app.untuned, code="model_not_instruct_tuned")
        try:
            app.batcher.submit(job)
        except Busy as error:
            raise ApiError(
                503,
                f"the server is busy ({error}); retry in a moment",
                code="queue_full",
                kind="server_error",
                headers={"Retry-After": "1"},
            ) from None
        try:
            answers[0 if reply["stream"] else 1](job, reply)
        finally:
            job.cancel()  # a no-op when it has finished; frees its rows when the client went away

    def _media(self, request):
        """POST /v1/media: samples of the pictures or sound the model was trained on, each a base64 file
        in `data[i].b64_png` (image) or `data[i].b64_wav` (16-bit PCM WAV)."""
        app = self.server.app
        if not app.media:
            raise ApiError(
                400, "this model writes text: /v1/media serves models of pictures or sound", code="model_not_media"
            )
        kind, layout = app.media
        settings = parse_media(request, kind, app.max_batch)
        prompt_file = None
        if settings["prompt"] is not None:
            prompt_file = tempfile.NamedTemporaryFile(suffix=".png" if kind == "image" else ".wav")
            prompt_file.write(settings["prompt"]), prompt_file.flush()
        if not app.media_lock.acquire(timeout=0.5):
            raise ApiError(503, "the server is busy with another media request; retry in a moment",
                           code="queue_full", kind="server_error", headers={"Retry-After": "1"})  # fmt: skip
        try:
            name = prompt_file.name if prompt_file else None
            if kind == "image":
                prompt = media_samples.image_prompt(layout, name, settings["rows"]).data
                images = media_samples.image_samples(
                    app.model, layout, prompt, settings["n"], settings["sampler"], settings["seed"]
                )
                files = [("b64_png", media.png_from_bytes([image], layout)) for image in images]
            else:
                prompt = media_samples.audio_prompt(layout, name, settings["prompt_seconds"]).data
                clip = media_samples.audio_sample(
                    app.model, layout, prompt, settings["seconds"], settings["sampler"], settings["seed"]
                )
                files = [("b64_wav", media.wav_from_bytes(clip, layout))]
        except UserError as error:
            raise ApiError(400, str(error).replace(str(name), "the prompt"), "prompt", "invalid_value") from None
        finally:
            app.media_lock.release()
            if prompt_file:
                prompt_file.close()
        self._send_json(200, {
            "object": "media",
            "created": int(time.time()),
            "model": app.name,
            "kind": kind,
            "layout": layout.to_dict(),
            "seed": settings["seed"],
            "data": [{"index": i, field: base64.b64encode(file).decode()} for i, (field, file) in enumerate(files)],
        })  # fmt: skip

    def _expect_json(self):
        """Only bodies sent as JSON are read: a web page can send text/plain or a form to any address
        without asking first, but JSON only after a preflight (access.py)."""
        kind, _, parameters = self.headers.get("Content-Type", "").partition(";")
        charsets = [
            value.strip().strip('"').lower()
            for name, _, value in (p.partition("=") for p in parameters.split(";"))
            if name.strip().lower() == "charset"
        ]
        if kind.strip().lower() != "application/json" or any(c not in ("utf-8", "utf8") for c in charsets):
            given = self.headers.get("Content-Type")
            raise ApiError(
                415,
                "send the body as JSON with 'Content-Type: application/json' (got "
                f"{repr(given[:60]) if given else 'no Content-Type'})",
                code="unsupported_media_type",
            )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send the body with a Content-Length, not chunked", code="length_required")
        length = self.headers.get("Content-Length")  # one, and a number: see _malformed
        if length is None:
            raise ApiError(411, "a Content-Length header is required", code="length_required")
        length = int(length)
        if length > self.server.app.max_body:
            raise ApiError(
                413, f"the body has {length} bytes; the limit is {self.server.app.max_body}", code="body_too_large"
            )
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            body = b""
        if len(body) < length:
            raise ApiError(408, "the request body did not arrive in time", code="timeout")
        self._body_pending = False
        self._deadline.cancel()
        return body

    def _authorize(self):
        """`Authorization: Bearer KEY`, the scheme in any case (RFC 9110 section 11.1)."""
        key = self.server.app.api_key
        if key is None:
            return
        scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())):
            raise ApiError(
                401,
                "a valid API key is required: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _model_card(self) -> dict:
        app = self.server.app
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

    # --- completions ---

    def _events(self, job: Job):
        """The job's events until it ends; stops early (cancelling it) when the client hangs up.

        Chunks that queued up while this thread was busy are joined (per sample), so a slow client costs
        one write per batch of bytes instead of one per byte."""
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked > 0.1:  # a client waiting for a whole response writes nothing
                checked = time.monotonic()
                if self._client_gone():
                    job.cancel()
                    return
            try:
                events = [job.events.get(timeout=0.05)]
            except queue.Empty:
                continue
            while True:
                try:
                    events.append(job.events.get_nowait())
                except queue.Empty:
                    break
            for event in _joined(events):
                if event is None:
                    return
                if isinstance(event, Exception):
                    raise ApiError(500, f"generation failed: {event}", code="generation_failed", kind="server_error")
                yield event

    def _client_gone(self) -> bool:
        """True when the client closed its end (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _base(self, completion_id: str) -> dict:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.server.app.name,
        }

    def _usage(self, job: Job) -> dict:
        return {
            "prompt_tokens": len(job.prompt),
            "completion_tokens": job.generated,
            "total_tokens": len(job.prompt) + job.generated,
        }

    def _complete(self, job: Job, reply: dict):
        choices = [{"index": i, "text": reply["echo"], "logprobs": None, "finish_reason": None} for i in range(job.n)]
        entries: list[list[ByteLogprob]] = [[] for _ in range(job.n)]
        prompt = []
        for event in self._events(job):
            if isinstance(event, list):
                prompt = prompt_entries(event, job.prompt_text)
                continue
            choices[event.index]["text"] += event.text
            entries[event.index] += event.logprobs
            if event.finish_reason:
                choices[event.index]["finish_reason"] = chat.finish_reason(event.finish_reason)
        if job.cancelled.is_set() and any(c["finish_reason"] is None for c in choices):
            return  # the client is gone
        if job.logprobs is not None:
            for choice, mine in zip(choices, entries):
                start = len(reply["echo"])
                choice["logprobs"] = _join(logprobs_json(prompt), logprobs_json(mine, start))
        body = {**self._base(f"cmpl-{uuid.uuid4().hex}"), "choices": choices, "usage": self._usage(job)}
        if reply["notice"]:
            body["warning"] = reply["notice"]
        self._send_json(200, body)

    def _start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()

    def _send_event(self, body: dict):
        self.wfile.write(b"data: " + json.dumps(body).encode() + b"\n\n")
        self.wfile.flush()

    def _stream(self, job: Job, reply: dict):
        self._start_stream()
        base = self._base(f"cmpl-{uuid.uuid4().hex}")
        echo = reply["echo"]
        offsets = [len(echo)] * job.n

        def send(choices, **extra):
            self._send_event({**base, "choices": choices, **extra})

        try:
            if echo and job.logprobs is None:
                send([{"index": i, "text": echo, "logprobs": None, "finish_reason": None} for i in range(job.n)])
            for event in self._events(job):
                if isinstance(event, list):  # the prompt's own logprobs come first
                    lp = logprobs_json(prompt_entries(event, job.prompt_text))
                    send([{"index": i, "text": echo, "logprobs": lp, "finish_reason": None} for i in range(job.n)])
                    continue
                lp = logprobs_json(event.logprobs, offsets[event.index]) if job.logprobs is not None else None
                offsets[event.index] += len(event.text)
                send(
                    [
                        {
                            "index": event.index,
                            "text": event.text,
                            "logprobs": lp,
                            "finish_reason": chat.finish_reason(event.finish_reason),
                        }
                    ]
                )
            if job.cancelled.is_set():
                return
            if reply["include_usage"]:
                send([], usage=self._usage(job))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except ApiError as error:  # headers are out: report it in the stream
            self.wfile.write(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            job.cancel()

    # --- chat completions: the same jobs, answered as chat.completion (chunks) ---

    def _complete_chat(self, job: Job, reply: dict):
        texts, reasons = [""] * job.n, [None] * job.n
        for event in self._events(job):
            if isinstance(event, Chunk):
                texts[event.index] += event.text
                reasons[event.index] = event.finish_reason or reasons[event.index]
        if job.cancelled.is_set() and None in reasons:
            return  # the client is gone
        counts = chat.usage(len(job.prompt), job.generated)
        self._send_json(200, chat.chat_completion(chat.completion_id(), self.server.app.name, texts, reasons, counts))

    def _stream_chat(self, job: Job, reply: dict):
        self._start_stream()
        cid, name, created = chat.completion_id(), self.server.app.name, int(time.time())
        pieces = ((e.index, e.text, e.finish_reason) for e in self._events(job) if isinstance(e, Chunk))
        try:
            for chunk in chat.chat_chunks(cid, name, pieces, created):
                self._send_event(chunk)
            if job.cancelled.is_set():
                return
            if reply["include_usage"]:
                self._send_event(chat.chat_chunk(cid, name, created, [], chat.usage(len(job.prompt), job.generated)))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except ApiError as error:  # headers are out: report it in the stream
            self.wfile.write(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            job.cancel()

    # --- responses ---

    def _send_json(self, status: int, body, headers: dict | None = None):
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def end_headers(self):
        if self._cors:  # a page of an --allow-origin origin may read the answer
            self.send_header("Access-Control-Allow-Origin", self._cors)
            self.send_header("Vary", "Origin")
        super().end_headers()

    def send_response(self, code, message=None):
        self._answered = True
        self._deadline.cancel()  # the request is over: answering is not bound by its deadline
        super().send_response(code, message)

    def _send(self, status: int, data: bytes, kind: str | None, headers: dict | None = None):
        """A whole response. A HEAD request gets the headers only; a 204 has no body and says no length."""
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(data)


def _joined(events: list) -> list:
    """Consecutive chunks of the same sample as one chunk."""
    out = []
    for event in events:
        last = out[-1] if out else None
        if (
            isinstance(event, Chunk)
            and isinstance(last, Chunk)
            and last.index == event.index
            and last.finish_reason is None
        ):
            out[-1] = Chunk(last.index, last.text + event.text, last.logprobs + event.logprobs, event.finish_reason)
        else:
            out.append(event)
    return out


def _join(prompt: dict, completion: dict) -> dict:
    return {key: prompt[key] + completion[key] for key in completion}


# --- command line ----------------------------------------------------------------------------------------


def build_parser():
    parser = parser_for("python -m mlx_megabyte.server", __doc__)
    parser.add_argument(
        "--model",
        help="a weights directory, a training run directory or a Hugging Face repo id; "
        "default: the newest weights under weights/",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on; anything but loopback needs --api-key (or --insecure)",
    )
    parser.add_argument(
        "--port", type=number(int, 0, 65535), default=DEFAULT_PORT, help="port to listen on (0: any free port)"
    )
    parser.add_argument(
        "--api-key",  # the environment's key is read in main: --help must not show it
        help=f"require 'Authorization: Bearer KEY' on every API request (or set {API_KEY_VARIABLE})",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without an API key (anyone who can reach it can use it)",
    )
    parser.add_argument(
        "--allow-origin",
        type=origin_flag,
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (scheme://host[:port]) whose pages may call the API, answered with CORS "
        "headers; repeat for several, '*' for any page (default: only the playground this server "
        "serves)",
    )
    parser.add_argument(
        "--allow-host",
        type=host_flag,
        action="append",
        default=[],
        metavar="NAME",
        help="a name that requests may carry in Host besides localhost and loopback addresses "
        "(a reverse proxy's public name, say); repeat for several",
    )
    parser.add_argument(
        "--max-tokens",
        type=number(int, 1),
        default=DEFAULT_MAX_TOKENS_CAP,
        help="the most bytes one request may generate",
    )
    parser.add_argument(
        "--max-batch",
        type=number(int, 1),
        default=DEFAULT_MAX_BATCH,
        help="the most sequences decoded together (a request with n samples takes n)",
    )
    parser.add_argument(
        "--queue-size",
        type=number(int, 1),
        default=DEFAULT_QUEUE_SIZE,
        help="requests that may wait for room in the batch; more get 503 with Retry-After",
    )
    parser.add_argument("--max-body-bytes", type=number(int, 1), default=DEFAULT_MAX_BODY, help="largest request body")
    parser.add_argument(
        "--timeout",
        type=number(float, 0, 86_400, low_open=True),
        default=DEFAULT_TIMEOUT,
        help="seconds a client may take to send its whole request, or to take each write of a stream",
    )
    parser.add_argument(
        "--max-connections",
        type=number(int, 1),
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections at most; more get 503 at once",
    )
    add_model_flags(parser)
    return parser


@cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.api_key = args.api_key or os.environ.get(API_KEY_VARIABLE) or None
    if not is_loopback(args.host) and not args.api_key and not args.insecure:
        raise UserError(
            f"refusing to serve on {args.host} without an API key: pass --api-key KEY (or set "
            f"{API_KEY_VARIABLE}), or --insecure to let anyone who can reach it use it"
        )

    path = locate(args.model)
    name = args.model or str(path)
    bits, dtype = model_flags(args)
    app = App(lambda: load_for_inference(str(path), bits, dtype), name, args, untuned=_untuned(path), path=path)
    try:
        serve(app, args, name)
    finally:
        app.batcher.stop()  # whatever ended the server: the process must not exit before it (see Batcher.stop)


def _untuned(path) -> str | None:
    """Why instruct prompts are refused for these weights (weights.check_instruct_tuned), or None."""
    try:
        check_instruct_tuned(path, flag="instruct fields")
    except UserError as error:
        return str(error)
    return None


def serve(app: App, args, name: str) -> None:
    """Listen where the flags say, announce the address, and answer requests until interrupted."""
    try:
        server = Server((args.host, args.port), Handler, app)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({error.strerror or error})") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"mlx-megabyte server: {name} on http://{shown}:{port}/ (playground), API at http://{shown}:{port}/v1",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
