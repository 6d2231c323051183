"""Continuous batching for the server: one thread owns the model and decodes every request together.

MLX must not evaluate one model from several threads (its streams even belong to the thread that made
them), so the `Batcher` thread loads the model and does all the arithmetic; HTTP handler threads only
`submit` jobs and read their events.

A model's decoding state decodes a batch of rows that all hold the same number of bytes (models/base.py).
So requests are kept in *groups* of rows with equal lengths, each with its own decoding state; a group
steps all its rows in one batched call. A new request is prefilled on its own and joins a group whose length equals
its own. When lengths differ by a little (clients a few milliseconds apart, prompts of slightly different
lengths), the shorter group steps alone until it catches up and the two merge: a short pause for the
longer one buys batched steps for both (when the states say they can be merged: equal lengths, and for
an architecture whose positions depend on more than the length, equal positions). Groups further apart
than `max_gap` bytes simply take turns. Nothing here depends on the architecture.

Each row samples from its own random key (`sampling.row_keys`), so a request gets exactly the bytes that
`generate.stream_generate` with the same seed and settings gives, whoever shares its batch.

With a draft (server --draft-model), a greedy request for one completion without logprobs or logit bias
is decoded speculatively instead (speculative.py): on its own decoding state, beside the groups, a round
of up to num_draft + 1 bytes per turn. Its answer is the plain greedy answer byte for byte; it is never
batched with other rows (a check is already several bytes in one call) and starts from no prompt cache.
Sampled requests stay in the groups: speculation would draw from another random stream than the seed's.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from . import cpu
from .sampling import Sampler, make_distribution, row_keys, split_keys
from .speculative import SpeculationStats, speculative_generate_step
from .textstream import TextStream
from .tokens import TEXT, layout_of


class Busy(Exception):
    """The waiting queue is full: try again later."""


@dataclass
class ByteLogprob:
    """What the model thought of one byte: its log-probability (natural log, the model's own
    distribution before temperature and filtering), the likeliest alternatives, and whether the byte
    begins a patch (the model's own rule: fixed patches, word boundaries, ...)."""

    byte: int
    logprob: float | None  # None: the byte was cut to fit the context, or nothing predicted it
    top: list[tuple[int, float]]
    patch_start: bool
    text: str = ""  # the text this byte completes ("" for the leading bytes of a character)
    offset: int = 0  # where that text starts, in characters of the completion


@dataclass
class Chunk:
    """New output of one sample (`index`): its text, the bytes behind it, and why it ended (or None)."""

    index: int
    text: str
    logprobs: list[ByteLogprob]
    finish_reason: str | None = None  # "eot", "stop" or "length", as in stream_generate


@dataclass
class Job:
    """One completion request as the generation thread sees it."""

    prompt: bytes  # what the model reads: encoded, story-start byte in front, fitted to the context
    prompt_text: bytes  # the prompt the client sent (bytes), for echoed logprobs
    n: int
    max_tokens: int
    sampler: Sampler
    settings: tuple  # the sampler's settings: rows that share them are sampled in one call
    seed: int
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # alternatives per byte; None: no logprobs at all
    echo: bool = False  # with logprobs: also score the prompt's bytes
    guide: object = None  # a guide.WordGuide: guided decoding to the request's words (None: not guided)
    events: queue.Queue = field(default_factory=queue.Queue)  # Chunk | list[ByteLogprob] | Exception | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0  # bytes sampled over all rows (usage)

    def cancel(self):
        """The client went away: its rows are dropped before the next step."""
        self.cancelled.set()


class Row:
    """One sample being decoded: its text (textstream.TextStream, as stream_generate builds it), and which
    bytes made which characters (for per-byte logprobs that line up with the text)."""

    def __init__(self, job: Job, index: int):
        self.job, self.index = job, index
        self.stream = TextStream(TEXT, job.stop, job.max_tokens)  # the server serves text models only
        self.pending: list[ByteLogprob] = []  # bytes of a character not complete yet
        self.groups: deque[tuple[int, int, list[ByteLogprob]]] = deque()  # (start, end, bytes) of text
        self.guide_state = job.guide.first() if job.guide is not None else None  # guide.RowState

    @property
    def done(self) -> bool:
        return self.stream.done

    def push(self, entry: ByteLogprob) -> Chunk:
        """Take one sampled byte; return what can be handed out now (exactly stream_generate's text)."""
        step = self.stream.push(entry.byte)
        if self.guide_state is not None:
            self.guide_state = self.job.guide.advance(self.guide_state, TEXT.byte(entry.byte))
        if step.byte is not None:
            self.pending.append(entry)
        for start, end in step.spans:
            self._group(start, end)
        return Chunk(self.index, step.text, self._ready(), step.finish_reason)

    def _group(self, start: int, end: int):
        """Tie the characters text[start:end] that one decoder call made to the bytes behind them."""
        if end == start:
            return
        if not self.pending and self.groups:
            # Text with no new byte: the decoder flushed a byte it had already been given with an earlier
            # character (0xE2 0xC3 and the story ends: two U+FFFD, the second only now). It belongs to that
            # earlier group.
            first, _, entries = self.groups.pop()
            self.groups.append((first, end, entries))
        else:
            self.groups.append((start, end, self.pending))
        self.pending = []

    def _ready(self) -> list[ByteLogprob]:
        """The bytes whose characters have been handed out (all of them once the row is done)."""
        out, emitted = [], self.stream.emitted
        while self.groups and (self.groups[0][1] <= emitted or (self.done and self.groups[0][0] < emitted)):
            start, end, entries = self.groups.popleft()
            for entry in entries:
                entry.offset = start
            if entries:  # (none: the bytes were handed out with the text before it)
                entries[-1].text = self.stream.text[start : min(end, emitted)]
            out.extend(entries)
        return out


class Group:
    """Rows that hold the same number of bytes, decoded together by one cache."""

    def __init__(self, cache, rows: list[Row], logits: mx.array, keys: mx.array):
        self.cache, self.rows, self.logits, self.keys = cache, rows, logits, keys

    @property
    def length(self) -> int:
        return self.cache.length

    def merge(self, other: Group):
        self.cache.merge(other.cache)
        self.rows += other.rows
        self.logits = mx.concatenate([self.logits, other.logits], axis=0)
        self.keys = mx.concatenate([self.keys, other.keys], axis=0)

    def keep(self, indices: list[int]):
        self.cache.select(indices)
        index = mx.array(indices, dtype=mx.int32)
        self.rows = [self.rows[i] for i in indices]
        self.logits, self.keys = self.logits[index], self.keys[index]


class Solo:
    """A row decoded speculatively, alone: its Row and the bytes of speculative_generate_step."""

    def __init__(self, row: Row, steps):
        self.row, self.steps = row, steps


class Batcher:
    """The generation thread: admits waiting jobs, steps all rows, hands out chunks."""

    def __init__(
        self,
        load,
        max_rows: int = 16,
        queue_size: int = 32,
        max_gap: int = 64,
        prompt_cache=None,
        draft=None,
        num_draft: int = 4,
    ):
        self.load = load  # () -> model, called in the generation thread
        self.draft_loader, self.num_draft = draft, num_draft  # model -> a draft (speculative.load_draft), or None
        self.draft, self.solos, self.drafted = None, [], SpeculationStats()
        self.model = None
        self.prompt_cache = prompt_cache  # a prompt_cache.PromptCache: prompts start from a cached prefix
        self.max_rows, self.queue_size, self.max_gap = max_rows, queue_size, max_gap
        self.waiting: deque[Job] = deque()
        self.groups: list[Group] = []
        self.lock = threading.Condition()
        self.stats = {"steps": 0, "rows_stepped": 0, "most_rows_in_a_step": 0}
        self.thread = threading.Thread(target=self._run, name="generation", daemon=True)
        self._stopping = False

    def start(self):
        """Start the thread and wait until it has loaded the model (re-raising what loading raised)."""
        self._ready = threading.Event()
        self._load_error = None
        self.thread.start()
        self._ready.wait()
        if self._load_error is not None:
            _wait_until_gone(self.thread)  # the error usually ends the process: see `stop`
            raise self._load_error
        return self

    def stop(self):
        """End the thread and wait until it is gone, also at the operating system's level.

        The process must not exit before that. MLX's Python bindings keep a per-thread random-key state
        (made when the model's weights are initialised) whose C++ destructor takes the GIL as the thread
        ends, after `Thread.join` has returned. If the interpreter is shutting down by then, Python ends
        the thread inside that destructor and the C++ runtime aborts the process ("terminate called
        without an active exception", SIGABRT, exit 134): a start-up failure was often reported so.
        """
        with self.lock:
            self._stopping = True
            self.lock.notify()
        _wait_until_gone(self.thread)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise Busy when `queue_size` jobs are already waiting."""
        with self.lock:
            self.waiting = deque(j for j in self.waiting if not j.cancelled.is_set())
            if len(self.waiting) >= self.queue_size:
                raise Busy(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append(job)
            self.lock.notify()

    def status(self) -> dict:
        with self.lock:
            waiting = sum(not j.cancelled.is_set() for j in self.waiting)
        rows = sum(len(g.rows) for g in list(self.groups)) + len(self.solos)
        drafted = {}
        if self.draft_loader is not None:
            drafted = {"draft_proposed": self.drafted.proposed, "draft_accepted": self.drafted.accepted}
        return {"active_rows": rows, "waiting": waiting, "max_rows": self.max_rows, **self.stats, **drafted}

    # --- the thread ---------------------------------------------------------------------------------

    def _run(self):
        try:
            self.model = self.load()
            if self.draft_loader is not None:
                self.draft = self.draft_loader(self.model)
        except BaseException as error:
            self._load_error = error
            return
        finally:
            self._ready.set()
        threads = cpu.blas_threads()
        with cpu.single_threaded_blas():  # single rows decode faster on one BLAS thread (see generate_step)
            while True:
                with self.lock:
                    while not self._stopping and not self.waiting and not self.groups and not self.solos:
                        self.lock.wait()
                    if self._stopping:
                        return
                    admitted = self._take_admissible()
                for job in admitted:
                    try:
                        self._admit(job, threads)
                    except Exception as error:  # e.g. out of memory: this request fails, the others go on
                        traceback.print_exc(file=sys.stderr)
                        job.events.put(error)
                try:
                    self._step_all()
                except Exception as error:  # never let the thread die: fail what was running, and log why
                    traceback.print_exc(file=sys.stderr)
                    rows = [r for group in self.groups for r in group.rows] + [solo.row for solo in self.solos]
                    for job in {id(r.job): r.job for r in rows}.values():
                        job.events.put(error)
                    self.groups, self.solos = [], []

    def _take_admissible(self) -> list[Job]:
        """Jobs at the head of the queue whose rows fit next to the running ones (first come, first served)."""
        admitted = []
        rows = sum(len(g.rows) for g in self.groups) + len(self.solos)
        while self.waiting:
            job = self.waiting[0]
            if job.cancelled.is_set():
                self.waiting.popleft()
                continue
            if rows + job.n > self.max_rows:
                break
            admitted.append(self.waiting.popleft())
            rows += job.n
        return admitted

    def _admit(self, job: Job, threads):
        """Prefill a job (all BLAS threads help with the prompt), score its prompt if asked, and let it
        join a group of the same length."""
        if threads:
            cpu.set_blas_threads(threads)
        try:
            if job.echo and job.logprobs is not None:
                job.events.put(self._prompt_logprobs(job))
            if job.max_tokens == 0:
                for i in range(job.n):
                    job.events.put(Chunk(i, "", [], "length"))
                job.events.put(None)
                return
            ids = mx.array(np.frombuffer(job.prompt, dtype=np.uint8)[None].repeat(job.n, axis=0))
            if self._speculates(job):
                # restricted to the layout's bytes as the groups' samplers are, so the bytes are theirs
                config = self.model.config
                greedy = layout_of(config).restrict(make_distribution(0.0), config.num_tokens)
                steps = speculative_generate_step(
                    self.model, self.draft, ids, greedy, self.num_draft, stats=self.drafted
                )
                first = next(steps)  # the prompt, read with every BLAS thread
                self.solos.append(Solo(Row(job, 0), steps))
                self._push_solo(self.solos[-1], first.item())
                return
            if self.prompt_cache is None:
                cache = self.model.make_cache(job.n)
                logits = cache.prefill(ids)
            else:
                cache, logits = self.prompt_cache.start(self.model, ids)
            mx.eval(logits)
        finally:
            if threads:
                cpu.set_blas_threads(1)
        group = Group(cache, [Row(job, i) for i in range(job.n)], logits, row_keys(job.seed, job.n))
        self.groups.append(group)

    def _speculates(self, job: Job) -> bool:
        """Whether `job` is decoded speculatively: greedy (temperature 0, no logit bias or anything else
        beyond the four sampling settings), unguided (the draft's check does not see a guide's bonus), one
        completion, no logprobs, and a draft to do it with."""
        temp, rest = job.settings[0], job.settings[4:]
        plain = job.n == 1 and job.logprobs is None and job.guide is None
        return self.draft is not None and plain and temp == 0 and not any(rest)

    def _step_solos(self):
        """Up to num_draft + 1 bytes of every speculative row: about one round (a check) each."""
        for solo in list(self.solos):
            for _ in range(self.num_draft + 1):
                if self._push_solo(solo, next(solo.steps).item()):
                    break

    def _push_solo(self, solo: Solo, byte: int) -> bool:
        """Hand out what `byte` completes of a speculative row; True (and the row is gone) when it is done."""
        job = solo.row.job
        job.generated += 1
        chunk = solo.row.push(ByteLogprob(byte, None, [], False))
        chunk.logprobs = []
        if chunk.text or chunk.finish_reason:
            job.events.put(chunk)
        if solo.row.done:
            job.events.put(None)
            self._drop_solo(solo)
        return solo.row.done

    def _drop_solo(self, solo: Solo):
        self.solos.remove(solo)
        solo.steps.close()  # its state and draft go now
        if cpu.blas_threads() is not None:  # closing it restored the count it found: the prompt's (see _admit)
            cpu.set_blas_threads(1)

    def _prompt_logprobs(self, job: Job) -> list[ByteLogprob]:
        """Every prompt byte's log-probability from one full forward pass (byte t is predicted by
        position t with include_start). The story-start byte the model reads first is not shown."""
        ids = mx.array(np.frombuffer(job.prompt, dtype=np.uint8)[None])
        logprobs = _log_softmax(self.model(ids, include_start=True)[0, : len(job.prompt)])
        chosen = mx.take_along_axis(logprobs, ids.T.astype(mx.int32), axis=-1)[:, 0]
        k = max(job.logprobs, 0)
        top = mx.argsort(-logprobs, axis=-1)[:, :k]
        top_values = mx.take_along_axis(logprobs, top, axis=-1)
        starts = self.model.patch_starts(ids)[0]
        chosen, top, top_values, starts = chosen.tolist(), top.tolist(), top_values.tolist(), starts.tolist()
        # prompt_text byte i sits at index i + shown_from of job.prompt (negative: cut to fit the context)
        shown_from = len(job.prompt) - len(job.prompt_text)
        entries = []
        for i, byte in enumerate(job.prompt_text):
            t = i + shown_from
            if t < 0:
                entries.append(ByteLogprob(byte, None, [], False))
            else:
                entries.append(ByteLogprob(byte, chosen[t], list(zip(top[t], top_values[t])), starts[t]))
        return entries

    def _step_all(self):
        self._drop_cancelled()
        self._merge_equal_lengths()
        lengths = [g.length for g in self.groups]
        for group in list(self.groups):
            # Wait for a slightly shorter group to catch up, then both step as one.
            if any(0 < group.length - other <= self.max_gap for other in lengths):
                continue
            self._step(group)
        self._step_solos()

    def _drop_cancelled(self):
        for solo in [solo for solo in self.solos if solo.row.job.cancelled.is_set()]:
            self._drop_solo(solo)
        for group in list(self.groups):
            keep = [i for i, row in enumerate(group.rows) if not row.job.cancelled.is_set()]
            if not keep:
                self.groups.remove(group)
            elif len(keep) < len(group.rows):
                group.keep(keep)

    def _merge_equal_lengths(self):
        merged: dict[tuple, Group] = {}
        for group in self.groups:
            key = group.cache.merge_key()  # the decoding state says when two can be merged
            if key in merged:
                merged[key].merge(group)
            else:
                merged[key] = group
        self.groups = list(merged.values())

    def _step(self, group: Group):
        """Sample one byte for every row of the group, hand out the text, step the cache."""
        group.keys, now = split_keys(group.keys)
        classes: dict[tuple, list[int]] = {}
        for i, row in enumerate(group.rows):
            classes.setdefault(row.job.settings, []).append(i)
        logits = _guided(group.rows, group.logits)
        if len(classes) == 1:
            y = group.rows[0].job.sampler(logits, now)
        else:  # rows with different settings: sample each kind apart, then put the rows back in order
            order = [i for rows in classes.values() for i in rows]
            parts = []
            for rows in classes.values():
                index = mx.array(rows, dtype=mx.int32)
                parts.append(group.rows[rows[0]].job.sampler(logits[index], now[index]))
            y = mx.concatenate(parts)[mx.array(np.argsort(order), dtype=mx.int32)]
        k = max((r.job.logprobs for r in group.rows if r.job.logprobs is not None), default=None)
        outputs = [y]
        if k is not None:
            logprobs = _log_softmax(group.logits)
            top = mx.argsort(-logprobs, axis=-1)[:, :k]
            outputs += [
                mx.take_along_axis(logprobs, y[:, None], axis=-1)[:, 0],
                top,
                mx.take_along_axis(logprobs, top, axis=-1),
            ]
        cache = group.cache
        # Queue the next step for every row before handing out this byte, so the Python work below overlaps
        # the computation (as generate_step does); rows that finish now are dropped from it afterwards.
        following = cache.step(y)
        mx.async_eval(following, *outputs)
        values = [o.tolist() for o in outputs]
        starts = cache.patch_started()  # whether each row's new byte began a patch
        finished_jobs, keep = {}, []
        for i, row in enumerate(group.rows):
            job = row.job
            entry = ByteLogprob(values[0][i], None, [], starts[i])
            if job.logprobs is not None:
                entry.logprob = values[1][i]
                entry.top = list(zip(values[2][i][: job.logprobs], values[3][i][: job.logprobs]))
            job.generated += 1
            chunk = row.push(entry)
            if job.logprobs is None:
                chunk.logprobs = []
            if chunk.text or chunk.logprobs or chunk.finish_reason:
                job.events.put(chunk)
            if row.done:
                finished_jobs[id(job)] = job
            else:
                keep.append(i)
        for job in finished_jobs.values():
            if all(r.done for r in group.rows if r.job is job):
                job.events.put(None)
        self.stats["steps"] += 1
        self.stats["rows_stepped"] += len(group.rows)
        self.stats["most_rows_in_a_step"] = max(self.stats["most_rows_in_a_step"], len(group.rows))
        group.logits = following
        if not keep:
            self.groups.remove(group)
        elif len(keep) < len(group.rows):
            group.keep(keep)


def _wait_until_gone(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Join `thread`, then wait (up to `timeout` in all) until Linux says its thread has exited, thread-local
    destructors included (see `Batcher.stop`). Elsewhere there is no such record, and join is all there is."""
    deadline = time.monotonic() + timeout
    thread.join(timeout)
    task = f"/proc/self/task/{thread.native_id}"
    while thread.native_id is not None and os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.001)


def _guided(rows: list[Row], logits: mx.array) -> mx.array:
    """The logits with each guided row's bonus added (guide.py), as stream_generate adds it; the logits
    themselves where no row is guided. Logprobs stay the model's own."""
    if all(row.guide_state is None for row in rows):
        return logits
    bonus = np.zeros(logits.shape, np.float32)
    for i, row in enumerate(rows):
        if row.guide_state is not None:
            bonus[i] = row.job.guide.bonus([row.guide_state], TEXT, logits.shape[-1])[0]
    return logits + mx.array(bonus)


def _log_softmax(logits: mx.array) -> mx.array:
    logits = logits.astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)
