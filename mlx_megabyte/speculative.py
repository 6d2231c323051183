"""Speculative decoding: a cheap draft proposes a few bytes, the model checks them all in one forward
(`DecodingState.extend`), and a rule keeps exactly the model's own distribution.

The rule is Leviathan et al. 2023 (arXiv 2211.17192) and Chen et al. 2023 (arXiv 2302.01318): a proposed
token x, drawn by the draft from q, is accepted with probability min(1, p(x) / q(x)), where p is the
model's distribution there; the first rejected one is replaced by a draw from norm(max(0, p - q)); when
all are accepted one more token comes from p, free. p and q are the distributions the sampler would draw
from (sampling.make_distribution: temperature, top-k, top-p and min-p applied), so every token is
distributed exactly as plain sampling with those settings would give it. At temperature 0 both are all
on their argmax: a proposal is kept while it is the model's argmax, and the output is byte for byte the
plain greedy output.

A draft is anything with `propose(context, n) -> Proposal`: another byte model (`ModelDraft`, any
architecture: bytes are a shared vocabulary, only the token layout must agree), or no model at all
(`LookupDraft`, which proposes what followed the last occurrence of the context's ending; `CorpusDraft`,
which proposes what most often followed it in a corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import mlx.core as mx
import numpy as np

from . import cpu, stories
from .errors import UserError
from .hub import looks_like_repo_id
from .ngram import NgramIndex
from .settings import check_fields, setting
from .tokens import layout_of
from .weights import load_for_inference

Distribution = Callable[[mx.array], mx.array]  # logits (..., vocab) -> probabilities (..., vocab)
DEFAULT_NUM_DRAFT = 4
LOOKUP = "lookup"  # --draft-model lookup: prompt lookup, no draft model
CORPUS = "corpus:"  # --draft-model corpus:PATH or corpus:builtin: a corpus n-gram draft, no draft model
BUILTIN_CORPUS = "builtin"
BUILTIN_CORPUS_BYTES = 2_000_000  # the first stories of the built-in corpus (--data builtin trains on them)


@dataclass(frozen=True)
class SpeculationSettings:
    """generate's, the REPL's and the server's speculative decoding settings, declared once."""

    draft_model: str | None = setting(
        None,
        help="speculative decoding: a byte model (weights directory or Hugging Face repo id) that proposes bytes "
        f"the model checks several at a time, '{LOOKUP}' for prompt lookup, '{CORPUS}PATH' or '{CORPUS}{BUILTIN_CORPUS}' for "
        f"a corpus n-gram draft (no model), or '{LOOKUP}+' one of these; the output is the "
        "model's own (greedy: byte for byte)",
        kind=str,
        optional=True,
    )
    num_draft: int = setting(
        DEFAULT_NUM_DRAFT, help="bytes the draft proposes per check (--draft-model)", low=1, high=64
    )

    def __post_init__(self):
        check_fields(self)


class DraftError(UserError, ValueError):
    """A draft model that cannot draft for this model (one line, saying what to change)."""


class DraftNotFound(DraftError, FileNotFoundError):
    """No draft model where --draft-model points."""


@dataclass
class Proposal:
    tokens: list[int]  # the proposed token ids, in order (possibly fewer than asked, possibly none)
    probs: np.ndarray | None = None  # (len(tokens), vocab): the distribution q each was drawn from;
    # None: chosen for certain (q puts all its mass on the proposal, as a lookup or a greedy draft does)


class Draft(Protocol):
    def propose(self, context: Sequence[int], n: int) -> Proposal:
        """Up to n tokens to follow `context` (every token so far: the prompt and what was generated)."""


@dataclass
class SpeculationStats:
    rounds: int = 0  # forwards of the model, each checking the proposals of one round (maybe none)
    proposed: int = 0
    accepted: int = 0

    def count(self, proposed: int, accepted: int) -> None:
        self.rounds, self.proposed, self.accepted = self.rounds + 1, self.proposed + proposed, self.accepted + accepted

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def speculative_generate_step(
    model,
    draft,
    prompt: mx.array,
    distribution: Distribution,
    num_draft: int = DEFAULT_NUM_DRAFT,
    seed: int | None = None,
    stats: SpeculationStats | None = None,
) -> Iterator[mx.array]:
    """Yield the next byte (1,) of one sequence `prompt` (1, L), forever, as generation.generate_step
    does, distributed as sampling from `distribution` (make_distribution; restrict it with the layout as
    a sampler is) would make it, but checking up to `num_draft` bytes of `draft` (a model, a `Draft`, or a
    list of them: FallbackDraft) per forward of `model`. `stats`, if given, counts the proposals and how many were accepted."""
    if prompt.ndim != 2 or prompt.shape[0] != 1:
        raise ValueError(f"speculative decoding takes one sequence, ids of shape (1, length); got {prompt.shape}")
    if num_draft < 1:
        raise ValueError(f"num_draft must be a positive integer, got {num_draft}")
    rng = np.random.default_rng(seed)
    draft = draft_for(model, draft, distribution, rng)
    stats = stats if stats is not None else SpeculationStats()
    context = prompt[0].tolist()
    state = model.make_cache(1)
    pending = [_draw(_host(distribution(state.prefill(prompt)))[0], rng)]  # bytes the state has yet to see
    with cpu.single_threaded_blas():
        yield mx.array(pending, dtype=mx.int32)
        context += pending
        while True:
            proposal = draft.propose(context, state.cheap_bytes(len(pending), num_draft))
            fed, marks, logits = _check(state, pending, proposal.tokens)
            accepted, token = verify(_host(distribution(logits))[0], proposal, rng)
            stats.count(len(proposal.tokens), accepted)
            kept = proposal.tokens[:accepted] + [token]
            if accepted < len(proposal.tokens):
                good = len(fed) - len(proposal.tokens) + accepted  # fed bytes that stand
                at, mark = max((m for m in marks if m[0] <= good), key=lambda m: m[0])
                state.rewind(mark)
                pending = fed[at:good] + [token]
                if len(pending) > num_draft + 1:  # rejected again and again: feed what is kept for good
                    state.extend(mx.array([pending[:-1]]))
                    pending = pending[-1:]
            else:
                pending = [token]
            for value in kept:
                context.append(value)
                yield mx.array([value], dtype=mx.int32)


def draft_for(model, draft, distribution: Distribution, rng: np.random.Generator | None = None) -> Draft:
    """A `Draft` from what speculative_generate_step takes: a Draft as it is, a byte model (checked:
    check_draft) as a ModelDraft, or a list of these, tried in order (FallbackDraft)."""
    if isinstance(draft, (list, tuple)):
        return FallbackDraft([draft_for(model, d, distribution, rng) for d in draft])
    if hasattr(draft, "propose"):
        return draft
    check_draft(model, draft)
    return ModelDraft(draft, distribution, rng)


class FallbackDraft:
    """Several drafts, each asked only when those before it propose nothing: e.g. prompt lookup (free)
    first, a draft model where the text does not repeat itself."""

    def __init__(self, drafts: list):
        self.drafts = drafts

    def propose(self, context: Sequence[int], n: int) -> Proposal:
        for draft in self.drafts:
            proposal = draft.propose(context, n)
            if proposal.tokens:
                return proposal
        return Proposal([])


class Speculator:
    """What `generation.stream_generate(..., speculation=)` needs to decode one sequence speculatively:
    the draft (see draft_for), the bytes it proposes per check, and the sampler's distribution
    (sampling.make_distribution with the sampler's settings). `stats` counts every round it runs."""

    def __init__(self, draft, distribution: Distribution, num_draft: int = DEFAULT_NUM_DRAFT):
        self.draft, self.distribution, self.num_draft = draft, distribution, num_draft
        self.stats = SpeculationStats()

    def steps(self, model, prompt: mx.array, restrict: Callable, seed: int | None = None) -> Iterator[mx.array]:
        """speculative_generate_step for `prompt` (1, L); restrict: the layout's (tokens.Layout.restrict)."""
        distribution = restrict(self.distribution, model.config.num_tokens)
        return speculative_generate_step(model, self.draft, prompt, distribution, self.num_draft, seed, self.stats)


def _check(state, pending: list[int], proposed: list[int]):
    """Feed the pending bytes and the proposed ones; return (the bytes of the call the marks count in,
    marks to go back to if a proposal is rejected: (j, the state's mark after j of those bytes), the
    logits (1, k + 1, vocab) for the k proposals and the byte after them).

    Where extend is batched, all go in one call, marked before them and where the state marks cheaply on
    the way (extend's `marks`), so the pending bytes after the last mark are fed again with the next
    check after a rejection; elsewhere the pending ones are fed first, once."""
    if not proposed:  # nothing to go back from
        return [], [], state.extend(mx.array([pending]))[:, -1:]
    if state.batched_extend:
        fed, marks = pending + proposed, [(0, state.mark())]
        return fed, marks, state.extend(mx.array([fed]), marks)[:, len(pending) - 1 :]
    logits = state.extend(mx.array([pending]))[:, -1:]
    marks = [(0, state.mark())]
    return proposed, marks, mx.concatenate([logits, state.extend(mx.array([proposed]))], axis=1)


def verify(probs: np.ndarray, proposal: Proposal, rng: np.random.Generator) -> tuple[int, int]:
    """The acceptance rule (module docstring). probs (k + 1, vocab): the model's distribution for each of
    the k proposed tokens and for the token after them. Returns (how many proposals are accepted, the
    token that follows them: the replacement of the first rejected one, or the free one after all)."""
    for i, token in enumerate(proposal.tokens):
        p = probs[i]
        q = None if proposal.probs is None else np.asarray(proposal.probs[i], np.float64)
        q_token = 1.0 if q is None else q[token]
        if rng.random() * q_token < p[token]:  # probability min(1, p / q)
            continue
        if q is None:
            residual = p.copy()
            residual[token] = 0.0
        else:
            residual = np.maximum(p - q, 0.0)
        if not residual.sum() > 0:  # only through rounding, where p and q agree
            residual = p
        return i, _draw(residual, rng)
    return len(proposal.tokens), _draw(probs[len(proposal.tokens)], rng)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One token from unnormalised probabilities (never one of probability 0)."""
    cumulative = np.cumsum(probs)
    index = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return int(min(index, len(probs) - 1))


def _host(probs: mx.array) -> np.ndarray:
    return np.array(probs.astype(mx.float32)).astype(np.float64)


class ModelDraft:
    """A byte model as a draft: it samples its proposals from `distribution` of its own logits (the same
    settings as the model's), keeping its decoding state from round to round: only the bytes it has not
    seen are fed, and after a rejection it goes back to a copy taken before it proposed."""

    def __init__(self, model, distribution: Distribution, rng: np.random.Generator | None = None):
        self.model, self.distribution = model, distribution
        self.rng = rng if rng is not None else np.random.default_rng()
        self.state, self.fed = None, []  # the decoding state, and every token it has seen
        self.saved, self.saved_length = None, 0  # a mark of the state when it had seen saved_length tokens

    def propose(self, context: Sequence[int], n: int) -> Proposal:
        context = list(context)
        logits = self._catch_up(context)
        self.saved, self.saved_length = self.state.mark(), len(context)
        tokens, probs = [], []
        for i in range(n):
            q = self.distribution(logits)  # (1, vocab)
            # inverse CDF with a uniform from the host: the steps stay lazy, one evaluation in all
            u = mx.array(min(self.rng.random(), 1 - 2**-24), dtype=mx.float32)  # below 1 in float32 too
            cumulative = mx.cumsum(q, axis=-1)
            token = mx.minimum(mx.sum(cumulative <= u * cumulative[:, -1:], axis=-1), q.shape[-1] - 1)
            tokens.append(token.astype(mx.int32))
            probs.append(q)
            mx.async_eval(tokens[-1], q)  # computed while the next step's graph is built
            if i + 1 < n:
                logits = self.state.step(tokens[-1])
        mx.eval(tokens, probs)
        tokens = [t.item() for t in tokens]
        self.fed = context + tokens[:-1]
        return Proposal(tokens, np.array(mx.concatenate(probs)))

    def _catch_up(self, context: list[int]) -> mx.array:
        """Bring the state to all of `context`; return its logits (1, vocab) for the token after it."""
        if self.state is None or not _starts(context, self.fed, len(self.fed) + 1):
            if self.saved is not None and _starts(context, self.fed[: self.saved_length], self.saved_length + 1):
                self.state.rewind(self.saved)
                self.fed = self.fed[: self.saved_length]
            else:  # the first round (or a context it has never seen): start over from its window
                self.state = self.model.make_cache(1)
                self.fed = context[:-1][-self.model.config.context_length :]
                self.state.prefill(mx.array([self.fed], dtype=mx.int32))
                self.fed = context[:-1]
        return self.state.extend(mx.array([context[len(self.fed) :]], dtype=mx.int32))[:, -1]


def _starts(context: list[int], prefix: list[int], least: int) -> bool:
    """Whether `context` begins with `prefix` and holds at least `least` tokens."""
    return len(context) >= least and context[: len(prefix)] == prefix


class LookupDraft:
    """Prompt lookup decoding (Saxena 2023): no model; propose the tokens that followed the last earlier
    occurrence of the context's last `longest` .. `shortest` tokens (longest first), searched within the
    last `window` tokens. Text that repeats itself (names, quotes, code) is drafted for free."""

    def __init__(self, shortest: int = 3, longest: int = 8, window: int = 4096):
        if not 1 <= shortest <= longest:
            raise ValueError(f"need 1 <= shortest <= longest, got {shortest} and {longest}")
        self.shortest, self.longest, self.window = shortest, longest, window

    def propose(self, context: Sequence[int], n: int) -> Proposal:
        text = "".join(map(chr, context[-self.window :]))  # a str holds any token id, and rfind is fast
        for size in range(min(self.longest, len(text) - 1), self.shortest - 1, -1):
            at = text.rfind(text[-size:], 0, len(text) - 1)  # an occurrence that a token follows
            if at >= 0:
                return Proposal([ord(c) for c in text[at + size : at + size + n]])
        return Proposal([])


class CorpusDraft:
    """A corpus n-gram draft: no model; propose, a token at a time, the token that most often followed the
    longest ending of the context (up to 24 tokens, backing off to 2) in a corpus (ngram.NgramIndex),
    stopping where none occurred or where that token followed under `least_share` of its occurrences.
    On text like the corpus a model was trained on (its stories, its templates) it is often right."""

    def __init__(self, tokens: np.ndarray, least_share: float = 0.0):
        self.index, self.least_share = NgramIndex(tokens), least_share

    def propose(self, context: Sequence[int], n: int) -> Proposal:
        return Proposal(self.index.continuation(context, n, self.least_share))


def corpus_tokens(source: str, model) -> np.ndarray:
    """The corpus `--draft-model corpus:SOURCE` names, as the model's tokens: a file's bytes, or for
    `builtin` the first BUILTIN_CORPUS_BYTES of the built-in stories, each ended by the end token."""
    layout = layout_of(model.config)
    if source == BUILTIN_CORPUS:
        end = np.array([layout.end], layout.dtype)
        documents = stories.documents(0, BUILTIN_CORPUS_BYTES)
        return np.concatenate([part for doc in documents for part in (layout.encode(doc.encode()), end)])
    path = Path(source).expanduser()
    if not path.is_file():
        raise DraftNotFound(
            f"no corpus file at {source}: --draft-model {CORPUS}PATH takes a text or bytes file, "
            f"or {CORPUS}{BUILTIN_CORPUS} for the built-in stories"
        )
    tokens = layout.encode(path.read_bytes())
    if tokens.size < 2:
        raise DraftError(f"--draft-model {CORPUS}{source}: the file holds fewer than 2 bytes, nothing to draft from")
    return tokens


def check_draft(model, draft) -> None:
    """A draft model must read and write the same tokens as the model; its context may differ (each
    decoding state slides its own window)."""
    ours, theirs = layout_of(model.config), layout_of(draft.config)
    if theirs is not ours:
        raise DraftError(
            f"the draft model reads the {theirs.name} token layout and the model the {ours.name} layout: "
            f"use a draft model trained with shift_bytes {'on' if ours.offset else 'off'}"
        )
    if draft.config.num_tokens != model.config.num_tokens:
        raise DraftError(
            f"the draft model has {draft.config.num_tokens} tokens and the model {model.config.num_tokens}: "
            f"use a draft model with num_tokens {model.config.num_tokens}"
        )


def load_draft(spec: str, model, bits: int | None = None, dtype: mx.Dtype | None = None):
    """What `--draft-model spec` names, for speculative_generate_step: `lookup` (a LookupDraft), a draft
    model (a weights directory or a Hugging Face repo id, checked against `model`: check_draft), or
    `corpus:PATH` or `corpus:builtin` (a CorpusDraft), or `lookup+` any of these: prompt lookup first, the
    other where lookup has nothing to propose."""
    if spec == LOOKUP:
        return LookupDraft()
    if spec.startswith(CORPUS):
        return CorpusDraft(corpus_tokens(spec[len(CORPUS) :], model))
    if spec.startswith(LOOKUP + "+"):
        rest = spec[len(LOOKUP) + 1 :]
        return [
            LookupDraft(),
            load_draft(rest, model, bits, dtype)
            if rest.startswith(CORPUS)
            else load_draft_model(rest, model, bits, dtype),
        ]
    return load_draft_model(spec, model, bits, dtype)


def load_draft_model(spec: str, model, bits: int | None = None, dtype: mx.Dtype | None = None):
    """The draft model at `spec` (a weights directory or a Hugging Face repo id), checked against `model`."""
    if not Path(spec).expanduser().exists() and not looks_like_repo_id(spec):
        raise DraftNotFound(
            f"no draft model at {spec}: --draft-model takes a weights directory (config.json and "
            f"model.safetensors), a Hugging Face repo id, {LOOKUP}, {CORPUS}PATH, {CORPUS}{BUILTIN_CORPUS} or {LOOKUP}+ one of these"
        )
    try:
        draft = load_for_inference(spec, bits=bits, dtype=dtype)
    except UserError as error:
        raise DraftError(f"--draft-model {spec}: {error}") from None
    check_draft(model, draft)
    return draft
