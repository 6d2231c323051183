"""The terminal side of generation: stories streamed to a terminal, and the story REPL
(`python -m mlx_megabyte.generate --interactive`). The engine it drives is generation.py, the command
line generate.py."""

from __future__ import annotations

import signal
import sys
from argparse import ArgumentTypeError

import mlx.core as mx

from .cli import number
from .generation import GenerationResponse, stream_generate
from .runtime import check_seed
from .sampling import RANGES, make_sampler
from .text import encode_prompt, instruct_prompt


def print_story(model, prompt, args, sampler, out=None, seed=None) -> GenerationResponse | None:
    """Stream one or more stories to `out` (standard output); return the last response (for statistics)."""
    out = out or sys.stdout
    last = None
    shown = encode_prompt(prompt, story_start=False).decode("utf-8", "replace")  # printable under any locale
    if args.num_samples == 1:
        out.write(shown)
        out.flush()
    texts = [""] * args.num_samples
    for last in stream_generate(model, prompt, args.max_tokens, sampler, tuple(args.stop), args.num_samples, seed=seed):
        if last.notice:
            print(f"note: {last.notice}", file=sys.stderr)
        if args.num_samples == 1:
            out.write(last.text)
            out.flush()
        else:
            texts = [a + b for a, b in zip(texts, last.texts)]
    if args.num_samples > 1:
        for i, text in enumerate(texts):
            out.write(f"--- sample {i + 1} ---\n{shown}{text}\n")
    else:
        out.write("\n")
    return last


def statistics(response: GenerationResponse) -> str:
    return (
        f"[{response.bytes_generated} bytes, prompt {response.prompt_bytes} bytes in "
        f"{response.prompt_seconds:.2f} s, {response.bytes_per_second:.1f} bytes/s, "
        f"peak memory {response.peak_memory_gb:.2f} GB, stop: {response.finish_reason}]"
    )


HELP = """Type the beginning of a story and press Enter; an empty line starts from nothing.
Commands:
  /temp T     sampling temperature (0 = greedy)      /length N   most bytes per story
  /top-p P    nucleus sampling (1 = off)             /min-p M    min-p filtering (0 = off)
  /seed S     reseed the sampler                     /reset      default settings
  /help       this text                              /quit       leave (or Ctrl-D)
Ctrl-C stops the story being written."""


def interactive(model, args, defaults):
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    # Ctrl-C stops the story being written, even when a parent started us with SIGINT ignored or blocked
    # (both are inherited, and Python then never raises KeyboardInterrupt): the REPL promises it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    print(
        f"mlx-megabyte story REPL ({model.num_parameters():,} parameters, {model.config.context_length}-byte context)"
    )
    print("Type /help for commands, Ctrl-D to quit.")
    while True:
        try:
            if args.instruct:
                prompt = instruct_prompt(input("features> "), input("words> "), input("summary> "))
            else:
                prompt = input("> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            continue
        except UnicodeDecodeError:  # a strict UTF-8 terminal and bytes that are not UTF-8
            print("that line is not valid UTF-8; type it again")
            continue
        if prompt.startswith("/"):
            if not _command(prompt, args, defaults):
                return
            continue
        sampler = make_sampler(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
        try:
            response = print_story(model, prompt, args, sampler)
        except KeyboardInterrupt:
            print("\n[stopped]")
            continue
        if response is not None:
            print(statistics(response))


def _command(line, args, defaults) -> bool:
    """Apply a REPL command; False means quit."""
    name, _, value = line[1:].partition(" ")
    settings = {"temp": "temp", "length": "max_tokens", "top-p": "top_p", "min-p": "min_p"}
    try:
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            print(HELP)
        elif name == "reset":
            for key, default in defaults.items():
                setattr(args, key, default)
            print("settings reset")
        elif name == "seed":
            mx.random.seed(check_seed(int(value)))
            print(f"seed {int(value)}")
        elif name in settings:
            attribute = settings[name]
            kind, low, high, low_open, high_open = RANGES[attribute]
            # the flag's own range check: nothing changes if it fails
            setattr(args, attribute, number(kind, low, high, low_open, high_open)(value))
            print(f"{name} {getattr(args, attribute)}")
        else:
            print(f"unknown command /{name}; /help lists them")
    except (ValueError, ArgumentTypeError) as error:
        print(f"invalid value: {error}")
    return True
