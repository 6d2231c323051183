"""The MLX model computes megabyte-pytorch 0.3.6's function: logits, loss, and lossless weights."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import kernels, loss_fn
from mlx_megabyte.models.megabyte.convert import to_torch_state

from .helpers import random_ids, torch_and_mlx
from .test_megabyte import CONFIGS

torch = pytest.importorskip("torch")


@pytest.fixture(params=kernels.available_variants())
def variant(request):
    """Each test runs with every kernel variant this installation has, forced on this CPU: the native
    fused kernels, the pure-MLX CPU ones (polynomials, matmul attention) and the GPU ones (MLX's exact
    fused ops): each must compute megabyte-pytorch's function."""
    with kernels.forced(request.param):
        yield request.param


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_and_loss_match_megabyte_pytorch(name, variant):
    kwargs = CONFIGS[name]
    reference, model = torch_and_mlx(seed=1, **kwargs)
    rng = np.random.default_rng(0)
    context = model.config.context_length
    patch = model.config.patch_size(0)
    # full length, ragged (not a whole number of patches), one patch, a single byte
    for length in sorted({context, context - 1, max(1, context - patch - 1), patch, 1}):
        ids = random_ids(rng, 3, length, kwargs["num_tokens"])
        ids[:, 1::4] = model.config.pad_id  # some positions the loss must ignore
        with torch.no_grad():
            want_logits = reference(torch.from_numpy(ids)).numpy()
            want_loss = reference(torch.from_numpy(ids), return_loss=True).item()
        logits = np.array(model(mx.array(ids)))
        assert logits.shape == want_logits.shape
        assert np.abs(logits - want_logits).max() <= 1e-4, (name, length)
        assert abs(loss_fn(model, mx.array(ids)).item() - want_loss) <= 1e-5, (name, length)


def test_start_prediction_is_the_first_loss_term():
    kwargs = CONFIGS["2-stage"]
    reference, model = torch_and_mlx(seed=2, **kwargs)
    ids = random_ids(np.random.default_rng(1), 2, 12, 256)
    ids[:, 1:] = 0  # only byte 0 counts in the loss
    ids[:, 0] = [5, 9]
    with torch.no_grad():
        want = reference(torch.from_numpy(ids), return_loss=True).item()
    all_logits = model(mx.array(ids), include_start=True)
    assert all_logits.shape == (2, 13, 256)
    start = np.array(all_logits[:, 0])
    log_probs = start - np.log(np.exp(start).sum(-1, keepdims=True))
    assert abs(-log_probs[[0, 1], [5, 9]].mean() - want) <= 1e-5
    # and it does not depend on the input: the empty sequence gives the same distribution
    empty = model(mx.zeros((2, 0), dtype=mx.int32), include_start=True)
    assert empty.shape == (2, 1, 256)
    assert np.abs(np.array(empty[:, 0]) - start).max() <= 1e-5


@pytest.mark.parametrize("name", ["2-stage", "3-stage-vocab-300", "2-stage-rel-pos-emb"])
def test_gradients_match_megabyte_pytorch(name, variant):
    """Training uses hand-written gradients (GELU, softmax): every parameter's gradient must agree."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_megabyte.models.megabyte.convert import torch_key_map

    kwargs = CONFIGS[name]
    reference, model = torch_and_mlx(seed=6, **kwargs)
    ids = random_ids(np.random.default_rng(5), 2, model.config.context_length - 3, kwargs["num_tokens"])
    reference(torch.from_numpy(ids), return_loss=True).backward()
    _, grads = nn.value_and_grad(model, loss_fn)(model, mx.array(ids))
    ours = dict(tree_flatten(grads))
    for theirs, mine in torch_key_map(model.config).items():
        want = reference.get_parameter(theirs).grad.numpy()
        scale = max(np.abs(want).max(), 1e-3)
        assert np.abs(np.array(ours[mine]) - want).max() <= 1e-4 * scale + 1e-6, theirs


@pytest.mark.parametrize("name", ["2-stage-rel-pos-emb", "3-stage-vocab-300", "3-stage-pos-emb-odd-dim"])
def test_torch_to_mlx_to_torch_is_bit_exact(name):
    reference, model = torch_and_mlx(seed=4, **CONFIGS[name])
    back = to_torch_state(model)
    original = reference.state_dict()
    assert set(back) == set(original)
    for key, tensor in original.items():
        assert np.array_equal(np.array(back[key]), tensor.numpy()), key
    # and megabyte-pytorch accepts it strictly
    from MEGABYTE_pytorch import MEGABYTE as TorchMEGABYTE

    fresh = TorchMEGABYTE(**CONFIGS[name])
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in back.items()}, strict=True)
