"""Every shell command in README.md and docs/*.md runs, so no page can drift from the code.

The fenced ```bash, ```sh and ```console blocks are split into commands (backslash continuations
joined, `for ... done` loops and here-documents kept whole, comments skipped) and each runs with bash
in one shared working directory, in page order, with small budgets: the rewrite rules below shrink
--iters, batches, byte counts and clients so that a command meant for hours runs in seconds, and
compare.py's sweeps only --dry-run (tests/test_compare.py trains through compare itself). The pages
name models trained for hours (weights/40m-tinystories, weights/converted): a tiny model trained once
stands in under those names, and small made-up corpora stand in for the ones tools/corpora.py and
tools/media_corpora.py build from Debian packages CI does not install.

A command that cannot run here carries, on the line right above it in the page, the marker
`# not run in CI: <reason>` (the hub, a GPU, several machines, root, an install); a command that .ci/run
runs verbatim (the README's set-up commands) is run there. Every other command must exit 0.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
MARK = re.compile(r"^#\s*not run in CI:(.*)$")
SHELLS = ("bash", "sh", "console")
STDIN = "/length 16\nOnce upon a time\n"  # what an interactive command reads: a story start, then EOF
TIMEOUT = 180  # per command: only catches a hang


@dataclass
class Command:
    page: str
    line: int
    text: str
    reason: str | None  # why it is not run here; None: it runs


def blocks(path: Path):
    """(first line number, language, lines) of every fenced block."""
    lines, found, i = path.read_text().split("\n"), [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            found.append((i + 2, m.group(1), lines[i + 1 : j]))
            i = j
        i += 1
    return found


def _command_end(lines: list[str], i: int) -> int:
    """The index after the command starting at lines[i]: continuations, loops and here-documents."""
    first = lines[i]
    heredoc = re.search(r"<<-?\s*'?(\w+)'?", first)
    if heredoc:
        j = i + 1
        while j < len(lines) and lines[j].strip() != heredoc.group(1):
            j += 1
        return j + 1
    if re.match(r"^(for|while|until)\b", first):
        j = i + 1
        while j < len(lines) and not re.match(r"^done\b", lines[j]):
            j += 1
        return j + 1
    j = i
    while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
        j += 1
    return j + 1


def commands(path: Path) -> list[Command]:
    found = []
    for start, language, lines in blocks(path):
        if language not in SHELLS:
            continue
        if language == "console":  # prompts start with "$ "; the rest is output
            lines = [line[2:] if line.startswith("$ ") else "" for line in lines]
        reason, i = None, 0
        while i < len(lines):
            line = lines[i]
            mark = MARK.match(line.strip())
            if mark:
                reason = mark.group(1).strip()
                i += 1
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                i += 1
                continue
            end = _command_end(lines, i)
            text = "\n".join(lines[i:end])
            text = re.sub(r"\\\n\s*", "", text) if "<<" not in text else text
            found.append(Command(os.path.relpath(path, ROOT), start + i, text, reason))
            reason, i = None, end
    return found


# --- the rewrite rules: (program, flags replaced by a small value, flags added after the program) ---

TRAIN_ADD = "--iters 2 --batch-size 2 --eval-batches 1 --steps-per-sample 0"
RULES = [
    (
        r"python -m mlx_megabyte\.train",
        {
            "--iters": "2",
            "--batch-size": "2",
            "--time-budget": "5",
            "--steps-per-eval": "2",
            "--builtin-mb": "1",
            "--image-size": "8x8",
            "--max-seq-len": None,
        },
        TRAIN_ADD,
    ),
    (
        r"python -m mlx_megabyte\.generate",
        {
            "--max-tokens": "16",
            "-n": "2",
            "--num-samples": "2",
            "--seconds": "0.01",
            "--prompt-seconds": "0.01",
            "--rows": "4",
        },
        "--max-tokens 16",
    ),
    (r"python -m mlx_megabyte\.evaluate", {"--max-bytes": "2048", "--prompts": "2", "--max-tokens": "16"}, ""),
    (r"python tools/compare\.py", {}, "--dry-run"),
    (
        r"python tools/load_test\.py",
        {"--clients": "1,2", "--rounds": "1", "--max-tokens": "16"},
        "--rounds 1 --max-tokens 16",
    ),
]


def _shrink(segment: str) -> str:
    """One simple command with its budgets made small."""
    for program, small, add in RULES:
        m = re.search(program, segment)
        if not m:
            continue
        for flag, value in small.items():
            pattern = rf"(?<!\S){re.escape(flag)}(\s+|=)(\S+)"
            if value is None:  # the flag goes: the stand-in pictures and sounds are small (8x8, 0.1 s)
                segment = re.sub(pattern, "", segment)
            else:
                segment = re.sub(pattern, lambda f, v=value: f"{flag} {v}", segment)
        if "evaluate" in program:
            add = "--prompts 2 --max-tokens 16" if "--instruct" in segment else "--max-bytes 2048"
        if "train" in program and re.search(r"--data\s+builtin", segment):
            add += " --builtin-mb 1"
        if add:
            segment = segment[: m.end()] + " " + add + segment[m.end() :]
    return segment


def rewrite(text: str, variables: dict[str, str], port: int) -> str:
    for name, value in variables.items():
        text = re.sub(rf"\$\{{{name}\}}|\${name}\b", lambda _: value, text)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    text = text.replace("python -m mlx_megabyte.server", f"python -m mlx_megabyte.server --port {port}")
    text = re.sub(r'"max_tokens": \d+', '"max_tokens": 16', text)
    if text.startswith("curl "):
        text = "curl --fail --max-time 120 " + text[5:]
    if "tools/load_test.py" in text:
        text += f" --url http://127.0.0.1:{port}"
    parts = re.split(r"(&&|\|\||;|\n|\|)", text)
    return "".join(part if i % 2 else _shrink(part) for i, part in enumerate(parts))


# --- the working directory: the repository's tools and weights, stand-in models and corpora ---


def _write_png(path: Path, pixels: np.ndarray):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_wav(path: Path, seconds: float, rate: int = 22050, pitch: float = 220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * pitch * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def _corpora(work: Path):
    rng = np.random.default_rng(0)
    # Enough files that the held-out 5% fill one window of the small preset (1,024 bytes).
    for i in range(400):  # tools/media_corpora.py digits: 8x8 grey PNGs named by label
        _write_png(work / "digits" / f"{i:04d}-label{i % 10}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    names = [f"base-32x32-icon-{i:03d}.png" for i in range(159)] + ["base-32x32-status-mail-attachment.png"]
    for name in names:  # icons at 32x32 RGB
        _write_png(work / "icons32" / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for i in range(60):  # spoken stories: short tones stand in
        _write_wav(work / "speech" / f"{i:05d}.wav", 0.1, pitch=200.0 + 10 * i)
    fortunes = [f"Fortune {i}: a penny saved is a penny earned, said fortune {i}." for i in range(400)]
    (work / "fortunes.txt").write_text("\n<|endoftext|>\n".join(fortunes))
    zh = [f"第{i}首：床前明月光，疑是地上霜。举头望明月，低头思故乡。" for i in range(400)]
    (work / "fortunes-zh.txt").write_text("\n<|endoftext|>\n".join(zh))
    (work / "held_out.txt").write_text("Once upon a time there was a little cat. She liked to play.\n")
    (work / "notes.txt").write_text("Once upon a time there was a dog.\n" * 200)
    (work / "start.txt").write_text("Once upon a time")


def _run(command: str, work: Path, env: dict, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command],
        cwd=work,
        env=env,
        input=STDIN,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


STAND_INS = ("weights/40m-tinystories", "weights/converted", "megabyte.pt")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    work = tmp_path_factory.mktemp("docs")
    (work / "tools").symlink_to(ROOT / "tools")
    weights = work / "weights"
    weights.mkdir()
    # Only what the repository ships (README, demo/, compare/): a user's own ignored weights directory (an
    # old weights/40m-tinystories, say) would be written into through its link, and hide the stand-ins.
    tracked = subprocess.run(["git", "ls-files", "weights"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in sorted({Path(line).parts[1] for line in tracked.stdout.splitlines()}):
        (weights / name).symlink_to(ROOT / "weights" / name)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        MLX_MEGABYTE_CACHE=str(tmp_path_factory.mktemp("cache")),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    _corpora(work)
    # One tiny model stands in for the models the pages train for hours.
    stand_in = "python -m mlx_megabyte.train --preset tiny --data builtin --builtin-mb 1 --quiet " + TRAIN_ADD
    out = _run(f"{stand_in} --save-path weights/40m-tinystories", work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    shutil.copytree(work / "weights/40m-tinystories/best", work / "weights/converted")
    # megabyte-pytorch weights of the shape convert.md's command expects: the global context its --config
    # gives, the constructor's default heads
    out = _run(f"{stand_in} --max-seq-len 256,8 --heads 8 --dim-head 64 --save-path runs/torch-like", work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run("python tools/convert_to_torch.py --mlx-path runs/torch-like/best --torch-path megabyte.pt", work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    (work / "megabyte.config.json").unlink()  # convert_to_torch's own note: the page writes its own
    shutil.rmtree(work / "runs")
    return work, env


@pytest.fixture
def workdir(base, tmp_path, request):
    """A fresh copy of the base directory for each page; a stand-in the page makes itself is left out."""
    source, env = base
    work = tmp_path / "work"
    shutil.copytree(source, work, symlinks=True)
    text = request.node.callspec.params["page"].read_text()
    for stand_in in STAND_INS:
        if re.search(rf"--(mlx|save)-path {re.escape(stand_in)}(\s|$)", text):
            path = work / stand_in
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return work, env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(command: str, work: Path, env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        ["bash", "-c", "exec " + command.rstrip(" &")],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"{command}: the server exited: {server.stderr.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"{command}: the server did not answer /health within 120 s")


def _ci_commands() -> set[str]:
    """The lines of .ci/run, pip's -q (CI's quieter log) aside."""
    return {
        line.strip().replace("pip install -q ", "pip install ") for line in (ROOT / ".ci/run").read_text().splitlines()
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_of_the_page_runs(page, workdir):
    work, env = workdir
    port, variables, servers, failures, seen = _free_port(), {}, [], [], set()
    try:
        for command in commands(page):
            if command.reason is not None or command.text in _ci_commands() or command.text in seen:
                continue
            seen.add(command.text)
            assignment = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", command.text)
            if assignment:
                variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2)))
                continue
            text = rewrite(command.text, variables, port)
            if "mlx_megabyte.server" in text:
                servers.append(_start_server(text, work, env, port))
                continue
            started = time.monotonic()
            out = _run(text, work, env)
            took = time.monotonic() - started
            print(f"{command.page}:{command.line} {took:.1f} s: {text}")
            if out.returncode:
                failures.append(
                    f"{command.page}:{command.line}: exit {out.returncode}: {text}\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
                )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    assert not failures, "\n\n".join(failures)


def test_every_command_not_run_says_why():
    marked = [c for page in PAGES for c in commands(page) if c.reason is not None]
    assert marked, "the marker was not found: the parser or the pages changed"
    assert all(c.reason for c in marked), [f"{c.page}:{c.line}" for c in marked if not c.reason]


def test_the_set_up_commands_are_what_ci_runs():
    setup = [c.text for c in commands(ROOT / "README.md")][:2]
    assert setup[1] == "python -m pytest -q"
    assert set(setup) <= _ci_commands(), setup


def test_readme_is_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"^#+ (.*)$", line)
        if m and not in_code:
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_parser_reads_continuations_loops_and_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n# a comment\npython -m x --a 1 \\\n    --b 2\n# not run in CI: needs a GPU\nrun-on-gpu\n"
        "for m in a b; do\n  echo $m\ndone\ncat > f <<'J'\n[1]\nJ\n```\n```python\nprint(1)\n```\n"
    )
    found = [(c.text, c.reason) for c in commands(page)]
    assert found == [
        ("python -m x --a 1 --b 2", None),
        ("run-on-gpu", "needs a GPU"),
        ("for m in a b; do\n  echo $m\ndone", None),
        ("cat > f <<'J'\n[1]\nJ", None),
    ]
    shrunk = rewrite("T=1 python -m mlx_megabyte.train --iters 3000 --data builtin && curl 127.0.0.1:8080/x", {}, 9)
    assert (
        shrunk
        == f"T=1 python -m mlx_megabyte.train {TRAIN_ADD} --builtin-mb 1 --iters 2 --data builtin && curl 127.0.0.1:9/x"
    )
