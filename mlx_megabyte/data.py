"""Data: sources (the Hugging Face hub, local files, the built-in corpus) -> one uint8 file -> batches.

Text is encoded once, nanoGPT-style: every document's UTF-8 bytes followed by the end-of-text byte, in a
flat `train.bin` / `val.bin` under a cache directory keyed by the source and `ENCODING_VERSION`. Training
memory-maps them and samples random windows, with no Python loop over bytes.

Documents are joined with the end-of-text byte (text.EOT, ASCII ETX), not 0: megabyte-pytorch's loss
ignores `pad_id` (0), and the model must learn where a story ends. Local files keep every byte they hold
(leading and trailing whitespace too) but two: inside a document 0x00 (pad_id: the loss would skip it) and
0x03 (it would end the document) become 0x1A (ASCII SUB, "substitute"), and encoding counts them; the
data line of `train` and `evaluate` says how many (`Encoding`).
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

# 2: local files are keyed by a hash of their bytes, not their mtime. 3: local documents keep their
# whitespace, and 0x00 and 0x03 in documents become SUBSTITUTE instead of disappearing.
ENCODING_VERSION = 3
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

    def encode(self, text: str) -> bytes:
        """A document's bytes (UTF-8; surrogate escapes give back undecodable input bytes, so a file's
        bytes come back as they were), reserved bytes substituted and counted."""
        data = text.encode("utf-8", "surrogateescape")
        for byte in RESERVED:
            self.replaced[byte] += data.count(byte)
        if data:
            self.documents += 1
            self.text_bytes += len(data)
        return data.translate(_SUBSTITUTED)

    def describe(self) -> str:
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
        }

    @classmethod
    def from_json(cls, record: dict) -> Encoding:
        replaced = {int(name, 16): n for name, n in record["replaced"].items()}
        return cls(record["documents"], record["text_bytes"], replaced)


@dataclass
class Corpus:
    """Encoded training and validation bytes (memory-mapped), where they came from, and how they were
    encoded (per source: "train" is --data, whose tail is the validation split unless "val" is there)."""

    train: np.ndarray
    val: np.ndarray
    source: str
    directory: Path
    encodings: dict[str, tuple[str, Encoding]] = field(default_factory=dict)  # split -> (what, Encoding)

    def describe(self) -> str:
        """What the bytes are, exactly: the data line of train and evaluate."""
        return "; ".join(f"{what}: {encoding.describe()}" for what, encoding in self.encodings.values())

    def story_mask(self, split: str) -> np.ndarray:
        """(len(split),) uint8, 1 on the story bytes of the split's instruct records (text.story_mask:
        after "Story:", with the end-of-text byte that closes each story), 0 elsewhere. Computed once and
        kept beside the split (`train.mask`), memory-mapped like it."""
        stream = getattr(self, split)
        path = self.directory / f"{split}.mask"
        with _exclusive(self.directory / ".lock"):
            if not path.is_file() or path.stat().st_size != len(stream):
                with atomic_path(path) as temporary:
                    story_mask(stream).astype(np.uint8).tofile(temporary)
        return np.memmap(path, dtype=np.uint8, mode="r")

    @property
    def instruct(self) -> bool:
        """Whether the training bytes are instruct records (what `generate --instruct` asks a model to
        have learned): the named instruct sources, or local data with a "Story:" line in its first MiB."""
        if self.source in INSTRUCT_SOURCES:
            return True
        if self.source in BUILTIN or self.source in HUB_DATASETS:
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


def local_files(spec: str) -> list[Path]:
    """The files a --data PATH names: a file, a directory (searched recursively) or a glob."""
    path = Path(spec).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"no such file, directory or glob match: {spec} (or use --data builtin)")
    unsupported = [str(p) for p in files if p.suffix not in LOCAL_SUFFIXES]
    if unsupported:
        raise UserError(f"unsupported file type: {unsupported[0]} (expected .txt, .jsonl or .parquet)")
    if not files:
        raise UserError(f"{spec} holds no .txt, .jsonl or .parquet files")
    return files


def local_documents(files: list[Path]) -> Iterator[str]:
    readers = {".txt": text_file_documents, ".jsonl": jsonl_documents, ".parquet": parquet_documents}
    for path in files:
        yield from readers[path.suffix](path)


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


def write_documents(path: Path, documents: Iterator[str], progress=None) -> Encoding:
    """Encode documents (each followed by EOT; empty ones are none) into a uint8 file, atomically."""
    encoding, total = Encoding(), 0
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            for text in documents:
                data = encoding.encode(text)
                if not data:
                    continue
                f.write(data)
                f.write(bytes([EOT]))
                total += len(data) + 1
                if progress:
                    progress(total)
    return encoding


def split_tail(train_path: Path, val_path: Path, fraction: float) -> None:
    """Move the last `fraction` of train.bin to val.bin, cut at a document boundary when there is one."""
    data = np.memmap(train_path, dtype=np.uint8, mode="r")
    cut = int(len(data) * (1 - fraction))
    boundaries = np.flatnonzero(data[cut:] == EOT)
    if len(boundaries) and boundaries[0] + 1 < len(data) - cut:
        cut += int(boundaries[0]) + 1
    with atomic_path(val_path) as temporary:
        Path(temporary).write_bytes(data[cut:].tobytes())
    del data
    os.truncate(train_path, cut)


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
) -> Corpus:
    """Encode a source once (or reuse its cache) and memory-map the result.

    data: `tinystories`, `tinystories-instruct`, `builtin`, `builtin-instruct`, or a local path/glob.
    val_data: a local path for validation; otherwise the source's own validation split, or the last
    `val_fraction` of the training documents.
    """
    cache_dir = Path(cache_dir or DEFAULT_CACHE) / "data"
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
        files = local_files(data)
        identity = {"source": "local", "files": [_file_identity(p) for p in files]}
        produce = {"train": lambda: local_documents(files)}
        held_out = val_fraction
    if val_data is not None:
        val_files = local_files(val_data)
        identity["val"] = [_file_identity(p) for p in val_files]
        produce["val"] = lambda: local_documents(val_files)
        held_out = None
    elif "val" not in produce and not 0 < held_out < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {held_out}")
    if held_out is not None:
        identity["held_out"] = held_out

    # What each encoded split is, in the flags' words (messages and the data line)
    what = {
        "train": f"{data} (train)" if data in HUB_DATASETS else data if data in BUILTIN else f"--data {data}",
        "val": f"--val-data {val_data}" if val_data is not None else f"{data} (validation)",
    }
    directory = cache_dir / f"{_slug(data)}-{cache_key(identity)}"
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
                        split, what[split], produce[split], directory / f"{split}.bin", console
                    ).to_json()
            if "val" not in produce:
                split_tail(train_path, val_path, held_out)
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
        train=np.memmap(train_path, dtype=np.uint8, mode="r"),
        val=np.memmap(val_path, dtype=np.uint8, mode="r"),
        source=data,
        directory=directory,
        encodings={split: (what[split], Encoding.from_json(record)) for split, record in meta["encodings"].items()},
    )


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


def _encode_with_progress(split, what, documents, path, console) -> Encoding:
    """Encode one split; `what` names it as the flags do (`--data notes.txt`, `tinystories (validation)`)."""
    columns = (TextColumn(f"encoding {what}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=console is None) as progress:
        task = progress.add_task("encode", total=None)
        encoding = write_documents(path, documents(), lambda n: progress.update(task, completed=n))
    if encoding.documents == 0:
        path.unlink(missing_ok=True)
        raise UserError(f"{what} holds no text")
    return encoding


def _file_identity(path: Path) -> list:
    """A file's path and a hash of its bytes: a file edited in place is seen as changed whatever its
    size and modification time say (SHA-256 reads ~1.8 GB/s here, a second for all of TinyStories)."""
    return [str(path.resolve()), path.stat().st_size, file_sha256(path)]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(text).name or "data")[:40]


# --- batches ------------------------------------------------------------------------------------------


class Batches:
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
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.rng = np.random.default_rng(seed)

    def __next__(self):  # (batch_size, length) uint8, or two of them with a mask
        count = len(self.windows) if self.starts is None else len(self.starts)
        starts = self.rng.integers(0, count, size=self.batch_size * self.world)
        if self.starts is not None:
            starts = self.starts[starts]
        mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        if self.mask_windows is None:
            return self.windows[mine]
        return self.windows[mine], self.mask_windows[mine]

    def __iter__(self):
        return self

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value


def record_starts(data: np.ndarray, length: int) -> np.ndarray:
    """Window starts aligned to the documents of a stream (each closed by the end-of-text byte): at the
    end-of-text byte before each document (0 for the first), so the window begins as a generation prompt
    does; and, for a document longer than the window, also where the window ending with its closing byte
    starts, so the ends of long stories are trained too. Uniform windows are what pretraining wants; on
    instruct records they mostly miss the prompt: with the built-in records (median 1,202 bytes) and a
    1,024-byte context only 30% of the story bytes in uniform windows had their record's prompt in view.

    >>> record_starts(np.frombuffer(b"ab\x03abcdef\x03a\x03", np.uint8), 4).tolist()
    [0, 2, 6]
    """
    ids = np.asarray(data)
    ends = np.flatnonzero(ids == EOT)
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
