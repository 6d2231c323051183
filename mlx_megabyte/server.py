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

import hmac
import json
import os
import queue
import select
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from . import chat, media, media_samples, protocol
from .access import Access, host_flag, is_loopback, origin_flag
from .batching import Batcher, Busy, Chunk, Job
from .cli import SAMPLING, add_model_flags, cli, model_flag, model_flags, setting_flag
from .cli import parser as parser_for
from .errors import UserError
from .prompt_cache import DEFAULT_BYTES as DEFAULT_PROMPT_CACHE_BYTES
from .prompt_cache import PromptCache
from .protocol import SSE_DONE, ApiError, sse
from .settings import setting, settings_of
from .speculative import SpeculationSettings, load_draft
from .tokens import BYTES, TEXT, layout_of
from .weights import check_instruct_tuned, load_for_inference, locate, trained_on

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerSettings:
    """The server's limits, each declared once (settings.py): its flag is generated from the field."""

    port: int = setting(8080, help="port to listen on (0: any free port)", low=0, high=65535)
    max_tokens: int = setting(4096, help="the most bytes one request may generate", low=1)
    max_batch: int = setting(16, help="the most sequences decoded together (a request with n samples takes n)", low=1)
    queue_size: int = setting(
        32, help="requests that may wait for room in the batch; more get 503 with Retry-After", low=1
    )
    max_body_bytes: int = setting(1 << 20, help="largest request body", low=1)
    timeout: float = setting(
        10.0,
        help="seconds a client may take to send its whole request, or to take each write of a stream",
        kind=float,
        low=0,
        high=86_400,
        low_open=True,
    )
    max_connections: int = setting(64, help="open connections at most; more get 503 at once", low=1)
    prompt_cache_bytes: int = setting(
        DEFAULT_PROMPT_CACHE_BYTES,
        help="memory for the decoding states of recent prompts, which a request that begins with one of them "
        "starts from (least recently used dropped first; 0: no prompt cache)",
        low=0,
    )


SERVER = settings_of(ServerSettings)
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
# The standard library's own refusals, coded as the API's errors are
STDLIB_ERRORS = {
    400: "bad_request",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}


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
        cache = PromptCache(args.prompt_cache_bytes) if args.prompt_cache_bytes else None
        draft = getattr(args, "draft_model", None)
        self.batcher = Batcher(
            load,
            max_rows=args.max_batch,
            queue_size=args.queue_size,
            prompt_cache=cache,
            draft=(lambda model: load_draft(draft, model, *model_flags(args))) if draft else None,
            num_draft=getattr(args, "num_draft", SpeculationSettings.num_draft),
        ).start()
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
        self.guide_strength = getattr(args, "guide_strength", 0.0)  # for requests that give none
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
            return self._send_json(200, {"object": "list", "data": [protocol.model_card(app)]})
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
        request = protocol.parse_json(self._read_body())
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
        answers, instruct = (protocol.completion_stream, protocol.completion_answer), False
        if path == "/v1/chat/completions":
            request, story = chat.completion_request(request)
            answers, instruct = (protocol.chat_stream, protocol.chat_answer), story.instruct
        job, reply = protocol.parse_completion(
            request, app.config, app.max_tokens_cap, app.max_batch, app.guide_strength
        )
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
            if reply["stream"]:
                self._stream(job, answers[0](job, reply, self._events(job), app.name))
            else:
                answer = answers[1](job, reply, self._events(job), app.name)
                if answer is not None:  # None: the client is gone
                    self._send_json(200, answer)
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
        settings = protocol.parse_media(request, kind, app.max_batch)
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
        self._send_json(200, protocol.media_answer(app.name, kind, layout, settings["seed"], files))

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

    def _start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()

    def _send_event(self, body: dict):
        self.wfile.write(sse(body))
        self.wfile.flush()

    def _stream(self, job: Job, chunks):
        """A streamed answer: its chunks (protocol.completion_stream or chat_stream), then [DONE] unless
        the client went away."""
        self._start_stream()
        try:
            for chunk in chunks:
                self._send_event(chunk)
            if job.cancelled.is_set():
                return
            self.wfile.write(SSE_DONE)
            self.wfile.flush()
        except ApiError as error:  # headers are out: report it in the stream
            self.wfile.write(sse(error.body()))
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


# --- command line ----------------------------------------------------------------------------------------


def build_parser():
    parser = parser_for("python -m mlx_megabyte.server", __doc__)
    model_flag(parser)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on; anything but loopback needs --api-key (or --insecure)",
    )
    setting_flag(parser, SERVER["port"])
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
    limits = (
        "max_tokens",
        "max_batch",
        "queue_size",
        "prompt_cache_bytes",
        "max_body_bytes",
        "timeout",
        "max_connections",
    )
    for name in limits:
        setting_flag(parser, SERVER[name])
    setting_flag(
        parser,
        SAMPLING["guide_strength"],
        help="guided decoding for requests that give no guide_strength and have required words (a Words line, "
        "'words' or 'guide_words'): nats added to the logits of the bytes that begin or continue a required word "
        "not yet used (0 = off; see docs/stories-on-command.md)",
    )
    for field in settings_of(SpeculationSettings).values():  # greedy single completions only: batching.py
        setting_flag(parser, field, metavar="PATH" if field.name == "draft_model" else "N")
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

    if not args.draft_model and args.num_draft != SpeculationSettings.num_draft:
        raise UserError("--num-draft is the number of bytes a --draft-model proposes: add --draft-model")
    path = locate(args.model, instruct=True)  # one model serves both endpoints: chat needs the instruct one
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
