"""Speculative decoding (speculative.py) and the two pieces of the decoding contract it stands on:
`DecodingState.extend` equals k steps, and going back to a copy after a rejection equals recomputation,
for every registered architecture. Greedy output is byte for byte plain greedy output; sampled output
follows the plain sampler's distribution (chi-squared tests with fixed seeds)."""

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte.generation import generate_step
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.ngram import NgramIndex
from mlx_megabyte.sampling import make_distribution, make_sampler
from mlx_megabyte.speculative import (
    CorpusDraft,
    DraftError,
    LookupDraft,
    ModelDraft,
    Proposal,
    SpeculationStats,
    check_draft,
    load_draft,
    speculative_generate_step,
    verify,
)

from .helpers import job_texts

NAMES = list(ARCHITECTURES)
TEXT = (
    b"Once upon a time there was a little dog named Max. Max liked to run in the park with his ball. "
    b'One day he met a cat. "Hello," said the cat. They played all day and became friends.\n'
)


def model_for(name, seed=0, **changes):
    mx.random.seed(seed)
    config = ARCHITECTURES[name].presets["tiny"]
    model = build(config.replace(**changes) if changes else config)
    model.eval()
    mx.eval(model.parameters())
    return model


def ids_of(data: bytes) -> mx.array:
    return mx.array([list(data)], dtype=mx.int32)


def take(generator, count) -> list[int]:
    return [y.item() for _, y in zip(range(count), generator)]


def chi_squared_limit(df: int, z: float = 3.09) -> float:
    """The chi-squared statistic that df degrees of freedom exceed with probability ~1e-3 (z: the normal
    quantile), by the Wilson-Hilferty approximation."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def chi_squared(counts: np.ndarray, expected: np.ndarray, least: float = 5) -> tuple[float, int]:
    """(statistic, degrees of freedom), cells expected fewer than `least` times pooled into one."""
    small = expected < least
    observed = np.append(counts[~small], counts[small].sum())
    wanted = np.append(expected[~small], expected[small].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    return float(((observed - wanted) ** 2 / wanted).sum()), len(wanted) - 1


# --- the contract: extend, and rollback --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_extend_equals_one_step_per_byte(name):
    model = model_for(name)
    L = model.config.context_length
    rng = np.random.default_rng(0)
    ids = mx.concatenate([ids_of((TEXT * 4)[: L + 40]), mx.array(rng.integers(0, 256, (1, L + 40)), mx.int32)])
    worst = 0.0
    for start in (0, 1, 7, 8, 13, L - 10, L - 3, L):  # patch boundaries inside, and the window sliding
        for k in (1, 3, 9, 17):
            state = model.make_cache(2)
            state.prefill(ids[:, :start])
            stepped = state.copy()
            got = state.extend(ids[:, start : start + k])
            want = mx.stack([stepped.step(ids[:, start + i]) for i in range(k)], axis=1)
            assert got.shape == (2, k, model.config.num_tokens)
            assert (state.length, state.slid) == (stepped.length, stepped.slid)
            after = ids[:, start + k]
            worst = max(
                worst, mx.abs(got - want).max().item(), mx.abs(state.step(after) - stepped.step(after)).max().item()
            )
    assert worst <= 1e-4
    assert model.make_cache(1).extend(mx.zeros((1, 0), mx.int32)).shape == (1, 0, model.config.num_tokens)


@pytest.mark.parametrize("name", NAMES)
def test_the_state_after_a_rollback_equals_recomputation(name):
    """As speculative decoding does it: mark, extend by proposals, rewind to the mark on a rejection at
    position j, feed the accepted bytes and the replacement; the state is as if it never saw the rest. One
    state goes through every round (marks cut caches that later rounds write past again), and one round's
    proposals slide the window."""
    model = model_for(name)
    L = model.config.context_length
    data = (TEXT * (L // len(TEXT) + 2))[: L + 20]
    rng = np.random.default_rng(3)
    state = model.make_cache(1)
    state.prefill(ids_of(data[:20]))
    for start, j in ((20, 0), (21, 2), (24, 5), (30, 7), (38, 3), (L - 4, 1)):
        if state.length != start:
            state.extend(ids_of(data[state.length : start]))
        mark = state.mark()
        proposed = 8 if start < L - 4 else 12  # the last round's go past the context: the window slides
        state.extend(mx.array(rng.integers(0, 256, (1, proposed)), mx.int32))  # rejected from j on
        state.rewind(mark)
        assert state.slid == 0
        logits = state.extend(ids_of(data[start : start + j + 1]))  # j accepted and the replacement
        full = model(ids_of(data[: start + j + 1]), include_start=True)
        assert mx.abs(logits - full[:, start + 1 :]).max().item() <= 1e-4, (start, j)
    for t in range(state.length, L):  # and it goes on as recomputation does
        got = state.step(mx.array([data[t]]))
        assert mx.abs(got - model(ids_of(data[: t + 1]), include_start=True)[:, -1]).max().item() <= 1e-4, t


def test_rewinding_megabyte_leaves_its_global_caches_updatable_in_place():
    """MEGABYTE's mark holds no cache buffer (DecodingState.mark): after a rewind the global stage's keys
    are the same buffer, written past the mark, not a copy of it."""
    model = model_for("megabyte")
    state = model.make_cache(1)
    state.prefill(ids_of(TEXT[:40]))
    first = state.caches[0][0]
    mark = state.mark()
    assert not any(isinstance(value, mx.array) and value is first.keys for value in mx_tree(mark))
    state.extend(ids_of(TEXT[40:60]))
    state.rewind(mark)
    assert state.caches[0][0] is first and first.offset == 40 // model.config.patch_size(0) + 1


def test_megabyte_marks_its_global_steps_on_the_way_and_each_rewinds_to_recomputation():
    """extend(ids, marks) marks the state after every global step inside it (the bytes of a completed
    patch, and more after them); rewinding to the mark after j bytes and going on equals recomputation."""
    model = model_for("megabyte")
    size = model.config.patch_size(0)
    data = (TEXT * 2)[:120]
    state = model.make_cache(1)
    state.prefill(ids_of(data[:13]))
    marks = []
    state.extend(ids_of(data[13 : 13 + 3 * size + 2]), marks)
    # 13 bytes in: the patches end after 16, 24 and 32 bytes, each followed by more bytes in the call
    assert [j for j, _ in marks] == [16 - 13, 24 - 13, 32 - 13]
    for j, mark in reversed(marks):  # later marks first: a mark is used once, and these nest
        state.rewind(mark)
        assert state.length == 13 + j
        got = state.extend(ids_of(data[13 + j : 13 + j + 5]))
        want = model(ids_of(data[: 13 + j + 5]), include_start=True)[:, 13 + j + 1 :]
        assert mx.abs(got - want).max().item() <= 1e-4, j


def test_megabyte_proposes_no_byte_that_completes_a_patch_unless_it_must():
    """cheap_bytes: proposals stop one byte short of the patch's end (that byte would take a global step
    before it is known to stand); a patch one byte short of complete takes them all."""
    model = model_for("megabyte")
    size = model.config.patch_size(0)
    state = model.make_cache(1)
    state.prefill(ids_of(TEXT[: size + 2]))  # 2 bytes into the second patch
    assert state.cheap_bytes(0, 16) == size - 3
    assert state.cheap_bytes(1, 16) == size - 4
    assert state.cheap_bytes(0, 2) == 2
    assert state.cheap_bytes(size - 3, 16) == 16  # the next byte completes the patch whatever is proposed
    assert model_for("spacebyte").make_cache(1).cheap_bytes(3, 16) == 16  # others: all that are asked


def mx_tree(value):
    """Every value reachable through tuples, lists and dicts."""
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in mx_tree(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in mx_tree(item)]
    return [value]


# --- the sampler's distribution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [dict(temp=1.0), dict(temp=0.7, top_k=5), dict(temp=1.3, top_p=0.6), dict(temp=0.9, min_p=0.2)]
)
def test_make_distribution_is_what_make_sampler_draws_from(settings):
    logits = mx.array(np.random.default_rng(5).normal(0, 2, (1, 40)), mx.float32)
    probs = np.array(make_distribution(**settings)(logits))[0]
    assert abs(probs.sum() - 1) <= 1e-5
    draws = 20000
    keys = mx.random.split(mx.random.key(11), draws)
    samples = np.array(make_sampler(**settings)(mx.broadcast_to(logits, (draws, 40)), keys))
    counts = np.bincount(samples, minlength=40)
    assert counts[probs == 0].sum() == 0  # what is filtered out is never drawn
    statistic, df = chi_squared(counts, probs * draws)
    assert statistic <= chi_squared_limit(max(df, 1)), (statistic, df)


def test_greedy_distribution_is_the_argmax():
    logits = mx.array([[0.5, 3.0, 3.0, -1.0]])
    assert np.array(make_distribution(0.0)(logits)).tolist() == [[0.0, 1.0, 0.0, 0.0]]  # the first, as argmax


# --- the acceptance rule ---------------------------------------------------------------------------------


def rule_samples(rule, p, q, trials, seed=0):
    """The token `rule` emits first, for a one-token proposal drawn from q, over many trials."""
    rng = np.random.default_rng(seed)
    out = np.empty(trials, np.int64)
    for i in range(trials):
        x = int(rng.choice(len(q), p=q))
        accepted, token = rule(np.stack([p, p]), Proposal([x], q[None]), rng)
        out[i] = x if accepted else token
    return np.bincount(out, minlength=len(p))


def test_the_rule_gives_the_models_distribution_and_always_accepting_does_not():
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05, 0.0])
    q = np.array([0.1, 0.1, 0.3, 0.1, 0.2, 0.2])  # even a token p never draws gets proposed
    trials = 6000
    counts = rule_samples(verify, p, q, trials)
    assert counts[5] == 0
    statistic, df = chi_squared(counts, p * trials)
    assert statistic <= chi_squared_limit(df), statistic

    def always_accept(probs, proposal, rng):
        return len(proposal.tokens), 0

    def rejected_from_p(probs, proposal, rng):  # the replacement drawn from p instead of max(0, p - q)
        x, q = proposal.tokens[0], proposal.probs[0]
        return (1, 0) if rng.random() * q[x] < probs[0][x] else (0, int(rng.choice(len(q), p=probs[0])))

    for wrong_rule in (always_accept, rejected_from_p):  # the test tells wrong rules apart, by far
        wrong, df = chi_squared(rule_samples(wrong_rule, p, q, trials), p * trials)
        assert wrong > 5 * chi_squared_limit(df), (wrong_rule.__name__, wrong)


def test_a_certain_proposal_is_kept_with_the_models_probability():
    p = np.array([0.6, 0.3, 0.1])
    rng = np.random.default_rng(1)
    counts = np.zeros(3)
    for _ in range(4000):
        accepted, token = verify(np.stack([p, p]), Proposal([1]), rng)
        counts[1 if accepted else token] += 1
    statistic, df = chi_squared(counts, p * 4000)
    assert statistic <= chi_squared_limit(df)


# --- speculative decoding end to end --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_greedy_speculative_output_is_plain_greedy_output(name):
    """Every architecture as the model, on prompts up to its context; drafts of another architecture and
    one with a shorter context (its window slides first), then the model itself and prompt lookup."""
    model = model_for(name)
    L = model.config.context_length
    other = next((n for n in NAMES if n != name), name)
    drafts = [model_for(other, seed=1), model_for("megabyte", seed=2, max_seq_len=(8, 8))]

    plain = {}

    def check(prompt, draft, num_draft):
        if prompt not in plain:  # each prompt's plain greedy bytes, once
            plain[prompt] = take(generate_step(model, ids_of(prompt), make_sampler(0.0)), 40)
        stats = SpeculationStats()
        spec = speculative_generate_step(model, draft, ids_of(prompt), make_distribution(0.0), num_draft, stats=stats)
        assert take(spec, 40) == plain[prompt], (len(prompt), num_draft, type(draft).__name__)
        return stats

    for prompt in (TEXT[:1], TEXT[:40], (TEXT * 3)[: L - 10]):
        for num_draft in (1, 3, 5):
            for draft in drafts:
                check(prompt, draft, num_draft)
    assert check(TEXT[:40], model, 3).acceptance_rate == 1.0
    check((TEXT * 2)[:200], LookupDraft(), 5)


def test_a_model_drafting_for_itself_has_every_proposal_accepted_when_sampling():
    model = model_for("megabyte")
    stats = SpeculationStats()
    take(speculative_generate_step(model, model, ids_of(TEXT[:30]), make_distribution(1.0), 4, seed=0, stats=stats), 80)
    assert stats.proposed >= 60 and stats.acceptance_rate == 1.0


def exact_joint(model, prompt, distribution, length):
    """The probability of every sequence of `length` bytes after `prompt`, by enumeration: {bytes: p}."""
    joint = {(): 1.0}
    for _ in range(length):
        sequences = list(joint)
        ids = mx.array([list(prompt) + list(s) for s in sequences], mx.int32)
        probs = np.array(distribution(model(ids, include_start=True)[:, -1])).astype(np.float64)
        joint = {s + (int(b),): joint[s] * row[b] for s, row in zip(sequences, probs) for b in np.flatnonzero(row)}
    return joint


def contrary(logits):
    """A draft's distribution that disagrees with top-3 sampling: over the top 4, the less likely the
    more often (so proposals are often rejected, and the 4th always)."""
    top = make_distribution(1.0, top_k=4)(logits)
    weights = mx.where(top > 0, 1 / mx.maximum(top, 1e-9), 0.0)
    return weights / weights.sum(axis=-1, keepdims=True)


def sampled_runs(runs):
    """The first three bytes (a plain draw, then a round of two proposals and what follows them) of
    seeded runs of a tiny model with top-3 sampling, its draft the same model drawing from `contrary`;
    and the bytes' exact distribution. (Checked by hand: with the rule replaced by "always accept" the
    test fails, 381 of 800 runs giving sequences of probability 0 and chi-squared 227 on the rest; with
    the replacement drawn from p instead of max(0, p - q), chi-squared 63; the rule itself gives 13;
    the limit is 54.)"""
    model = model_for("megabyte")
    distribution = make_distribution(1.0, top_k=3)
    joint = exact_joint(model, TEXT[:12], distribution, 3)
    cells = {s: i for i, s in enumerate(joint)}
    counts, stats = np.zeros(len(cells) + 1), SpeculationStats()  # the last: sequences of probability 0
    for seed in range(runs):
        draft = ModelDraft(model, contrary, np.random.default_rng(10**6 + seed))
        steps = speculative_generate_step(model, draft, ids_of(TEXT[:12]), distribution, 2, seed=seed, stats=stats)
        counts[cells.get(tuple(take(steps, 3)), -1)] += 1
    return counts, np.array([*joint.values(), 0.0]) * runs, stats


def test_sampled_speculative_output_follows_the_plain_samplers_distribution():
    counts, expected, stats = sampled_runs(800)
    assert counts[-1] == 0  # nothing the sampler would never draw
    counts, expected = counts[:-1], expected[:-1]
    assert 0.2 < stats.acceptance_rate < 0.9  # both ways out of a round are taken often
    statistic, df = chi_squared(counts, expected)
    assert statistic <= chi_squared_limit(df), (statistic, df)


def test_prompt_lookup_proposes_what_followed_the_last_occurrence():
    draft = LookupDraft(shortest=3, longest=8)
    context = list(b"the cat sat. the dog ran. the c")
    assert bytes(draft.propose(context, 4).tokens) == b"at s"  # "the c" last occurred in "the cat"
    assert draft.propose(list(b"abcdefg"), 4).tokens == []  # nothing repeats
    assert bytes(draft.propose(list(b"xyz xyz"), 9).tokens) == b" xyz"  # what there is, fewer than asked


def test_the_ngram_index_proposes_the_most_frequent_continuation_of_the_longest_context():
    corpus = np.frombuffer(b"the cat sat. the cat ran. the dog. a dot", np.uint8)
    index = NgramIndex(corpus, lengths=(5, 2))
    assert index.next_token(list(b"xx the ")) == ord("c")  # "the " -> c twice, d once
    assert index.next_token(list(b"xx the "), least_share=0.7) is None  # c followed 2 of 3 times
    assert index.next_token(list(b" a do")) == ord("t")
    assert index.next_token(list(b"xx do")) == ord("g")  # "xx do" is unseen: "do" -> g or t, a tie: the lower
    assert bytes(index.continuation(list(b"zz the c"), 6)) == b"at ran"  # " cat " -> r or s: the lower again
    assert index.next_token(list(b"qq")) is None and index.continuation(list(b"q"), 4) == []
    assert index.nbytes > 0


def test_a_corpus_draft_gives_plain_greedy_output_and_reads_a_file(tmp_path):
    """The corpus holds the model's own greedy continuation (a random model's bytes match no story) and
    TEXT: the first is proposed and kept, rounds of several bytes."""
    model = model_for("megabyte")
    prompt = ids_of(TEXT[:30])
    want = take(generate_step(model, prompt, make_sampler(0.0)), 30)
    (tmp_path / "corpus.txt").write_bytes(TEXT[:30] + bytes(want) + TEXT[30:])
    draft = load_draft(f"corpus:{tmp_path / 'corpus.txt'}", model)
    assert isinstance(draft, CorpusDraft)
    stats = SpeculationStats()
    assert take(speculative_generate_step(model, draft, prompt, make_distribution(0.0), 4, stats=stats), 30) == want
    assert stats.accepted >= 20 and stats.rounds <= 10
    assert bytes(draft.propose(list(TEXT[40:70]), 8).tokens) == TEXT[70:78]  # the corpus goes on as TEXT does
    lookup_first = load_draft(f"lookup+corpus:{tmp_path / 'corpus.txt'}", model)
    assert isinstance(lookup_first[0], LookupDraft) and isinstance(lookup_first[1], CorpusDraft)


def test_bad_drafts_are_one_line_errors(tmp_path):
    model = model_for("megabyte")
    with pytest.raises(DraftError, match="shift_bytes off"):
        check_draft(model, model_for("spacebyte", shift_bytes=True, num_tokens=258))
    with pytest.raises(ValueError, match="num_tokens 256"):
        check_draft(model, model_for("megabyte", num_tokens=300))
    with pytest.raises(ValueError, match="num_tokens 256"):  # through the generator too, before any byte
        next(speculative_generate_step(model, model_for("hnet", num_tokens=300), ids_of(b"a"), make_distribution(0.0)))
    with pytest.raises(FileNotFoundError, match="--draft-model takes a weights directory"):
        load_draft(str(tmp_path / "missing"), model)
    with pytest.raises(DraftError, match="--draft-model"):
        load_draft(str(tmp_path), model)  # a directory without weights
    with pytest.raises(FileNotFoundError, match="no corpus file at"):
        load_draft(f"corpus:{tmp_path / 'missing.txt'}", model)
    (tmp_path / "one.txt").write_bytes(b"a")
    with pytest.raises(DraftError, match="fewer than 2 bytes"):
        load_draft(f"corpus:{tmp_path / 'one.txt'}", model)
    check_draft(model, model_for("hnet"))  # another architecture and context: fine


def test_the_server_batcher_speculates_greedy_single_completions_only_and_answers_as_plain():
    """A greedy one-completion job is decoded speculatively beside a batched sampled job; both answers equal
    those of a batcher without a draft, and the draft's proposals were counted. The draft: another model
    (some proposals rejected), the model itself after lookup (lookup never matches a random model's bytes)."""
    from mlx_megabyte.batching import Batcher, Job

    model = model_for("megabyte")
    prompt = b"\x03" + (TEXT * 2)[:150]

    def answers(draft):
        batcher = Batcher(lambda: model, max_rows=4, draft=draft, num_draft=3).start()
        jobs = [
            Job(prompt, prompt, 1, 60, make_sampler(0.0), (0.0, 1.0, 0.0, 0, ()), seed=0),
            Job(prompt, prompt, 2, 30, make_sampler(1.0), (1.0, 1.0, 0.0, 0, ()), seed=5),
        ]
        for job in jobs:
            batcher.submit(job)
        texts = [job_texts(job) for job in jobs]
        status = batcher.status()
        batcher.stop()
        return texts, status

    plain, plain_status = answers(None)
    assert len(plain[0][0]) > 0 and "draft_proposed" not in plain_status
    spec, status = answers(lambda m: model_for("megabyte", seed=1))
    assert spec == plain and status["draft_proposed"] > 10 and status["draft_accepted"] < status["draft_proposed"]
    assert status["rows_stepped"] == 60  # only the sampled job's two rows went through the groups
    spec, status = answers(lambda m: [LookupDraft(), m])
    assert spec == plain and status["draft_proposed"] > 10 and status["draft_accepted"] == status["draft_proposed"]
