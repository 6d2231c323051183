"""Pictures and sound as the raw bytes a byte model learns, and back.

A byte model needs no codec of its own for media: it reads an image as its pixels, one byte a channel,
row by row, top to bottom, channels interleaved (R,G,B,R,G,B...), as the MEGABYTE paper lays out images,
and a sound as 8-bit mu-law, one byte a sample, mono (the G.711 telephone code: its logarithmic steps
spend the 256 values where the ear hears them: 8 bits span the range of 14-bit linear samples). A layout
(`ImageLayout`, `AudioLayout`) fixes the shape, so that every file becomes the same number of bytes a
second or an image, and a generated sample becomes a PNG or a WAV again.

Images go through Pillow, an optional extra (`pip install "mlx-megabyte[media]"`), imported only where an
image is read or written. Sound needs no library: the standard library's `wave` reads and writes PCM
WAV, and `audioop`, which had mu-law, is deprecated since Python 3.11 and gone in 3.13, so mu-law and the
resampler are written here in numpy.

Round trips, exactly:
- PNG -> bytes -> PNG gives back every pixel of an image already at the layout's size and mode.
- WAV -> bytes -> WAV gives back the same file for a 16-bit mono WAV at the layout's rate whose samples
  are mu-law values (any WAV `write_wav` wrote).
- bytes -> WAV -> bytes gives back every code but one: G.711 has two zeros, 0x7F (negative zero) and
  0xFF (positive zero); both decode to the sample 0, which encodes as 0xFF, so 0x7F comes back as 0xFF.
"""

from __future__ import annotations

import io
import math
import re
import shlex
import wave
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .errors import UserError
from .files import atomic_path

IMAGE_MODES = {"RGB": 3, "L": 1}  # mode -> bytes a pixel
MAX_SIDE = 1024
WHITE = 255  # what transparent pixels are composited over, and the gap between the cells of a grid
GREY = 128  # the pixels a sample cut short lacks
GRID_GAP = 2  # white pixels between the cells of a grid (one is lost against a light image)
AUDIO_ENCODINGS = ("mulaw",)
MULAW_BIAS = 0x84  # 132: added to the magnitude so that every segment starts at a power of two
MULAW_CLIP = 32635  # the largest magnitude that, biased, still fits in 15 bits
_PILLOW_HINT = 'Pillow is not installed: pip install "mlx-megabyte[media]"'
_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?$")


def _known(cls, d: dict) -> dict:
    """The keys of `d` that are fields of `cls` (mlx-lm's from_dict habit: a newer file still loads)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


# ---------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageLayout:
    """The shape every image is converted to: width x height pixels in `mode`, row by row."""

    width: int = 32
    height: int = 32
    mode: str = "RGB"  # "RGB" (3 bytes a pixel) or "L" (grey, 1 byte a pixel)

    def __post_init__(self):
        if self.mode not in IMAGE_MODES:
            raise ValueError(f"image mode must be RGB or L, not {self.mode!r}")
        for side in (self.width, self.height):
            if not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
                raise ValueError(f"image sides must be whole numbers from 1 to {MAX_SIDE}, not {side!r}")

    @property
    def channels(self) -> int:
        return IMAGE_MODES[self.mode]

    @property
    def size(self) -> int:
        """Bytes an image: width * height * channels."""
        return self.width * self.height * self.channels

    def describe(self) -> str:
        mode = "RGB" if self.mode == "RGB" else "grey (L)"
        return f"{self.width}x{self.height} {mode} images, {self.size:,} bytes each, row by row"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageLayout:
        return cls(**_known(cls, d))

    @classmethod
    def parse(cls, size: str, mode: str) -> ImageLayout:
        """From flag values: `parse("32x32", "RGB")`, or one number for a square (`parse("8", "L")`)."""
        match = _SIZE.match(str(size))
        if not match:
            raise ValueError(f"image size must be WIDTHxHEIGHT (32x32) or one number for a square, not {size!r}")
        width = int(match.group(1))
        height = int(match.group(2) or width)
        return cls(width, height, str(mode).upper())


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise UserError(_PILLOW_HINT) from None
    return Image


def image_bytes(path: str | Path, layout: ImageLayout) -> bytes:
    """An image file's pixels in `layout`: layout.size bytes, row by row, channels interleaved.

    Transparent pixels are composited over white (a transparent icon's hidden colours are noise), the
    picture is turned upright by its EXIF orientation (a phone photo is stored sideways), and resized to
    exactly width x height with Lanczos only when its size differs: an image already at the size is
    taken pixel for pixel, so PNG -> bytes -> PNG is identical. The aspect ratio is not kept (no crop,
    no padding): every byte of the result is the picture's.
    """
    Image = _pillow()
    from PIL import ImageOps

    with open(path, "rb") as f:  # a missing or unreadable file stays the OSError it is
        try:
            with Image.open(f) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                image = _base_mode(Image, image, layout.mode)
        except Image.UnidentifiedImageError:
            raise UserError(f"{path}: not an image Pillow can read (no format it knows)") from None
        except Exception as error:  # damaged files raise OSError, SyntaxError, ValueError, EOFError, ...
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"{path}: not an image Pillow can read ({reason})") from None
    if image.size != (layout.width, layout.height):
        image = image.resize((layout.width, layout.height), Image.Resampling.LANCZOS)
    return image.convert(layout.mode).tobytes()


def image_shape(path: str | Path) -> tuple[int, int, bool]:
    """(width, height, grey) of an image file, from its header (what data.prepare's default layout is
    taken from); a file Pillow cannot read is the same one-line error as image_bytes gives."""
    Image = _pillow()
    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], image.mode in ("1", "L", "LA", "I", "I;16", "F")
    except Image.UnidentifiedImageError:
        raise UserError(f"{path}: not an image Pillow can read (no format it knows)") from None
    except OSError as error:
        raise UserError(f"{path}: not an image Pillow can read ({error})") from None


def _base_mode(Image, image, mode: str):
    """`image` as RGB or L (L only when it is grey and grey is wanted), transparency flattened on white."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey (PNG, TIFF): Pillow's own conversion clips at 255 instead of scaling
        grey = np.asarray(image, dtype=np.float64) * (255 / 65535)
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    if image.mode == "L" and mode == "L":
        return image
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def image_from_bytes(data: bytes, layout: ImageLayout):
    """The inverse of `image_bytes`: a PIL image from layout.size bytes. A sample cut short gets mid-grey
    (128) for the pixels it lacks, from where it stopped to the bottom right; bytes beyond layout.size
    are dropped."""
    Image = _pillow()
    data = bytes(data[: layout.size])
    data += bytes([GREY]) * (layout.size - len(data))
    return Image.frombytes(layout.mode, (layout.width, layout.height), data)


def _grid(images: list[bytes], layout: ImageLayout, columns: int | None, scale: int):
    """One image, or several in rows of `columns` cells (default ceil(sqrt(n))) with GRID_GAP white
    pixels between cells and none around them; each cell scaled up by `scale` with nearest-neighbour,
    so pixels stay sharp squares (an 8x8 digit is too small to see otherwise)."""
    Image = _pillow()
    if not images:
        raise ValueError("no images to draw")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a whole number of at least 1, not {scale!r}")
    if columns is None:
        columns = math.ceil(math.sqrt(len(images)))
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a whole number of at least 1, not {columns!r}")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    cell_w, cell_h = layout.width * scale, layout.height * scale
    white = (WHITE,) * layout.channels if layout.channels > 1 else WHITE
    grid = Image.new(
        layout.mode, (columns * cell_w + (columns - 1) * GRID_GAP, rows * cell_h + (rows - 1) * GRID_GAP), white
    )
    for i, data in enumerate(images):
        cell = image_from_bytes(data, layout)
        if scale > 1:
            cell = cell.resize((cell_w, cell_h), Image.Resampling.NEAREST)
        row, column = divmod(i, columns)
        grid.paste(cell, (column * (cell_w + GRID_GAP), row * (cell_h + GRID_GAP)))
    return grid


def png_from_bytes(images: list[bytes], layout: ImageLayout, columns: int | None = None, scale: int = 1) -> bytes:
    """The PNG that `write_png` writes, in memory (for a server to send)."""
    buffer = io.BytesIO()
    _grid(images, layout, columns, scale).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(
    path: str | Path, images: list[bytes], layout: ImageLayout, columns: int | None = None, scale: int = 1
) -> None:
    """One image as a PNG, or several as a grid (see `_grid`), written atomically. The PNG is made in
    memory first, so bad arguments leave nothing behind."""
    data = png_from_bytes(images, layout, columns, scale)
    with atomic_path(path, suffix=".png") as temporary:
        Path(temporary).write_bytes(data)


def png_size(data: bytes, layout: ImageLayout) -> int:
    """Bytes of the PNG Pillow writes for this one image at its strongest setting (optimize=True,
    compress_level=9): the "PNG at maximum compression" baseline compressors are compared with. Tools
    such as optipng or zopflipng can shave a few percent more."""
    buffer = io.BytesIO()
    image_from_bytes(data, layout).save(buffer, format="PNG", optimize=True, compress_level=9)
    return buffer.tell()


# ----------------------------------------------------------------------------------------------- sound


@dataclass(frozen=True)
class AudioLayout:
    """The shape every sound is converted to: `rate` samples a second, mono, one mu-law byte a sample."""

    rate: int = 8000  # samples per second
    encoding: str = "mulaw"  # only "mulaw" for now: 8-bit G.711 mu-law, one byte a sample, mono

    def __post_init__(self):
        if self.encoding not in AUDIO_ENCODINGS:
            raise ValueError(f"audio encoding must be one of {', '.join(AUDIO_ENCODINGS)}, not {self.encoding!r}")
        if not isinstance(self.rate, int) or not 1 <= self.rate <= 384_000:
            raise ValueError(f"audio rate must be a whole number of samples a second up to 384000, not {self.rate!r}")

    def describe(self) -> str:
        return f"{self.rate:,} Hz mono, 8-bit mu-law, one byte a sample"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioLayout:
        return cls(**_known(cls, d))


def mulaw_encode(samples: np.ndarray) -> np.ndarray:
    """16-bit linear PCM -> G.711 mu-law codes (uint8), as the standard's reference coders compute them.

    The magnitude, clipped to MULAW_CLIP, plus MULAW_BIAS falls in one of 8 segments [2^(7+e), 2^(8+e));
    the code is sign (0x80 for negative), segment e and the 4 bits below the leading one, all inverted
    (G.711 stores codes bit-inverted so that silence is not a run of zero bits on the line). The sign is
    taken from the magnitude, not from an arithmetic shift: encode(-x) == encode(x) ^ 0x80, and -1..-3
    encode as negative zero (0x7F). Values beyond int16 saturate.
    """
    x = np.asarray(samples).astype(np.int64)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), MULAW_CLIP) + MULAW_BIAS  # in [132, 32767]
    exponent = np.frexp(magnitude)[1] - 8  # frexp is exact for integers: 2^(7+e) <= magnitude < 2^(8+e)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _decode_table() -> np.ndarray:
    code = ~np.arange(256) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


_MULAW_TABLE = _decode_table()  # code -> sample: 0x00 -> -32124 ... 0x7F -> 0, 0x80 -> 32124 ... 0xFF -> 0


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law codes (uint8) -> 16-bit linear PCM: each code's segment midpoint, by the standard's
    table."""
    return _MULAW_TABLE[np.asarray(codes, dtype=np.uint8)]


# Windowed-sinc resampling, evaluated as a polyphase filter bank. Why not the FFT of the whole clip
# (simpler, and an ideal low-pass): it treats the clip as periodic, so its end bleeds into its start,
# and an hour of audio becomes gigabytes of complex spectrum. A Kaiser-windowed sinc is what sox and
# scipy's resample_poly use: local (each output sample sees RESAMPLE_ZEROS zero crossings a side), no
# wrap-around, memory linear in the clip. Rates are integers, so the output times fall on `up` phases
# between input samples (up = rate_out / gcd); each phase's taps are computed once and applied to
# every output sample of that phase as one matrix product.
RESAMPLE_ZEROS = 24  # sinc zero crossings each side of the centre
RESAMPLE_BETA = 8.6  # Kaiser window shape: about 86 dB stop-band attenuation
RESAMPLE_ROLLOFF = 0.92  # cutoff as a share of the lower rate's Nyquist frequency, below it to leave room
# for the filter's transition band
_PHASE_BLOCK = 512  # phases whose taps are computed together (memory: 512 x taps floats)


def resampled_length(n: int, rate_in: int, rate_out: int) -> int:
    """Samples `resample` gives for n: one for every output time inside the clip, ceil(n * out / in)."""
    return -(-n * rate_out // rate_in)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """A float signal at rate_in -> the same sound at rate_out (float64), low-passed below the lower
    rate's Nyquist frequency so nothing aliases; the clip is taken as silent beyond its ends."""
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x.copy()
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g  # output m sits at input time m * down / up
    cutoff = 0.5 * min(1.0, rate_out / rate_in) * RESAMPLE_ROLLOFF  # cycles per input sample
    half = RESAMPLE_ZEROS / (2 * cutoff)  # the filter's half-width in input samples
    reach = math.ceil(half)
    taps = np.arange(-reach + 1, reach + 1)  # input k = floor(t) + tap covers every k with |t - k| < half
    n_out = resampled_length(len(x), rate_in, rate_out)
    padded = np.concatenate([np.zeros(reach), x, np.zeros(reach + down + 1)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(taps))  # windows[i] = x[i - reach + 1 ...]
    y = np.empty(n_out)
    for start in range(0, min(up, n_out), _PHASE_BLOCK):  # the taps of a block of phases at once
        phases = np.arange(start, min(start + _PHASE_BLOCK, up, n_out))
        firsts, fractions = np.divmod(phases * down, up)
        d = (fractions / up)[:, None] - taps  # (phases, taps): from each output time to each tap's input
        u = np.clip(d / half, -1.0, 1.0)
        window = np.where(np.abs(d) < half, np.i0(RESAMPLE_BETA * np.sqrt(1 - u * u)) / np.i0(RESAMPLE_BETA), 0.0)
        bank = 2 * cutoff * np.sinc(2 * cutoff * d) * window
        for r, first, h in zip(phases, firsts, bank):
            count = len(range(r, n_out, up))  # outputs r, r+up, ... each `down` inputs further on
            y[r::up] = windows[first + 1 : first + 1 + count * down : down] @ h
    return y


_WAV_FORMATS = {"3": "floating point", "6": "A-law", "7": "mu-law", "65534": "an extensible format not PCM"}
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_*: the format code, then this


def _plain_format(data: bytes) -> bytes:
    """A WAV whose header says WAVE_FORMAT_EXTENSIBLE (what sox writes for 24 or 32 bits or more than two
    channels) relabelled with the format its subformat names: Python's `wave` reads such files only from
    3.12 on, and the PCM ones are laid out as plain PCM. Anything else is returned as it is."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind == b"fmt ":
            body = data[at + 8 : at + 8 + size]
            if len(body) >= 40 and body[:2] == b"\xfe\xff" and body[26:40] == _GUID_TAIL:
                return data[: at + 8] + body[24:26] + data[at + 10 :]
            return data
        at += 8 + size + (size & 1)  # chunks are padded to an even length
    return data


def _not_wav(path, reason: str, layout: AudioLayout) -> UserError:
    return UserError(
        f"{path}: not a PCM WAV file ({reason}); convert it with e.g. "
        f"`sox {shlex.quote(str(path))} -r {layout.rate} -c 1 -b 16 OUT.wav`"
    )


def _read_wav(path, layout: AudioLayout) -> tuple[np.ndarray, int, int]:
    """A WAV's frames as int64 (frames, channels), its sample width and rate, or a UserError."""
    data = _plain_format(Path(path).read_bytes())  # a missing or unreadable file stays the OSError it is
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, ValueError) as error:
        reason = (str(error).strip().splitlines() or ["truncated header"])[0]
        if match := re.fullmatch(r"unknown format: (\d+)", reason):
            code = match.group(1)
            reason = f"format {code}" + (f", {_WAV_FORMATS[code]}" if code in _WAV_FORMATS else "")
        raise _not_wav(path, reason, layout) from None
    if channels < 1 or rate < 1:
        raise _not_wav(path, f"{channels} channels at {rate} Hz", layout)
    if len(raw) != frames * channels * width:
        raise _not_wav(path, f"truncated: {len(raw) // (channels * width):,} of {frames:,} frames", layout)
    if width == 1:  # 8-bit WAV is unsigned
        samples = np.frombuffer(raw, np.uint8).astype(np.int64) - 128
    elif width == 3:  # 24-bit little-endian: sign-extend from the top byte
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int64)
        samples = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16
        samples = np.where(samples >= 1 << 23, samples - (1 << 24), samples)
    else:
        samples = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.int64)
    return samples.reshape(-1, channels), width, rate


def audio_bytes(path: str | Path, layout: AudioLayout) -> bytes:
    """A PCM WAV file (8-bit unsigned, 16-, 24- or 32-bit signed, any number of channels) as mu-law bytes
    in `layout`: channels mixed down to mono by their mean, resampled to layout.rate when the file's
    rate differs (see `resample`), clipped to 16 bits and encoded. A 16-bit mono file at layout.rate is
    taken sample for sample. Compressed or float WAVs, which `wave` refuses, become a UserError saying
    how to convert them."""
    frames, width, rate = _read_wav(path, layout)
    if width == 2 and frames.shape[1] == 1 and rate == layout.rate:
        return mulaw_encode(frames[:, 0]).tobytes()
    mono = frames.mean(axis=1) * 2.0 ** (16 - 8 * width)  # in 16-bit units
    mono = resample(mono, rate, layout.rate)
    return mulaw_encode(np.clip(np.rint(mono), -32768, 32767)).tobytes()


def wav_from_bytes(data: bytes, layout: AudioLayout) -> bytes:
    """mu-law bytes -> the bytes of a 16-bit PCM mono WAV at layout.rate (what `write_wav` writes), in
    memory: a format every player and browser plays, unlike a mu-law WAV."""
    samples = mulaw_decode(np.frombuffer(bytes(data), np.uint8)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(layout.rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


def write_wav(path: str | Path, data: bytes, layout: AudioLayout) -> None:
    """mu-law bytes -> a 16-bit PCM mono WAV file at layout.rate, written atomically."""
    wav = wav_from_bytes(data, layout)
    with atomic_path(path, suffix=".wav") as temporary:
        Path(temporary).write_bytes(wav)
