"""Every byte value learned (`shift_bytes`, tokens.py): token = byte + 1, 0 the pad id, 257 the end of a
document. Every byte 0..255 goes through data, batches, the loss and generation unchanged; megabyte-pytorch
computes the same function with num_tokens 258; and pictures and sound train and come back as files."""

import importlib.util
import json
import wave

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from mlx_megabyte import data, loss_fn
from mlx_megabyte.errors import UserError
from mlx_megabyte.generation import generate_bytes
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.models.spacebyte.boundaries import spacelike_table
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.tokens import BYTES, TEXT, layout_of

from .helpers import ROOT, one_line_error, run, torch_and_mlx

EVERY_BYTE = bytes(range(256))


def shifted(arch: str):
    return ARCHITECTURES[arch].presets["tiny"].replace(shift_bytes=True, num_tokens=258)


def test_tokens_are_bytes_plus_one_and_every_byte_comes_back():
    tokens = BYTES.encode(EVERY_BYTE)
    assert tokens.dtype == np.uint16 and tokens.tolist() == list(range(1, 257))
    assert BYTES.decode(tokens) == EVERY_BYTE
    assert BYTES.prompt(b"\x00\x03").tolist() == [257, 1, 4]  # the end token says a document begins
    assert BYTES.decode([257, 0, 1, 4, 257]) == b"\x00\x03"  # pad and end are no bytes
    assert [BYTES.byte(t) for t in (0, 1, 256, 257)] == [None, 0, 255, None]
    # the text layout is what it always was: a token is its byte, 0x03 ends a document
    assert TEXT.encode(b"ab").tolist() == [97, 98] and TEXT.byte(3) is None and TEXT.allowed(256) is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_configs_refuse_a_layout_that_cannot_hold_every_byte(arch):
    config = shifted(arch)
    assert layout_of(config) is BYTES and config.to_dict()["shift_bytes"] is True
    assert ARCHITECTURES[arch].config.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="num_tokens of at least 258"):
        config.replace(num_tokens=256)
    with pytest.raises(ValueError, match="pad_id 5 would be a byte"):
        config.replace(pad_id=5)
    # a config written before the setting existed is a text model
    legacy = {k: v for k, v in ARCHITECTURES[arch].presets["tiny"].to_dict().items() if k != "shift_bytes"}
    assert layout_of(ARCHITECTURES[arch].config.from_dict(legacy)) is TEXT


def test_spacebyte_reads_the_byte_a_token_stands_for():
    text, shifted_table = spacelike_table(256), spacelike_table(258, offset=1)
    assert np.array_equal(shifted_table[1:257], text)  # byte b's rule at token b + 1
    assert shifted_table[0] and shifted_table[257]  # the pad and end tokens are spacelike
    assert not shifted_table[1 + ord("a")] and shifted_table[1 + ord(" ")]


def test_megabyte_pytorch_computes_the_same_function_with_num_tokens_258():
    torch = pytest.importorskip("torch")
    from MEGABYTE_pytorch import MEGABYTE as TorchMEGABYTE

    from mlx_megabyte.models.megabyte.convert import from_torch_state, to_torch_state, torch_arguments

    kwargs = dict(num_tokens=258, dim=(32, 16), depth=(1, 1), max_seq_len=(64, 4), dim_head=8, heads=2, pad_id=0)
    reference, model = torch_and_mlx(seed=3, **kwargs)
    assert model.config.shift_bytes  # 258 tokens read as the bytes layout, with a note
    _, _, notes = from_torch_state({k: mx.array(v.numpy()) for k, v in reference.state_dict().items()}, kwargs)
    assert any("every byte value learned" in note for note in notes)
    ids = np.stack([BYTES.prompt(EVERY_BYTE)[:256], BYTES.encode(np.zeros(256, np.uint8).tobytes())]).astype(np.int64)
    ids[1, 100:] = 0  # padding at the end of the second row: ignored by both losses
    with torch.no_grad():
        want_logits = reference(torch.from_numpy(ids)).numpy()
        want_loss = reference(torch.from_numpy(ids), return_loss=True).item()
    assert np.abs(np.array(model(mx.array(ids))) - want_logits).max() <= 1e-4
    assert abs(loss_fn(model, mx.array(ids)).item() - want_loss) <= 1e-5
    # and back: megabyte-pytorch takes the arguments (no shift_bytes among them) and the weights strictly
    arguments = torch_arguments(model.config)
    assert "shift_bytes" not in arguments and arguments["num_tokens"] == 258
    fresh = TorchMEGABYTE(**{k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items()})
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in to_torch_state(model).items()}, strict=True)
    # the benchmark's torch workers build the same model from our config's dict
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "tools" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    built = benchmark.torch_arguments({"model_type": "megabyte", **model.config.to_dict()})
    assert built == {k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items()}


def test_every_byte_value_goes_through_data_and_batches_unchanged(tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    for i in range(20):  # every byte value in every file, 0x00 and 0x03 included
        (folder / f"{i:02d}.bin").write_bytes(bytes(np.roll(np.arange(256, dtype=np.uint8), i)))
    assert data.detect_kind(str(folder)) == "bytes"
    corpus = data.prepare(str(folder), cache_dir=tmp_path / "cache", layout=BYTES, val_fraction=0.1)
    assert corpus.kind == "bytes" and corpus.train.dtype == np.uint16
    stream = np.concatenate([corpus.train, corpus.val])
    documents = np.split(stream, np.flatnonzero(stream == 257) + 1)[:-1]
    assert len(documents) == 20 and corpus.val[-1] == 257
    for i, document in enumerate(documents):
        assert BYTES.decode(document) == (folder / f"{i:02d}.bin").read_bytes()
    assert "every byte value kept" in corpus.describe() and "replaced" not in corpus.describe()
    batch = next(data.Batches(corpus.train, 64, 4, seed=0))
    assert batch.dtype == np.uint16 and batch.max() <= 257 and (batch == 1).any()  # byte 0 is token 1
    # a text model would substitute 0x00 and 0x03: refused, in one line, before anything is encoded
    with pytest.raises(UserError, match="--shift-bytes"):
        data.prepare(str(folder), cache_dir=tmp_path / "text-cache", layout=TEXT)


def test_a_batch_of_zeros_is_learned_and_generated():
    """Text's layout ignores byte 0 (the pad id): its loss over zeros counts nothing. The bytes layout
    learns it: the loss falls, and greedy decoding then writes zero bytes."""
    zeros = np.zeros((4, 63), np.uint8).tobytes()
    text_model = build(ARCHITECTURES["megabyte"].presets["tiny"])
    from mlx_megabyte.models import summed_loss

    _, counted = summed_loss(text_model, mx.array(np.zeros((4, 64), np.int32)))
    assert counted.item() == 0

    mx.random.seed(0)
    model = build(shifted("megabyte"))
    ids = mx.array(np.stack([BYTES.prompt(zeros[:63])] * 4).astype(np.int32))  # 257, then 63 zero bytes
    optimizer = optim.Adam(learning_rate=1e-2)
    step = nn.value_and_grad(model, loss_fn)
    losses = []
    for _ in range(30):
        loss, grads = step(model, ids)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    out = generate_bytes(model, b"\x00\x00", max_bytes=20, sampler=make_sampler(0.0))[0]
    assert out == bytes(20)


def test_generation_never_samples_the_pad_id():
    model = build(shifted("megabyte"))
    model.to_logits.bias = mx.where(mx.arange(258) == 0, 1e4, 0.0)  # the pad id would win every draw
    model.eval()
    out = generate_bytes(model, b"", max_bytes=8, sampler=make_sampler(0.0), num_samples=2)
    assert all(len(sample) == 8 for sample in out)  # bytes (no pad, no end), each one a real byte
    # a picture of a fixed size is not ended early, however much the model wants to end it
    model.to_logits.bias = mx.where(mx.arange(258) == 257, 1e4, 0.0)
    assert generate_bytes(model, b"", max_bytes=8, sampler=make_sampler(0.0)) == [b""]
    assert len(generate_bytes(model, b"", max_bytes=8, sampler=make_sampler(0.0), may_end=False)[0]) == 8


def write_wav(path, samples, rate=8000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(np.asarray(samples, "<i2").tobytes())


def test_pictures_train_generate_and_score_from_the_command_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "digits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # black backgrounds: most bytes are 0x00
        pixels = np.zeros((8, 8), np.uint8)
        pixels[1:7, i % 6 + 1] = rng.integers(128, 256)
        Image.fromarray(pixels, "L").save(folder / f"{i:02d}.png")
    cache, run_dir = str(tmp_path / "cache"), tmp_path / "run"
    train = run(
        "-m", "mlx_megabyte.train", "--preset", "tiny", "--data", str(folder), "--iters", "20", "--batch-size", "4",
        "--steps-per-eval", "10", "--val-fraction", "0.3", "--save-path", str(run_dir), "--cache-dir", cache,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "images as 8x8 grey (L) images" in train.stderr  # detected and said
    record = json.loads((run_dir / "best" / "trainer_state.json").read_text())
    assert record["data_kind"] == "image" and record["image"] == {"width": 8, "height": 8, "mode": "L"}
    assert json.loads((run_dir / "best" / "config.json").read_text())["shift_bytes"] is True

    out = tmp_path / "samples.png"
    made = run("-m", "mlx_megabyte.generate", "--model", str(run_dir / "best"), "--image", str(out), "-n", "4",
               "--seed", "0", "--scale", "2", "--complete", str(folder / "00.png"), "--rows", "3")  # fmt: skip
    assert made.returncode == 0, made.stderr
    grid = np.asarray(Image.open(out))
    cell = grid[:16:2, :16:2]  # the first cell, at scale 2
    assert np.array_equal(cell[:3], np.asarray(Image.open(folder / "00.png"))[:3])  # its top rows kept

    scored = run("-m", "mlx_megabyte.evaluate", "--model", str(run_dir / "best"), "--data", str(folder),
                 "--cache-dir", cache, "--json")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["bytes"] == 40 * 65  # 64 pixels and the end token per image


def test_sound_trains_and_a_clip_is_continued(tmp_path):
    folder = tmp_path / "speech"
    folder.mkdir()
    t = np.arange(4000) / 8000
    for i in range(6):
        write_wav(folder / f"{i}.wav", 8000 * np.sin(2 * np.pi * (200 + 50 * i) * t))
    run_dir = tmp_path / "run"
    train = run("-m", "mlx_megabyte.train", "--preset", "tiny", "--data", str(folder), "--iters", "5",
                "--batch-size", "2", "--save-path", str(run_dir), "--cache-dir", str(tmp_path / "c"),
                "--val-fraction", "0.2")  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "sound as 8,000 Hz mono, 8-bit mu-law" in train.stderr
    out = tmp_path / "more.wav"
    made = run("-m", "mlx_megabyte.generate", "--model", str(run_dir / "best"), "--audio", str(out), "--seconds",
               "0.05", "--complete", str(folder / "0.wav"), "--prompt-seconds", "0.1", "--seed", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    with wave.open(str(out)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)
        assert f.getnframes() <= 800 + 400 and f.getnframes() > 800  # the prompt's 0.1 s, then up to 0.05 s


def test_bad_pictures_and_sounds_are_one_line_errors_and_nothing_is_written(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))  # a PNG cut short
    cache = tmp_path / "cache"
    result = run("-m", "mlx_megabyte.train", "--preset", "tiny", "--data", str(folder), "--data-kind", "image",
                 "--image-size", "8", "--image-mode", "L", "--cache-dir", str(cache), "--save-path",
                 str(tmp_path / "run"))  # fmt: skip
    one_line_error(result, "a.png")
    assert not list(cache.rglob("meta.json")) and not list(cache.rglob("*.bin"))  # no half corpus
    (folder / "a.png").unlink()
    (folder / "b.wav").write_bytes(b"RIFF....WAVEjunk")
    result = run("-m", "mlx_megabyte.train", "--preset", "tiny", "--data", str(folder), "--cache-dir", str(cache),
                 "--save-path", str(tmp_path / "run"))  # fmt: skip
    one_line_error(result, "b.wav")
    text_model = run("-m", "mlx_megabyte.generate", "--model", str(ROOT / "weights" / "demo"), "--image",
                     str(tmp_path / "x.png"))  # fmt: skip
    one_line_error(text_model, "text model", "--shift-bytes")
    assert not (tmp_path / "x.png").exists()
