"""`python -m mlx_megabyte.generate`: write stories with a trained model, streamed as they are written.

    python -m mlx_megabyte.generate --prompt "Once upon a time"
    python -m mlx_megabyte.generate --interactive
    python -m mlx_megabyte.generate --model weights/digits --image digits.png -n 16     # pictures
    python -m mlx_megabyte.generate --model weights/speech --audio said.wav --seconds 3  # sound

Every prompt starts a new story: the end-of-text byte that separates stories in training is put in front
of it, so the model knows a story begins (unless the prompt has to be cut to fit the context). The
engine is generation.py, the story REPL repl.py.
"""

from __future__ import annotations

import sys

import mlx.core as mx

from . import prompt_cache
from .cli import (
    SAMPLING,
    add_model_flags,
    add_sampling_flags,
    cli,
    listed,
    model_flag,
    model_flags,
    number,
    setting_flag,
)
from .cli import parser as parser_for
from .errors import UserError
from .guide import guide_for_prompt
from .repl import interactive, print_story, resettable, speculator, statistics
from .sampling import make_sampler
from .settings import settings_of
from .speculative import SpeculationSettings, load_draft
from .text import encode_prompt, instruct_prompt
from .weights import check_instruct_tuned, load_for_inference, locate


def build_parser():
    parser = parser_for("python -m mlx_megabyte.generate", __doc__)
    model_flag(parser)
    parser.add_argument("--prompt", "-p", default="", help="the start of the story; '-' reads standard input")
    setting_flag(parser, SAMPLING["max_tokens"], "--max-tokens", "-m")
    add_sampling_flags(parser)
    setting_flag(parser, SAMPLING["filter_thres"])
    setting_flag(parser, SAMPLING["seed"])
    parser.add_argument(
        "--num-samples", "-n", type=number(int, 1, 1024), default=1, help="stories to generate in parallel"
    )
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    parser.add_argument(
        "--prompt-cache-file",
        metavar="FILE",
        help="start from the decoding state saved in FILE (by --save-prompt-cache) when --prompt begins with "
        "FILE's prompt, instead of reading that part again",
    )
    parser.add_argument(
        "--save-prompt-cache", metavar="FILE", help="write the decoding state after --prompt to FILE and exit"
    )
    for field in settings_of(SpeculationSettings).values():
        setting_flag(parser, field, metavar="PATH" if field.name == "draft_model" else "N")
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
    setting_flag(parser, SAMPLING["guide_strength"])
    parser.add_argument(
        "--guide-words",
        type=listed(),
        metavar="WORD[,WORD...]",
        help="the words --guide-strength guides to (default: the prompt's Words line, e.g. --instruct --words)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print speed and memory after each story")
    pictures = parser.add_argument_group("pictures and sound (a model trained on images or .wav files)")
    pictures.add_argument("--image", metavar="OUT.png", help="write image samples (--num-samples: a grid) to this PNG")
    pictures.add_argument("--audio", metavar="OUT.wav", help="write a sound sample to this WAV (16-bit PCM)")
    pictures.add_argument(
        "--complete", metavar="FILE", help="continue this image's top rows (--rows) or this clip (--prompt-seconds)"
    )
    pictures.add_argument(
        "--rows", type=number(int, 0), help="image rows of --complete kept as the prompt (default: half)"
    )
    pictures.add_argument(
        "--seconds", type=number(float, 0, 3600, low_open=True), default=2.0, help="seconds of sound to generate"
    )
    pictures.add_argument(
        "--prompt-seconds", type=number(float, 0, low_open=True), help="seconds of --complete kept (default: all)"
    )
    pictures.add_argument(
        "--scale", type=number(int, 1, 64), help="pixels a generated pixel covers in the PNG (default: up to 64 px)"
    )
    pictures.add_argument("--image-size", help="WxH, where the weights' training record has none")
    pictures.add_argument("--image-mode", choices=("RGB", "L"), help="RGB or L, where the record has none")
    pictures.add_argument(
        "--audio-rate", type=number(int, 1000, 48000), help="samples a second, where the record has none"
    )
    return parser


def media_flags(args) -> tuple[str | None, dict | None]:
    """Which medium --image / --audio asks for, and the layout its flags give (None: the weights')."""
    if args.image and args.audio:
        raise UserError("--image and --audio write one medium each: choose one")
    kind = "image" if args.image else "audio" if args.audio else None
    text_flags = [f for f in ("interactive", "instruct") if getattr(args, f)] + (["prompt"] if args.prompt else [])
    if kind and text_flags:
        raise UserError(f"--{kind} writes a file, not a story: drop --{text_flags[0]} (use --complete FILE)")
    media_only = [f for f in ("complete", "rows", "prompt_seconds", "scale", "image_size", "image_mode", "audio_rate")]
    stray = [f for f in media_only if getattr(args, f) is not None]
    if stray and not kind:
        raise UserError(f"--{stray[0].replace('_', '-')} is for --image or --audio: add one")
    if kind == "image" and (args.image_size or args.image_mode):
        from .media import ImageLayout

        try:
            return kind, ImageLayout.parse(args.image_size or "32x32", args.image_mode or "RGB").to_dict()
        except ValueError as error:
            raise UserError(f"--image-size/--image-mode: {error}") from None
    return kind, ({"rate": args.audio_rate} if kind == "audio" and args.audio_rate else None)


def write_media(model, path, args, kind: str, given: dict | None, sampler) -> None:
    """--image / --audio: generate, with a progress bar, and write the file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from . import media, media_samples

    layout = media_samples.media_layout(model, path, kind, given)
    if kind == "image":
        prompt = media_samples.image_prompt(layout, args.complete, args.rows)
        total = layout.size - len(prompt.data)
    else:
        prompt = media_samples.audio_prompt(layout, args.complete, args.prompt_seconds)
        total = max(1, int(args.seconds * layout.rate))
    columns = (TextColumn(f"generating {kind}"), BarColumn(), MofNCompleteColumn(), TextColumn("bytes"))
    with Progress(*columns, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(kind, total=total)
        tick = lambda n: bar.update(task, completed=n)  # noqa: E731
        if kind == "image":
            images = media_samples.image_samples(model, layout, prompt.data, args.num_samples, sampler, args.seed, tick)
        else:
            clip = media_samples.audio_sample(model, layout, prompt.data, args.seconds, sampler, args.seed, tick)
    if kind == "image":
        scale = args.scale or max(1, 64 // max(layout.width, layout.height))
        media.write_png(args.image, images, layout, scale=scale)
        print(f"wrote {args.image}: {len(images)} {layout.describe()}{prompt.what} (x{scale})")
    else:
        media.write_wav(args.audio, clip, layout)
        print(f"wrote {args.audio}: {len(clip) / layout.rate:.2f} s, {layout.describe()}{prompt.what}")


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
    cached = [f for f in ("--prompt-cache-file", "--save-prompt-cache") if getattr(args, f[2:].replace("-", "_"))]
    other = "--interactive" if args.interactive else "--image" if args.image else "--audio" if args.audio else None
    if cached and other:
        raise UserError(f"{cached[0]} is for a --prompt: drop {other}")
    if len(cached) == 2:
        raise UserError("--save-prompt-cache writes a prompt's state and --prompt-cache-file reads one: choose one")
    if args.draft_model:
        clash = (
            "--image"
            if args.image
            else "--audio"
            if args.audio
            else cached[0]
            if cached
            else "--num-samples"
            if args.num_samples > 1
            else None
        )
        if clash:
            raise UserError(f"--draft-model speeds up one story from its prompt alone: drop {clash}")
    elif args.num_draft != SpeculationSettings.num_draft:
        raise UserError("--num-draft is the number of bytes a --draft-model proposes: add --draft-model")
    if args.guide_strength and args.draft_model:
        raise UserError(
            "--guide-strength changes the sampler's distribution, which --draft-model's check does not see: choose one"
        )
    if args.guide_words and not args.guide_strength:
        raise UserError("--guide-words says which words --guide-strength guides to: add --guide-strength S (above 0)")
    media = "--image" if args.image else "--audio" if args.audio else None
    if args.guide_strength and (media or args.save_prompt_cache):
        raise UserError(f"--guide-strength guides a story: drop {media or '--save-prompt-cache'}")


def story_guide(prompt: bytes, args):
    """The guide.WordGuide for a prompt at --guide-strength (None when it is 0), or UserError when there
    are no words to guide to."""
    guide = guide_for_prompt(prompt, args.guide_strength, args.guide_words)
    if args.guide_strength and guide is None:
        raise UserError(
            "--guide-strength guides the story to its required words, and there are none: give --instruct "
            "--words, a prompt with a Words line, or --guide-words"
        )
    return guide


@cli
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.num_samples < 1:
        raise UserError("--max-tokens and --num-samples must be at least 1")
    kind, given = media_flags(args)
    refuse_ignored_flags(args)
    try:
        sampler = make_sampler(args.temp, args.top_p, args.min_p, args.top_k, args.filter_thres)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.seed is not None:
        mx.random.seed(args.seed)
    path = locate(args.model, instruct=args.instruct)
    if args.instruct:
        check_instruct_tuned(path)
    model = load_for_inference(str(path), *model_flags(args))
    args.draft = load_draft(args.draft_model, model, *model_flags(args)) if args.draft_model else None
    if kind:
        write_media(model, path, args, kind, given, sampler)
        return
    if args.interactive:
        interactive(model, args, resettable(args))
        return
    # Prompts are bytes: standard input is read as it is (not decoded, so invalid UTF-8 under a strict
    # locale is no error), and a command-line argument gets back its original bytes.
    prompt = sys.stdin.buffer.read() if args.prompt == "-" else encode_prompt(args.prompt, story_start=False)
    if args.instruct:
        prompt = encode_prompt(instruct_prompt(args.features, args.words, args.summary), story_start=False) + prompt
    if args.save_prompt_cache:
        print(prompt_cache.save_prompt(args.save_prompt_cache, model, prompt))
        return
    cache = prompt_cache.from_file(args.prompt_cache_file, model, prompt) if args.prompt_cache_file else None
    speculation = speculator(args)
    guide = story_guide(prompt, args)
    response = print_story(
        model, prompt, args, sampler, seed=args.seed, prompt_cache=cache, speculation=speculation, guide=guide
    )
    if args.verbose and response is not None:
        print(statistics(response, speculation), file=sys.stderr)


if __name__ == "__main__":
    main()
