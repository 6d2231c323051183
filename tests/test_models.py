"""The contract of models/base.py, checked on every registered architecture's `tiny` preset: what the
trainer, evaluate, generate, the batcher and the server rely on, with no architecture named here.

A new architecture registered in models/ runs through all of it as it is."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from mlx_megabyte import kernels, load, save
from mlx_megabyte.batching import Batcher, Job
from mlx_megabyte.generation import fit_context, generate, generate_step
from mlx_megabyte.models import ARCHITECTURES, build, loss_fn
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.text import encode_prompt

from .helpers import job_texts

NAMES = list(ARCHITECTURES)
TEXT = (
    "Once upon a time there was a little dog named Max. Max liked to run in the park with his ball. "
    'One day he met a cat. "Hello," said the cat. They played all day and became friends.\n'
).encode()


def model_for(name, seed=0):
    mx.random.seed(seed)
    model = build(ARCHITECTURES[name].presets["tiny"])
    model.eval()
    mx.eval(model.parameters())
    return model


def text_ids(rows, length, offset=0):
    """Real text (boundaries where words end) for rows of the same length, each from its own offset."""
    data = TEXT * (1 + (length + offset * rows) // len(TEXT))
    return mx.array([list(data[offset * r : offset * r + length]) for r in range(rows)], dtype=mx.int32)


def greedy_by_recompute(model, prompt, steps, keep):
    """The reference: the whole model on the whole sequence for every byte; when the context is full,
    the last `keep` bytes continue (as a decoding state slides its window)."""
    ids, out = prompt, []
    for _ in range(steps):
        logits = model(ids, include_start=True)[:, -1]
        y = mx.argmax(logits, axis=-1)[:, None].astype(ids.dtype)
        out.append(y)
        ids = mx.concatenate([ids, y], axis=1)
        if ids.shape[1] > model.config.context_length:
            ids = ids[:, -(keep + 1) :]
    return mx.concatenate(out, axis=1)


@pytest.mark.parametrize("name", NAMES)
def test_the_logit_contract_and_the_loss(name):
    model = model_for(name)
    ids = text_ids(2, 40)
    logits = model(ids)
    with_start = model(ids, include_start=True)
    assert logits.shape == (2, 40, model.config.num_tokens) and with_start.shape == (2, 41, model.config.num_tokens)
    assert mx.abs(with_start[:, 1:] - logits).max().item() <= 1e-5
    # the loss is the mean cross-entropy of byte t given bytes < t, byte 0 from the start position
    logprobs = with_start[:, :-1] - mx.logsumexp(with_start[:, :-1], axis=-1, keepdims=True)
    naive = -np.mean(np.take_along_axis(np.array(logprobs), np.array(ids)[..., None], -1))
    assert abs(loss_fn(model, ids).item() - naive) <= 1e-5
    with pytest.raises(ValueError, match="do not fit"):
        model(mx.zeros((1, model.config.context_length + 1), dtype=mx.int32))


@pytest.mark.parametrize("name", NAMES)
def test_no_prediction_depends_on_a_later_byte(name):
    model = model_for(name)
    L = model.config.context_length
    ids = np.array(text_ids(1, L))
    full = np.array(model(mx.array(ids), include_start=True))
    rng = np.random.default_rng(1)
    for t in (0, 1, 7, L // 3, L - 2):
        changed = ids.copy()
        changed[:, t + 1 :] = rng.integers(0, 256, (1, L - t - 1))  # spaces included: boundaries move too
        got = np.array(model(mx.array(changed), include_start=True))
        assert np.abs(got[:, : t + 2] - full[:, : t + 2]).max() <= 1e-5, t  # predictions of bytes 0 .. t + 1


@pytest.mark.parametrize("variant", kernels.available_variants())
@pytest.mark.parametrize("name", NAMES)
def test_cached_logits_equal_full_recomputation_at_every_position(name, variant):
    with kernels.forced(variant):
        model = model_for(name)
        L = model.config.context_length
        ids = mx.concatenate([text_ids(1, L), mx.array(np.random.default_rng(2).integers(0, 256, (1, L)))])
        full = model(ids, include_start=True)  # [:, t] predicts byte t
        state = model.make_cache(2)
        worst = mx.abs(state.prefill(ids[:, :0]) - full[:, 0]).max().item()
        starts = model.patch_starts(ids)
        for t in range(L):
            worst = max(worst, mx.abs(state.step(ids[:, t]) - full[:, t + 1]).max().item())
            assert state.patch_started() == starts[:, t].tolist(), t  # the marks agree with the model's rule
        assert worst <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_prefill_of_every_length_gives_the_full_models_logits(name):
    model = model_for(name)
    L = model.config.context_length
    ids = text_ids(1, L)
    full = model(ids, include_start=True)
    for length in range(0, L + 1, max(1, L // 64)):
        assert mx.abs(model.make_cache(1).prefill(ids[:, :length]) - full[:, length]).max().item() <= 1e-4, length


@pytest.mark.parametrize("name", NAMES)
def test_greedy_bytes_equal_full_recomputation_past_the_context(name):
    model = model_for(name, seed=3)
    L = model.config.context_length
    for length in (0, 1, 9, L - 20):
        prompt = text_ids(1, length)
        steps = min(L - length + 24, 60)  # past the end of the context for the longest prompt
        state_keep = model.make_cache(1).keep
        want = greedy_by_recompute(model, prompt, steps, state_keep)
        got = [y for _, y in zip(range(steps), generate_step(model, prompt, make_sampler(0.0)))]
        assert mx.array_equal(mx.stack(got, axis=1), want), (name, length)


@pytest.mark.parametrize("name", NAMES)
def test_the_window_slides_when_the_context_is_full(name):
    model = model_for(name)
    L = model.config.context_length
    ids = text_ids(1, L + 5)
    state = model.make_cache(1)
    state.prefill(ids[:, :L])
    for t in range(L, L + 5):
        logits = state.step(ids[:, t])
    assert state.slid == 1 and state.length == L // 2 + 5
    window = ids[:, L + 5 - state.length :]
    assert mx.abs(logits - model(window, include_start=True)[:, -1]).max().item() <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_rows_can_be_merged_and_dropped(name):
    """Two states that can be merged (their keys agree) decode together exactly as apart."""
    model = model_for(name)
    a, b = text_ids(1, 11), text_ids(2, 11, offset=23)  # boundaries at different bytes in different rows
    alone_a, alone_b, both, other = (model.make_cache(n) for n in (1, 2, 1, 2))
    for state, ids in ((alone_a, a), (alone_b, b), (both, a), (other, b)):
        state.prefill(ids)
    assert both.can_merge(other)
    both.merge(other)
    assert both.batch_size == 3
    nexts = text_ids(3, 30, offset=41)
    for t in range(30):
        merged = both.step(nexts[:, t])
        separate = mx.concatenate([alone_a.step(nexts[:1, t]), alone_b.step(nexts[1:, t])], axis=0)
        assert mx.abs(merged - separate).max().item() <= 1e-5, t
    both.select([2, 0])
    assert (
        mx.abs(
            both.step(nexts[[2, 0], 0]) - mx.concatenate([alone_b.step(nexts[1:, 0])[1:], alone_a.step(nexts[:1, 0])])
        )
        .max()
        .item()
        <= 1e-5
    )
    shorter = model.make_cache(1)
    assert not both.can_merge(shorter)
    with pytest.raises(ValueError):
        both.merge(shorter)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_changes_nothing_but_memory(name):
    model = model_for(name)
    model.train()
    ids = text_ids(2, model.config.context_length)
    loss, grads = nn.value_and_grad(model, loss_fn)(model, ids)
    model.set_grad_checkpoint(True)
    loss2, grads2 = nn.value_and_grad(model, loss_fn)(model, ids)
    assert abs(loss.item() - loss2.item()) <= 1e-6
    for (key, g), (_, g2) in zip(tree_flatten(grads), tree_flatten(grads2)):
        assert mx.abs(g - g2).max().item() <= 1e-5 * max(1.0, mx.abs(g).max().item()), key


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_model(name, tmp_path):
    model = model_for(name, seed=5)
    save(model, tmp_path / name)
    loaded = load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config
    ids = text_ids(1, 50)
    assert mx.array_equal(loaded(ids), model(ids)).item()


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_tracks_float32(name):
    model = model_for(name)
    ids = text_ids(2, model.config.context_length)
    full = loss_fn(model, ids).item()
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    half = loss_fn(model, ids).item()
    assert abs(half - full) <= 0.02 * full, (half, full)


@pytest.mark.parametrize("name", NAMES)
def test_serving_through_the_batcher_equals_generate_with_the_seed(name):
    """Requests of different prompt lengths, decoded together by the batcher (which merges them when
    their states allow), each get exactly what generate(seed=...) gives alone."""
    model = model_for(name, seed=7)
    batcher = Batcher(lambda: model, max_rows=8, max_gap=64).start()
    try:
        sampler = make_sampler(0.9, min_p=0.05)
        prompts = [b"Once upon a time", b"Once upon a time there", b"Max liked", b""]
        jobs = []
        for i, prompt in enumerate(prompts):
            fitted, _ = fit_context(encode_prompt(prompt), model.config.context_length)
            job = Job(
                prompt=fitted,
                prompt_text=prompt,
                n=2,
                max_tokens=40,
                sampler=sampler,
                settings=(0.9, 1.0, 0.05, 0),
                seed=100 + i,
            )
            jobs.append(job)
            batcher.submit(job)
        served = []
        for job in jobs:
            served.append(job_texts(job))
    finally:
        batcher.stop()  # before generate below: MLX is not to be driven from two threads at once
    for prompt, job, texts in zip(prompts, jobs, served):
        want = generate(model, prompt, max_tokens=40, sampler=sampler, num_samples=2, seed=job.seed)
        assert texts == want, (name, prompt)
    assert batcher.stats["most_rows_in_a_step"] > 2  # the requests really were decoded together


@pytest.mark.parametrize("name", NAMES)
def test_a_copied_state_goes_on_alone(name):
    """copy() is a branch point: the copy and the original each continue as if the other did not exist."""
    model = model_for(name)
    ids = text_ids(2, 60, offset=5)
    other = mx.array(np.random.default_rng(4).integers(0, 256, (2, 20)), dtype=mx.int32)
    state = model.make_cache(2)
    state.prefill(ids[:, :30])
    twin = state.copy()
    for t in range(20):  # the original takes other bytes first ...
        state.step(other[:, t])
    for t in range(30, 60):  # ... the copy still equals a state that never saw them
        got = twin.step(ids[:, t])
    assert twin.length == 60 and state.length == 50
    assert mx.abs(got - model(ids, include_start=True)[:, -1]).max().item() <= 1e-4
    branched = mx.concatenate([ids[:, :30], other, ids[:, :1]], axis=1)
    assert mx.abs(state.step(ids[:, 0]) - model(branched, include_start=True)[:, -1]).max().item() <= 1e-4


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("name, changes", [(name, {}) for name in NAMES] + [("megabyte", {"pos_emb": True})])
def test_a_quantized_model_scores_and_decodes_alike(name, changes, bits):
    """generate/evaluate --quantize: the whole-sequence pass (evaluate, prefill) and the cached steps of a
    quantized model agree, and stay near the float model's logits. (Once, the whole-sequence attention
    joined the packed weights of quantized layers and failed, and learned positions were read from a
    quantized embedding's packed weight.)"""
    from mlx_megabyte.weights import quantize

    mx.random.seed(0)
    model = build(ARCHITECTURES[name].presets["tiny"].replace(**changes))
    model.eval()
    ids = text_ids(1, 48)
    float_logits = model(ids, include_start=True)
    quantize(model, bits, group_size=32)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())
    full = model(ids, include_start=True)
    state = model.make_cache(1)
    worst = mx.abs(state.prefill(ids[:, :0]) - full[:, 0]).max().item()
    for t in range(ids.shape[1]):
        worst = max(worst, mx.abs(state.step(ids[:, t]) - full[:, t + 1]).max().item())
    assert worst <= 1e-3
    probabilities = [mx.softmax(x, axis=-1) for x in (full, float_logits)]
    assert mx.abs(probabilities[0] - probabilities[1]).max().item() <= (0.05 if bits == 8 else 0.3)
