"""Load test for `python -m mlx_megabyte.server`: N concurrent streaming clients, total bytes/s and time to
first byte.

    python -m mlx_megabyte.server --model weights/demo &
    python tools/load_test.py --clients 1,4,16

Every client streams one completion of --max-tokens bytes at the same moment (client i with seed i);
the end-of-text byte is suppressed (logit_bias) so every story has the same length and the figures
compare like with like. Total bytes/s = all bytes streamed / wall time from the first request to the
last byte; time to first byte is from sending a request to its first generated text.

    python tools/load_test.py --shared-prefix 900

times instead the first byte of requests sent one after another that share a prefix of 900 bytes new to the
server and end differently: what the server's prompt cache saves the later ones.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from urllib.parse import urlparse

from mlx_megabyte import cli
from mlx_megabyte.errors import UserError


def stream_one(url, body: dict, api_key: str | None, result: dict):
    """One streaming client; its figures, or what went wrong, go into `result` (it runs in a thread, where
    an uncaught error would be a traceback instead of a failed request)."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=600)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.perf_counter()
    try:
        connection.request("POST", "/v1/completions", json.dumps(body), headers)
        response = connection.getresponse()
        if response.status != 200:
            result["error"] = f"{response.status} {response.read()[:200]!r}"
            return
        first = None
        generated = 0
        for line in response:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                generated = chunk["usage"]["completion_tokens"]
            if first is None and any(c["text"] for c in chunk["choices"]):
                first = time.perf_counter()
    except OSError as error:
        reason = getattr(error, "strerror", None) or error
        result["error"] = f"the server at {url} did not answer ({reason}): is it running?"
        return
    except (ValueError, KeyError) as error:  # not the server's event stream
        result["error"] = f"the server at {url} sent something that is not a completion stream ({error})"
        return
    finally:
        connection.close()
    result.update(start=start, first=first, end=time.perf_counter(), bytes=generated)


def run(url, clients: int, args) -> dict:
    results = [{} for _ in range(clients)]
    threads = []
    for i in range(clients):
        prompt = args.prompt + (" and then" * i if args.vary_prompts else "")
        body = {
            "prompt": prompt,
            "max_tokens": args.max_tokens,
            "temperature": args.temp,
            "seed": i,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": {"3": -100},
        }
        threads.append(threading.Thread(target=stream_one, args=(url, body, args.api_key, results[i])))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise UserError(f"{len(failed)} of {clients} requests failed: {failed[0]}")
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    ttfb = [r["first"] - r["start"] for r in results]
    total = sum(r["bytes"] for r in results)
    return {
        "clients": clients,
        "bytes": total,
        "seconds": wall,
        "bytes_per_second": total / wall,
        "per_client": total / wall / clients,
        "ttfb_median": statistics.median(ttfb),
        "ttfb_max": max(ttfb),
    }


STORY = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her "
    "dog, Max. One day, they found a big red ball in the park. Lily threw the ball and Max ran after it. "
)


# Different endings of about the same length, after the shared prefix (a retry with the end edited, another
# story start after the same instruct fields).
ENDINGS = (
    " Then Lily saw a small cat under a tree.",
    " Then Max found an old shoe by the pond.",
    " Then the sun went down and it got cold.",
    " Then a bird sang a sweet song for them.",
)


def ttfb(url, prompt: str, args, what: str) -> float:
    """Seconds from sending a streamed request for `prompt` to its first generated text."""
    body = {"prompt": prompt, "max_tokens": 4, "temperature": args.temp, "seed": 0, "stream": True}
    result = {}
    stream_one(url, {**body, "logit_bias": {"3": -100}}, args.api_key, result)
    if "error" in result:
        raise UserError(f"the request for {what} failed: {result['error']}")
    return result["first"] - result["start"]


def shared_prefix(url, args) -> tuple[float, list[float]]:
    """What the server's prompt cache saves: the time to first byte of a prompt of --shared-prefix bytes
    new to the server with an ending, and of the same prefix with other endings, one after the other: the
    best of --rounds (each with a prefix the server has never seen)."""
    firsts, laters = [], []
    for _ in range(args.rounds):
        nonce = f"Story {time.time_ns() % 10**9}. "  # a prompt the server has never seen, whatever ran before
        prefix = (nonce + STORY * (args.shared_prefix // len(STORY) + 1))[: args.shared_prefix]
        firsts.append(ttfb(url, prefix + ENDINGS[0], args, "the first prompt"))
        laters.append([ttfb(url, prefix + ending, args, f"ending {i}") for i, ending in enumerate(ENDINGS[1:], 1)])
    return min(firsts), [min(times) for times in zip(*laters)]


def server_url(text: str) -> str:
    """The argparse type of --url: http://host[:port] (no path: the API's paths are added)."""
    parsed = urlparse(text)
    try:
        parsed.port
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"expected http://HOST[:PORT], got {text!r}")
    return text.rstrip("/")


@cli.cli
def main(argv=None):
    parser = cli.parser("tools/load_test.py", __doc__)
    parser.add_argument("--url", type=server_url, default="http://127.0.0.1:8080", help="the server")
    parser.add_argument(
        "--clients", type=cli.listed(int, 1), default="1,4,16", help="comma-separated numbers of concurrent clients"
    )
    parser.add_argument("--max-tokens", type=cli.number(int, 1), default=256, help="bytes each client streams")
    parser.add_argument("--prompt", default="Once upon a time", help="every client's prompt")
    parser.add_argument(
        "--vary-prompts", action="store_true", help="client i adds ' and then' i times: prompts of different lengths"
    )
    parser.add_argument("--temp", type=cli.number(float, 0, 100), default=0.8, help="sampling temperature")
    parser.add_argument("--rounds", type=cli.number(int, 1), default=2, help="measurements per row (the best is shown)")
    parser.add_argument("--api-key", help="the server's --api-key")
    parser.add_argument(
        "--shared-prefix",
        type=cli.number(int, 1),
        metavar="BYTES",
        help="instead: time to first byte of requests one after another that share a new BYTES-long prefix and "
        "end differently (the first, the later ones, and how much sooner these answer)",
    )
    args = parser.parse_args(argv)
    if args.shared_prefix:
        run(args.url, 1, argparse.Namespace(**{**vars(args), "max_tokens": 16}))  # warm up
        first, later = shared_prefix(args.url, args)
        print(f"the first prompt ({args.shared_prefix} bytes and an ending): time to first byte {first * 1000:.0f} ms")
        for i, seconds in enumerate(later, 1):
            print(
                f"the same prefix, ending {i}: time to first byte {seconds * 1000:.0f} ms ({first / seconds:.1f}x sooner)"
            )
        print(
            f"later requests: median {statistics.median(later) * 1000:.0f} ms, {first / statistics.median(later):.1f}x sooner"
        )
        return

    run(args.url, 1, argparse.Namespace(**{**vars(args), "max_tokens": 16}))  # warm up: first traces compile
    rows = []
    for clients in args.clients:
        rows.append(
            max((run(args.url, clients, args) for _ in range(args.rounds)), key=lambda r: r["bytes_per_second"])
        )
        r = rows[-1]
        print(
            f"{clients:>3} clients: {r['bytes_per_second']:8.1f} bytes/s total, {r['per_client']:7.1f} per client, "
            f"time to first byte median {r['ttfb_median'] * 1000:.0f} ms, max {r['ttfb_max'] * 1000:.0f} ms",
            flush=True,
        )
    base = rows[0]["bytes_per_second"]
    print("\n| clients | total bytes/s | vs 1 client | bytes/s per client | time to first byte, median / max |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['bytes_per_second']:,.0f} | {r['bytes_per_second'] / base:.2f}x | "
            f"{r['per_client']:,.0f} | {r['ttfb_median'] * 1000:,.0f} / {r['ttfb_max'] * 1000:,.0f} ms |"
        )


if __name__ == "__main__":
    main()
