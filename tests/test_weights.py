import json

import mlx.core as mx
import pytest

from mlx_megabyte import MEGABYTE, PRESETS, ModelConfig, load, save
from mlx_megabyte.errors import UserError
from mlx_megabyte.files import write_safetensors


def test_save_and_load_round_trip(tmp_path):
    model = MEGABYTE(PRESETS["tiny"])
    save(model, tmp_path / "w")
    assert json.loads((tmp_path / "w" / "config.json").read_text())["model_type"] == "megabyte"
    again = load(tmp_path / "w")
    assert again.config == model.config
    ids = mx.array([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
    assert mx.array_equal(model(ids), again(ids))


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    model = MEGABYTE(PRESETS["tiny"])
    save(model, tmp_path / "w")
    before = (tmp_path / "w" / "model.safetensors").read_bytes()

    def full_disk(path, arrays, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mx, "save_safetensors", full_disk)
    with pytest.raises(UserError, match="cannot write .*model.safetensors: No space left on device"):
        save(MEGABYTE(PRESETS["tiny"]), tmp_path / "w")
    assert (tmp_path / "w" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["config.json", "model.safetensors"]
    load(tmp_path / "w")


def test_foreign_and_mismatched_directories_are_rejected(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UserError, match="does not describe a model of an architecture this package has"):
        load(tmp_path / "foreign")
    with pytest.raises(UserError, match="not a weights directory"):
        load(tmp_path / "absent")

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "w")
    other = ModelConfig(num_tokens=256, dim=(64, 32), depth=(1, 2), max_seq_len=(32, 8), dim_head=16, heads=4)
    (tmp_path / "w" / "config.json").write_text(json.dumps(other.to_dict()))
    with pytest.raises(UserError, match="does not fit the model: unexpected stages.0.transformer.layers.1"):
        load(tmp_path / "w")


def test_written_files_leave_no_temporary_and_get_normal_permissions(tmp_path):
    import os

    write_safetensors(tmp_path / "a.safetensors", {"x": mx.ones((2,))})
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
    mask = os.umask(0o022)
    try:
        write_safetensors(tmp_path / "b.safetensors", {"x": mx.ones((2,))})
    finally:
        os.umask(mask)
    assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o644


def test_locate_without_a_model_prefers_the_users_weights_then_the_shipped_demo_for_the_use(tmp_path):
    import os

    from mlx_megabyte.weights import locate

    model = MEGABYTE(PRESETS["tiny"])

    def weights(name, data=None, instruct=None, age=0):
        save(model, tmp_path / name)
        if data is not None:
            (tmp_path / name / "trainer_state.json").write_text(json.dumps({"data": data, "instruct": instruct}))
        stamp = 1_000_000 + age
        os.utime(tmp_path / name / "model.safetensors", (stamp, stamp))
        return tmp_path / name

    # A fresh clone: the checkout's mtimes say nothing, so the instruct demo is newer here on purpose.
    demo = weights("demo", "builtin", False, age=1)
    tuned_demo = weights("demo-instruct", "builtin:0.5,builtin-instruct:0.5", True, age=2)
    assert locate(None, root=tmp_path) == demo
    assert locate(None, root=tmp_path, instruct=True) == tuned_demo
    # A user's own base model wins for stories, and still loses to the instruct demo for instruct prompts.
    base = weights("small-builtin", "builtin", False, age=3)
    assert locate(None, root=tmp_path) == base
    assert locate(None, root=tmp_path, instruct=True) == tuned_demo
    # Their own tuned model (or weights with no training record, which nothing says cannot) wins both.
    tuned = weights("small-builtin-instruct", "builtin-instruct", True, age=4)
    assert locate(None, root=tmp_path) == locate(None, root=tmp_path, instruct=True) == tuned
    converted = weights("converted", age=5)
    assert locate(None, root=tmp_path, instruct=True) == converted
    # With no instruct weights anywhere, instruct use falls back to the newest, for check_instruct_tuned to refuse.
    for name in ("demo-instruct", "small-builtin-instruct", "converted"):
        (tmp_path / name / "model.safetensors").unlink()
    assert locate(None, root=tmp_path, instruct=True) == base
    (tmp_path / "small-builtin" / "model.safetensors").unlink()
    assert locate(None, root=tmp_path, instruct=True) == locate(None, root=tmp_path) == demo
