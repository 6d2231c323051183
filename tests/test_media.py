"""Pictures and sound as bytes (mlx_megabyte/media.py): mu-law against G.711's own numbers and the
standard library's last implementation of it, files -> bytes -> files exactly, resampling that keeps a
tone's pitch, and one-line errors that leave nothing behind."""

import gzip
import importlib.util
import io
import math
import os
import struct
import sys
import warnings
import wave

import numpy as np
import pytest
from PIL import Image

from mlx_megabyte import media
from mlx_megabyte.errors import UserError

from .helpers import ROOT

ALL_CODES = np.arange(256, dtype=np.uint8)
INT16 = np.arange(-32768, 32768)


# ---------------------------------------------------------------------------------------------- mu-law

# (linear sample, its code) worked out by hand from G.711: |x| + 132 falls in segment e where
# 2^(7+e) <= |x| + 132 < 2^(8+e); the code is ~(sign | e << 4 | the 4 bits below the leading one).
ENCODED = [
    (0, 0xFF),  # 132 = 0b1000_0100: e = 0, mantissa 0
    (3, 0xFF),  # 135: still mantissa 0
    (4, 0xFE),  # 136 >> 3 = 17: mantissa 1
    (-1, 0x7F),  # negative zero
    (-4, 0x7E),
    (1000, 0xCE),  # 1132: e = 3, (1132 >> 6) & 15 = 1: ~0x31
    (-1000, 0x4E),
    (32635, 0x80),  # the clip level: e = 7, mantissa 15
    (32767, 0x80),
    (-32768, 0x00),
]
# (code, linear sample) from the standard's reconstruction table: segment ends 0, 33, 99, ..., 4191, 8031 of
# 14-bit samples, times 4 for 16-bit ones (x = ((mantissa << 3) + 132 << e) - 132).
DECODED = [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0xF0, 120), (0xEF, 132), (0xDF, 396), (0x8F, 16764), (0x80, 32124)]
DECODED += [(0x00, -32124), (0x7E, -8), (0x70, -120), (0x6F, -132), (0x0F, -16764)]


@pytest.mark.parametrize("sample, code", ENCODED)
def test_mulaw_encode_matches_g711_worked_by_hand(sample, code):
    assert media.mulaw_encode(np.array([sample]))[0] == code


@pytest.mark.parametrize("code, sample", DECODED)
def test_mulaw_decode_matches_the_g711_table(code, sample):
    assert media.mulaw_decode(np.array([code], np.uint8))[0] == sample


def test_mulaw_decode_is_monotonic_and_odd():
    decoded = media.mulaw_decode(ALL_CODES).astype(np.int64)
    assert decoded.dtype == np.int64 and media.mulaw_decode(ALL_CODES).dtype == np.int16
    negative, positive = decoded[:0x80], decoded[0x80:]
    assert negative[0] == -32124 and negative[-1] == 0 and np.all(np.diff(negative) > 0)  # 0x00 .. 0x7F rising
    assert positive[0] == 32124 and positive[-1] == 0 and np.all(np.diff(positive) < 0)  # 0x80 .. 0xFF falling
    assert np.array_equal(decoded[ALL_CODES ^ 0x80], -decoded)


def test_mulaw_codes_round_trip_but_negative_zero():
    decoded = media.mulaw_decode(ALL_CODES)
    again = media.mulaw_encode(decoded)
    expected = ALL_CODES.copy()
    expected[0x7F] = 0xFF  # both zeros decode to 0, which encodes as positive zero
    assert np.array_equal(again, expected)
    assert np.array_equal(media.mulaw_decode(again), decoded)


def test_mulaw_encode_is_symmetric_and_within_half_a_step():
    codes = media.mulaw_encode(INT16)
    assert codes.dtype == np.uint8
    positive = np.arange(1, 32768)
    assert np.array_equal(media.mulaw_encode(-positive), media.mulaw_encode(positive) ^ 0x80)
    # each code stands for a step of 8 << e samples and decodes to its middle
    inside = np.abs(INT16) <= media.MULAW_CLIP
    exponent = (~codes.astype(np.int64) >> 4) & 7
    error = np.abs(media.mulaw_decode(codes).astype(np.int64) - INT16)
    assert np.all(error[inside] <= 4 << exponent[inside])
    assert np.array_equal(media.mulaw_encode(np.array([40000, -40000])), [0x80, 0x00])  # beyond int16: saturate


def test_mulaw_agrees_with_audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            pytest.skip("audioop is gone from this Python (removed in 3.13)")
    decoded = np.frombuffer(audioop.ulaw2lin(ALL_CODES.tobytes(), 2), "<i2")
    assert np.array_equal(media.mulaw_decode(ALL_CODES), decoded)
    theirs = np.frombuffer(audioop.lin2ulaw(INT16.astype("<i2").tobytes(), 2), np.uint8)
    ours = media.mulaw_encode(INT16)
    assert np.array_equal(ours[INT16 >= 0], theirs[INT16 >= 0])
    # audioop drops the two low bits by an arithmetic shift, which rounds negative samples down (-1 -> -4
    # -> 0x7E); the reference coders take the magnitude first (-1 -> 0x7F). Rounded down alike, they agree.
    assert np.array_equal(media.mulaw_encode(INT16 & ~3)[INT16 < 0], theirs[INT16 < 0])
    assert np.count_nonzero(ours != theirs) > 0  # (so the line above is not vacuous)


# ---------------------------------------------------------------------------------------------- layouts


def test_layouts_parse_describe_and_round_trip_through_dicts():
    layout = media.ImageLayout.parse("32x32", "RGB")
    assert layout == media.ImageLayout() and layout.channels == 3 and layout.size == 3072
    assert layout.describe() == "32x32 RGB images, 3,072 bytes each, row by row"
    square = media.ImageLayout.parse("8", "L")
    assert (square.width, square.height, square.channels, square.size) == (8, 8, 1, 64)
    assert media.ImageLayout.parse("24x16", "L").size == 384
    assert media.ImageLayout.from_dict({**square.to_dict(), "future": 1}) == square
    audio = media.AudioLayout()
    assert audio.describe() == "8,000 Hz mono, 8-bit mu-law, one byte a sample"
    assert media.AudioLayout.from_dict(media.AudioLayout(16000).to_dict()) == media.AudioLayout(16000)


@pytest.mark.parametrize(
    "size, mode, message",
    [("32x32", "RGBA", "RGB or L"), ("32x", "RGB", "WIDTHxHEIGHT"), ("0", "L", "1 to 1024"), ("2048x8", "L", "1 to")],
)
def test_bad_image_layouts_say_what_is_wrong_in_one_sentence(size, mode, message):
    with pytest.raises(ValueError, match=message) as caught:
        media.ImageLayout.parse(size, mode)
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("mode, shape", [("RGB", (12, 20, 3)), ("L", (12, 20))])
def test_png_to_bytes_to_png_is_pixel_for_pixel(tmp_path, mode, shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(tmp_path / "in.png")
    layout = media.ImageLayout(20, 12, mode)
    data = media.image_bytes(tmp_path / "in.png", layout)
    assert data == pixels.tobytes()  # row by row, channels interleaved
    media.write_png(tmp_path / "out.png", [data], layout)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == mode and np.array_equal(np.asarray(out), pixels)
    assert media.png_from_bytes([data], layout) == (tmp_path / "out.png").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["in.png", "out.png"]


def test_grey_image_in_an_rgb_layout_repeats_the_grey(tmp_path):
    Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8), "L").save(tmp_path / "g.png")
    data = media.image_bytes(tmp_path / "g.png", media.ImageLayout(2, 2, "RGB"))
    assert data == bytes([0] * 3 + [100] * 3 + [200] * 3 + [255] * 3)


def test_transparency_is_composited_over_white(tmp_path):
    Image.new("RGBA", (1, 1), (255, 0, 0, 128)).save(tmp_path / "half.png")
    # 255 * 128/255 + 255 * 127/255 = 255 for red; 0 * 128/255 + 255 * 127/255 = 127 for green and blue
    assert media.image_bytes(tmp_path / "half.png", media.ImageLayout(1, 1, "RGB")) == bytes([255, 127, 127])
    # and that in grey, by ITU-R 601 luma: (299 * 255 + 587 * 127 + 114 * 127) / 1000 = 165.3
    assert media.image_bytes(tmp_path / "half.png", media.ImageLayout(1, 1, "L")) == bytes([165])
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255, 10, 20, 30])
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    assert media.image_bytes(tmp_path / "p.png", media.ImageLayout(2, 1, "RGB")) == bytes([255] * 3 + [10, 20, 30])
    Image.new("LA", (1, 1), (0, 0)).save(tmp_path / "la.png")
    assert media.image_bytes(tmp_path / "la.png", media.ImageLayout(1, 1, "L")) == bytes([255])


def test_resizing_gives_the_layout_size_and_keeps_a_flat_colour(tmp_path):
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "big.png")
    data = media.image_bytes(tmp_path / "big.png", media.ImageLayout(32, 32, "RGB"))
    assert len(data) == 3072 and data == bytes([10, 200, 30]) * 1024
    noise = np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert len(media.image_bytes(tmp_path / "noise.png", media.ImageLayout(8, 8, "L"))) == 64


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.array([[0, 257, 32896, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert media.image_bytes(tmp_path / "deep.png", media.ImageLayout(4, 1, "L")) == bytes([0, 1, 128, 255])


def test_a_short_sample_is_filled_with_grey_and_a_long_one_cut():
    layout = media.ImageLayout(2, 2, "L")
    assert media.image_from_bytes(b"\x01\x02", layout).tobytes() == bytes([1, 2, 128, 128])
    assert media.image_from_bytes(b"\x01\x02\x03\x04\x05", layout).tobytes() == bytes([1, 2, 3, 4])


def test_grid_of_five_scaled_cells(tmp_path):
    layout = media.ImageLayout(8, 8, "L")
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 200, (8, 8), dtype=np.uint8) for _ in range(5)]
    media.write_png(tmp_path / "grid.png", [image.tobytes() for image in images], layout, scale=2)
    with Image.open(tmp_path / "grid.png") as out:
        grid = np.asarray(out)
    # ceil(sqrt(5)) = 3 columns, 2 rows of 16x16 cells, 2 white pixels between them
    assert grid.shape == (2 * 16 + 2, 3 * 16 + 2 * 2)
    for i, image in enumerate(images):
        row, column = divmod(i, 3)
        cell = grid[row * 18 : row * 18 + 16, column * 18 : column * 18 + 16]
        assert np.array_equal(cell, np.kron(image, np.ones((2, 2), np.uint8)))  # nearest: each pixel a 2x2 square
    assert np.all(grid[16:18, :] == 255) and np.all(grid[:, 16:18] == 255)  # the gaps
    assert np.all(grid[18:, 36:] == 255)  # the sixth cell is empty
    wide = media.png_from_bytes([image.tobytes() for image in images], layout, columns=5)
    assert Image.open(io.BytesIO(wide)).size == (5 * 8 + 4 * 2, 8)


def test_png_size_is_pillows_strongest_png():
    layout = media.ImageLayout(16, 16, "L")
    flat, noise = bytes(256), np.random.default_rng(3).integers(0, 256, 256, dtype=np.uint8).tobytes()
    assert media.png_size(flat, layout) < media.png_size(noise, layout)
    buffer = io.BytesIO()
    Image.frombytes("L", (16, 16), noise).save(buffer, format="PNG", optimize=True, compress_level=9)
    assert media.png_size(noise, layout) == len(buffer.getvalue())


def one_line_user_error(call, path):
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_unreadable_images_are_one_line_errors_naming_the_file(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "text.png").write_text("not a picture\n")
    layout = media.ImageLayout(8, 8, "RGB")
    for name in ("cut.png", "text.png"):
        message = one_line_user_error(lambda: media.image_bytes(tmp_path / name, layout), tmp_path / name)
        assert "not an image Pillow can read" in message
    with pytest.raises(FileNotFoundError):  # a missing file stays what it is (cli.cli makes it one line)
        media.image_bytes(tmp_path / "missing.png", layout)


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    layout = media.ImageLayout(2, 2, "L")
    with pytest.raises(ValueError):
        media.write_png(tmp_path / "none.png", [], layout)
    with pytest.raises(ValueError):
        media.write_png(tmp_path / "none.png", [bytes(4)], layout, scale=0)
    (tmp_path / "keep.png").write_bytes(b"old")

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", full_disk)
    with pytest.raises(UserError, match="No space left"):
        media.write_png(tmp_path / "keep.png", [bytes(4)], layout)
    with pytest.raises(UserError, match="No space left"):
        media.write_wav(tmp_path / "keep.wav", bytes(4), media.AudioLayout())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["keep.png"] and (tmp_path / "keep.png").read_bytes() == b"old"


# ------------------------------------------------------------------------------------------------ sound


def write_pcm(path, frames: np.ndarray, rate: int, width: int = 2):
    """A PCM WAV by the standard library: frames (n, channels) of ints already in the width's range."""
    frames = np.asarray(frames).reshape(len(frames), -1)
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = frames.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = frames.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def riff(fmt: bytes, data: bytes) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_bytes_to_wav_to_bytes_keeps_every_code_but_negative_zero(tmp_path):
    layout = media.AudioLayout()
    data = ALL_CODES.tobytes() * 3
    media.write_wav(tmp_path / "codes.wav", data, layout)
    with wave.open(str(tmp_path / "codes.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 768)
    expected = bytearray(data)
    expected[0x7F::256] = b"\xff" * 3
    assert media.audio_bytes(tmp_path / "codes.wav", layout) == bytes(expected)
    assert media.wav_from_bytes(data, layout) == (tmp_path / "codes.wav").read_bytes()


def test_wav_to_bytes_to_wav_is_the_same_file(tmp_path):
    samples = media.mulaw_decode(np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8))
    write_pcm(tmp_path / "in.wav", samples, 8000)
    layout = media.AudioLayout()
    media.write_wav(tmp_path / "out.wav", media.audio_bytes(tmp_path / "in.wav", layout), layout)
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "in.wav").read_bytes()


def test_every_sample_width_and_channel_count_reads_alike(tmp_path):
    layout = media.AudioLayout()
    left, right = np.full(100, 1000), np.full(100, 3000)
    write_pcm(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 8000)
    assert media.audio_bytes(tmp_path / "stereo.wav", layout) == media.mulaw_encode(np.full(100, 2000)).tobytes()
    write_pcm(tmp_path / "opposite.wav", np.stack([left, -left], axis=1), 8000)
    assert set(media.audio_bytes(tmp_path / "opposite.wav", layout)) == {0xFF}  # silence
    samples = np.arange(-32768, 32768, 256)  # 8-bit steps, so every width holds them exactly
    expected = media.mulaw_encode(samples).tobytes()
    write_pcm(tmp_path / "8.wav", samples // 256, 8000, width=1)
    write_pcm(tmp_path / "24.wav", samples * 256, 8000, width=3)
    write_pcm(tmp_path / "32.wav", samples * 65536, 8000, width=4)
    for name in ("8.wav", "24.wav", "32.wav"):
        assert media.audio_bytes(tmp_path / name, layout) == expected, name


def test_extensible_pcm_headers_read_as_plain_pcm(tmp_path):
    """sox writes WAVE_FORMAT_EXTENSIBLE for 24 bits; Python's wave reads it only from 3.12 on."""
    samples = np.array([-8388608, -256, 0, 256, 8388607])
    pcm = np.asarray(samples).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 24000, 3, 24, 22, 24, 4) + guid
    (tmp_path / "ext.wav").write_bytes(riff(fmt, pcm))
    assert media.audio_bytes(tmp_path / "ext.wav", media.AudioLayout()) == bytes(
        media.mulaw_encode(np.array([-32768, -1, 0, 1, 32767]))
    )


def test_resampling_keeps_the_pitch_and_the_length(tmp_path):
    rate, n = 22050, 15438  # 0.7 s and 3 samples
    t = np.arange(n) / rate
    write_pcm(tmp_path / "a440.wav", np.rint(12000 * np.sin(2 * np.pi * 440 * t)), rate)
    data = media.audio_bytes(tmp_path / "a440.wav", media.AudioLayout())
    assert len(data) == 5602 == math.ceil(n * 8000 / rate)  # every 8 kHz sample time inside the clip
    decoded = media.mulaw_decode(np.frombuffer(data, np.uint8)).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(decoded * np.hanning(len(decoded))))
    frequencies = np.fft.rfftfreq(len(decoded), 1 / 8000)
    assert abs(frequencies[np.argmax(spectrum)] - 440) <= 8000 / len(decoded)  # within one bin
    # away from the ends, the tone is the tone sampled at 8 kHz, within mu-law's half step (264 at 12,000)
    direct = 12000 * np.sin(2 * np.pi * 440 * np.arange(len(decoded)) / 8000)
    assert np.max(np.abs(decoded - direct)[400:-400]) < 300


def test_resampling_removes_what_the_new_rate_cannot_hold(tmp_path):
    rate = 22050
    t = np.arange(rate) / rate
    write_pcm(tmp_path / "high.wav", np.rint(16000 * np.sin(2 * np.pi * 5000 * t)), rate)  # above 4 kHz
    decoded = media.mulaw_decode(np.frombuffer(media.audio_bytes(tmp_path / "high.wav", media.AudioLayout()), np.uint8))
    assert np.max(np.abs(decoded[400:-400])) <= 8  # it would alias to 3 kHz; mu-law's smallest steps are 8
    up = media.resample(np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000, 44100)
    assert len(up) == 44100
    assert np.max(np.abs(up - np.sin(2 * np.pi * 440 * np.arange(44100) / 44100))[2000:-2000]) < 1e-3


def test_unreadable_wavs_are_one_line_errors_naming_the_file(tmp_path):
    layout = media.AudioLayout()
    (tmp_path / "junk.wav").write_bytes(b"garbage, not a RIFF file at all" * 10)
    float_fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    (tmp_path / "float.wav").write_bytes(riff(float_fmt, np.zeros(10, "<f4").tobytes()))
    mulaw_fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    (tmp_path / "mulaw.wav").write_bytes(riff(mulaw_fmt, bytes(10)))
    write_pcm(tmp_path / "whole.wav", np.zeros(1000), 8000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[:1000])
    reasons = {"junk.wav": "RIFF", "float.wav": "format 3", "mulaw.wav": "format 7, mu-law", "cut.wav": "truncated"}
    for name, reason in reasons.items():
        message = one_line_user_error(lambda: media.audio_bytes(tmp_path / name, layout), tmp_path / name)
        assert "not a PCM WAV file" in message and reason in message and "sox" in message, message


# ---------------------------------------------------------------------------------------------- corpora


def load_tool():
    spec = importlib.util.spec_from_file_location("media_corpora", ROOT / "tools" / "media_corpora.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_digits_corpus_is_sklearns_csv_scaled(tmp_path, monkeypatch):
    """The tool reads sklearn/datasets/data/digits.csv.gz where the scikit-learn package lies, without
    importing it: a package laid out the same way (three digits) stands in for it here."""
    package = tmp_path / "site" / "sklearn"
    (package / "datasets" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the tool must not import scikit-learn')\n")
    rows = [[0, 16, 8] + [4] * 61 + [3], [16] * 64 + [7], [1] * 64 + [0]]  # 64 values 0..16, then the label
    with gzip.open(package / "datasets" / "data" / "digits.csv.gz", "wt") as f:
        f.write("".join(",".join(map(str, row)) + "\n" for row in rows))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "sklearn", raising=False)
    tool = load_tool()
    out = tmp_path / "digits"
    tool.digits(out)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["0000-label3.png", "0001-label7.png", "0002-label0.png"]
    with Image.open(files[0]) as image:
        assert image.size == (8, 8) and image.mode == "L"
        assert list(image.tobytes()) == [round(v * 255 / 16) for v in rows[0][:-1]]  # 16 -> 255, 8 -> 128
