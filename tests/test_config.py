import dataclasses
import inspect
import json

import pytest

from mlx_megabyte import MEGABYTE, PRESETS, ModelConfig
from mlx_megabyte.models.megabyte.convert import torch_arguments


def test_defaults_are_megabyte_pytorch_constructor_defaults():
    torch_megabyte = pytest.importorskip("MEGABYTE_pytorch").MEGABYTE
    theirs = {
        name: p.default
        for name, p in inspect.signature(torch_megabyte.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "flash_attn"
    }
    ours = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}
    # shift_bytes is ours alone (which byte each token id is; tokens.py), and off: text's layout
    assert ours.pop("shift_bytes") is False
    assert ours == theirs


def test_int_dim_is_broadcast_and_json_round_trips():
    config = ModelConfig(num_tokens=256, dim=32, depth=(1, 2, 3), max_seq_len=[4, 2, 2], rel_pos=True)
    assert config.dim == (32, 32, 32)
    assert config.max_seq_len == (4, 2, 2)
    assert ModelConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["depth"] == [1, 2, 3]
    assert config.context_length == 16 and config.patch_size(0) == 4 and config.patch_size(2) == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(depth=(1, 2), max_seq_len=(4,)), "depth has 2 stages but max_seq_len has 1"),
        (dict(dim=(8, 8, 8)), "dim has 3 entries"),
        (dict(rel_pos=True, dim_head=7), "even dim_head"),
        (dict(pad_id=256), "pad_id"),
        (dict(heads=0), "heads must be a positive integer"),
        (dict(dim=(8, 1)), "at least 2"),
        (dict(attn_dropout=1.0), "attn_dropout"),
        (dict(depth="2"), "depth must be a list of integers"),
    ],
)
def test_validation_errors_say_what_is_wrong(changes, message):
    values = dict(num_tokens=256, dim=(8, 8), depth=(1, 1), max_seq_len=(4, 2))
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**values)


def test_from_dict_ignores_foreign_keys():
    config = ModelConfig.from_dict(
        {"num_tokens": 256, "dim": 8, "depth": [1], "max_seq_len": [4], "flash_attn": True, "model_type": "megabyte"}
    )
    assert config.dim == (8,)


def test_preset_parameter_counts_match_megabyte_pytorch():
    torch_megabyte = pytest.importorskip("MEGABYTE_pytorch").MEGABYTE
    for name in ("tiny", "small", "40m"):
        config = PRESETS[name]
        for layout in (config, config.replace(shift_bytes=True, num_tokens=258)):
            kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in torch_arguments(layout).items()}
            theirs = sum(p.numel() for p in torch_megabyte(**kwargs).parameters())
            assert MEGABYTE(layout).num_parameters() == theirs, name
    assert 40e6 < MEGABYTE(PRESETS["40m"]).num_parameters() < 46e6


@pytest.mark.parametrize(
    "field, value",
    [
        ("rel_pos", "yes"),
        ("pos_emb", 1),
        ("attn_dropout", "0.1"),
        ("ff_dropout", True),
        ("pad_id", 0.5),
        ("heads", "8"),
    ],
)
def test_fields_of_the_wrong_type_are_refused(field, value, tmp_path):
    """A config.json with `"rel_pos": "yes"` was taken as truthy; every field's type is checked (issue 14)."""
    with pytest.raises(ValueError, match=field):
        ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), field: value})
    from mlx_megabyte import load, save
    from mlx_megabyte.errors import UserError

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "w")
    raw = json.loads((tmp_path / "w" / "config.json").read_text())
    (tmp_path / "w" / "config.json").write_text(json.dumps({**raw, field: value}))
    with pytest.raises(UserError, match=field):
        load(tmp_path / "w")
