"""The server: OpenAI-compatible completions equal to `generate`, SSE framing, per-byte logprobs and patch
marks, batching of concurrent clients, disconnects, hostile input, limits, auth."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import MEGABYTE, PRESETS, load, save
from mlx_megabyte.generation import generate
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import instruct_prompt

from .helpers import ROOT, one_line_error, require_chromium, run

KEY = "test-key-123"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("server") / "tiny"
    mx.random.seed(0)
    save(MEGABYTE(PRESETS["tiny"]), path)
    return path


@pytest.fixture(scope="module")
def model(weights):
    return load(weights)


class Server:
    """`python -m mlx_megabyte.server` on a free port, and a raw HTTP client for it."""

    def __init__(self, weights, *flags, env=None, log=None):
        self.log = open(log, "w") if log else None  # the server's stderr
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlx_megabyte.server", "--model", str(weights), "--port", "0", *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log or subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        line = self.process.stdout.readline()
        assert "http://" in line, line
        self.url = line.split(" on ")[1].split("/ ")[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.headers = {}

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        json_body = {"Content-Type": "application/json"} if data is not None else {}  # as clients send it
        headers = {**json_body, **self.headers, **(headers or {})}  # None: leave that header out
        connection.request(method, path, body=data, headers={k: v for k, v in headers.items() if v is not None})
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        kind = response.getheader("Content-Type", "")
        return response.status, response, json.loads(text) if "json" in kind and text else text

    def complete(self, **body):
        status, _, reply = self.request("POST", "/v1/completions", body)
        assert status == 200, reply
        return reply

    def stream(self, **body):
        """The raw event stream of a streaming completion: a list of `data:` payloads."""
        status, response, text = self.request("POST", "/v1/completions", {**body, "stream": True})
        assert status == 200 and response.getheader("Content-Type").startswith("text/event-stream"), text
        assert text.endswith("\n\n")
        events = text[:-2].split("\n\n")
        assert all(e.startswith("data: ") and "\n" not in e for e in events), text
        return [e[len("data: ") :] for e in events]

    def stream_chat(self, **body):
        """The `data:` payloads of a streamed chat completion."""
        status, response, text = self.request("POST", "/v1/chat/completions", {**body, "stream": True})
        assert status == 200 and response.getheader("Content-Type").startswith("text/event-stream"), text
        events = text[:-2].split("\n\n")
        assert all(e.startswith("data: ") and "\n" not in e for e in events) and events[-1] == "data: [DONE]", text
        return [e[len("data: ") :] for e in events]

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.log:
            self.log.close()


def exchange(port, data: bytes):
    """Send raw bytes and read the whole response (the server closes every connection): (status, headers
    with lower-case names, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def server(weights):
    s = Server(weights, "--max-tokens", "20000")
    yield s
    s.close()


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def served(request, tmp_path_factory):
    """(a server, its model) for each registered architecture's tiny preset: what the server promises
    holds for every one of them."""
    path = tmp_path_factory.mktemp("served") / request.param
    mx.random.seed(0)
    save(build(ARCHITECTURES[request.param].presets["tiny"]), path)
    s = Server(path, "--max-tokens", "20000")
    yield s, load(path)
    s.close()


def eventually(check, seconds=30):
    """Wait until check() holds: a bound that only catches a hang, not a measured time (the machine may be
    loaded)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"still not true after {seconds} s"
        time.sleep(0.05)


def rows(server):
    return server.request("GET", "/health")[2]


def expected(model, prompt="", max_tokens=40, temperature=0.8, top_p=1.0, min_p=0.05, top_k=0, n=1, seed=0, stop=()):
    sampler = make_sampler(temperature, top_p, min_p, top_k)
    return generate(model, prompt, max_tokens=max_tokens, sampler=sampler, num_samples=n, seed=seed, stop=tuple(stop))


def texts_of(events, n=1):
    texts = [""] * n
    for e in events[:-1]:
        for choice in json.loads(e)["choices"]:
            texts[choice["index"]] += choice["text"]
    return texts


def test_health_models_and_the_playground(server):
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    status, _, models = server.request("GET", "/v1/models")
    assert status == 200 and models["object"] == "list"
    card = models["data"][0]
    assert (
        card["object"] == "model" and card["context_length"] == 256 and card["patching"] == "fixed patches of 8 bytes"
    )
    assert card["architecture"] == "megabyte"
    status, response, page = server.request("GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html") and "<html" in page
    for name in ("/playground.js", "/playground.css"):
        assert server.request("GET", name)[0] == 200


def test_completions_equal_generate_with_the_same_seed_and_settings(served):
    server, model = served
    for settings in (
        {"temperature": 1.0, "seed": 3, "n": 2},
        {"temperature": 0.0},
        {"temperature": 0.7, "top_p": 0.9, "top_k": 50, "min_p": 0.0, "seed": 9},
        {"temperature": 1.0, "seed": 5, "stop": ["e", "a"]},
    ):
        reply = server.complete(prompt="Once upon a time", max_tokens=60, **settings)
        want = expected(model, "Once upon a time", 60, **settings)
        assert [c["text"] for c in sorted(reply["choices"], key=lambda c: c["index"])] == want, settings
        assert reply["object"] == "text_completion" and reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert reply["usage"]["prompt_tokens"] == len("Once upon a time") + 1  # the story-start byte
    reply = server.complete(prompt="Hi", max_tokens=7, temperature=0.0)
    assert reply["usage"]["completion_tokens"] <= 7 and reply["choices"][0]["finish_reason"] in ("length", "stop")


def test_streaming_is_openai_sse_and_byte_exact(served):
    server, model = served
    events = server.stream(
        prompt="The dog", max_tokens=80, temperature=1.0, seed=4, n=2, stream_options={"include_usage": True}
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 8
    assert texts_of(events[:-1], 2) == expected(model, "The dog", 80, temperature=1.0, seed=4, n=2)
    ends = [c for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    assert sorted(c["index"] for c in ends) == [0, 1]


def test_per_byte_logprobs_and_patch_marks(served):
    server, model = served
    prompt = "Hello world, é!"  # é is two bytes
    reply = server.complete(prompt=prompt, max_tokens=30, temperature=0.0, logprobs=3, echo=True)
    choice = reply["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith(prompt)
    assert "".join(lp["tokens"]) == choice["text"]
    data = bytes(lp["bytes"])
    assert data[: len(prompt.encode())] == prompt.encode()
    n = len(data)
    assert all(len(lp[k]) == n for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset", "patch_start"))
    # the model reads the story-start byte first, so prompt byte i sits at position i + 1; the marks are
    # the model's own rule (fixed patches, word boundaries, ...) over the whole text, generated bytes too
    ids = mx.array([[3, *data]])
    assert lp["patch_start"] == model.patch_starts(ids)[0, 1:].tolist()
    assert any(lp["patch_start"])
    want = model(ids, include_start=True)[0, :-1]  # [t] predicts byte t
    want = (want - mx.logsumexp(want, axis=-1, keepdims=True))[1:]  # the story-start byte is not shown
    got = np.array(lp["token_logprobs"])
    chosen = np.take_along_axis(np.array(want), np.frombuffer(data, dtype=np.uint8)[:, None].astype(np.int64), axis=-1)[
        :, 0
    ]
    assert np.abs(got - chosen).max() < 1e-3
    for i in range(len(prompt.encode()), n):  # greedy: the chosen byte is the likeliest alternative
        top = lp["top_logprobs"][i]
        assert len(top) == 3 and max(top.values()) == pytest.approx(got[i], abs=1e-5)
    assert lp["tokens"][13:15] == ["", "é"]  # the character's last byte carries it
    assert lp["text_offset"][13] == lp["text_offset"][14] == prompt.index("é")


def test_concurrent_clients_are_batched_and_each_gets_its_own_story(served):
    from mlx_megabyte.protocol import biased

    server, model = served
    before = server.request("GET", "/health")[2]["most_rows_in_a_step"]
    # Four clients with one prompt and one whose prompt is 7 bytes longer: it waits for them to catch up,
    # then all five decode in one batched step. No end-of-text byte, so no story ends early.
    prompts = ["Once upon a time"] * 4 + ["Once upon a time, there"]
    results = [None] * len(prompts)

    def client(i):
        results[i] = texts_of(
            server.stream(prompt=prompts[i], max_tokens=200, temperature=1.0, seed=i, logit_bias={"3": -100})
        )[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, prompt in enumerate(prompts):
        sampler = biased(make_sampler(1.0, min_p=0.05), {3: -100.0}, 256)
        assert results[i] == generate(model, prompt, max_tokens=200, sampler=sampler, seed=i)[0], i
    assert before < 5 and server.request("GET", "/health")[2]["most_rows_in_a_step"] == 5


def test_a_client_that_disconnects_frees_its_rows_and_disturbs_no_one(server, model):
    leaving = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps(
        {"prompt": "Long", "max_tokens": 20000, "stream": True, "temperature": 1.0, "logit_bias": {"3": -100}}
    ).encode()  # no end-of-text: it would run on
    leaving.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    assert leaving.recv(4096).startswith(b"HTTP/1.1 200")
    result = {}
    staying = threading.Thread(
        target=lambda: result.update(
            text=texts_of(server.stream(prompt="Long", max_tokens=300, temperature=1.0, seed=2))[0]
        )
    )
    staying.start()
    eventually(lambda: rows(server)["active_rows"] >= 1)
    leaving.close()
    staying.join()
    assert result["text"] == expected(model, "Long", 300, temperature=1.0, seed=2)[0]
    eventually(lambda: rows(server)["active_rows"] == 0)


def test_a_client_waiting_for_a_whole_response_that_leaves_frees_its_rows(server):
    leaving = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"prompt": "x", "max_tokens": 20000, "logit_bias": {"3": -100}}).encode()
    leaving.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    eventually(lambda: rows(server)["active_rows"] == 1)
    leaving.close()
    eventually(lambda: rows(server)["active_rows"] == 0)


def test_prompts_longer_than_the_context_keep_their_end(server, model):
    prompt = "abcdefghij" * 40  # 400 bytes, context 256
    reply = server.complete(prompt=prompt, max_tokens=20, temperature=1.0, seed=1)
    assert reply["usage"]["prompt_tokens"] == 256 and "fit the context" in reply["warning"]
    assert reply["choices"][0]["text"] == expected(model, prompt, 20, temperature=1.0, seed=1)[0]


def test_instruct_fields_build_the_instruct_prompt(server, model):
    fields = {"features": "Dialogue", "words": "cat, ball", "summary": "A cat plays."}
    reply = server.complete(prompt="", max_tokens=20, temperature=0.0, echo=True, **fields)
    prompt = instruct_prompt(**fields)
    assert reply["choices"][0]["text"] == prompt + expected(model, prompt, 20, temperature=0.0)[0]


HOSTILE = [
    ({"raw": b"{not json"}, 400, "invalid_json"),
    ({"raw": b'{"prompt": "\xff\xfe"}'}, 400, "invalid_utf8"),
    ({"raw": b"[1, 2]"}, 400, "invalid_body"),
    ({"body": {"prompt": 5}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "max_tokens": "ten"}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "max_tokens": True}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "max_tokens": 10**9}}, 400, "max_tokens_too_large"),
    ({"body": {"prompt": "a", "temperature": "hot"}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "top_p": 1.5}}, 400, "invalid_value"),
    ({"raw": b'{"prompt": "a", "temperature": NaN}'}, 400, "invalid_json"),
    ({"raw": b'{"prompt": "a", "top_p": Infinity}'}, 400, "invalid_json"),
    ({"body": {"prompt": "a", "temperature": 1e300}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "seed": -1}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "seed": 2**64}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "n": 1000}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "stop": [1]}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "logprobs": 99}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "stream": "yes"}}, 400, "invalid_type"),
    ({"body": {"prompt": "a", "logit_bias": {"300": 1}}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "logit_bias": {"3": True}}}, 400, "invalid_type"),  # once silently dropped
    ({"body": {"prompt": "a", "logit_bias": {"3": "5"}}}, 400, "invalid_type"),  # once coerced to 5.0
    ({"body": {"prompt": "a", "logit_bias": {" 3": 1}}}, 400, "invalid_value"),  # once read as byte 3
    ({"body": {"prompt": "a", "logit_bias": {"3.0": 1}}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "logit_bias": {"3": 101}}}, 400, "invalid_value"),
    ({"body": {"prompt": "a", "stream": True, "stream_options": {"include_usage": "yes"}}}, 400, "invalid_type"),
    ({"body": {"messages": [{"role": "user", "content": "Hi"}]}}, 400, "wrong_endpoint"),
    ({"raw": b"x" * (2 << 20)}, 413, "body_too_large"),
    ({"path": "/v1/nothing", "body": {}}, 404, "not_found"),
    ({"method": "GET", "path": "/v1/completions"}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("case,status,code", HOSTILE, ids=[c[2] + str(i) for i, c in enumerate(HOSTILE)])
def test_hostile_input_gets_a_clean_4xx_and_the_server_keeps_serving(server, case, status, code):
    got, _, reply = server.request(
        case.get("method", "POST"), case.get("path", "/v1/completions"), case.get("body"), raw=case.get("raw")
    )
    assert got == status and reply["error"]["code"] == code and reply["error"]["message"], reply
    assert server.request("GET", "/health")[0] == 200


SURROGATES = [
    ("prompt", b'"prompt": "\\ud800 abc"'),
    ("prompt", b'"prompt": ["abc \\udcff"]'),
    ("features", b'"features": "\\ud800"'),
    ("words", b'"words": "cat, \\ud83d"'),
    ("summary", b'"summary": "\\udfff"'),
    ("stop", b'"stop": "\\ud800"'),
    ("stop", b'"stop": ["a", "\\ud800"]'),
]


@pytest.mark.parametrize("field,member", SURROGATES, ids=[f"{f}{i}" for i, (f, _) in enumerate(SURROGATES)])
def test_a_lone_surrogate_in_any_string_is_a_400_naming_the_field(server, field, member):
    """JSON may escape a lone UTF-16 surrogate, which is no text: once a dropped connection and a traceback."""
    body = b'{"max_tokens": 5, ' + member + b"}"
    status, _, reply = server.request("POST", "/v1/completions", raw=body)
    assert status == 400 and reply["error"]["param"] == field and reply["error"]["code"] == "invalid_text", reply
    assert "surrogate" in reply["error"]["message"]
    assert server.request("GET", "/health")[0] == 200


def test_a_chat_body_on_the_completions_endpoint_points_to_the_chat_endpoint(server):
    status, _, reply = server.request("POST", "/v1/completions", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and reply["error"]["param"] == "messages", reply  # once a story from an empty prompt
    assert "/v1/chat/completions" in reply["error"]["message"]
    status, _, reply = server.request(
        "POST", "/v1/completions", {"prompt": "a", "stream": True, "stream_options": {"include_usage": 1}}
    )
    assert status == 400 and reply["error"]["param"] == "stream_options.include_usage", reply


def test_unknown_fields_are_ignored_and_bytes_are_a_prompt(server, model):
    reply = server.complete(
        prompt=list(b"Once"),
        max_tokens=10,
        temperature=0.0,
        frequency_penalty=0.5,
        user="someone",
        model="anything",
        suffix=None,
    )
    assert reply["choices"][0]["text"] == expected(model, "Once", 10, temperature=0.0)[0]


def test_a_body_without_content_length_gets_411(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert s.recv(4096).startswith(b"HTTP/1.1 411")
    s.close()


H = b"Host: 127.0.0.1\r\n"
REFUSALS = [  # (raw request, status, error code): each once an HTML page, a Python default, or accepted
    (b"PUT /v1/completions HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"DELETE /v1/completions HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"PATCH /health HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"TRACE / HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"BREW /pot HTTP/1.1\r\n" + H + b"\r\n", 501, "not_implemented"),
    (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n", 431, "headers_too_large"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /health\r\n\r\n", 400, "bad_request"),  # HTTP/0.9: no status line, no headers
    (b"GET /health HTTP/2.0\r\n" + H + b"\r\n", 505, "http_version_not_supported"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\n\r\n", 400, "bad_request"),  # HTTP/1.1 without Host
    (b"GET /health HTTP/1.1\r\n" + H + H + b"\r\n", 400, "bad_request"),
    (
        b"POST /v1/completions HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 29\r\n"
        b"Content-Length: 5\r\n\r\n" + b'{"prompt": "a", "max_tokens": 3}',
        400,
        "bad_request",
    ),  # once "the first wins"
    (
        b"POST /v1/completions HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 5\r\n"
        b"Content-Length: 5\r\n\r\n" + b'{"a":',
        400,
        "bad_request",
    ),
    (
        b"POST /v1/completions HTTP/1.1\r\n" + H + b'Content-Type: application/json\r\nContent-Length: +5\r\n\r\n{"a":',
        400,
        "bad_request",
    ),
]


@pytest.mark.parametrize("raw,status,code", REFUSALS, ids=[f"{c}{i}" for i, (_, _, c) in enumerate(REFUSALS)])
def test_every_refusal_of_the_http_layer_is_an_api_json_error(server, raw, status, code):
    got, headers, body = exchange(server.port, raw)
    assert got == status and headers["content-type"] == "application/json", (got, headers, body[:200])
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error", error
    if status == 405:
        assert headers["allow"] in ("POST, OPTIONS", "GET, HEAD, OPTIONS")
    assert server.request("GET", "/health")[0] == 200


def test_head_works_wherever_get_does(server):
    for path in ("/", "/playground.js", "/health", "/v1/models"):
        status, response, text = server.request("HEAD", path)
        get_status, get_response, _ = server.request("GET", path)
        assert status == get_status == 200 and text == "", path  # once 501, Python's HTML page
        assert response.getheader("Content-Type") == get_response.getheader("Content-Type")
        if path != "/health":  # (its counters change between the two requests)
            assert response.getheader("Content-Length") == get_response.getheader("Content-Length")
    status, response, text = server.request("HEAD", "/v1/completions")
    assert status == 405 and response.getheader("Allow") == "POST, OPTIONS" and text == ""


def test_slow_clients_cost_a_line_each_in_the_log_and_no_traceback(weights, tmp_path):
    """40 connections trickling one header byte a second: once ~200 BrokenPipeError tracebacks."""
    log = tmp_path / "server.log"
    s = Server(weights, "--timeout", "1", log=log)
    clients = []
    try:
        for _ in range(40):
            clients.append(socket.create_connection(("127.0.0.1", s.port)))
            clients[-1].sendall(b"POST /v1/completions HTTP/1.1\r\n" + H)
        for second in range(4):  # --timeout 1: each is cut off within its second second
            for client in clients:
                try:
                    client.sendall(b"X-Slow: a"[second : second + 1])
                except OSError:
                    pass
            time.sleep(1)
        assert s.request("GET", "/health")[0] == 200
    finally:
        for client in clients:
            client.close()
        s.close()
    lines = log.read_text().splitlines()
    assert not any("Traceback" in line or line.startswith(" ") for line in lines), "\n".join(lines[:40])
    dropped = [line for line in lines if "dropped:" in line]
    assert 1 <= len(dropped) <= 40 and len(lines) == len(dropped) + 1, "\n".join(lines)  # + the health check


def test_requests_for_another_host_name_are_refused(server):
    """DNS rebinding: a site that points its own name at 127.0.0.1 makes its pages same-origin with the
    server, but their requests carry the site's name in Host (once not looked at)."""
    port = server.port
    for host in (
        "evil.example",
        f"evil.example:{port}",
        f"127.0.0.1.nip.io:{port}",
        "localhost.evil.example",
        "attacker.com:8080",
        "0.0.0.0",
    ):
        for method, path, body in (
            ("GET", "/health", None),
            ("GET", "/", None),
            ("POST", "/v1/completions", {"prompt": "a", "max_tokens": 2}),
        ):
            status, response, reply = server.request(method, path, body, headers={"Host": host})
            assert status == 403 and reply["error"]["code"] == "host_not_allowed", (host, path, reply)
            assert response.getheader("Access-Control-Allow-Origin") is None
    for host in (
        "localhost",
        f"localhost:{port}",
        f"127.0.0.1:{port}",
        "127.0.0.2",
        f"[::1]:{port}",
        f"app.localhost:{port}",
        "LOCALHOST.",
    ):
        assert server.request("GET", "/health", headers={"Host": host})[0] == 200, host
    status, _, reply = server.request("GET", "/health", headers={"Host": "a b"})
    assert status == 400 and reply["error"]["code"] == "invalid_host"


def test_other_sites_pages_cannot_use_a_server_without_a_key(server):
    """Once, any page the user visited could make the server generate: a text/plain cross-origin POST is
    sent without a preflight, and it was executed."""
    story = json.dumps({"prompt": "a", "max_tokens": 2}).encode()
    evil = {"Origin": "https://evil.example"}
    for kind in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "application/json"):
        status, response, reply = server.request(
            "POST", "/v1/completions", raw=story, headers={**evil, "Content-Type": kind}
        )
        assert status == 403 and reply["error"]["code"] == "origin_not_allowed", (kind, reply)
        assert (
            response.getheader("Access-Control-Allow-Origin") is None and "--allow-origin" in reply["error"]["message"]
        )
    status, response, _ = server.request(
        "OPTIONS",
        "/v1/completions",
        headers={**evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert status == 403 and response.getheader("Access-Control-Allow-Origin") is None  # no preflight for it
    assert server.request("GET", "/v1/models", headers=evil)[0] == 403
    # Not a browser (no Origin): only JSON bodies are read, which no page can send elsewhere without a preflight.
    for kind in (
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
        "application/json; charset=latin-1",
        "application/jsonx",
    ):
        status, _, reply = server.request("POST", "/v1/completions", raw=story, headers={"Content-Type": kind})
        assert status == 415 and reply["error"]["code"] == "unsupported_media_type", (kind, reply)
    for kind in ("application/json", "Application/JSON; charset=UTF-8"):
        assert server.request("POST", "/v1/completions", raw=story, headers={"Content-Type": kind})[0] == 200, kind
    # The playground's own page: its POSTs carry this server's origin.
    status, response, _ = server.request("POST", "/v1/completions", raw=story, headers={"Origin": server.url})
    assert status == 200 and response.getheader("Access-Control-Allow-Origin") is None  # same-origin: none needed
    status, response, _ = server.request("OPTIONS", "/v1/completions")
    assert status == 204 and response.getheader("Allow") == "POST, OPTIONS"


@pytest.fixture(scope="module")
def cors(weights):
    s = Server(
        weights,
        "--allow-origin",
        "https://app.example",
        "--allow-origin",
        "http://localhost:3000",
        "--allow-host",
        "proxy.example",
    )
    yield s
    s.close()


def test_allow_origin_answers_preflights_and_adds_cors_headers_for_those_origins_only(cors):
    app = {"Origin": "https://app.example"}
    status, response, _ = cors.request(
        "OPTIONS",
        "/v1/completions",
        headers={
            **app,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status == 204 and response.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert "POST" in response.getheader("Access-Control-Allow-Methods")
    allowed = response.getheader("Access-Control-Allow-Headers").lower()
    assert "authorization" in allowed and "content-type" in allowed and response.getheader("Vary") == "Origin"
    status, response, reply = cors.request("POST", "/v1/completions", {"prompt": "a", "max_tokens": 3}, headers=app)
    assert status == 200 and response.getheader("Access-Control-Allow-Origin") == "https://app.example", reply
    status, response, _ = cors.request(
        "POST", "/v1/completions", {"prompt": 5}, headers={"Origin": "http://localhost:3000"}
    )
    assert status == 400 and response.getheader("Access-Control-Allow-Origin") == "http://localhost:3000"  # errors too
    for origin in ("https://evil.example", "http://app.example", "https://app.example:8443", "null"):
        status, response, _ = cors.request(
            "OPTIONS", "/v1/completions", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert status == 403 and response.getheader("Access-Control-Allow-Origin") is None, origin
        assert cors.request("POST", "/v1/completions", {"prompt": "a"}, headers={"Origin": origin})[0] == 403, origin
    assert cors.request("GET", "/health", headers={"Host": "proxy.example"})[0] == 200  # --allow-host
    assert cors.request("GET", "/health", headers={"Host": "other.example"})[0] == 403


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--allow-origin", "app.example"], "expected an origin"),
        (["--allow-origin", "https://app.example/page"], "no path"),
        (["--allow-host", "proxy.example:80"], "without a port"),
    ],
)
def test_bad_allow_flags_are_one_line(weights, flags, fragment):
    result = run("-m", "mlx_megabyte.server", "--model", str(weights), *flags, timeout=60)
    assert result.returncode == 2
    one_line_error(result, flags[0], fragment)


@pytest.fixture(scope="module")
def strict(weights):
    s = Server(
        weights,
        "--max-batch",
        "1",
        "--queue-size",
        "1",
        "--timeout",
        "1",
        "--max-tokens",
        "100000",
        env={"MLX_MEGABYTE_API_KEY": KEY},
    )
    yield s
    s.close()


def test_an_api_key_guards_every_api_request(strict):
    assert strict.request("GET", "/health")[0] == 401
    status, response, reply = strict.request(
        "POST", "/v1/completions", {"prompt": "a"}, headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401 and reply["error"]["code"] == "invalid_api_key"
    assert response.getheader("WWW-Authenticate") == "Bearer"
    strict.headers = {"Authorization": f"Bearer {KEY}"}
    assert strict.request("GET", "/health")[0] == 200
    assert strict.complete(prompt="a", max_tokens=3)["usage"]["completion_tokens"] <= 3
    assert strict.request("GET", "/", headers={"Authorization": ""})[0] == 200  # the static page is public
    for scheme in ("bearer", "BEARER", "BeArEr"):  # the scheme is case-insensitive (RFC 9110), the key is not
        assert strict.request("GET", "/health", headers={"Authorization": f"{scheme} {KEY}"})[0] == 200, scheme
    for wrong in (f"Basic {KEY}", f"Bearer {KEY.upper()}", KEY):
        assert strict.request("GET", "/health", headers={"Authorization": wrong})[0] == 401, wrong


def test_a_full_queue_answers_503_with_retry_after(strict):
    strict.headers = {"Authorization": f"Bearer {KEY}"}
    body = json.dumps({"prompt": "a", "max_tokens": 100000, "stream": True, "logit_bias": {"3": -100}}).encode()
    busy = []
    for state in ("active_rows", "waiting"):  # one decoding (max-batch 1), one waiting (queue-size 1)
        s = socket.create_connection(("127.0.0.1", strict.port))
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        busy.append(s)
        eventually(lambda: rows(strict)[state] == 1)
    status, response, reply = strict.request("POST", "/v1/completions", {"prompt": "a"})
    assert status == 503 and response.getheader("Retry-After") == "1" and reply["error"]["code"] == "queue_full"
    for s in busy:
        s.close()
    eventually(lambda: strict.request("POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})[0] == 200)


def test_slow_clients_are_cut_off_and_others_are_served(strict):
    strict.headers = {"Authorization": f"Bearer {KEY}"}
    slow = socket.create_connection(("127.0.0.1", strict.port))
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")  # headers never end
    closed = False
    assert strict.request("GET", "/health")[0] == 200
    # A byte every 0.2 s keeps every read within --timeout 1, so only the deadline on the whole request can
    # close it (after 1 s; 30 s only bounds a hang).
    for _ in range(150):
        try:
            slow.sendall(b"X")
            closed = _readable(slow) and slow.recv(4096) == b""
        except OSError:
            closed = True
        if closed:
            break
        time.sleep(0.2)
    assert closed
    slow.close()


def _readable(sock):
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_openai_client(server, model):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list()]
    reply = client.completions.create(
        model="demo", prompt="Once upon a time", max_tokens=40, temperature=1.0, seed=8, logprobs=2
    )
    want = expected(model, "Once upon a time", 40, temperature=1.0, seed=8)[0]
    assert reply.choices[0].text == want and len(reply.choices[0].logprobs.token_logprobs) >= len(want)
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model="demo", prompt="Once upon a time", max_tokens=40, temperature=1.0, seed=8, stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == want


# --- /v1/chat/completions (issue 21) ----------------------------------------------------------------------


def chat_texts(events, n=1):
    texts = [""] * n
    for e in events[:-1]:
        for choice in json.loads(e)["choices"]:
            texts[choice["index"]] += choice["delta"].get("content", "")
    return texts


def test_chat_completions_write_the_story_generate_writes(served):
    """Plain and streamed, n samples, seed, max_completion_tokens, stop, temperature and top_p, usage:
    the story of the last user message is generate's for the same prompt and settings, for every
    architecture."""
    server, model = served
    settings = {"max_completion_tokens": 30, "temperature": 0.9, "top_p": 0.95, "seed": 4, "n": 2}
    messages = [{"role": "system", "content": "You are a storyteller."}, {"role": "user", "content": "Once"}]
    want = expected(model, "Once", 30, temperature=0.9, top_p=0.95, seed=4, n=2)
    status, _, reply = server.request("POST", "/v1/chat/completions", {"messages": messages, **settings})
    assert status == 200 and reply["object"] == "chat.completion", reply
    assert [c["message"]["content"] for c in reply["choices"]] == want
    assert {c["message"]["role"] for c in reply["choices"]} == {"assistant"}
    settings_of_completions = {**settings, "max_tokens": settings["max_completion_tokens"]}
    del settings_of_completions["max_completion_tokens"]
    counted = server.complete(prompt="Once", **settings_of_completions)["usage"]  # bytes, as completions count them
    assert reply["usage"] == counted and counted["prompt_tokens"] == 5
    events = server.stream_chat(messages=messages, **settings, stream_options={"include_usage": True})
    assert chat_texts(events, 2) == want
    assert json.loads(events[-2])["usage"] == reply["usage"] and json.loads(events[-2])["choices"] == []
    stopped = expected(model, "Once", 30, temperature=0.9, top_p=0.95, seed=4, stop=("e",))[0]
    status, _, reply = server.request(
        "POST", "/v1/chat/completions", {"messages": messages, **settings, "n": 1, "stop": "e"}
    )
    assert reply["choices"][0]["message"]["content"] == stopped


def test_chat_instruct_lines_and_fields_build_the_instruct_prompt(server, model):
    fields = {"features": "Dialogue", "words": "cat, ball", "summary": "A cat plays."}
    content = "Features: Dialogue\nWords: cat, ball\nSummary: A cat plays."
    want = expected(model, instruct_prompt(**fields), 25, temperature=0.0)[0]
    for body in (
        {"messages": [{"role": "user", "content": content}]},
        {
            "messages": [{"role": "user", "content": "Summary: A cat plays."}],
            "words": ["cat", "ball"],
            "features": "Dialogue",
        },
    ):
        status, _, reply = server.request("POST", "/v1/chat/completions", {**body, "max_tokens": 25, "temperature": 0})
        assert status == 200 and reply["choices"][0]["message"]["content"] == want, reply


CHAT_REFUSALS = [
    ({}, "missing_required_parameter", "messages"),
    ({"messages": []}, "empty_array", "messages"),
    ({"messages": "Once"}, "invalid_type", "messages"),
    ({"messages": [{"role": "assistant", "content": "Once"}]}, "last_message_not_user", "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, None, None),
    ({"messages": [{"role": "tool", "content": "x"}]}, None, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ""}]}, "empty_content", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "Words: a"}], "words": "b"}, "conflicting_fields", "words"),
    (
        {"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function"}]},
        "unsupported_parameter",
        "tools",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "max_completion_tokens": 6},
        "conflicting_fields",
        "max_completion_tokens",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": -1},
        "invalid_value",
        "max_completion_tokens",
    ),
    ({"messages": [{"role": "user", "content": "Hi"}], "n": 1000}, "invalid_value", "n"),
    ({"messages": [{"role": "user", "content": "Hi"}], "temperature": "hot"}, "invalid_type", "temperature"),
    ({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10**9}, "max_tokens_too_large", "max_tokens"),
]


@pytest.mark.parametrize("body,code,param", CHAT_REFUSALS, ids=[f"{c[1]}{i}" for i, c in enumerate(CHAT_REFUSALS)])
def test_chat_refusals_are_400_json_errors_in_one_line(server, body, code, param):
    status, _, reply = server.request("POST", "/v1/chat/completions", body)
    error = reply["error"]
    assert status == 400 and error["type"] == "invalid_request_error" and "\n" not in error["message"], reply
    assert code is None or error["code"] == code, error
    assert param is None or error["param"] == param, error
    status, _, reply = server.request(
        "POST", "/v1/chat/completions", raw=b'{"messages": [{"role": "user", "content": "\\ud800"}]}'
    )
    assert status == 400 and reply["error"]["code"] == "invalid_text", reply
    assert server.request("GET", "/health")[0] == 200


def test_the_openai_client_chats_with_the_server_plain_and_streamed(server, model):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    messages = [{"role": "user", "content": "Once upon a time"}]
    want = expected(model, "Once upon a time", 40, temperature=1.0, seed=8)[0]
    reply = client.chat.completions.create(
        model="demo", messages=messages, max_completion_tokens=40, temperature=1.0, seed=8
    )
    assert reply.choices[0].message.content == want and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == len(b"Once upon a time") + 1  # and the end-of-text byte before it
    chunks = list(
        client.chat.completions.create(
            model="demo",
            messages=messages,
            max_tokens=40,
            temperature=1.0,
            seed=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[-1].usage.total_tokens == reply.usage.total_tokens
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="demo", messages=[{"role": "assistant", "content": "Once"}])
    assert caught.value.body["code"] == "last_message_not_user"


@pytest.fixture(scope="module")
def untuned(weights, tmp_path_factory):
    """Weights whose training record says no instruct data trained them (as train writes it)."""
    path = tmp_path_factory.mktemp("untuned") / "base"
    shutil.copytree(weights, path)
    (path / "trainer_state.json").write_text(
        json.dumps({"step": 10, "val_bpb": 2.0, "data": "builtin", "instruct": False})
    )
    s = Server(path)
    yield s
    s.close()


def test_instruct_prompts_to_a_model_never_tuned_on_them_are_refused(untuned):
    assert untuned.request("GET", "/v1/models")[2]["data"][0]["instruct"] is False
    for path, body in (
        ("/v1/completions", {"prompt": "", "words": "cat"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Words: cat"}]}),
    ):
        status, _, reply = untuned.request("POST", path, {**body, "max_tokens": 5})
        assert status == 400 and reply["error"]["code"] == "model_not_instruct_tuned", reply
        assert "never on instruct records" in reply["error"]["message"]
    status, _, reply = untuned.request(
        "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Once"}], "max_tokens": 5}
    )
    assert status == 200  # a story start is what a base model is for


@pytest.fixture(scope="module")
def spacebyte_weights(tmp_path_factory):
    from mlx_megabyte.models import architecture, build

    path = tmp_path_factory.mktemp("server") / "spacebyte"
    save(build(architecture("spacebyte").presets["tiny"]), path)
    return path


def test_every_start_up_failure_exits_1_with_one_line(weights, tmp_path):
    """The error was right, but the process then often died by SIGABRT (exit 134, "terminate called
    without an active exception"): a race with the generation thread, so it is tried many times, with a
    port in use and with weights the generation thread fails to load."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        for attempt in range(12):
            result = run("-m", "mlx_megabyte.server", "--model", str(weights), "--port", str(port), timeout=60)
            assert result.returncode == 1, (attempt, result.returncode, result.stderr)
            one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")
    finally:
        taken.close()
    damaged = tmp_path / "damaged"
    shutil.copytree(weights, damaged)
    with open(damaged / "model.safetensors", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\xff\xff\xff\xff")
    for attempt in range(8):
        result = run("-m", "mlx_megabyte.server", "--model", str(damaged), "--port", "0", timeout=60)
        assert result.returncode == 1, (attempt, result.returncode, result.stderr)
        one_line_error(result, "does not match the checksum")


def test_refuses_a_public_address_without_a_key(weights):
    one_line_error(
        run(
            "-m",
            "mlx_megabyte.server",
            "--model",
            str(weights),
            "--host",
            "0.0.0.0",
            env={"MLX_MEGABYTE_API_KEY": ""},
            timeout=60,
        ),
        "refusing to serve on 0.0.0.0",
        "--api-key",
    )


def test_the_playground_in_a_real_browser(served):
    from .browser import Chromium

    server, model = served
    require_chromium()
    with Chromium() as browser:
        browser.viewport(1100, 700)
        browser.open(server.url + "/")
        browser.wait_for("document.getElementById('model-info').textContent.includes('parameters')")
        browser.type_into("#prompt", "Once upon a time")
        browser.type_into("#length", "120")
        browser.type_into("#seed", "1")
        browser.click("#write")
        assert (
            browser.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=60
            )
            == "done"
        )
        page = browser.evaluate("""(() => {
            const cells = [...document.querySelectorAll('#story b')];
            return {
                prompt: cells.filter((c) => c.classList.contains('prompt')).map((c) => c.textContent).join(''),
                story: cells.filter((c) => !c.classList.contains('prompt')).map((c) => c.textContent).join(''),
                shaded: cells.filter((c) => c.style.getPropertyValue('--bits') !== '').length,
                cells: cells.length,
                patches: cells.filter((c) => c.classList.contains('patch')).length,
                errors: document.getElementById('errors').textContent,
                stats: document.getElementById('stats').textContent,
            };
        })()""")
        artifacts = ROOT / "tests" / "artifacts"
        artifacts.mkdir(exist_ok=True)
        browser.hover("#story b:nth-of-type(20)")
        browser.screenshot(str(artifacts / f"playground-{model.config.model_type}.png"))
        console = browser.console_errors()
    assert page["prompt"] == "Once upon a time"
    want = expected(model, "Once upon a time", 120, temperature=0.8, top_p=1.0, seed=1)[0]
    assert page["story"] == want  # the text arrived, byte for byte what generate writes
    assert page["shaded"] == page["cells"] > len("Once upon a time")  # every byte shaded by its surprise
    # the page marks a character whose first byte begins a patch: the model's own rule, as the API reports it
    lp = server.complete(
        prompt="Once upon a time", max_tokens=120, temperature=0.8, top_p=1.0, seed=1, logprobs=0, echo=True
    )["choices"][0]["logprobs"]
    first = [i == 0 or lp["tokens"][i - 1] != "" for i in range(len(lp["tokens"]))]
    assert page["patches"] == sum(s and f for s, f in zip(lp["patch_start"], first)) > 0
    assert "bits/byte" in page["stats"]
    assert page["errors"] == "" and console == [], (page["errors"], console)
    assert (artifacts / f"playground-{model.config.model_type}.png").stat().st_size > 10_000


def test_the_playground_writes_stories_on_command(server, model, untuned):
    """The "on command" mode sends the three fields; the page shows the instruct prompt the server built
    (as the prompt) and generate's story for it. A model never tuned on instruct data gets a note."""
    from urllib.parse import urlencode

    from .browser import Chromium

    require_chromium()
    fields = {"features": "Dialogue", "words": "cat, ball", "summary": "A cat finds a ball."}
    query = urlencode({**fields, "prompt": "", "max_tokens": 80, "seed": 2, "autorun": 1})
    read = """(() => {
        const cells = [...document.querySelectorAll('#story b')];
        return {
            prompt: cells.filter((c) => c.classList.contains('prompt')).map((c) => c.textContent).join(''),
            story: cells.filter((c) => !c.classList.contains('prompt')).map((c) => c.textContent).join(''),
            command: !document.getElementById('command').hidden,
            note: document.getElementById('command-note').hidden ? '' : document.getElementById('command-note').textContent,
            errors: document.getElementById('errors').textContent,
        };
    })()"""
    with Chromium() as browser:
        browser.viewport(1100, 760)
        browser.open(f"{server.url}/?{query}")
        assert (
            browser.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=60
            )
            == "done"
        )
        page = browser.evaluate(read)
        browser.screenshot(str(ROOT / "tests" / "artifacts" / "playground-on-command.png"))
        browser.open(f"{untuned.url}/")
        browser.wait_for("document.getElementById('model-info').textContent.includes('parameters')")
        browser.click("input[name=mode][value=command]")
        refused = browser.evaluate(read)
    prompt = instruct_prompt(**fields)
    assert page["command"] and page["prompt"] == prompt and page["note"] == "" and page["errors"] == ""
    assert page["story"] == expected(model, prompt, 80, seed=2)[0]
    assert refused["command"] and "never tuned on instruct data" in refused["note"]


@pytest.mark.parametrize(
    "script", [[0xE2, 0xC3, 3], [0xE2, 0xC3, 0x41, 3], [0xE2, 0xC3], [0xF0, 0x9F, 0x98, 0x80, 0xC3]]
)
def test_a_byte_flushed_late_by_the_utf8_decoder_keeps_text_and_bytes_aligned(script):
    """0xE2 0xC3 then the end: the decoder gives one U+FFFD for 0xE2 when 0xC3 arrives, and the second
    only at the end, with no new byte behind it (found by a seed that crashed the generation thread)."""
    from mlx_megabyte.batching import ByteLogprob, Job, Row
    from mlx_megabyte.generation import stream_generate

    job = Job(
        prompt=b"\x03",
        prompt_text=b"",
        n=1,
        max_tokens=len([b for b in script if b != 3]),
        sampler=None,
        settings=(),
        seed=0,
    )
    row = Row(job, 0)
    chunks = [row.push(ByteLogprob(byte, None, [], False)) for byte in script]
    text = "".join(c.text for c in chunks)
    entries = [e for c in chunks for e in c.logprobs]
    assert "".join(e.text for e in entries) == text  # the tokens join to the text
    assert [e.byte for e in entries] == [b for b in script if b != 3]

    queue = list(script)  # the same bytes through stream_generate give the same text
    scripted = lambda logits, *keys: mx.array([queue.pop(0) if queue else 3], dtype=mx.int32)  # noqa: E731
    want = "".join(r.text for r in stream_generate(MEGABYTE(PRESETS["tiny"]), "", job.max_tokens, scripted))
    assert text == want
