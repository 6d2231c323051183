"""The terminal side of generation: stories streamed to a terminal, and the story REPL
(`python -m mlx_megabyte.generate --interactive`). The engine it drives is generation.py, the command
line generate.py."""

from __future__ import annotations

import signal
import sys

import mlx.core as mx

from .cli import SAMPLING
from .generation import GenerationResponse, stream_generate
from .guide import guide_for_prompt
from .sampling import make_distribution, make_sampler
from .settings import parse
from .speculative import Speculator
from .text import encode_prompt, instruct_prompt


def print_story(
    model, prompt, args, sampler, out=None, seed=None, prompt_cache=None, speculation=None, guide=None
) -> GenerationResponse | None:
    """Stream one or more stories to `out` (standard output); return the last response (for statistics).
    `prompt_cache`: a prompt_cache.PromptCache to start from (generate --prompt-cache-file); `speculation`:
    a speculative.Speculator (generate --draft-model); `guide`: a guide.WordGuide (generate --guide-strength)."""
    out = out or sys.stdout
    last = None
    shown = encode_prompt(prompt, story_start=False).decode("utf-8", "replace")  # printable under any locale
    if args.num_samples == 1:
        out.write(shown)
        out.flush()
    texts = [""] * args.num_samples
    stories = stream_generate(
        model,
        prompt,
        args.max_tokens,
        sampler,
        tuple(args.stop),
        args.num_samples,
        seed=seed,
        prompt_cache=prompt_cache,
        speculation=speculation,
        guide=guide,
    )
    for last in stories:
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


def statistics(response: GenerationResponse, speculation: Speculator | None = None) -> str:
    drafted = ""
    if speculation is not None:
        stats = speculation.stats
        drafted = (
            f", draft: {stats.accepted} of {stats.proposed} proposed bytes accepted "
            f"({stats.acceptance_rate:.0%}) in {stats.rounds} checks"
        )
    return (
        f"[{response.bytes_generated} bytes, prompt {response.prompt_bytes} bytes in "
        f"{response.prompt_seconds:.2f} s, {response.bytes_per_second:.1f} bytes/s, "
        f"peak memory {response.peak_memory_gb:.2f} GB, stop: {response.finish_reason}{drafted}]"
    )


def speculator(args) -> Speculator | None:
    """The Speculator for one story with the sampling settings `args` holds now, when generate loaded a
    --draft-model (args.draft); None otherwise."""
    draft = getattr(args, "draft", None)
    if draft is None:
        return None
    distribution = make_distribution(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
    return Speculator(draft, distribution, args.num_draft)


# The REPL's commands for sampling settings: /command VALUE sets the SamplingSettings field, checked as
# its flag is (command -> field, the value's name in /help, and help where it differs from the flag's).
COMMANDS = {
    "temp": ("temp", "T", None),
    "length": ("max_tokens", "N", "most bytes per story"),
    "top-p": ("top_p", "P", None),
    "min-p": ("min_p", "M", None),
    "top-k": ("top_k", "K", None),
    "seed": ("seed", "S", "reseed the sampler"),
    "guide": ("guide_strength", "S", "guided decoding's strength, to the prompt's Words (0 = off)"),
}


def _help() -> str:
    lines = ["Type the beginning of a story and press Enter; an empty line starts from nothing.", "Commands:"]
    for command, (name, metavar, text) in COMMANDS.items():
        lines.append(f"  {f'/{command} {metavar}':<12}{text or SAMPLING[name].metadata['help']}")
    lines += [f"  {'/reset':<12}default settings", f"  {'/help':<12}this text", f"  {'/quit':<12}leave (or Ctrl-D)"]
    return "\n".join([*lines, "Ctrl-C stops the story being written."])


HELP = _help()


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
        speculation = speculator(args)
        guide = guide_for_prompt(prompt, args.guide_strength, args.guide_words)
        if speculation is not None and guide is not None:  # the draft's check does not see the guide's bonus
            print("guided decoding and --draft-model do not go together: /guide 0 to write with the draft")
            continue
        try:
            response = print_story(model, prompt, args, sampler, speculation=speculation, guide=guide)
        except KeyboardInterrupt:
            print("\n[stopped]")
            continue
        if response is not None:
            print(statistics(response, speculation))


def _command(line, args, defaults) -> bool:
    """Apply a REPL command; False means quit."""
    name, _, value = line[1:].partition(" ")
    try:
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            print(HELP)
        elif name == "reset":
            for key, default in defaults.items():
                setattr(args, key, default)
            print("settings reset")
        elif name in COMMANDS:
            attribute = COMMANDS[name][0]
            # the flag's own check, in its words: nothing changes if it fails
            checked = parse(SAMPLING[attribute].metadata, value.strip())
            if attribute == "seed":
                mx.random.seed(checked)
            else:
                setattr(args, attribute, checked)
            print(f"{name} {checked}")
        else:
            print(f"unknown command /{name}; /help lists them")
    except ValueError as error:
        print(f"invalid value: {error}")
    return True


def resettable(args) -> dict:
    """The settings /reset restores: those the commands change, as the command line gave them."""
    return {name: getattr(args, name) for name, _, _ in COMMANDS.values() if name != "seed"}
