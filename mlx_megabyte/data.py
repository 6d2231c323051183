"""Data: sources (the Hugging Face hub, local files, the built-in corpus) -> one uint8 file -> batches.

Text is encoded once, nanoGPT-style: every document's UTF-8 bytes followed by the end-of-text byte, in a
flat `train.bin` / `val.bin` under a cache directory keyed by the source and `ENCODING_VERSION`. Training
memory-maps them and samples random windows, with no Python loop over bytes.

Documents are joined with the end-of-text byte (text.EOT, ASCII ETX), not 0: megabyte-pytorch's loss
ignores `pad_id` (0), and the model must learn where a story ends. Local files keep every byte they hold
(leading and trailing whitespace too) but two: inside a document 0x00 (pad_id: the loss would skip it) and
0x03 (it would end the document) become 0x1A (ASCII SUB, "substitute"), and encoding counts them; the
data line of `train` and `evaluate` says how many (`Encoding`).

That is the text layout. A model with `shift_bytes` reads the bytes layout (tokens.py): tokens are bytes
plus one in a uint16 stream, documents end with token 257, and nothing is substituted. Its local data may
be any files, one document each, of a *kind* (`KINDS`): text as above, `bytes` (a file's bytes as they
are), `image` (pixels in an ImageLayout, media.py) or `audio` (8 kHz mu-law samples, media.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from . import stories
from .errors import UserError
from .files import atomic_path, file_sha256, write_text
from .hub import hub_reachable
from .text import EOT, story_mask
from .tokens import LAYOUTS, TEXT, Layout

# 2: local files are keyed by a hash of their bytes, not their mtime. 3: local documents keep their
# whitespace, and 0x00 and 0x03 in documents become SUBSTITUTE instead of disappearing.
ENCODING_VERSION = 3
KINDS = ("text", "bytes", "image", "audio")  # what the files of --data are (--data-kind)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
AUDIO_SUFFIXES = (".wav",)
SUBSTITUTE = 0x1A  # ASCII SUB: what a byte that cannot stand in a document becomes
RESERVED = {0x00: "pad_id, which the loss ignores", EOT: "end of text, which would end the document"}
_SUBSTITUTED = bytes.maketrans(bytes(RESERVED), bytes([SUBSTITUTE]) * len(RESERVED))
MARKER = "<|endoftext|>"  # how TinyStories' text files separate stories
HUB_DATASETS = {"tinystories": "roneneldan/TinyStories", "tinystories-instruct": "roneneldan/TinyStoriesInstruct"}
BUILTIN = {"builtin": False, "builtin-instruct": True}  # name -> instruct records?
INSTRUCT_SOURCES = {"builtin-instruct", "tinystories-instruct"}
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
DEFAULT_CACHE = Path(os.environ.get("MLX_MEGABYTE_CACHE", Path.home() / ".cache" / "mlx-megabyte"))
_READ_CHUNK = 1 << 24
ABANDONED_AFTER = 600  # seconds; see _sweep_abandoned


@dataclass
class Encoding:
    """What encoding did to the documents of a source: how many, their bytes, and the reserved bytes in
    them that became SUBSTITUTE (kept in the cache's meta.json, said in the data line)."""

    documents: int = 0
    text_bytes: int = 0  # the documents' own bytes, without the end-of-text byte after each
    replaced: dict[int, int] = field(default_factory=lambda: dict.fromkeys(RESERVED, 0))
    layout: str = TEXT.name  # tokens.LAYOUTS: text substitutes the reserved bytes, bytes keeps them all

    def encode(self, document: str | bytes) -> np.ndarray:
        """A document's tokens: its bytes (a str as UTF-8; surrogate escapes give back undecodable input
        bytes, so a file's bytes come back as they were), in the text layout with the reserved bytes
        substituted and counted, in the bytes layout every one as it is (tokens.py)."""
        data = document.encode("utf-8", "surrogateescape") if isinstance(document, str) else bytes(document)
        if data:
            self.documents += 1
            self.text_bytes += len(data)
        if self.layout != TEXT.name:
            return LAYOUTS[self.layout].encode(data)
        for byte in RESERVED:
            self.replaced[byte] += data.count(byte)
        return np.frombuffer(data.translate(_SUBSTITUTED), np.uint8)

    def describe(self) -> str:
        if self.layout != TEXT.name:
            return (
                f"{self.documents:,} document{'s' * (self.documents != 1)} ({self.text_bytes:,} bytes) as tokens "
                f"byte + 1, each followed by the end-of-document token {LAYOUTS[self.layout].end}; every byte "
                "value kept"
            )
        text = (
            f"{self.documents:,} document{'s' * (self.documents != 1)} ({self.text_bytes:,} bytes), each "
            f"followed by the end-of-text byte 0x{EOT:02x}"
        )
        changed = [
            f"{n:,} byte{'s' * (n != 1)} 0x{byte:02x} ({RESERVED[byte]})" for byte, n in self.replaced.items() if n
        ]
        if not changed:
            return text + "; every byte of them as given"
        return text + f"; in them {' and '.join(changed)} replaced by 0x{SUBSTITUTE:02X}"

    def to_json(self) -> dict:
        return {
            "documents": self.documents,
            "text_bytes": self.text_bytes,
            "replaced": {f"0x{byte:02x}": n for byte, n in self.replaced.items()},
            "layout": self.layout,
        }

    @classmethod
    def from_json(cls, record: dict) -> Encoding:
        replaced = {int(name, 16): n for name, n in record["replaced"].items()}
        return cls(record["documents"], record["text_bytes"], replaced, record.get("layout", TEXT.name))


@dataclass
class Corpus:
    """Encoded training and validation bytes (memory-mapped), where they came from, and how they were
    encoded (per source: "train" is --data, whose tail is the validation split unless "val" is there)."""

    train: np.ndarray
    val: np.ndarray
    source: str
    directory: Path
    encodings: dict[str, tuple[str, Encoding]] = field(default_factory=dict)  # split -> (what, Encoding)
    layout: Layout = TEXT  # how the streams hold bytes (tokens.py)
    kind: str = "text"  # what the documents are (KINDS)
    media: dict | None = None  # the ImageLayout or AudioLayout (to_dict) that image and audio files became

    def describe(self) -> str:
        """What the bytes are, exactly: the data line of train and evaluate."""
        what = "; ".join(f"{what}: {encoding.describe()}" for what, encoding in self.encodings.values())
        return what if self.kind == "text" else f"{describe_kind(self.kind, self.media)}; {what}"

    def record(self) -> dict:
        """What training writes beside the weights about the data's kind, so that generate and evaluate
        read pictures and sound back in the layout they were trained in."""
        return {"data_kind": self.kind, **({self.kind: self.media} if self.media else {})}

    def story_mask(self, split: str) -> np.ndarray:
        """(len(split),) uint8, 1 on the story bytes of the split's instruct records (text.story_mask:
        after "Story:", with the end-of-text byte that closes each story), 0 elsewhere. Computed once and
        kept beside the split (`train.mask`), memory-mapped like it."""
        return self._kept_mask(split, "mask", story_mask)

    def first_use_mask(self, split: str) -> np.ndarray:
        """(len(split),) uint8, 1 on the bytes of each required word's first use in the stories of the
        split's instruct records (instruct.first_use_mask: what `train --words-weight` weighs), kept beside
        the split (`train.words.mask`) as the story mask is."""
        from .instruct import first_use_mask  # instruct reads records; data only needs this of it

        return self._kept_mask(split, "words.mask", first_use_mask)

    def _kept_mask(self, split: str, suffix: str, compute) -> np.ndarray:
        """compute(split's bytes) as uint8, written once beside the split (`{split}.{suffix}`, under the
        cache's lock, atomically) and memory-mapped."""
        stream = getattr(self, split)
        path = self.directory / f"{split}.{suffix}"
        with _exclusive(self.directory / ".lock"):
            if not path.is_file() or path.stat().st_size != len(stream):
                with atomic_path(path) as temporary:
                    compute(stream).astype(np.uint8).tofile(temporary)
        return np.memmap(path, dtype=np.uint8, mode="r")

    @property
    def key(self) -> str:
        """Which encoding of which bytes this is (its cache folder): a resumed run refuses another."""
        return self.directory.name

    @property
    def instruct(self) -> bool:
        """Whether the training bytes are instruct records (what `generate --instruct` asks a model to
        have learned): the named instruct sources, or local data with a "Story:" line in its first MiB."""
        if self.source in INSTRUCT_SOURCES:
            return True
        if self.source in BUILTIN or self.source in HUB_DATASETS or self.layout != TEXT or self.kind != "text":
            return False
        return bool(story_mask(self.train[: 1 << 20]).any())


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --- sources: each yields document strings ------------------------------------------------------------


def split_marked(lines: Iterator[str]) -> Iterator[str]:
    """Join lines into documents separated by `<|endoftext|>` (a line of its own or inside a line)."""
    pending = []
    for line in lines:
        while MARKER in line:
            before, line = line.split(MARKER, 1)
            pending.append(before)
            yield "\n".join(pending).strip()
            pending = []
        pending.append(line)
    tail = "\n".join(pending).strip()
    if tail:
        yield tail


def text_file_documents(path: Path) -> Iterator[str]:
    """A .txt file: stories separated by <|endoftext|>, or one plain document. Read in chunks; any bytes
    are accepted (a byte model needs no UTF-8), undecodable ones pass through unchanged, and so does
    whitespace: a marker takes with it only the line break just before and just after it (a marker on
    a line of its own), every other byte belongs to a document."""

    def chunks():
        with open(path, "rb") as f:
            while chunk := f.read(_READ_CHUNK):
                yield chunk

    buffer = b""
    marker = MARKER.encode()
    after_marker = False
    for chunk in chunks():
        buffer += chunk
        *complete, buffer = buffer.split(marker)
        for document in complete:
            yield decode(_without_line_break(document, after_marker, before_marker=True))
            after_marker = True
    yield decode(_without_line_break(buffer, after_marker, before_marker=False))


def _without_line_break(document: bytes, after_marker: bool, before_marker: bool) -> bytes:
    """A document without the one line break that separates it from a marker on either side."""
    if after_marker:
        document = document.removeprefix(b"\r\n") if document.startswith(b"\r\n") else document.removeprefix(b"\n")
    if before_marker:
        document = document.removesuffix(b"\r\n") if document.endswith(b"\r\n") else document.removesuffix(b"\n")
    return document


def jsonl_documents(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise UserError(f"{path}:{number}: not a JSON line ({error})") from None
            if not isinstance(record, dict) or ("text" not in record and "story" not in record):
                raise UserError(f"{path}:{number}: expected an object with a 'text' or 'story' string")
            text = record.get("text", record.get("story"))
            if text is None:  # a missing value, as in a parquet column: no document
                continue
            if not isinstance(text, str):
                raise UserError(f"{path}:{number}: 'text' holds a {type(text).__name__}, not a string")
            try:  # JSON can escape a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text holds
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise UserError(
                    f"{path}:{number}: the text holds a lone UTF-16 surrogate "
                    f"(\\u{ord(text[error.start]):04x}), which is not text"
                ) from None
            yield text


def parquet_documents(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        table = pq.ParquetFile(path)
    except Exception as error:
        raise UserError(f"{path} is not a readable parquet file ({error})") from None
    import pyarrow as pa

    schema = table.schema_arrow
    if "text" not in schema.names:
        raise UserError(f"{path} has no 'text' column (columns: {', '.join(schema.names)})")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise UserError(f"{path}: the 'text' column holds {kind}, not strings")
    for batch in table.iter_batches(columns=["text"], batch_size=8192):
        for text in batch.column(0).to_pylist():
            if text:  # nulls (missing values) and empty strings are no document
                yield text


# The files each kind reads, and what the others are told to use instead.
KIND_SUFFIXES = {"text": LOCAL_SUFFIXES, "image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES}
_EXPECTED = {"text": ".txt, .jsonl or .parquet", "image": "image files (PNG, JPEG, ...)", "audio": ".wav"}


def local_files(spec: str, kind: str = "text") -> list[Path]:
    """The files a --data PATH names: a file, a directory (searched recursively; for text, its .txt,
    .jsonl and .parquet files; for the other kinds every file but hidden ones) or a glob."""
    path = Path(spec).expanduser()
    suffixes = KIND_SUFFIXES.get(kind)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        if kind == "text":
            files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file())
        else:  # hidden files (.DS_Store, an editor's) are no pictures or sounds
            hidden = lambda p: any(part.startswith(".") for part in p.relative_to(path).parts)  # noqa: E731
            files = sorted(p for p in path.rglob("*") if p.is_file() and not hidden(p))
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"no such file, directory or glob match: {spec} (or use --data builtin)")
    unsupported = [str(p) for p in files if suffixes is not None and p.suffix.lower() not in suffixes]
    if unsupported:
        if kind == "text":
            raise UserError(f"unsupported file type: {unsupported[0]} (expected .txt, .jsonl or .parquet)")
        raise UserError(
            f"unsupported file type for --data-kind {kind}: {unsupported[0]} (expected {_EXPECTED[kind]}, "
            "or --data-kind bytes for files as they are)"
        )
    if not files:
        raise UserError(f"{spec} holds no {_EXPECTED.get(kind, 'files')}")
    return files


def detect_kind(spec: str) -> str:
    """The kind of a --data source by its files' suffixes: named sources and .txt/.jsonl/.parquet are
    text, all images image, all .wav audio, anything else (or a mixture) bytes."""
    if spec in BUILTIN or spec in HUB_DATASETS:
        return "text"
    suffixes = {p.suffix.lower() for p in local_files(spec, "bytes")}
    for kind in ("text", "image", "audio"):
        if suffixes <= set(KIND_SUFFIXES[kind]):
            return kind
    return "bytes"


def describe_kind(kind: str, media: dict | None) -> str:
    """A kind in words, with the layout pictures and sound become (the data line)."""
    if kind == "image":
        return f"images as {media_layout(kind, media).describe()}"
    if kind == "audio":
        return f"sound as {media_layout(kind, media).describe()}"
    return {"bytes": "files as they are, one document each", "text": "text"}[kind]


def media_layout(kind: str, media: dict | None):
    """The media.ImageLayout or media.AudioLayout a kind's record describes (defaults where None)."""
    from . import media as m  # numpy and the standard library; Pillow only when images are read

    return (m.ImageLayout if kind == "image" else m.AudioLayout).from_dict(media or {})


def local_documents(files: list[Path], kind: str = "text", media: dict | None = None) -> Iterator[str | bytes]:
    """The documents of local files: text as its readers say, every other kind one document a file
    (an image's pixels or a sound's samples in the kind's layout, media.py)."""
    if kind == "text":
        readers = {".txt": text_file_documents, ".jsonl": jsonl_documents, ".parquet": parquet_documents}
        for path in files:
            yield from readers[path.suffix](path)
        return
    if kind == "bytes":
        yield from (path.read_bytes() for path in files)
        return
    from . import media as m

    layout = media_layout(kind, media)
    read = m.image_bytes if kind == "image" else m.audio_bytes
    yield from (read(path, layout) for path in files)


def hub_documents(repo_id: str, split: str) -> Iterator[str]:
    """Documents of a hub dataset split with a `text` column, through `datasets` (which caches).

    TinyStories has one story per row; TinyStoriesInstruct's text files give one *line* per row with
    `<|endoftext|>` lines between records, so rows are regrouped when markers appear. `repo_id` may also
    be a local directory laid out like a hub dataset (`data/train-*.parquet`, ...), as the tests use.
    """
    offline = not Path(repo_id).exists() and not hub_reachable()
    if offline and not _in_hub_cache(repo_id):
        raise UserError(
            f"cannot reach the Hugging Face hub and {repo_id} is not cached: train on local files with "
            "--data PATH or on the built-in corpus with --data builtin"
        )
    import datasets  # imported when used: it is slow to import

    try:
        with _offline_mode(datasets) if offline else contextlib.nullcontext():
            dataset = datasets.load_dataset(repo_id, split=split)
    except Exception as error:
        if offline:
            raise UserError(
                f"cannot reach the Hugging Face hub and {repo_id} ({split}) is not cached: train on local files "
                "with --data PATH or on the built-in corpus with --data builtin"
            ) from None
        raise UserError(f"could not load {repo_id} ({split}) from the hub: {str(error).splitlines()[0]}") from None
    if "text" not in dataset.column_names:
        raise UserError(f"{repo_id} has no 'text' column (columns: {', '.join(dataset.column_names)})")
    rows = (row["text"] or "" for row in dataset)
    first = dataset[: min(len(dataset), 64)]["text"]
    if any(MARKER in (text or "") for text in first):
        yield from split_marked(rows)
    else:
        yield from (text.strip() for text in rows if text and text.strip())


@contextlib.contextmanager
def _offline_mode(datasets):
    """`datasets` and `huggingface_hub` in offline mode while the block runs: they use what they have
    cached, without their retry storm. Their settings are put back afterwards (the process's
    environment is not touched)."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _in_hub_cache(repo_id: str) -> bool:
    """Has huggingface_hub or datasets ever cached this dataset? (Checked without importing datasets.)"""
    from huggingface_hub import constants

    home = Path(constants.HF_HOME)
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    owner, _, name = repo_id.partition("/")
    return (Path(constants.HF_HUB_CACHE) / f"datasets--{owner}--{name}").exists() or any(
        datasets_cache.glob(f"{owner}___*")
    )


# --- encoding into the cache ----------------------------------------------------------------------------


def write_documents(path: Path, documents: Iterator[str | bytes], progress=None, layout: Layout = TEXT) -> Encoding:
    """Encode documents (each followed by the layout's end token; empty ones are none) into a file of
    the layout's dtype, atomically."""
    encoding, total = Encoding(layout=layout.name), 0
    end = np.array([layout.end], layout.dtype).tobytes()
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            for document in documents:
                tokens = encoding.encode(document)
                if not len(tokens):
                    continue
                f.write(tokens.tobytes())
                f.write(end)
                total += len(tokens) + 1
                if progress:
                    progress(total * tokens.itemsize)
    return encoding


def split_tail(train_path: Path, val_path: Path, fraction: float, layout: Layout = TEXT) -> None:
    """Move the last `fraction` of train.bin to val.bin, cut at a document boundary when there is one."""
    data = np.memmap(train_path, dtype=layout.dtype, mode="r")
    cut = int(len(data) * (1 - fraction))
    boundaries = np.flatnonzero(data[cut:] == layout.end)
    if len(boundaries) and boundaries[0] + 1 < len(data) - cut:
        cut += int(boundaries[0]) + 1
    with atomic_path(val_path) as temporary:
        Path(temporary).write_bytes(data[cut:].tobytes())
    del data
    os.truncate(train_path, cut * np.dtype(layout.dtype).itemsize)


def cache_key(identity: dict) -> str:
    text = json.dumps({**identity, "encoding": ENCODING_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(
    data: str = "tinystories",
    val_data: str | None = None,
    val_fraction: float = 0.05,
    cache_dir: str | Path | None = None,
    builtin_mb: float = 16,
    console=None,
    layout: Layout = TEXT,
    kind: str | None = None,
    media: dict | None = None,
) -> Corpus:
    """Encode a source once (or reuse its cache) and memory-map the result.

    data: `tinystories`, `tinystories-instruct`, `builtin`, `builtin-instruct`, or a local path/glob.
    val_data: a local path for validation; otherwise the source's own validation split, or the last
    `val_fraction` of the training documents (for one-file documents, the last files in name order).
    layout: the model's token layout (tokens.py). kind: what local files are (KINDS; None: detect_kind).
    media: the image or audio layout (its to_dict) that image or audio files become; None: for images,
    the first image's size (up to 64x64, else 32x32) and colour (grey or RGB), for sound media.AudioLayout().
    """
    cache_dir = Path(cache_dir or DEFAULT_CACHE) / "data"
    kind = kind or detect_kind(data)
    identity, produce, held_out, media = _sources(data, val_data, val_fraction, builtin_mb, layout, kind, media)

    # What each encoded split is, in the flags' words (messages and the data line)
    what = {
        "train": f"{data} (train)" if data in HUB_DATASETS else data if data in BUILTIN else f"--data {data}",
        "val": f"--val-data {val_data}" if val_data is not None else f"{data} (validation)",
    }
    directory = cache_dir / f"{slug(data)}-{cache_key(identity)}"
    train_path, val_path, meta_path = directory / "train.bin", directory / "val.bin", directory / "meta.json"
    _sweep_abandoned(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory / ".lock"):  # two trainings (or ranks) on one machine encode it once
        if not meta_path.is_file():
            for leftover in directory.glob(".*.tmp*"):  # a killed encoding's half-written files
                leftover.unlink(missing_ok=True)
            encodings = {}
            for split in ("train", "val"):
                if split in produce:
                    encodings[split] = _encode_with_progress(
                        split, what[split], produce[split], directory / f"{split}.bin", console, layout
                    ).to_json()
            if "val" not in produce:
                split_tail(train_path, val_path, held_out, layout)
            meta = {
                **identity,
                "data": data,
                "train_bytes": train_path.stat().st_size,
                "val_bytes": val_path.stat().st_size,
                "encodings": encodings,
            }
            write_text(meta_path, json.dumps(meta, indent=2))  # written last: marks the cache complete
        meta = json.loads(meta_path.read_text())
    return Corpus(
        train=np.memmap(train_path, dtype=layout.dtype, mode="r"),
        val=np.memmap(val_path, dtype=layout.dtype, mode="r"),
        source=data,
        directory=directory,
        encodings={split: (what[split], Encoding.from_json(record)) for split, record in meta["encodings"].items()},
        layout=layout,
        kind=kind,
        media=media,
    )


def _sources(data, val_data, val_fraction, builtin_mb, layout: Layout, kind: str, media: dict | None):
    """What prepare encodes: (the identity its cache is keyed by, split -> documents, the fraction held
    out of the training documents or None, the media layout as a dict or None)."""
    if kind not in KINDS:
        raise UserError(f"--data-kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "text" and (data in BUILTIN or data in HUB_DATASETS):
        raise UserError(f"--data {data} is text: drop --data-kind {kind}")
    if kind != "text" and layout == TEXT:
        raise UserError(
            f"--data-kind {kind}: a text model reserves bytes 0x00 and 0x03, which pictures, sound and binary "
            "files hold; train a model that learns every byte value (--shift-bytes)"
        )
    if data in BUILTIN:
        n_train = int(builtin_mb * 1e6)
        identity = {"source": data, "bytes": n_train, "generator": stories.GENERATOR_VERSION}
        produce = {"train": lambda: stories.documents(0, n_train + n_train // 32, instruct=BUILTIN[data])}
        held_out = 1 / 33  # the stream's tail, so no validation story is also a training story
    elif data in HUB_DATASETS:
        repo = HUB_DATASETS[data]
        identity = {"source": repo}
        produce = {"train": lambda: hub_documents(repo, "train"), "val": lambda: hub_documents(repo, "validation")}
        held_out = None
    else:
        files = local_files(data, kind)
        if kind == "image" and media is None:
            media = _first_image_layout(files[0])
        media = media_layout(kind, media).to_dict() if kind in ("image", "audio") else None
        identity = {"source": "local", "files": [_file_identity(p) for p in files]}
        produce = {"train": lambda: local_documents(files, kind, media)}
        held_out = val_fraction
    if val_data is not None:
        val_files = local_files(val_data, kind)
        identity["val"] = [_file_identity(p) for p in val_files]
        produce["val"] = lambda: local_documents(val_files, kind, media)
        held_out = None
    elif "val" not in produce and not 0 < held_out < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {held_out}")
    if held_out is not None:
        identity["held_out"] = held_out
    if layout != TEXT or kind != "text":  # text keeps the keys its caches always had
        identity.update(layout=layout.name, kind=kind, media=media)

    return identity, produce, held_out, media


def _first_image_layout(path: Path) -> dict:
    """The layout images take when none is given: the first image's size where it is at most 64x64
    (the MEGABYTE paper's largest), else 32x32; grey if it is grey, else RGB."""
    from . import media as m

    width, height, grey = m.image_shape(path)
    if max(width, height) > 64:
        width = height = 32
    return m.ImageLayout(width, height, "L" if grey else "RGB").to_dict()


def _sweep_abandoned(cache_dir: Path) -> None:
    """Remove cache folders whose encoding never finished (no meta.json), that no process is encoding
    now (their lock is free: the OS releases it when an encoding process dies) and that were left more
    than `ABANDONED_AFTER` seconds ago (so a folder another process has just made is not taken away
    before it locks it)."""
    if not cache_dir.is_dir():
        return
    for folder in cache_dir.iterdir():
        if not folder.is_dir() or (folder / "meta.json").is_file():
            continue
        if time.time() - folder.stat().st_mtime < ABANDONED_AFTER:
            continue
        try:
            with open(folder / ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not (folder / "meta.json").is_file():
                    shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # locked by a live encoding, or not ours to remove
            continue


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on `path` (released by the OS if the process dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _encode_with_progress(split, what, documents, path, console, layout: Layout = TEXT) -> Encoding:
    """Encode one split; `what` names it as the flags do (`--data notes.txt`, `tinystories (validation)`)."""
    columns = (TextColumn(f"encoding {what}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=console is None) as progress:
        task = progress.add_task("encode", total=None)
        encoding = write_documents(path, documents(), lambda n: progress.update(task, completed=n), layout)
    if encoding.documents == 0:
        path.unlink(missing_ok=True)
        raise UserError(f"{what} holds no text")
    return encoding


def _file_identity(path: Path) -> list:
    """A file's path and a hash of its bytes: a file edited in place is seen as changed whatever its
    size and modification time say (SHA-256 reads ~1.8 GB/s here, a second for all of TinyStories)."""
    return [str(path.resolve()), path.stat().st_size, file_sha256(path)]


def slug(text: str) -> str:
    """A short file-name-safe name for a data source (its last path part): a cache folder's or a run's."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(text).name or "data")[:40]


# --- batches ------------------------------------------------------------------------------------------


class GlobalBatches:
    """What the training batch samplers share: one generator draws every window of a global batch of
    batch_size * world (so a checkpoint's sampler state is that generator's), every rank draws the same
    and keeps its own slice (so the global batch is the same whatever the world size)."""

    def __init__(self, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.rng = np.random.default_rng(seed)

    def mine(self, drawn: np.ndarray) -> np.ndarray:
        """This rank's slice of what was drawn for the global batch."""
        return drawn[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __iter__(self):
        return self

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value


class Batches(GlobalBatches):
    """Random windows of `length` bytes, `batch_size` per call, reproducible from `seed` and resumable.

    With several data-parallel ranks every rank draws the same global batch of batch_size * world windows
    and keeps its own slice, so the global batch is the same whatever the world size. With a `mask` (one
    byte per byte of `data`: which ones the loss counts) a batch is (bytes, mask), the same windows of both.
    With `starts` (`record_starts`), windows start only there, drawn uniformly among them.
    """

    def __init__(
        self,
        data: np.ndarray,
        length: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        mask: np.ndarray | None = None,
        starts: np.ndarray | None = None,
    ):
        if len(data) < length:
            raise UserError(f"the data holds {len(data)} bytes, fewer than one window of {length}")
        self.windows = np.lib.stride_tricks.sliding_window_view(data, length)
        self.starts = starts
        self.mask_windows = None if mask is None else np.lib.stride_tricks.sliding_window_view(mask, length)
        super().__init__(batch_size, seed, rank, world)

    def __next__(self):  # (batch_size, length) uint8, or two of them with a mask
        return self.take(self.mine(self.draw(self.rng, self.batch_size * self.world)))

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` window starts drawn with `rng` by this sampler's rule (anywhere, or among `starts`)."""
        drawn = rng.integers(0, len(self.windows) if self.starts is None else len(self.starts), size=count)
        return drawn if self.starts is None else self.starts[drawn]

    def take(self, starts: np.ndarray):
        """The windows (and their masks) that start at `starts`."""
        if self.mask_windows is None:
            return self.windows[starts]
        return self.windows[starts], self.mask_windows[starts]


def record_starts(data: np.ndarray, length: int, end: int = EOT) -> np.ndarray:
    """Window starts aligned to the documents of a stream (each closed by `end`, the end-of-text byte): at the
    end-of-text byte before each document (0 for the first), so the window begins as a generation prompt
    does; and, for a document longer than the window, also where the window ending with its closing byte
    starts, so the ends of long stories are trained too. Uniform windows are what pretraining wants; on
    instruct records they mostly miss the prompt: with the built-in records (median 1,202 bytes) and a
    1,024-byte context only 30% of the story bytes in uniform windows had their record's prompt in view.

    >>> record_starts(np.frombuffer(b"ab\x03abcdef\x03a\x03", np.uint8), 4).tolist()
    [0, 2, 6]
    """
    ids = np.asarray(data)
    ends = np.flatnonzero(ids == end)
    heads = np.concatenate([[0], ends[:-1]]) if len(ends) else np.zeros(1, np.int64)
    tails = ends - length + 1
    tails = tails[(tails > heads[: len(tails)]) & (tails >= 0)]  # records that do not fit from their head
    starts = np.unique(np.concatenate([heads, tails]).astype(np.int64))
    return starts[starts <= len(ids) - length]


def evaluation_windows(data: np.ndarray, length: int, count: int) -> np.ndarray:
    """`count` fixed windows spread evenly over `data` (or over a mask of it: the same windows), so
    validation numbers compare across steps."""
    if len(data) < length:
        raise UserError(f"the validation data holds {len(data)} bytes, fewer than one window of {length}")
    starts = np.linspace(0, len(data) - length, num=count).astype(np.int64)
    return np.lib.stride_tricks.sliding_window_view(data, length)[np.unique(starts)]
