"""Cached generation reproduces the model's function; samplers; streaming text; the CLI and REPL."""

import os
import signal
import sys

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import MEGABYTE, ModelConfig, save
from mlx_megabyte.generation import generate, generate_step, stream_generate
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import EOT

from .helpers import ROOT, one_line_error, run

CONFIGS = {
    "2-stage": ModelConfig(num_tokens=256, dim=(32, 16), depth=(2, 2), max_seq_len=(8, 4), dim_head=8, heads=2),
    "2-stage-rel-pos-emb": ModelConfig(
        num_tokens=256, dim=(32, 16), depth=(2, 1), max_seq_len=(6, 5), dim_head=8, heads=2, rel_pos=True, pos_emb=True
    ),
    "3-stage": ModelConfig(
        num_tokens=256, dim=(32, 24, 16), depth=(1, 2, 1), max_seq_len=(4, 3, 2), dim_head=8, heads=2
    ),
    "3-stage-rel-pos-emb": ModelConfig(
        num_tokens=256,
        dim=(32, 24, 16),
        depth=(1, 1, 2),
        max_seq_len=(4, 2, 3),
        dim_head=8,
        heads=2,
        rel_pos=True,
        pos_emb=True,
    ),
}


def model_for(name, seed=0):
    mx.random.seed(seed)
    model = MEGABYTE(CONFIGS[name])
    model.eval()
    return model


def greedy_by_recompute(model, prompt, steps):
    """The reference: run the whole model on the whole sequence for every byte."""
    ids = prompt
    for _ in range(steps):
        logits = model(ids, include_start=True)[:, -1]
        ids = mx.concatenate([ids, mx.argmax(logits, axis=-1)[:, None].astype(ids.dtype)], axis=1)
    return ids[:, prompt.shape[1] :]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenBLAS threads: Linux CPUs only")
def test_decoding_runs_blas_on_one_thread_and_restores_the_count():
    from mlx_megabyte import cpu

    assert cpu.set_blas_threads(2)
    model = model_for("2-stage")
    steps = generate_step(model, mx.zeros((1, 3), dtype=mx.int32), make_sampler(0.0))
    seen = [cpu.blas_threads() for _, _ in zip(range(20), steps)]  # 20 bytes: the global stage steps too
    assert seen == [1] * 20
    steps.close()
    assert cpu.blas_threads() == 2
    want = greedy_by_recompute(model, mx.zeros((1, 3), dtype=mx.int32), 20)  # still the same function
    got = [
        int(y.item())
        for _, y in zip(range(20), generate_step(model, mx.zeros((1, 3), dtype=mx.int32), make_sampler(0.0)))
    ]
    assert got == want[0].tolist()


def scripted(values):
    """A sampler that ignores the logits and plays back `values`."""
    queue = list(values)

    def sample(logits):
        return mx.array([queue.pop(0) if queue else EOT] * logits.shape[0], dtype=mx.int32)

    return sample


def test_utf8_split_across_steps_and_invalid_bytes():
    model = model_for("2-stage")
    text = "é€😀".encode()  # 2-, 3- and 4-byte characters
    pieces = [r.text for r in stream_generate(model, "", 100, scripted(list(text) + [0xFF, ord("a"), EOT]))]
    assert "".join(pieces) == "é€😀\ufffda"
    assert pieces[:2] == ["", "é"]  # nothing is printed until a character is complete
    responses = list(stream_generate(model, "", 100, scripted([ord("x"), EOT])))
    assert responses[-1].finish_reason == "eot" and responses[-1].bytes_generated == 2


def test_stop_strings_and_length():
    model = model_for("2-stage")
    text = "The end. Once more".encode()
    out = generate(model, "", max_tokens=100, sampler=scripted(text), stop=("end.",))
    assert out == ["The "]
    responses = list(stream_generate(model, "", 5, scripted(text)))
    assert responses[-1].finish_reason == "length" and "".join(r.text for r in responses) == "The e"


def test_a_prompt_longer_than_the_context_keeps_its_end():
    model = model_for("2-stage")
    prompt = "x" * 100
    responses = list(stream_generate(model, prompt, 3, make_sampler(0.0)))
    assert "only its last 32 fit" in responses[0].notice
    assert responses[0].prompt_bytes == 32


def test_seed_reproduces_samples_and_batches_run_in_parallel():
    model = model_for("3-stage")
    mx.random.seed(7)
    a = generate(model, "Once", max_tokens=40, sampler=make_sampler(1.0), num_samples=3)
    mx.random.seed(7)
    b = generate(model, "Once", max_tokens=40, sampler=make_sampler(1.0), num_samples=3)
    assert a == b and len(a) == 3 and len(set(a)) > 1
    greedy = generate(model, "Once", max_tokens=20, sampler=make_sampler(0.0), num_samples=2)
    assert greedy[0] == greedy[1] == generate(model, "Once", max_tokens=20, sampler=make_sampler(0.0))[0]


def empirical(sampler, logits, draws=4000):
    mx.random.seed(0)
    counts = np.bincount(
        np.array(sampler(mx.broadcast_to(logits, (draws, logits.shape[-1])))), minlength=logits.shape[-1]
    )
    return counts / draws


def test_sampler_distributions():
    probs = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    logits = mx.array(np.log(probs))[None]
    assert np.argmax(probs) == make_sampler(0.0)(logits).item()

    def check(sampler, expected):
        expected = np.array(expected) / np.sum(expected)
        assert np.abs(empirical(sampler, logits) - expected).max() < 0.03, (empirical(sampler, logits), expected)

    check(make_sampler(1.0), probs)
    check(make_sampler(1.0, top_k=2), [0.5, 0.25, 0, 0, 0])
    check(make_sampler(1.0, top_p=0.8), [0.5, 0.25, 0.15, 0, 0])  # 0.5 + 0.25 < 0.8: the third is needed
    check(make_sampler(1.0, min_p=0.25), [0.5, 0.25, 0.15, 0, 0])  # >= 0.125
    tempered = probs**2
    check(make_sampler(0.5), tempered)
    # megabyte-pytorch's filter_thres=0.6 keeps int(0.4 * 5) = 2 logits
    check(make_sampler(1.0, filter_thres=0.6), [0.5, 0.25, 0, 0, 0])
    with pytest.raises(ValueError):
        make_sampler(-1.0)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    mx.random.seed(0)
    save(MEGABYTE(CONFIGS["2-stage"]), folder / "weights" / "demo")
    return folder


def test_cli_generates_reproducibly_and_reads_stdin(weights_dir):
    args = [
        "-m",
        "mlx_megabyte.generate",
        "--model",
        str(weights_dir / "weights" / "demo"),
        "--max-tokens",
        "30",
        "--seed",
        "3",
        "--temp",
        "1.0",
    ]
    first = run(*args, "--prompt", "Once upon")
    second = run(*args, "--prompt", "-", input="Once upon")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("Once upon")
    verbose = run(*args, "--prompt", "Hi", "--verbose", "--num-samples", "2")
    assert verbose.stdout.count("--- sample") == 2 and "bytes/s" in verbose.stderr


def test_cli_finds_the_newest_weights_and_fails_clearly(weights_dir, tmp_path):
    env = {"PYTHONPATH": str(ROOT)}
    found = _run_in(weights_dir, ["-m", "mlx_megabyte.generate", "--prompt", "A", "--max-tokens", "5"], env)
    assert found.returncode == 0, found.stderr
    one_line_error(_run_in(tmp_path, ["-m", "mlx_megabyte.generate"], env), "no weights under weights/")
    one_line_error(
        run("-m", "mlx_megabyte.generate", "--model", "someone/megabyte-demo", env={"HF_HOME": str(tmp_path / "hf")}),
        "cannot reach the Hugging Face hub",
        "someone/megabyte-demo",
    )
    one_line_error(
        run("-m", "mlx_megabyte.generate", "--model", str(weights_dir / "weights" / "demo"), "--top-p", "2"), "--top-p"
    )


def _run_in(cwd, args, env):
    import subprocess

    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def _ignore_and_block_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def test_repl_answers_and_exits_on_ctrl_d(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    # A random model that never ends a story, so that the Ctrl-C below always lands in a generation (a
    # random model's greedy story can reach an end-of-text byte within milliseconds: a race).
    mx.random.seed(0)
    model = MEGABYTE(CONFIGS["2-stage"])
    model.to_logits.bias = mx.where(mx.arange(model.to_logits.bias.shape[0]) == EOT, -1e4, model.to_logits.bias)
    save(model, tmp_path / "endless")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "mlx_megabyte.generate",
            "--interactive",
            "--model",
            str(tmp_path / "endless"),
            "--seed",
            "1",
            "--max-tokens",
            "40",
        ],
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=60,
        # started with Ctrl-C ignored and blocked, as a parent may leave it (a fresh-clone CI run did):
        # the REPL must still stop a story on Ctrl-C
        preexec_fn=_ignore_and_block_sigint,
    )
    child.expect("> ")
    child.sendline("/temp 0")
    child.expect("temp 0.0")
    child.expect("> ")
    child.sendline("Once upon a time")
    child.expect(r"Once upon a time.*\[\d+ bytes, prompt \d+ bytes")
    child.expect("> ")
    child.sendline("/length 100000")
    child.expect("> ")
    child.sendline("Long")
    child.expect("Long\r\n")  # the terminal's echo of the whole typed line (input() has returned)
    child.expect("Long")  # the story's prompt, which print_story writes before generating
    # and bytes of the story after it: Ctrl-C now lands in the generation, not in readline's input()
    # (a CI run under load once sent it too early)
    child.expect(r"[\s\S]{3}")
    child.sendintr()  # Ctrl-C stops the story, not the REPL
    child.expect(r"\[stopped\]")
    child.expect("> ")
    child.sendline("/bogus")
    child.expect("unknown command")
    child.expect("> ")
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_instruct_prompt_layout():
    from mlx_megabyte.text import instruct_prompt

    assert instruct_prompt("Dialogue", "cat, ball, red", "A cat plays.") == (
        "Features: Dialogue\nWords: cat, ball, red\nSummary: A cat plays.\nStory: \n\n"
    )
    assert instruct_prompt(words="dog") == "Words: dog\nStory: \n\n"


def test_instruct_repl_asks_for_the_fields(weights_dir):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "mlx_megabyte.generate",
            "--interactive",
            "--instruct",
            "--model",
            str(weights_dir / "weights" / "demo"),
            "--max-tokens",
            "20",
        ],
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=60,
    )
    child.expect("features> ")
    child.sendline("Dialogue")
    child.expect("words> ")
    child.sendline("cat, ball, red")
    child.expect("summary> ")
    child.sendline("A cat finds a ball.")
    child.expect(r"Features: Dialogue\r?\nWords: cat, ball, red\r?\nSummary: A cat finds a ball.\r?\nStory: ")
    child.expect(r"\[\d+ bytes")
    child.expect("features> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_bad_numbers_and_seeds_are_one_line(weights_dir):
    model = ["-m", "mlx_megabyte.generate", "--model", str(weights_dir / "weights" / "demo"), "--prompt", "A"]
    for flags, fragment in (
        (["--seed", "-1"], "--seed: must be at least 0"),
        (["--seed", str(2**64)], "--seed: must be at most 4294967295"),
        (["--temp", "nan"], "--temp: expected a finite number"),
        (["--min-p", "inf"], "--min-p: expected a finite number"),
        (["--filter-thres", "nan"], "--filter-thres: expected a finite number"),
        (["--max-tokens", "0"], "--max-tokens/-m: must be at least 1"),
    ):
        one_line_error(run(*model, *flags), fragment)
    with pytest.raises(ValueError, match="temp"):
        make_sampler(float("nan"))


def test_flags_that_would_be_ignored_are_refused(weights_dir):
    """The class of train's --preset with --init-from: instruct fields without --instruct, and a prompt
    or fields with --interactive (which asks for them), were silently ignored."""
    model = ["-m", "mlx_megabyte.generate", "--model", str(weights_dir / "weights" / "demo")]
    one_line_error(run(*model, "--features", "Dialogue", "--prompt", "A"), "--features", "add --instruct")
    one_line_error(run(*model, "--interactive", "--prompt", "A"), "--interactive", "drop --prompt")
    one_line_error(run(*model, "--interactive", "--instruct", "--words", "cat"), "--interactive", "drop --words")


def test_prompts_are_bytes_even_under_a_strict_utf8_locale(weights_dir):
    """Invalid UTF-8 on standard input or in an argument reaches the model as the same bytes, and is
    shown with U+FFFD, under PYTHONIOENCODING=utf-8:strict (as on macOS)."""
    import subprocess

    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    args = [
        sys.executable,
        "-m",
        "mlx_megabyte.generate",
        "--model",
        str(weights_dir / "weights" / "demo"),
        "--max-tokens",
        "20",
        "--temp",
        "0",
    ]
    prompt = b"Once \xff\xfe upon"
    piped = subprocess.run([*args, "--prompt", "-"], input=prompt, capture_output=True, env=env, cwd=ROOT, timeout=120)
    given = subprocess.run([*args, "--prompt", prompt], capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert piped.returncode == 0 and b"Traceback" not in piped.stderr, piped.stderr
    assert given.returncode == 0, given.stderr
    assert piped.stdout == given.stdout and piped.stdout.startswith("Once \ufffd\ufffd upon".encode())
    # the story the library writes greedily after exactly these bytes (not after their U+FFFD rendering)
    from mlx_megabyte import load

    model = load(weights_dir / "weights" / "demo")
    story = generate(model, prompt, max_tokens=20, sampler=make_sampler(0))[0]
    shown = "Once \ufffd\ufffd upon"
    assert piped.stdout.decode() == shown + story + "\n"
    assert story != generate(model, shown, max_tokens=20, sampler=make_sampler(0))[0]


def test_repl_refuses_bad_values_and_invalid_utf8_and_keeps_going(weights_dir):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "mlx_megabyte.generate",
            "--interactive",
            "--model",
            str(weights_dir / "weights" / "demo"),
            "--max-tokens",
            "10",
        ],
        cwd=str(ROOT),
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    child.expect(b"> ")
    for command, answer in (
        (b"/seed -1", b"invalid value: must be at least 0, got -1"),  # the words of --seed -1
        (b"/seed 99999999999999999999999", b"invalid value"),
        (b"/temp nan", b"invalid value: expected a finite number"),
        (b"/top-p 0", b"invalid value: must be above 0"),
        (b"/length -3", b"invalid value: must be at least 1"),
        (b"\xff\xfe story", b"not valid UTF-8"),
    ):
        child.sendline(command)
        child.expect(answer)
        child.expect(b"> ")
    child.sendline(b"/seed 7")
    child.expect(b"seed 7")
    child.expect(b"> ")
    child.sendline(b"Once")
    child.expect(rb"\[\d+ bytes")
    child.expect(b"> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_keyed_rows_sample_the_same_alone_or_batched():
    from mlx_megabyte.sampling import row_keys, split_keys

    logits = mx.array(np.random.default_rng(0).normal(size=(4, 256)).astype(np.float32))
    keys = row_keys(5, 4)
    for sampler in (make_sampler(1.0), make_sampler(0.7, top_p=0.9, min_p=0.05, top_k=40)):
        together = sampler(logits, keys).tolist()
        alone = [sampler(logits[i : i + 1], keys[i : i + 1]).item() for i in range(4)]
        assert together == alone
    following, now = split_keys(keys)
    assert following.shape == now.shape == (4, 2) and not mx.array_equal(following, now)


def test_keyed_sampling_has_the_right_distribution():
    from mlx_megabyte.sampling import row_keys

    probs = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    logits = mx.broadcast_to(mx.array(np.log(probs))[None], (4000, 5))
    drawn = np.array(make_sampler(1.0)(logits, row_keys(0, 4000)))
    assert np.abs(np.bincount(drawn, minlength=5) / 4000 - probs).max() < 0.03


def test_a_seed_gives_each_sample_its_own_stream():
    model = model_for("3-stage")
    sampler = make_sampler(1.0)
    three = generate(model, "Once", max_tokens=40, sampler=sampler, num_samples=3, seed=11)
    assert three == generate(model, "Once", max_tokens=40, sampler=sampler, num_samples=3, seed=11)
    assert len(set(three)) > 1
    mx.random.seed(0)  # the global random state plays no part
    assert three == generate(model, "Once", max_tokens=40, sampler=sampler, num_samples=3, seed=11)


def test_instruct_with_weights_never_tuned_on_instruct_data_is_refused(weights_dir, tmp_path):
    """The weights directory records what trained them (train writes trainer_state.json beside them):
    --instruct with a base model says so in one line, here and in the REPL; instruct-tuned weights,
    older records that name an instruct source, and weights with no record go ahead."""
    import json
    import shutil

    for name, record, refused in (
        ("base", {"data": "builtin", "instruct": False}, True),
        ("tuned", {"data": "builtin", "instruct": True}, False),
        ("older", {"data": "builtin-instruct"}, False),
        ("unknown", None, False),
    ):
        path = tmp_path / name
        shutil.copytree(weights_dir / "weights" / "demo", path)
        (path / "trainer_state.json").unlink(missing_ok=True)
        if record is not None:
            (path / "trainer_state.json").write_text(json.dumps({"step": 1, **record}))
        for flags in (["--words", "cat", "--prompt", ""], ["--interactive"]):
            result = run(
                "-m", "mlx_megabyte.generate", "--model", str(path), "--instruct", "--max-tokens", "5", *flags, input=""
            )
            if refused:
                one_line_error(result, "--instruct", "never on instruct records", "--mask-prompt")
            else:
                assert result.returncode == 0, result.stderr
        assert (
            run("-m", "mlx_megabyte.generate", "--model", str(path), "--prompt", "Once", "--max-tokens", "5").returncode
            == 0
        )  # a story start is fine for any model


def test_draft_model_flags_give_the_plain_greedy_story_and_bad_drafts_are_one_line(weights_dir, tmp_path):
    """--draft-model through the command line: prompt lookup first and a draft model of another shape
    where lookup has nothing (a 3-stage model: another shape and context), the same bytes as plain greedy;
    a draft of the other token layout and flags it cannot serve are one-line errors (a missing draft:
    test_speculative)."""
    demo = str(weights_dir / "weights" / "demo")
    mx.random.seed(1)
    save(MEGABYTE(CONFIGS["3-stage"]), tmp_path / "draft")
    mx.random.seed(1)
    save(MEGABYTE(CONFIGS["2-stage"].replace(shift_bytes=True, num_tokens=258)), tmp_path / "bytes")
    story = ["-m", "mlx_megabyte.generate", "--model", demo, "--prompt", "abcabcab", "--temp", "0", "-m", "60"]
    plain = run(*story)
    spec = run(*story, "--draft-model", f"lookup+{tmp_path / 'draft'}", "--num-draft", "3", "--verbose")
    assert plain.returncode == 0 and spec.returncode == 0, spec.stderr
    assert spec.stdout == plain.stdout
    assert "proposed bytes accepted" in spec.stderr
    one_line_error(run(*story, "--draft-model", str(tmp_path / "bytes")), "bytes token layout", "shift_bytes off")


def test_draft_model_flags_that_cannot_apply_are_refused():
    from mlx_megabyte.errors import UserError
    from mlx_megabyte.generate import build_parser, refuse_ignored_flags

    parser = build_parser()
    for flags, fragment in (
        (["--draft-model", "lookup", "-n", "2"], "drop --num-samples"),
        (["--draft-model", "lookup", "--save-prompt-cache", "x"], "drop --save-prompt-cache"),
        (["--num-draft", "3"], "add --draft-model"),
    ):
        with pytest.raises(UserError, match=fragment):
            refuse_ignored_flags(parser.parse_args(flags))
    with pytest.raises(SystemExit):
        parser.parse_args(["--num-draft", "0"])
