"""The server's /v1/media: a model of pictures or sound answers with base64 PNG or WAV files in the layout
it was trained on, the same samples `generate --image --seed` writes; text endpoints refuse it, and a text
model refuses /v1/media."""

import base64
import io
import json
import wave

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import save
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.weights import TRAINING_FILE

from .helpers import require_chromium, run
from .test_server import Server


def media_weights(path, kind, layout):
    mx.random.seed(0)
    save(build(ARCHITECTURES["megabyte"].presets["tiny"].replace(shift_bytes=True, num_tokens=258)), path)
    (path / TRAINING_FILE).write_text(json.dumps({"data": "files", "data_kind": kind, kind: layout}))
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    weights = media_weights(
        tmp_path_factory.mktemp("media") / "digits", "image", {"width": 6, "height": 5, "mode": "L"}
    )
    server = Server(weights)
    yield server, weights
    server.close()


def test_images_come_back_as_the_pngs_generate_writes(pictures, tmp_path):
    from PIL import Image

    server, weights = pictures
    status, _, card = server.request("GET", "/v1/models")
    assert card["data"][0]["media"] == {"kind": "image", "layout": {"width": 6, "height": 5, "mode": "L"}}
    status, _, reply = server.request("POST", "/v1/media", {"n": 2, "seed": 7, "temperature": 1.0})
    assert status == 200, reply
    assert reply["object"] == "media" and reply["kind"] == "image" and reply["seed"] == 7
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_png"]))) for item in reply["data"]]
    assert [(im.size, im.mode) for im in images] == [((6, 5), "L")] * 2
    # the same seed and settings on the command line: the same pixels
    out = tmp_path / "grid.png"
    made = run("-m", "mlx_megabyte.generate", "--model", str(weights), "--image", str(out), "-n", "2", "--seed", "7",
               "--temp", "1.0", "--scale", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    grid = np.asarray(Image.open(out))
    assert np.array_equal(grid[:5, :6], np.asarray(images[0]))


def test_text_endpoints_refuse_a_media_model_and_bad_media_requests_are_one_line(pictures):
    server, _ = pictures
    status, _, reply = server.request("POST", "/v1/completions", {"prompt": "Once"})
    assert status == 400 and reply["error"]["code"] == "model_not_text"
    status, _, reply = server.request("POST", "/v1/media", {"n": 0})
    assert status == 400 and reply["error"]["param"] == "n"
    status, _, reply = server.request("POST", "/v1/media", {"prompt": base64.b64encode(b"not a png").decode()})
    assert status == 400 and "not an image" in reply["error"]["message"] and "/tmp" not in reply["error"]["message"]


def test_sound_comes_back_as_a_wav(tmp_path):
    weights = media_weights(tmp_path / "speech", "audio", {"rate": 8000, "encoding": "mulaw"})
    server = Server(weights)
    try:
        status, _, reply = server.request("POST", "/v1/media", {"seconds": 0.01, "seed": 1})
        assert status == 200, reply
        with wave.open(io.BytesIO(base64.b64decode(reply["data"][0]["b64_wav"]))) as clip:
            assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (8000, 1, 2)
            assert 0 < clip.getnframes() <= 80
    finally:
        server.close()


def test_a_text_model_refuses_media_requests(tmp_path):
    from mlx_megabyte import MEGABYTE, PRESETS

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "text")
    server = Server(tmp_path / "text")
    try:
        status, _, reply = server.request("POST", "/v1/media", {})
        assert status == 400 and reply["error"]["code"] == "model_not_media"
    finally:
        server.close()


def test_the_playground_draws_a_media_models_pictures(pictures, tmp_path):
    from .browser import Chromium

    server, _ = pictures
    require_chromium()
    with Chromium() as browser:
        browser.viewport(900, 600)
        browser.open(server.url + "/")
        browser.wait_for("document.getElementById('model-info').textContent.includes('6x5 L images')")
        assert browser.evaluate("document.getElementById('write').textContent") == "Draw"
        browser.click("#write")
        browser.wait_for("document.querySelectorAll('#story img.sample-image').length === 4")
        sizes = browser.evaluate(
            "Array.from(document.querySelectorAll('#story img')).map(i => [i.naturalWidth, i.naturalHeight])"
        )
        assert sizes == [[6, 5]] * 4  # four PNGs the page decoded, at the model's layout
        assert browser.console_errors() == []
        browser.screenshot(str(tmp_path / "media-playground.png"))
