"""The Hugging Face Hub, without a network: uploads go through huggingface_hub's own client into a mocked
HTTP layer; downloads come from a local stand-in of the hub cache."""

import base64
import json

import mlx.core as mx
import pytest

from mlx_megabyte import MEGABYTE, PRESETS, save
from mlx_megabyte.publish import push

from .helpers import one_line_error, run

try:  # huggingface_hub 2.x speaks httpx2, 1.x httpx: mock whichever it uses
    import httpx2 as httpx
except ImportError:
    import httpx


class FakeHub:
    """Answers the endpoints that create_repo and create_commit use, and keeps what was committed."""

    def __init__(self):
        self.requests, self.files, self.created = [], {}, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if path == "/api/repos/create":
            self.created.append(json.loads(request.content))
            return httpx.Response(200, json={"url": "https://hub.test/you/demo", "name": "you/demo"})
        if path == "/api/validate-yaml":  # the model card's metadata block
            return httpx.Response(200, json={"errors": [], "warnings": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx.Response(
                200,
                json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
            )
        if "/commit/" in path:
            for line in request.content.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.files[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            return httpx.Response(
                200,
                json={
                    "commitUrl": "https://hub.test/you/demo/commit/abc",
                    "commitOid": "abc" * 13 + "a",
                    "success": True,
                    "commitMessage": "x",
                },
            )
        return httpx.Response(404, json={"error": f"not faked: {request.method} {path}"})


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    hub = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub)))
    yield hub
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    huggingface_hub.close_session()


@pytest.fixture
def weights(tmp_path):
    mx.random.seed(0)
    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "w")
    (tmp_path / "w" / "trainer_state.json").write_text(json.dumps({"step": 300, "val_bpb": 2.3456, "data": "builtin"}))
    return tmp_path / "w"


def test_push_uploads_weights_and_a_model_card(fake_hub, weights):
    url = push(weights, "you/demo", token="hf_fake", endpoint="https://hub.test")
    assert url.endswith("/commit/abc")
    assert fake_hub.created and fake_hub.created[0]["name"] == "demo"
    assert set(fake_hub.files) == {"config.json", "model.safetensors", "README.md"}
    assert fake_hub.files["model.safetensors"] == (weights / "model.safetensors").read_bytes()
    assert json.loads(fake_hub.files["config.json"]) == json.loads((weights / "config.json").read_text())
    card = fake_hub.files["README.md"].decode()
    assert "191,168" in card  # parameter count of the tiny preset
    assert "2.3456 bits per byte" in card and "builtin after 300 steps" in card
    assert "python -m mlx_megabyte.generate --model you/demo" in card
    assert "MEGABYTE(**" in card and "strict=True" in card and "convert_to_torch.py" in card


def test_upload_errors_are_one_line(fake_hub, weights):
    from mlx_megabyte.errors import UserError

    fake_hub.__class__ = type(
        "Refusing", (FakeHub,), {"__call__": lambda self, r: httpx.Response(403, json={"error": "no"})}
    )
    with pytest.raises(UserError, match="could not upload to you/demo"):
        push(weights, "you/demo", token="hf_fake", endpoint="https://hub.test")


def test_push_tool_dry_run_prints_the_card(weights):
    result = run("tools/push_to_hub.py", "--model", str(weights), "--repo", "you/demo", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("---\nlibrary_name: mlx-megabyte")
    one_line_error(run("tools/push_to_hub.py", "--model", str(weights), "--repo", "not a repo"), "user/name")


def test_model_from_the_hub_cache_loads_offline(tmp_path, weights):
    """What snapshot_download left in the cache is found again without a network."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub" / "models--you--demo"
    commit = "0" * 40
    snapshot = cache / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((weights / name).read_bytes())
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    result = run(
        "-m",
        "mlx_megabyte.generate",
        "--model",
        "you/demo",
        "--prompt",
        "Hi",
        "--max-tokens",
        "5",
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hi")
    del constants


def test_a_mistyped_local_path_is_not_taken_for_a_repo_id(tmp_path, monkeypatch):
    from mlx_megabyte.hub import looks_like_repo_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    assert looks_like_repo_id("someone/model")
    assert not looks_like_repo_id("weights/typo")  # a folder of that name exists here
    assert not looks_like_repo_id("./model") and not looks_like_repo_id("a/b/c")
    one_line_error(
        run("-m", "mlx_megabyte.generate", "--model", "weights/no-such-model", "--prompt", "x"),
        "no weights directory at weights/no-such-model",
    )
