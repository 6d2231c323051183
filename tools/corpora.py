"""Real text for measurements, from Debian packages: one `.txt` with `<|endoftext|>` between documents,
as `--data` reads it (docs/training.md: What a local file becomes).

    sudo apt-get install fortunes fortunes-zh
    python tools/corpora.py fortunes --out fortunes.txt          # English
    python tools/corpora.py fortunes-zh --out fortunes-zh.txt    # Chinese, no spaces between words

- `fortunes`: the files of Debian's `fortunes` and `fortunes-min` packages (fortune-mod 1.99.1, BSD-3-Clause:
  quotes, verse, jokes, literature), every fortune a document (15,217, 2.76 MB).
- `fortunes-zh`: the files of `fortunes-zh` (GPL-3.0+: `chinese`, sayings and Debian lore; `song100`, Song
  ci poems; `tang300`, the 300 Tang poems), every fortune a document, the terminal colour codes
  (ESC [ ... m) that the package puts around titles and authors removed (5,672, 2.15 MB).

Files are found with `dpkg -L` (what each package installed), not a glob of /usr/share/games/fortunes,
which holds every fortune package's files: an English corpus taken by glob would hold the Chinese one
too once fortunes-zh is installed. Fortunes are separated by a line holding only `%`; their own line
breaks and spacing are kept, surrounding blank lines dropped. Nothing here is written by this project.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_megabyte import cli  # noqa: E402
from mlx_megabyte.data import MARKER  # noqa: E402
from mlx_megabyte.errors import UserError  # noqa: E402
from mlx_megabyte.files import write_text  # noqa: E402

CORPORA = {"fortunes": ("fortunes-min", "fortunes"), "fortunes-zh": ("fortunes-zh",)}
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)  # a line of its own; two in a row part nothing


def package_files(package: str) -> list[Path]:
    """The fortune files a Debian package installed (not the .dat indexes or .u8 links)."""
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(
            "dpkg is not here: these corpora come from Debian packages (a Debian or Ubuntu machine)"
        ) from None
    if listed.returncode != 0:
        raise UserError(f"the Debian package {package} is not installed: sudo apt-get install {package}")
    found = [Path(line) for line in listed.stdout.splitlines() if "/games/fortunes/" in line]
    return sorted(p for p in found if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))


def fortunes(path: Path) -> list[str]:
    """The fortunes of one file: split at lines holding only %, colour codes removed, blank ends dropped."""
    text = path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
    while _COLOUR.search(text):  # again: a code written inside another (ESC[; ESC[34;1m m) is left by one pass
        text = _COLOUR.sub("", text)
    return [d.strip("\n") for d in _SEPARATOR.split(text) if d.strip()]


def corpus(name: str) -> list[str]:
    return [d for package in CORPORA[name] for path in package_files(package) for d in fortunes(path)]


@cli.cli
def main(argv=None):
    parser = cli.parser("tools/corpora.py", __doc__)
    parser.add_argument("name", choices=tuple(CORPORA), help="which corpus")
    parser.add_argument("--out", required=True, help="the .txt file to write")
    args = parser.parse_args(argv)
    documents = corpus(args.name)
    text = f"\n{MARKER}\n".join(documents)
    write_text(Path(args.out), text)
    print(
        f"{args.out}: {len(documents):,} documents, {len(text.encode()):,} bytes ({args.name}: "
        f"{', '.join(CORPORA[args.name])})"
    )


if __name__ == "__main__":
    main()
