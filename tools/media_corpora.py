"""Pictures and sound that nobody here made, from what Debian and PyPI packages hold: each command writes a
folder of PNG or WAV files that `--data FOLDER` reads (mlx_megabyte/media.py turns them into bytes).

    pip install scikit-learn && python tools/media_corpora.py digits --out digits
    sudo apt-get install oxygen-icon-theme && python tools/media_corpora.py icons --out icons
    sudo apt-get install espeak-ng && python tools/media_corpora.py speech --out speech --stories 200
    sudo apt-get install alsa-utils && python tools/media_corpora.py sounds --out sounds

- `digits`: scikit-learn's bundled copy of the test set of the UCI "Optical Recognition of Handwritten
  Digits" data (E. Alpaydin, C. Kaynak, 1998; 1,797 digits by 13 writers, 8x8 counts 0..16 of the ink in
  4x4 blocks), read from sklearn/datasets/data/digits.csv.gz without importing scikit-learn. scikit-learn
  is BSD-3-Clause (its COPYING); its description of the data (sklearn/datasets/descr/digits.rst) names the
  creator and the UCI page but no licence of their own. Each digit becomes an 8x8 grey PNG, v -> round(v *
  255 / 16), named `0000-label3.png` in file order.
- `icons`: the PNG icons of an installed icon theme at one size, found through the theme's index.theme
  and copied as the theme ships them (symlinks and files whose bytes another icon already has are
  skipped). The default, Debian's oxygen-icon-theme 5.103 (KDE's Oxygen, LGPL-3+ by
  /usr/share/doc/oxygen-icon-theme/copyright), has the most distinct PNGs: 1,160 at 16x16, 1,206 at
  22x22, 1,204 at 32x32, 1,139 at 48x48, 587 at 64x64. Others: Adwaita (adwaita-icon-theme 43,
  CC-BY-SA-3.0 or LGPL-3: 603 at 16x16, 602 at 32x32), gnome (gnome-icon-theme 3.12, GPL-2+: 365, 361),
  Tango (tango-icon-theme 0.8.90, public domain: 214, 214).
- `speech`: "spoken TinyStories": the first N stories of the built-in corpus (mlx_megabyte/stories/,
  seed 0, this project's own text) read aloud by espeak-ng, one 22,050 Hz 16-bit mono WAV a story named
  00000.wav ... espeak-ng is GPL-3.0+ (/usr/share/doc/espeak-ng-data/copyright, its README); neither
  says anything about the licence of the speech it synthesises, so that question is not answered here.
  The voice is formant synthesis: clean, regular and robotic, far easier than recorded speech.
- `sounds`: the recorded voice prompts ("Front Center", ...) and the noise clip that alsa-utils ships in
  /usr/share/sounds/alsa for speaker tests, 9 WAVs of 48 kHz 16-bit mono, 13 s in all, copied as they
  are. /usr/share/doc/alsa-utils/copyright gives no separate entry for them: the package's GPL-2.

Every file is written atomically; running again overwrites the files of the same names (and leaves
others in the folder alone).
"""

from __future__ import annotations

import concurrent.futures
import configparser
import gzip
import hashlib
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_megabyte import cli, media, stories  # noqa: E402
from mlx_megabyte.errors import UserError  # noqa: E402
from mlx_megabyte.files import atomic_path  # noqa: E402

DIGIT_LAYOUT = media.ImageLayout(8, 8, "L")
DIGIT_MAX = 16  # the digits count the ink of 4x4 blocks: 0..16
ICON_ROOT = Path("/usr/share/icons")
ICON_PACKAGES = {
    "oxygen": "oxygen-icon-theme",
    "Adwaita": "adwaita-icon-theme",
    "gnome": "gnome-icon-theme",
    "Tango": "tango-icon-theme",
}
DEFAULT_THEME = "oxygen"
DEFAULT_ICON_SIZE = 16
DEFAULT_VOICE = "en-us"
STORY_SEED = 0  # the seed of the built-in corpus's training stories (data.py)
SOUND_PACKAGE = "alsa-utils"


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path, suffix=path.suffix) as temporary:
        Path(temporary).write_bytes(data)


# ---------------------------------------------------------------------------------------------- digits


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 64) values 0..16 and (1797,) labels, read from the CSV it ships
    (importing sklearn would take seconds and pull in scipy for one small file)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("scikit-learn is not installed: pip install scikit-learn")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            break
    else:
        raise UserError(f"no datasets/data/digits.csv.gz in the scikit-learn at {spec.origin}")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    return table[:, :-1], table[:, -1]


def digit_bytes(values: np.ndarray) -> bytes:
    """A digit's 64 counts 0..16 as grey bytes: round(v * 255 / 16), halves up (only v = 8 is a half)."""
    return ((np.asarray(values) * 255 + DIGIT_MAX // 2) // DIGIT_MAX).astype(np.uint8).tobytes()


def digits(out: Path) -> str:
    values, labels = sklearn_digits()
    for i, (row, label) in enumerate(zip(values, labels)):
        media.write_png(out / f"{i:04d}-label{label}.png", [digit_bytes(row)], DIGIT_LAYOUT)
    return f"{out}: {len(labels):,} 8x8 grey PNGs of handwritten digits (scikit-learn's copy of UCI optdigits)"


# ----------------------------------------------------------------------------------------------- icons


def theme_folders(theme: Path, size: int) -> list[Path]:
    """The folders of an icon theme that hold its icons at `size` (scale 1), by its index.theme: themes
    lay their folders out differently (Adwaita 16x16/apps, oxygen base/16x16/apps)."""
    index = configparser.ConfigParser(interpolation=None, strict=False)
    index.optionxform = str  # keys are case-sensitive in the icon theme specification
    try:
        index.read(theme / "index.theme", encoding="utf-8")
        listed = index.get("Icon Theme", "Directories", fallback="")
    except configparser.Error as error:
        raise UserError(f"{theme / 'index.theme'}: not a readable icon theme index ({error})") from None
    found = []
    for name in filter(None, (part.strip() for part in listed.split(","))):
        if not index.has_section(name):
            continue
        section = index[name]
        if section.get("Size", "").strip() == str(size) and section.get("Scale", "1").strip() == "1":
            found.append(theme / name)
    return found


def theme_icons(name: str, size: int) -> list[Path]:
    """The distinct PNG files of an installed theme at `size`: no symlinks, no second copy of the same
    bytes, in path order."""
    theme = ICON_ROOT / name
    if not (theme / "index.theme").is_file():
        package = ICON_PACKAGES.get(name)
        installed = sorted(p.name for p in ICON_ROOT.glob("*") if (p / "index.theme").is_file())
        hint = f"sudo apt-get install {package}" if package else "apt-cache search icon-theme lists Debian's"
        raise UserError(f"no icon theme {name} in {ICON_ROOT}: {hint} (installed: {', '.join(installed) or 'none'})")
    seen, icons = set(), []
    for folder in theme_folders(theme, size):
        for path in sorted(folder.glob("*.png")):
            if path.is_symlink() or not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).digest()
            if digest not in seen:
                seen.add(digest)
                icons.append(path)
    return icons


def icons(out: Path, name: str, size: int) -> str:
    found = theme_icons(name, size)
    if not found:
        raise UserError(f"the icon theme {name} has no PNG icons at {size}x{size}")
    theme = ICON_ROOT / name
    for path in found:  # base/16x16/apps/kate.png -> base-16x16-apps-kate.png: names stay unique and readable
        write_bytes(out / "-".join(path.relative_to(theme).parts), path.read_bytes())
    return f"{out}: {len(found):,} PNG icons of {name} at {size}x{size}"


# ---------------------------------------------------------------------------------------------- speech


def speak(text: str, path: Path, voice: str) -> float:
    """Write `text` spoken by espeak-ng to the WAV `path`; its length in seconds."""
    with atomic_path(path, suffix=".wav") as temporary:
        done = subprocess.run(
            ["espeak-ng", "-v", voice, "--stdin", "-w", temporary], input=text, text=True, capture_output=True
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
            raise UserError(f"espeak-ng could not speak {path.name} ({reason})")
        with wave.open(temporary, "rb") as w:
            return w.getnframes() / w.getframerate()


def speech(out: Path, n: int, voice: str, jobs: int) -> str:
    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng is not installed: sudo apt-get install espeak-ng")
    texts = list(itertools.islice(stories.documents(STORY_SEED, 1 << 62), n))
    columns = (
        TextColumn("speaking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    seconds = 0.0
    # espeak-ng is single-threaded: one process a core
    with Progress(*columns, transient=True) as progress, concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("speak", total=len(texts))
        futures = [pool.submit(speak, text, out / f"{i:05d}.wav", voice) for i, text in enumerate(texts)]
        try:
            for future in concurrent.futures.as_completed(futures):
                seconds += future.result()
                progress.advance(task)
        finally:
            pool.shutdown(cancel_futures=True)  # after an error or Ctrl-C, start no more
    return f"{out}: {len(texts):,} spoken stories (espeak-ng, voice {voice}), {seconds / 60:.1f} minutes of speech"


# ---------------------------------------------------------------------------------------------- sounds


def package_files(package: str) -> list[Path]:
    """What a Debian package installed (dpkg -L)."""
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(
            "dpkg is not here: these sounds come from Debian packages (a Debian or Ubuntu machine)"
        ) from None
    if listed.returncode != 0:
        raise UserError(f"the Debian package {package} is not installed: sudo apt-get install {package}")
    return [Path(line) for line in listed.stdout.splitlines()]


def sounds(out: Path) -> str:
    found = sorted(
        p
        for p in package_files(SOUND_PACKAGE)
        if p.suffix == ".wav" and "/sounds/" in str(p) and p.is_file() and not p.is_symlink()
    )
    if not found:
        raise UserError(f"{SOUND_PACKAGE} installed no WAV files under /usr/share/sounds")
    for path in found:
        write_bytes(out / path.name, path.read_bytes())
    return f"{out}: {len(found)} recorded WAVs of {SOUND_PACKAGE} ({', '.join(p.stem for p in found)})"


@cli.cli
def main(argv=None):
    parser = cli.parser("tools/media_corpora.py", __doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str):
        sub = commands.add_parser(name, help=help, description=help, formatter_class=cli.HelpFormatter)
        sub.add_argument("--out", required=True, help="the folder to write the files to")
        return sub

    command("digits", "scikit-learn's 1,797 handwritten digits as 8x8 grey PNGs")
    sub = command("icons", "the PNG icons of an installed Debian icon theme at one size")
    sub.add_argument("--theme", default=DEFAULT_THEME, help="the theme's folder name in /usr/share/icons")
    sub.add_argument("--size", type=cli.number(int, 1), default=DEFAULT_ICON_SIZE, help="icon size in pixels")
    sub = command("speech", "the first stories of the built-in corpus, spoken by espeak-ng")
    sub.add_argument("--stories", type=cli.number(int, 1), required=True, help="how many stories")
    sub.add_argument("--voice", default=DEFAULT_VOICE, help="an espeak-ng voice (espeak-ng --voices lists them)")
    sub.add_argument("--jobs", type=cli.number(int, 1), default=os.cpu_count() or 1, help="espeak-ng processes at once")
    command("sounds", f"the recorded WAVs that {SOUND_PACKAGE} ships")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.command == "digits":
        print(digits(out))
    elif args.command == "icons":
        print(icons(out, args.theme, args.size))
    elif args.command == "speech":
        print(speech(out, args.stories, args.voice, args.jobs))
    else:
        print(sounds(out))


if __name__ == "__main__":
    main()
