"""tools/convert_from_torch.py and tools/convert_to_torch.py, run as a user runs them."""

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import load

from .helpers import one_line_error, random_ids, run, torch_and_mlx

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

KWARGS = dict(num_tokens=256, dim=(32, 16), depth=(1, 2), max_seq_len=(6, 4), dim_head=8, heads=2, rel_pos=True)


def torch_model(**kwargs):
    reference, _ = torch_and_mlx(seed=7, **{**KWARGS, **kwargs})
    return reference


def logits_match(reference, mlx_dir):
    ids = random_ids(np.random.default_rng(0), 2, 21, 256)
    with torch.no_grad():
        want = reference(torch.from_numpy(ids)).numpy()
    got = np.array(load(mlx_dir)(mx.array(ids)))
    return np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_through_both_tools(tmp_path, suffix):
    reference = torch_model()
    source = tmp_path / f"megabyte{suffix}"
    if suffix == ".pt":
        torch.save(reference.state_dict(), source)
    else:
        safetensors_torch.save_file(reference.state_dict(), source)
    # max_seq_len[0] is not in the weights (no pos_emb): it comes from --config
    result = run(
        "tools/convert_from_torch.py",
        "--torch-path",
        str(source),
        "--mlx-path",
        str(tmp_path / "mlx"),
        "--config",
        json.dumps({"max_seq_len": [6, 4]}),
    )
    assert result.returncode == 0, result.stderr
    assert logits_match(reference, tmp_path / "mlx")

    back = tmp_path / f"back{suffix}"
    result = run("tools/convert_to_torch.py", "--mlx-path", str(tmp_path / "mlx"), "--torch-path", str(back))
    assert result.returncode == 0, result.stderr
    state = torch.load(back, weights_only=True) if suffix == ".pt" else safetensors_torch.load_file(back)
    config = json.loads((tmp_path / "back.config.json").read_text())
    from MEGABYTE_pytorch import MEGABYTE as TorchMEGABYTE

    rebuilt = TorchMEGABYTE(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    rebuilt.load_state_dict(state, strict=True)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(state[key], tensor), key


def test_sidecar_config_is_picked_up_and_bfloat16_survives(tmp_path):
    reference = torch_model().to(torch.bfloat16)
    safetensors_torch.save_file(reference.state_dict(), tmp_path / "m.safetensors")
    (tmp_path / "m.config.json").write_text(json.dumps({"max_seq_len": [6, 4], "heads": 2, "dim_head": 8}))
    assert (
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "m.safetensors"),
            "--mlx-path",
            str(tmp_path / "mlx"),
        ).returncode
        == 0
    )
    assert load(tmp_path / "mlx").stages[0].start_token.dtype == mx.bfloat16
    assert (
        run(
            "tools/convert_to_torch.py",
            "--mlx-path",
            str(tmp_path / "mlx"),
            "--torch-path",
            str(tmp_path / "back.safetensors"),
        ).returncode
        == 0
    )
    back = safetensors_torch.load_file(tmp_path / "back.safetensors")
    for key, tensor in reference.state_dict().items():
        if not key.endswith("inv_freq"):  # a float32 buffer recomputed on the way out
            assert torch.equal(back[key], tensor), key


def test_heads_and_context_inferred_when_the_weights_hold_them(tmp_path):
    reference = torch_model(pos_emb=True)  # pos_emb stores max_seq_len[0]; rel_pos stores dim_head
    safetensors_torch.save_file(reference.state_dict(), tmp_path / "m.safetensors")
    result = run(
        "tools/convert_from_torch.py",
        "--torch-path",
        str(tmp_path / "m.safetensors"),
        "--mlx-path",
        str(tmp_path / "mlx"),
    )
    assert result.returncode == 0, result.stderr
    config = load(tmp_path / "mlx").config
    assert (config.heads, config.dim_head, config.max_seq_len, config.pos_emb) == (2, 8, (6, 4), True)
    assert logits_match(reference, tmp_path / "mlx")


def test_errors_are_one_line(tmp_path):
    reference = torch_model()
    state = reference.state_dict()
    good = tmp_path / "good.safetensors"
    safetensors_torch.save_file(state, good)
    config = ["--config", json.dumps({"max_seq_len": [6, 4]})]

    broken = dict(state)
    broken.pop("to_logits.bias")
    broken["extra.weight"] = torch.zeros(3)
    safetensors_torch.save_file(broken, tmp_path / "broken.safetensors")
    line = one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "broken.safetensors"),
            "--mlx-path",
            str(tmp_path / "out"),
            *config,
        ),
        "missing",
        "unexpected",
    )
    assert "to_logits.bias" in line and "extra.weight" in line
    assert not (tmp_path / "out").exists()  # nothing half-converted

    safetensors_torch.save_file({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "foreign.safetensors")
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "foreign.safetensors"),
            "--mlx-path",
            str(tmp_path / "out"),
        ),
        "not a megabyte-pytorch state dict",
    )

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "junk.safetensors"),
            "--mlx-path",
            str(tmp_path / "out"),
            *config,
        ),
        "not a readable safetensors file",
    )

    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "missing.pt"),
            "--mlx-path",
            str(tmp_path / "out"),
        ),
        "no such file",
    )

    one_line_error(
        run("tools/convert_from_torch.py", "--torch-path", str(good), "--mlx-path", str(tmp_path / "out")),
        "max_seq_len",
    )
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(good),
            "--mlx-path",
            str(tmp_path / "out"),
            "--config",
            json.dumps({"max_seq_len": [6, 4], "heads": 3}),
        ),
        "contradicts",
        "heads",
    )
    no_rotary = tmp_path / "no_rotary.safetensors"
    safetensors_torch.save_file(torch_model(rel_pos=False).state_dict(), no_rotary)
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(no_rotary),
            "--mlx-path",
            str(tmp_path / "out"),
            "--config",
            json.dumps({"max_seq_len": [6, 4], "heads": 3}),
        ),
        "heads x dim_head",
    )
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(good),
            "--mlx-path",
            str(tmp_path / "out"),
            "--config",
            json.dumps({"max_seq_len": [6, 5]}),
        ),
        "contradicts",
    )

    # a pickle that is not plain tensors is refused, never executed
    torch.save({"weights": state, "hook": print}, tmp_path / "evil.pt")
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "evil.pt"),
            "--mlx-path",
            str(tmp_path / "out"),
            *config,
        ),
        "loads safely",
    )


def test_existing_outputs_need_force(tmp_path):
    reference = torch_model()
    safetensors_torch.save_file(reference.state_dict(), tmp_path / "m.safetensors")
    args = [
        "tools/convert_from_torch.py",
        "--torch-path",
        str(tmp_path / "m.safetensors"),
        "--mlx-path",
        str(tmp_path / "mlx"),
        "--config",
        json.dumps({"max_seq_len": [6, 4]}),
    ]
    assert run(*args).returncode == 0
    one_line_error(run(*args), "already exists", "--force")
    assert run(*args, "--force").returncode == 0

    to_torch = [
        "tools/convert_to_torch.py",
        "--mlx-path",
        str(tmp_path / "mlx"),
        "--torch-path",
        str(tmp_path / "m.safetensors"),
    ]
    one_line_error(run(*to_torch), "already exists")
    one_line_error(
        run(
            "tools/convert_to_torch.py",
            "--mlx-path",
            str(tmp_path / "nowhere"),
            "--torch-path",
            str(tmp_path / "x.safetensors"),
        ),
        "not a weights directory",
    )


def test_inline_config_longer_than_a_file_name(tmp_path):
    """convert_to_torch.py writes configs of more than 255 bytes; passing one inline must work (14.11)."""
    reference = torch_model()
    safetensors_torch.save_file(reference.state_dict(), tmp_path / "m.safetensors")
    to_torch = run(
        "tools/convert_to_torch.py",
        "--mlx-path",
        str(_convert(tmp_path)),
        "--torch-path",
        str(tmp_path / "back.safetensors"),
    )
    assert to_torch.returncode == 0, to_torch.stderr
    inline = (tmp_path / "back.config.json").read_text()
    assert len(inline.encode()) > 255
    result = run(
        "tools/convert_from_torch.py",
        "--torch-path",
        str(tmp_path / "m.safetensors"),
        "--mlx-path",
        str(tmp_path / "again"),
        "--config",
        inline,
    )
    assert result.returncode == 0, result.stderr
    one_line_error(
        run(
            "tools/convert_from_torch.py",
            "--torch-path",
            str(tmp_path / "m.safetensors"),
            "--mlx-path",
            str(tmp_path / "x"),
            "--config",
            str(tmp_path / "no-such.json"),
        ),
        "--config: cannot read",
        "no-such.json",
    )


def _convert(tmp_path):
    out = tmp_path / "mlx"
    result = run(
        "tools/convert_from_torch.py",
        "--torch-path",
        str(tmp_path / "m.safetensors"),
        "--mlx-path",
        str(out),
        "--config",
        json.dumps({"max_seq_len": [6, 4]}),
    )
    assert result.returncode == 0, result.stderr
    return out


# Configs written the way megabyte-pytorch's README and training script write them (smaller), as the
# kwargs dict someone kept: tuples, one int dim for every stage, flash_attn, defaults left out.
TORCH_STYLE_CONFIGS = [
    dict(num_tokens=256, dim=(64, 32), max_seq_len=(16, 4), depth=(2, 1), dim_head=16, heads=4, flash_attn=True),
    dict(num_tokens=256, dim=(48, 32, 16), depth=(1, 1, 1), max_seq_len=(4, 4, 4), flash_attn=True),
    dict(num_tokens=300, dim=40, depth=(1, 1), max_seq_len=(5, 3), dim_head=10, heads=4, rel_pos=True),
    dict(
        num_tokens=256,
        dim=24,
        depth=(1, 2, 1),
        max_seq_len=(3, 2, 2),
        heads=2,
        dim_head=12,
        pos_emb=True,
        attn_dropout=0.1,
        ff_dropout=0.1,
        ff_mult=2,
        pad_id=5,
        flash_attn=False,
    ),
]


@pytest.mark.parametrize("kwargs", TORCH_STYLE_CONFIGS, ids=lambda k: f"dim={k['dim']}")
def test_configs_as_megabyte_pytorch_takes_them(kwargs, tmp_path):
    """Whatever MEGABYTE(**kwargs) accepts, --config accepts, as JSON (lists for tuples) or literally."""
    from MEGABYTE_pytorch import MEGABYTE as TorchMEGABYTE

    from mlx_megabyte.models.megabyte.convert import from_torch_state

    torch.manual_seed(0)
    reference = TorchMEGABYTE(**kwargs).eval()
    state = {k: mx.array(v.numpy()) for k, v in reference.state_dict().items()}
    for given in (kwargs, json.loads(json.dumps(kwargs))):
        config, weights, _ = from_torch_state(state, given)
        stages = len(kwargs["depth"])
        want_dim = kwargs["dim"] if isinstance(kwargs["dim"], tuple) else (kwargs["dim"],) * stages
        assert (config.dim, config.depth, config.max_seq_len) == (want_dim, kwargs["depth"], kwargs["max_seq_len"])
        for name in (
            "num_tokens",
            "heads",
            "dim_head",
            "pad_id",
            "attn_dropout",
            "ff_dropout",
            "ff_mult",
            "rel_pos",
            "pos_emb",
        ):
            if name in kwargs:
                assert getattr(config, name) == kwargs[name], name
    safetensors_torch.save_file(reference.state_dict(), tmp_path / "m.safetensors")
    result = run(
        "tools/convert_from_torch.py",
        "--torch-path",
        str(tmp_path / "m.safetensors"),
        "--mlx-path",
        str(tmp_path / "mlx"),
        "--config",
        json.dumps(kwargs),
    )
    assert result.returncode == 0, result.stderr
    ids = random_ids(np.random.default_rng(1), 2, int(np.prod(kwargs["max_seq_len"])) - 1, kwargs["num_tokens"])
    with torch.no_grad():
        want = reference(torch.from_numpy(ids)).numpy()
    assert np.abs(np.array(load(tmp_path / "mlx")(mx.array(ids))) - want).max() <= 1e-4
