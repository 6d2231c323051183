"""The terminal side of generation: `python -m mlx_megabyte.generate`'s command line, stories streamed
to a terminal, and the story REPL (`--interactive`). The engine it drives is generate.py."""

from __future__ import annotations

import sys
from argparse import ArgumentTypeError

import mlx.core as mx

from .cli import add_model_flags, check_seed, cli, model_flags, number
from .cli import parser as parser_for
from .cli import seed as seed_type
from .errors import UserError
from .generate import DEFAULT_MAX_TOKENS, GenerationResponse, stream_generate
from .sampling import (
    DEFAULT_MIN_P,
    DEFAULT_TEMP,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    LENGTH,
    MIN_P,
    TEMP,
    TOP_P,
    make_sampler,
)
from .text import encode_prompt, instruct_prompt
from .weights import load_for_inference

USAGE = """Generation: write stories with a trained model, streamed as they are written.

    python -m mlx_megabyte.generate --prompt "Once upon a time"
    python -m mlx_megabyte.generate --interactive

Every prompt starts a new story: the end-of-text byte that separates stories in training is put in front
of it, so the model knows a story begins (unless the prompt has to be cut to fit the context).
"""
DEFAULT_SEED = None


def print_story(model, prompt, args, sampler, out=None, seed=None) -> GenerationResponse | None:
    """Stream one or more stories to `out` (standard output); return the last response (for statistics)."""
    out = out or sys.stdout
    last = None
    shown = encode_prompt(prompt, story_start=False).decode("utf-8", "replace")  # printable under any locale
    if args.num_samples == 1:
        out.write(shown)
        out.flush()
    texts = [""] * args.num_samples
    for last in stream_generate(
        model, prompt, args.max_tokens, sampler, tuple(args.stop), args.num_samples, seed=seed
    ):
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
    print(f"mlx-megabyte story REPL ({model.num_parameters():,} parameters, {model.config.context_length}-byte context)")
    print("Type /help for commands, Ctrl-D to quit.")
    while True:
        try:
            if args.instruct:
                prompt = instruct_prompt(
                    input("features> "), input("words> "), input("summary> ")
                )
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
    settings = {"temp": ("temp", TEMP), "length": ("max_tokens", LENGTH), "top-p": ("top_p", TOP_P), "min-p": ("min_p", MIN_P)}
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
            attribute, kind = settings[name]
            setattr(args, attribute, kind(value))  # the flag's own range check: nothing changes if it fails
            print(f"{name} {getattr(args, attribute)}")
        else:
            print(f"unknown command /{name}; /help lists them")
    except (ValueError, ArgumentTypeError) as error:
        print(f"invalid value: {error}")
    return True


def build_parser():
    parser = parser_for("python -m mlx_megabyte.generate", USAGE)
    parser.add_argument(
        "--model",
        help="a weights directory, a training run directory (its newest checkpoint), or a Hugging Face repo "
        "id; default: the newest weights under weights/",
    )
    parser.add_argument("--prompt", "-p", default="", help="the start of the story; '-' reads standard input")
    parser.add_argument("--max-tokens", "-m", type=LENGTH, default=DEFAULT_MAX_TOKENS, help="most bytes to generate")
    parser.add_argument("--temp", type=TEMP, default=DEFAULT_TEMP, help="sampling temperature (0 = greedy)")
    parser.add_argument("--top-p", type=TOP_P, default=DEFAULT_TOP_P, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--min-p", type=MIN_P, default=DEFAULT_MIN_P, help="drop bytes below this share of the top one")
    parser.add_argument("--top-k", type=number(int, 0), default=DEFAULT_TOP_K, help="keep only the k likeliest bytes (0 = off)")
    parser.add_argument(
        "--filter-thres", type=number(float, 0, 1, high_open=True), default=None,
        help="megabyte-pytorch's generate(filter_thres=...): top-k with k = (1 - thres) * vocab",
    )
    parser.add_argument(
        "--seed", type=seed_type, default=DEFAULT_SEED,
        help="random seed for reproducible samples (the same story as the server's `seed` with the same settings)",
    )
    parser.add_argument("--num-samples", "-n", type=number(int, 1, 1024), default=1, help="stories to generate in parallel")
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    add_model_flags(parser)
    parser.add_argument("--interactive", "-i", action="store_true", help="a story REPL")
    parser.add_argument(
        "--instruct", action="store_true",
        help="build TinyStories-Instruct prompts from --features/--words/--summary (asked for in --interactive)",
    )
    parser.add_argument("--features", default="", help="instruct: e.g. 'Dialogue, Twist'")
    parser.add_argument("--words", default="", help="instruct: words the story should use, e.g. 'dog, ball, happy'")
    parser.add_argument("--summary", default="", help="instruct: what the story is about")
    parser.add_argument("--verbose", "-v", action="store_true", help="print speed and memory after each story")
    return parser


def refuse_ignored_flags(args) -> None:
    """Flags that would have no effect with the others given are refused, not silently ignored."""
    fields = [f"--{name}" for name in ("features", "words", "summary") if getattr(args, name)]
    if args.interactive and (args.prompt or fields):
        given = "--prompt" if args.prompt else fields[0]
        raise UserError(f"--interactive asks for each prompt{' and its instruct fields' * args.instruct} itself: "
                        f"drop {given}")
    if fields and not args.instruct:
        raise UserError(f"{fields[0]} goes into a TinyStories-Instruct prompt: add --instruct")


@cli
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.num_samples < 1:
        raise UserError("--max-tokens and --num-samples must be at least 1")
    refuse_ignored_flags(args)
    try:
        sampler = make_sampler(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.seed is not None:
        mx.random.seed(args.seed)
    model = load_for_inference(args.model, *model_flags(args))
    if args.interactive:
        defaults = {k: getattr(args, k) for k in ("temp", "max_tokens", "top_p", "min_p")}
        interactive(model, args, defaults)
        return
    # Prompts are bytes: standard input is read as it is (not decoded, so invalid UTF-8 under a strict
    # locale is no error), and a command-line argument gets back its original bytes.
    prompt = sys.stdin.buffer.read() if args.prompt == "-" else encode_prompt(args.prompt, story_start=False)
    if args.instruct:
        prompt = encode_prompt(instruct_prompt(args.features, args.words, args.summary), story_start=False) + prompt
    response = print_story(model, prompt, args, sampler, seed=args.seed)
    if args.verbose and response is not None:
        print(statistics(response), file=sys.stderr)


if __name__ == "__main__":
    main()
