"""`python -m mlx_megabyte.generate`: write stories with a trained model, streamed as they are written.

    python -m mlx_megabyte.generate --prompt "Once upon a time"
    python -m mlx_megabyte.generate --interactive

Every prompt starts a new story: the end-of-text byte that separates stories in training is put in front
of it, so the model knows a story begins (unless the prompt has to be cut to fit the context). The
engine is generation.py, the story REPL repl.py.
"""

from __future__ import annotations

import sys

import mlx.core as mx

from .cli import add_model_flags, add_sampling_flags, cli, model_flags, number, sampling_setting
from .cli import parser as parser_for
from .cli import seed as seed_type
from .errors import UserError
from .generation import DEFAULT_MAX_TOKENS
from .repl import interactive, print_story, statistics
from .sampling import make_sampler
from .text import encode_prompt, instruct_prompt
from .weights import check_instruct_tuned, load_for_inference, locate


def build_parser():
    parser = parser_for("python -m mlx_megabyte.generate", __doc__)
    parser.add_argument(
        "--model",
        help="a weights directory, a training run directory (its newest checkpoint), or a Hugging Face repo "
        "id; default: the newest weights under weights/",
    )
    parser.add_argument("--prompt", "-p", default="", help="the start of the story; '-' reads standard input")
    parser.add_argument(
        "--max-tokens",
        "-m",
        type=sampling_setting("max_tokens"),
        default=DEFAULT_MAX_TOKENS,
        help="most bytes to generate",
    )
    add_sampling_flags(parser)
    parser.add_argument(
        "--filter-thres",
        type=number(float, 0, 1, high_open=True),
        default=None,
        help="megabyte-pytorch's generate(filter_thres=...): top-k with k = (1 - thres) * vocab",
    )
    parser.add_argument(
        "--seed",
        type=seed_type,
        default=None,
        help="random seed for reproducible samples (the same story as the server's `seed` with the same settings)",
    )
    parser.add_argument(
        "--num-samples", "-n", type=number(int, 1, 1024), default=1, help="stories to generate in parallel"
    )
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    add_model_flags(parser)
    parser.add_argument("--interactive", "-i", action="store_true", help="a story REPL")
    parser.add_argument(
        "--instruct",
        action="store_true",
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
        raise UserError(
            f"--interactive asks for each prompt{' and its instruct fields' * args.instruct} itself: drop {given}"
        )
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
    path = locate(args.model)
    if args.instruct:
        check_instruct_tuned(path)
    model = load_for_inference(str(path), *model_flags(args))
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
