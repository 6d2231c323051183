"""Write the copy-task corpus of the instruct arms' copy probe: documents of twelve random lower-case
words (3-7 letters), a full stop, then the same words again; 60,000 for training, 500 for validation.

A model that copies predicts the second half from the first, so its validation bits per byte fall from
the letters' entropy (about 4.3 with the spaces) towards half of it; one that does not stays put. With
--aligned, each half is 64 bytes (63 random letters or spaces and a full stop), so the second half sits
exactly 8 MEGABYTE patches after the first: the same bytes in the same places of their patches.

    python weights/compare/instruct-arms/copy_task.py OUT_DIR [--aligned]
"""

import argparse
import random
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def document(rng: random.Random, aligned: bool) -> str:
    if aligned:
        half = "".join(rng.choice(LETTERS + " ") for _ in range(63)) + "."
        return half + half
    words = " ".join("".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 7))) for _ in range(12))
    return words + ". " + words + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--aligned", action="store_true")
    args = parser.parse_args()
    rng = random.Random(1 if args.aligned else 0)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "64" if args.aligned else ""
    for name, count in (("train", 60_000), ("val", 500)):
        # joined by 0x03, which --data (one text file, one document) replaces by 0x1A: each window of
        # training sees a few whole documents, a separator byte between them, wherever it starts
        (args.out / f"{name}{suffix}.txt").write_text("\x03".join(document(rng, args.aligned) for _ in range(count)))


if __name__ == "__main__":
    main()
