"""MEGABYTE-specific checks beyond the contract runner (tests/test_models.py), on several hierarchies (one to
four stages, rotary and learned positions, odd widths, a larger vocabulary), without torch: the ids'
dtype, causality, gradient checkpointing, every kernel variant, and cached decoding of every stage.
megabyte-pytorch parity is tests/test_parity.py."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import MEGABYTE, ModelConfig, kernels, loss_fn
from mlx_megabyte.generation import generate_step
from mlx_megabyte.sampling import make_sampler

from .helpers import random_ids

# Shapes for checks against megabyte-pytorch (test_parity.py) and torch-free ones alike (constructor arguments).
CONFIGS = {
    "2-stage": dict(num_tokens=256, dim=(64, 32), depth=(2, 2), max_seq_len=(8, 4), dim_head=16, heads=2),
    "2-stage-rel-pos-emb": dict(
        num_tokens=256,
        dim=(48, 24),
        depth=(2, 1),
        max_seq_len=(6, 5),
        dim_head=12,
        heads=3,
        rel_pos=True,
        pos_emb=True,
        ff_mult=2,
    ),
    "3-stage-vocab-300": dict(
        num_tokens=300,
        dim=(48, 32, 16),
        depth=(1, 2, 1),
        max_seq_len=(4, 3, 2),
        dim_head=8,
        heads=3,
        rel_pos=True,
        ff_mult=3,
    ),
    "3-stage-pos-emb-odd-dim": dict(
        num_tokens=256,
        dim=(40, 21, 17),
        depth=(2, 1, 1),
        max_seq_len=(5, 2, 3),
        dim_head=10,
        heads=2,
        pos_emb=True,
        pad_id=7,
    ),
    "1-stage-int-dim": dict(num_tokens=100, dim=33, depth=(2,), max_seq_len=(16,), dim_head=8, heads=2),
    "4-stage-defaults": dict(num_tokens=256, dim=(64, 48, 32, 16), depth=(1, 1, 1, 1), max_seq_len=(3, 2, 2, 2)),
}

DECODING = {
    "2-stage": ModelConfig(num_tokens=256, dim=(32, 16), depth=(2, 2), max_seq_len=(8, 4), dim_head=8, heads=2),
    "2-stage-rel-pos-emb": ModelConfig(
        num_tokens=256, dim=(32, 16), depth=(2, 1), max_seq_len=(6, 5), dim_head=8, heads=2, rel_pos=True, pos_emb=True
    ),
    "3-stage": ModelConfig(
        num_tokens=256, dim=(32, 24, 16), depth=(1, 2, 1), max_seq_len=(4, 3, 2), dim_head=8, heads=2
    ),
    "3-stage-rel-pos-emb": ModelConfig(
        num_tokens=256,
        dim=(32, 24, 16),
        depth=(1, 1, 2),
        max_seq_len=(4, 2, 3),
        dim_head=8,
        heads=2,
        rel_pos=True,
        pos_emb=True,
    ),
}


def model_from(kwargs, seed):
    """A MEGABYTE with random weights (as megabyte-pytorch's initialisation would give, in distribution)."""
    mx.random.seed(seed)
    model = MEGABYTE(ModelConfig(**kwargs))
    model.eval()
    return model


def model_for(name, seed=0):
    mx.random.seed(seed)
    model = MEGABYTE(DECODING[name])
    model.eval()
    return model


def greedy_by_recompute(model, prompt, steps):
    """The reference: run the whole model on the whole sequence for every byte."""
    ids = prompt
    for _ in range(steps):
        logits = model(ids, include_start=True)[:, -1]
        ids = mx.concatenate([ids, mx.argmax(logits, axis=-1)[:, None].astype(ids.dtype)], axis=1)
    return ids[:, prompt.shape[1] :]


def test_uint8_and_int32_ids_agree():
    model = model_from(CONFIGS["2-stage"], seed=3)
    ids = random_ids(np.random.default_rng(2), 2, 20, 256)
    a = model(mx.array(ids.astype(np.uint8)))
    b = model(mx.array(ids.astype(np.int32)))
    assert mx.array_equal(a, b)


@pytest.mark.parametrize("name", ["2-stage", "3-stage-vocab-300"])
def test_causality(name):
    """Changing byte t changes no logits at positions < t (logits[:, t] predicts byte t + 1)."""
    model = model_from(CONFIGS[name], seed=5)
    rng = np.random.default_rng(3)
    context = model.config.context_length
    ids = random_ids(rng, 1, context, CONFIGS[name]["num_tokens"])
    base = np.array(model(mx.array(ids), include_start=True))
    for t in rng.choice(context, size=6, replace=False):
        changed = ids.copy()
        changed[0, t] = (changed[0, t] + 1) % CONFIGS[name]["num_tokens"]
        out = np.array(model(mx.array(changed), include_start=True))
        # include_start shifts by one: out[:, i] predicts byte i and may see bytes < i only
        assert np.array_equal(out[:, : t + 1], base[:, : t + 1]), t
        if t + 1 < context:
            assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :]), t


def test_gradient_checkpointing_changes_memory_not_gradients():
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    model = model_from(CONFIGS["3-stage-vocab-300"], seed=8)
    ids = mx.array(random_ids(np.random.default_rng(9), 2, model.config.context_length, 300))
    plain = dict(tree_flatten(nn.value_and_grad(model, loss_fn)(model, ids)[1]))
    model.set_grad_checkpoint(True)
    checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss_fn)(model, ids)[1]))
    assert set(plain) == set(checkpointed)
    assert max(mx.abs(plain[k] - checkpointed[k]).max().item() for k in plain) <= 1e-6


@pytest.mark.parametrize("name", ["2-stage-rel-pos-emb", "3-stage-vocab-300", "4-stage-defaults"])
def test_every_kernel_variant_computes_the_same_function(name):
    """The kernel variants against the GPU one (MLX's exact ops): logits within 1e-5, every gradient
    within 1e-5 of the largest, with dropout off (the fused attentions) and on (matmul attention with
    an exact or a polynomial softmax)."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    model = model_from(CONFIGS[name], seed=11)
    ids = mx.array(
        random_ids(np.random.default_rng(4), 2, model.config.context_length - 1, CONFIGS[name]["num_tokens"])
    )
    results = {}
    for variant in kernels.available_variants():
        with kernels.forced(variant):
            logits = model(ids)
            _, grads = nn.value_and_grad(model, loss_fn)(model, ids)
            results[variant] = logits, dict(tree_flatten(grads))
    exact_logits, exact_grads = results.pop("gpu")
    for variant, (logits, grads) in results.items():
        assert mx.abs(logits - exact_logits).max().item() <= 1e-5, variant
        for key in grads:
            scale = max(mx.abs(grads[key]).max().item(), 1e-3)
            assert mx.abs(grads[key] - exact_grads[key]).max().item() <= 1e-5 * scale + 1e-7, (variant, key)

    # with attention dropout, the same random draws give the same result
    model.train()
    for layer in [l for stage in model.stages for l in stage.transformer.layers]:
        layer.attention.dropout = 0.2
    dropped = []
    for variant in kernels.available_variants():
        with kernels.forced(variant):
            mx.random.seed(3)
            dropped.append(model(ids))
    assert all(mx.abs(d - dropped[0]).max().item() <= 1e-5 for d in dropped[1:])


@pytest.mark.parametrize("variant", kernels.available_variants())
@pytest.mark.parametrize("name", DECODING)
def test_cached_logits_equal_full_recomputation_at_every_position(name, variant):
    """With every kernel variant (the GPU one forced on this CPU: its fused attention must align the
    causal mask of a few new queries with the end of the cached keys; the native one computes the full
    pass, the caches the steps)."""
    with kernels.forced(variant):
        _check_cached_logits(model_for(name))


def _check_cached_logits(model):
    context = model.config.context_length
    ids = mx.array(np.random.default_rng(1).integers(0, 256, (2, context)))
    full = model(ids, include_start=True)  # [:, t] predicts byte t
    cache = model.make_cache(2)
    worst = mx.abs(cache.prefill(ids[:, :0]) - full[:, 0]).max().item()
    for t in range(context):
        worst = max(worst, mx.abs(cache.step(ids[:, t]) - full[:, t + 1]).max().item())
    assert worst <= 1e-4


@pytest.mark.parametrize("name", DECODING)
def test_greedy_bytes_equal_full_recomputation(name):
    model = model_for(name, seed=3)
    config = model.config
    patch = config.patch_size(0)
    rng = np.random.default_rng(2)
    # empty, one byte, one byte short of a patch, exactly one patch, one more
    for length in (0, 1, patch - 1, patch, patch + 1):
        prompt = mx.array(rng.integers(0, 256, (1, length)), dtype=mx.int32)
        steps = min(3 * patch + 2, config.context_length - length)
        want = greedy_by_recompute(model, prompt, steps)
        got = [y for _, y in zip(range(steps), generate_step(model, prompt, make_sampler(0.0)))]
        assert mx.array_equal(mx.stack(got, axis=1), want), (name, length)


def test_prefill_of_every_length_gives_the_same_logits_as_stepping():
    model = model_for("3-stage")
    context = model.config.context_length
    ids = mx.array(np.random.default_rng(4).integers(0, 256, (1, context)))
    full = model(ids, include_start=True)
    for length in range(context + 1):
        logits = model.make_cache(1).prefill(ids[:, :length])
        assert mx.abs(logits - full[:, length]).max().item() <= 1e-4, length
