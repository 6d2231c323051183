"""The prompt cache (prompt_cache.py): starting from a cached prefix gives the logits a prefill from scratch
gives, on every architecture; memory stays within the budget, least recently used first out; prompt-cache
files round-trip, and bad ones are one-line errors."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import MEGABYTE, ModelConfig, save
from mlx_megabyte.batching import Batcher, Job
from mlx_megabyte.errors import UserError
from mlx_megabyte.generation import fit_context, generate, generate_step
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.prompt_cache import PromptCache, load_prompt_cache, save_prompt_cache
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import encode_prompt

from .helpers import job_texts, one_line_error, run

NAMES = list(ARCHITECTURES)


def model_for(name, seed=0):
    mx.random.seed(seed)
    model = build(ARCHITECTURES[name].presets["tiny"])
    model.eval()
    mx.eval(model.parameters())  # here, not in the batcher's thread
    return model


def prompt_ids(length, rows=1, seed=0):
    tokens = np.random.default_rng(seed).integers(1, 200, size=length)
    return mx.array(np.repeat(tokens[None], rows, axis=0).astype(np.int32))


@pytest.mark.parametrize("name", NAMES)
def test_a_cached_prefix_gives_the_logits_of_a_prefill_from_scratch(name):
    model = model_for(name)
    cache = PromptCache(step_ratio=1)  # always continue a cached prefix, however much is left
    ids = prompt_ids(40, rows=2)
    want = model.make_cache(2).prefill(ids)
    state, first = cache.start(model, ids[:, :25])
    assert cache.stats["misses"] == 1 and len(cache) == 1
    np.testing.assert_allclose(first, model.make_cache(2).prefill(ids[:, :25]), atol=1e-5)
    for rows, part in ((2, 40), (1, 40), (3, 33)):  # a longer prompt, the same one again, a shorter one
        state, logits = cache.start(model, mx.repeat(ids[:1, :part], rows, axis=0))
        reference = model.make_cache(rows)
        np.testing.assert_allclose(logits, reference.prefill(mx.repeat(ids[:1, :part], rows, axis=0)), atol=1e-5)
        assert state.batch_size == rows and state.length == part
        # and the state goes on as the reference does
        byte = mx.array([7] * rows)
        np.testing.assert_allclose(state.step(byte), reference.step(byte), atol=1e-5)
    assert cache.stats["hits"] == 3
    np.testing.assert_allclose(cache.lookup(np.array(ids[0]))[1], want[:1], atol=1e-5)


def test_a_long_remainder_is_prefilled_from_scratch_exactly():
    model = model_for("megabyte")
    cache = PromptCache()  # default rule: continue only when at most 1/64 of the prompt is left
    ids = prompt_ids(60)
    cache.start(model, ids[:, :20])
    state, logits = cache.start(model, ids)
    assert cache.stats == {"hits": 0, "misses": 2, "bytes_reused": 0}
    assert mx.array_equal(logits, model.make_cache(1).prefill(ids))
    state, again = cache.start(model, ids)  # the whole prompt is cached: its own logits, exactly
    assert cache.stats["hits"] == 1 and mx.array_equal(again, logits)


def test_memory_stays_within_the_budget_and_the_least_recently_used_goes_first():
    model = model_for("megabyte")
    states = []
    for i in range(12):
        state = model.make_cache(1)
        logits = state.prefill(prompt_ids(30 + i, seed=i))
        states.append((np.array(state.tokens[0]), state, logits))
    one = states[0][1].nbytes() + states[0][2].nbytes
    cache = PromptCache(max_bytes=int(4.5 * one), max_entries=100)
    for i, (tokens, state, logits) in enumerate(states):
        assert cache.insert(tokens, state, logits)
        assert cache.nbytes <= cache.max_bytes
        if i == 2:
            cache.lookup(states[0][0])  # used again: now the most recent
    kept = cache.keys()
    assert 3 <= len(kept) <= 4 and cache.nbytes == sum(cache._entries[k].nbytes for k in cache._entries)
    assert kept[-1] == states[-1][0].tolist() and states[1][0].tolist() not in kept
    assert cache.nbytes <= cache.max_bytes
    small = PromptCache(max_bytes=10**9, max_entries=2)
    for tokens, state, logits in states[:5]:
        small.insert(tokens, state, logits)
    assert small.keys() == [states[3][0].tolist(), states[4][0].tolist()]
    assert not PromptCache(max_bytes=one // 2).insert(*states[0])  # a state alone over the budget is not kept


@pytest.mark.parametrize("name", NAMES)
def test_a_prompt_cache_file_round_trips_and_greedy_decoding_goes_on_byte_for_byte(name, tmp_path):
    model = model_for(name)
    ids = prompt_ids(30)
    state = model.make_cache(1)
    logits = state.prefill(ids[:, :24])
    save_prompt_cache(tmp_path / "p.safetensors", model, ids[0, :24].tolist(), state, logits)
    tokens, loaded, loaded_logits = load_prompt_cache(tmp_path / "p.safetensors", model)
    assert tokens == ids[0, :24].tolist() and mx.array_equal(loaded_logits, logits)
    greedy = lambda logits: mx.argmax(logits, axis=-1)  # noqa: E731
    want = [y.item() for _, y in zip(range(30), generate_step(model, ids, greedy))]
    cache = PromptCache(step_ratio=1)
    cache.insert(tokens, loaded, loaded_logits)
    got = [y.item() for _, y in zip(range(30), generate_step(model, ids, greedy, prompt_cache=cache))]
    assert cache.stats["hits"] == 1 and got == want


def test_a_file_of_an_older_format_is_refused_in_one_line(tmp_path):
    # format 1 held SpaceByte's and H-Net's plain byte-layer caches, which today's step cannot read
    model = model_for("spacebyte")
    ids = prompt_ids(12)
    state = model.make_cache(1)
    save_prompt_cache(tmp_path / "p.safetensors", model, ids[0].tolist(), state, state.prefill(ids))
    arrays, metadata = mx.load(str(tmp_path / "p.safetensors"), return_metadata=True)
    mx.save_safetensors(
        str(tmp_path / "old.safetensors"), arrays, {**metadata, "format": "mlx-megabyte prompt cache 1"}
    )
    with pytest.raises(UserError, match=r"saved by another version of mlx-megabyte .* save it again") as error:
        load_prompt_cache(tmp_path / "old.safetensors", model)
    assert "\n" not in str(error.value)


def test_the_batcher_with_a_prompt_cache_serves_what_generate_writes():
    model = model_for("megabyte", seed=7)
    cache = PromptCache(step_ratio=1)
    batcher = Batcher(lambda: model, max_rows=8, prompt_cache=cache).start()
    sampler = make_sampler(0.9, min_p=0.05)
    prompts = [b"Once upon a time", b"Once upon a time", b"Once upon a time there", b"Max"]
    served = []
    try:
        for i, prompt in enumerate(prompts):  # one after the other: each finds the ones before cached
            fitted, _ = fit_context(encode_prompt(prompt), model.config.context_length)
            job = Job(fitted, prompt, n=2, max_tokens=30, sampler=sampler, settings=(0.9,), seed=5)
            batcher.submit(job)
            served.append(job_texts(job))
    finally:
        batcher.stop()
    assert cache.stats["hits"] == 2 and cache.stats["misses"] == 2
    for prompt, texts in zip(prompts, served):
        assert texts == generate(model, prompt, max_tokens=30, sampler=sampler, num_samples=2, seed=5), prompt


@pytest.mark.parametrize("name", NAMES)
def test_resume_and_the_states_kept_part_way_agree_with_a_prefill_from_scratch(name):
    model = model_for(name)
    ids = prompt_ids(45, rows=2)
    for start, end in ((0, 20), (8, 30), (21, 45), (30, 31)):  # from patch boundaries and not, a patch or less
        state = model.make_cache(2)
        if start:
            state.prefill(ids[:, :start])
        reference = model.make_cache(2)
        np.testing.assert_allclose(state.resume(ids[:, start:end]), reference.prefill(ids[:, :end]), atol=1e-5)
        assert state.length == end and state.can_merge(reference)
        byte = mx.array([9, 200])
        np.testing.assert_allclose(state.step(byte), reference.step(byte), atol=1e-5)
    state = model.make_cache(2)
    logits, kept = state.prefill_keeping(ids, [5, 20, 36, 45, 90])
    assert mx.array_equal(logits, model.make_cache(2).prefill(ids))  # the prompt's own logits: exactly a prefill's
    # MEGABYTE keeps states at its global patch boundaries (8 bytes), the others none
    assert [k.length for k in kept] == ([16, 32] if state.resumes_as_prefill else [])
    for part in kept:
        reference = model.make_cache(2)
        reference.prefill(ids[:, : part.length])
        assert part.can_merge(reference) and part.nbytes() < state.nbytes()
        byte = mx.array([9, 200])
        np.testing.assert_allclose(part.copy().step(byte), reference.copy().step(byte), atol=1e-5)
        np.testing.assert_allclose(part.resume(ids[:, part.length :]), logits, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_prompt_sharing_only_a_prefix_starts_from_a_state_kept_part_way(name):
    model = model_for(name)
    cache = PromptCache(min_prefix=16, min_tail=4)
    prefix, first, second = prompt_ids(40, seed=1), prompt_ids(12, seed=2), prompt_ids(9, seed=3)
    a, b = mx.concatenate([prefix, first], axis=1), mx.concatenate([prefix, mx.repeat(second, 1, axis=0)], axis=1)
    cache.start(model, a)
    resumes = model.make_cache(1).resumes_as_prefill
    # 52 bytes: states after L - L/2, L - L/4, ... at least 16 in and 4 from the end, at patch boundaries
    assert sorted(len(k) for k in cache.keys()) == ([24, 32, 40, 52] if resumes else [52])
    state, logits = cache.start(model, mx.repeat(b, 3, axis=0))
    want = model.make_cache(3).prefill(mx.repeat(b, 3, axis=0))
    if resumes:  # from the state after 40 bytes, the whole shared prefix: 9 bytes read
        assert cache.stats == {"hits": 1, "misses": 1, "bytes_reused": 40}
        np.testing.assert_allclose(logits, want, atol=1e-5)
    else:  # byte by byte would cost more than reading it all: from scratch, exactly
        assert cache.stats["misses"] == 2 and mx.array_equal(logits, want)
    assert state.batch_size == 3 and state.length == 49
    byte = mx.array([5, 6, 7])
    np.testing.assert_allclose(
        state.step(byte),
        model.make_cache(3).prefill(mx.concatenate([mx.repeat(b, 3, axis=0), byte[:, None]], axis=1)),
        atol=1e-5,
    )
    assert cache.lookup(np.array(prefix[0, :40]))[1] is None if resumes else True  # a part-way state has no logits


def test_with_states_kept_part_way_memory_stays_within_the_budget_and_evicted_states_are_gone():
    model = model_for("megabyte")
    one = PromptCache(min_prefix=16, min_tail=4)
    one.start(model, prompt_ids(60, seed=100))
    per_prompt = one.nbytes  # a prompt's state and its part-way states
    cache = PromptCache(max_bytes=int(2.5 * per_prompt), max_entries=1000, min_prefix=16, min_tail=4)
    prompts = [prompt_ids(60, seed=i) for i in range(12)]
    for i, ids in enumerate(prompts):
        cache.start(model, ids)
        held = sum(e.state.nbytes() + (0 if e.logits is None else e.logits.nbytes) for e in cache._entries.values())
        assert held == cache.nbytes <= cache.max_bytes, i
    kept = cache.keys()
    assert prompts[-1][0].tolist() in kept and len(kept) > 5
    for ids in prompts[:8]:  # the oldest prompts went, their part-way states with them
        tokens = ids[0].tolist()
        assert not any(tokens[: len(k)] == k for k in kept)
        assert cache.lookup(np.array(tokens)) == (None, None, 0)


CONFIG = ModelConfig(num_tokens=256, dim=(32, 16), depth=(2, 2), max_seq_len=(16, 4), dim_head=8, heads=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    for seed in (0, 1):
        mx.random.seed(seed)
        save(MEGABYTE(CONFIG), folder / f"model{seed}")
    return folder


def test_the_cli_saves_and_loads_a_prompt_cache_and_bad_files_are_one_line(weights, tmp_path):
    generate_cli = ("-m", "mlx_megabyte.generate", "--model", str(weights / "model0"), "--temp", "0", "-m", "40")
    file = str(tmp_path / "once.safetensors")
    saved = run(*generate_cli, "--prompt", "Once upon a time", "--save-prompt-cache", file)
    assert saved.returncode == 0 and "wrote" in saved.stdout, saved.stderr
    for prompt in ("Once upon a time", "Once upon a time, a"):
        plain = run(*generate_cli, "--prompt", prompt)
        cached = run(*generate_cli, "--prompt", prompt, "--prompt-cache-file", file)
        assert plain.returncode == 0 and cached.stdout == plain.stdout, cached.stderr
    one_line_error(run(*generate_cli, "--prompt", "Once", "--prompt-cache-file", file), "another prompt")
    one_line_error(run(*generate_cli, "--prompt-cache-file", str(tmp_path / "none")), "no prompt cache file")
    other = ("-m", "mlx_megabyte.generate", "--model", str(weights / "model1"))
    one_line_error(run(*other, "--prompt", "Once upon a time", "--prompt-cache-file", file), "another model")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(open(file, "rb").read()[:300])
    one_line_error(run(*generate_cli, "--prompt-cache-file", str(damaged)), "damaged.safetensors")
    weights_file = str(weights / "model0" / "model.safetensors")
    one_line_error(run(*generate_cli, "--prompt-cache-file", weights_file), "not a prompt cache file")
    one_line_error(run(*generate_cli, "-i", "--prompt-cache-file", file), "--prompt-cache-file", "--interactive")
