"""Training on a mixture of sources: `--data builtin:0.8,builtin-instruct:0.2`.

A mixture is SOURCE:WEIGHT parts joined by commas; each SOURCE is anything `--data` takes alone and the
WEIGHT after its last colon is a positive number (weights are ratios: normalised, so `4,1` is `0.8,0.2`).
A value is read as a mixture only when it is not a source by itself (a named source, an existing file or
directory, a glob that matches) and holds a colon: every path that trained before still names one source,
and a path with a colon that does not exist gets one line saying both readings failed.

Each window of a global batch draws its source with the weights' probabilities (per window, not per
batch: every step sees both kinds of text in the expected shares), then a start by that source's own rule
(`data.Batches.draw`: anywhere, or at its records' starts). One generator draws both, so a checkpoint's
sampler state is one generator's, as for one source, and every rank draws the same global batch.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data
from .errors import UserError
from .tokens import Layout

NAMED = (*data.BUILTIN, *data.HUB_DATASETS)


@dataclass(frozen=True)
class Part:
    source: str  # as --data takes it alone
    weight: float  # normalised: the parts' weights sum to 1


def parse(spec: str) -> tuple[Part, ...] | None:
    """The parts of a --data mixture, or None where `spec` names one source (as before mixtures)."""
    if spec in NAMED or _exists(spec) or ":" not in spec:
        return None
    parts, seen = [], {}
    for piece in spec.split(","):
        source, colon, weight = piece.strip().rpartition(":")
        source = source.strip()
        if not colon or not source:
            raise UserError(f"--data {spec}: {_READING} {piece.strip()!r} is not SOURCE:WEIGHT")
        try:
            value = float(weight)
        except ValueError:
            raise UserError(f"--data {spec}: {_READING} the weight of {source} is {weight.strip()!r}, not a number")
        if not math.isfinite(value) or value <= 0:
            raise UserError(
                f"--data {spec}: the weight of {source} is {weight.strip()}; weights must be positive numbers "
                "(leave out a source that is never to be drawn)"
            )
        if source not in NAMED and not _exists(source):
            raise UserError(
                f"--data {spec}: no source {source} ({', '.join(NAMED)}, or an existing file, directory or glob)"
            )
        same = source if source in NAMED else str(Path(source).expanduser().resolve())
        if same in seen:
            also = "" if seen[same] == source else f" (as {seen[same]})"
            raise UserError(f"--data {spec}: {source} is given twice{also}; give each source once")
        seen[same] = source
        parts.append((source, value))
    if len(parts) < 2:
        raise UserError(f"--data {spec}: a mixture needs two sources or more; for one, --data {parts[0][0]}")
    total = sum(weight for _, weight in parts)
    return tuple(Part(source, weight / total) for source, weight in parts)


# Said when a value with a colon is neither a source nor a mixture: both readings failed.
_READING = "no file, directory or glob is named so, and as a mixture (SOURCE:WEIGHT,SOURCE:WEIGHT,...)"


def _exists(spec: str) -> bool:
    return Path(spec).expanduser().exists() or bool(glob.glob(str(Path(spec).expanduser()), recursive=True))


def name(parts: tuple[Part, ...]) -> str:
    """A mixture in one canonical spelling (normalised weights): what checkpoints record and --resume
    compares, so `builtin:4,builtin-instruct:1` resumes a run of `builtin:0.8,builtin-instruct:0.2`."""
    return ",".join(f"{part.source}:{part.weight:g}" for part in parts)


def slug(spec: str) -> str:
    """A run directory's name for --data: data.slug for one source, each source and its percentage for a
    mixture (`builtin80-builtin-instruct20`)."""
    parts = parse(spec)
    if parts is None:
        return data.slug(spec)
    return "-".join(f"{data.slug(part.source)}{round(100 * part.weight)}" for part in parts)[:60]


def detect_kind(spec: str) -> str:
    """data.detect_kind of one source, or the one kind every source of a mixture has."""
    parts = parse(spec)
    if parts is None:
        return data.detect_kind(spec)
    kinds = {part.source: data.detect_kind(part.source) for part in parts}
    if len(set(kinds.values())) > 1:
        raise UserError(
            f"--data {spec}: the sources hold different kinds of data "
            f"({', '.join(f'{s}: {k}' for s, k in kinds.items())}); mix sources of one kind"
        )
    return next(iter(kinds.values()))


@dataclass
class Mixture:
    """The encoded sources of a mixture with their weights: what the trainer reads where one source
    gives a data.Corpus (its `source`, `key`, `instruct`, `layout`, `kind`, `record`)."""

    corpora: list[data.Corpus]
    parts: tuple[Part, ...]

    @property
    def source(self) -> str:
        return name(self.parts)

    @property
    def key(self) -> str:
        """The sources' cache keys: a resumed run refuses data that changed in any of them."""
        return "+".join(corpus.key for corpus in self.corpora)

    @property
    def instruct(self) -> bool:
        """Instruct records are among the sources (what `generate --instruct` asks a model to have learned)."""
        return any(corpus.instruct for corpus in self.corpora)

    @property
    def layout(self) -> Layout:
        return self.corpora[0].layout

    @property
    def kind(self) -> str:
        return self.corpora[0].kind

    def record(self) -> dict:
        """What training writes beside the weights: the data's kind (as one source does) and every
        source with its weight, so evaluate and a resumed run know what the model was trained on."""
        sources = [
            {"data": part.source, "weight": part.weight, "instruct": corpus.instruct}
            for part, corpus in zip(self.parts, self.corpora)
        ]
        return {**self.corpora[0].record(), "mixture": sources}


def prepare(
    spec: str,
    val_data: str | None = None,
    val_fraction: float = 0.05,
    cache_dir=None,
    builtin_mb: float = 16,
    console=None,
    layout: Layout = data.TEXT,
    kind: str | None = None,
    media: dict | None = None,
) -> data.Corpus | Mixture:
    """data.prepare for one source; for a mixture, data.prepare of each source (its own cache and its
    own validation split), every one in the first one's picture or sound layout."""
    parts = parse(spec)
    if parts is None:
        return data.prepare(spec, val_data, val_fraction, cache_dir, builtin_mb, console, layout, kind, media)
    if val_data is not None:
        raise UserError(
            f"--val-data gives one source's validation data; each source of --data {spec} is validated on its "
            "own split: drop --val-data"
        )
    kind = kind or detect_kind(spec)
    corpora = []
    for part in parts:
        corpora.append(
            data.prepare(part.source, None, val_fraction, cache_dir, builtin_mb, console, layout, kind, media)
        )
        media = corpora[-1].media
    return Mixture(corpora, parts)


class MixedBatches(data.GlobalBatches):
    """data.Batches over several sources: each window of a global batch of batch_size * world draws its
    source with the weights' probabilities, then its start by that source's sampler (`draw`); every rank
    draws the whole global batch and keeps its slice, so the global batch is the same whatever the world
    size. The sources' samplers give their windows (and masks: all of them have one, or none)."""

    def __init__(self, sources: list[data.Batches], weights, batch_size: int, seed: int, rank=0, world=1):
        if len({source.mask_windows is None for source in sources}) > 1:
            raise ValueError("either every source of a mixture has a mask or none has")
        self.sources = sources
        self.bounds = np.cumsum(np.asarray(weights, np.float64) / np.sum(weights))
        super().__init__(batch_size, seed, rank, world)

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """The global batch: (which source, window start) for each of its batch_size * world windows."""
        count = self.batch_size * self.world
        which = np.minimum(np.searchsorted(self.bounds, self.rng.random(count), side="right"), len(self.sources) - 1)
        starts = np.zeros(count, np.int64)
        for index, source in enumerate(self.sources):
            at = np.flatnonzero(which == index)
            starts[at] = source.draw(self.rng, len(at))
        return which, starts

    def __next__(self):  # (batch_size, length), or two of them with masks, as data.Batches
        which, starts = (self.mine(drawn) for drawn in self.draw())
        places = [np.flatnonzero(which == index) for index in range(len(self.sources))]
        taken = [source.take(starts[at]) for source, at in zip(self.sources, places)]
        if self.sources[0].mask_windows is None:
            return _placed(places, taken)
        return _placed(places, [t[0] for t in taken]), _placed(places, [t[1] for t in taken])


def _placed(places: list[np.ndarray], pieces: list[np.ndarray]) -> np.ndarray:
    """The windows `pieces[i]` put back at the batch positions `places[i]`."""
    first = next(piece for piece in pieces if len(piece))
    out = np.empty((sum(len(at) for at in places), first.shape[1]), first.dtype)
    for at, piece in zip(places, pieces):
        out[at] = piece
    return out
