"""Data-parallel training over mx.distributed with two real ranks on loopback (ring backend)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import mlx.core as mx
import pytest

from mlx_megabyte import checkpoint

from .helpers import ROOT

TRAIN = [
    "-m",
    "mlx_megabyte.train",
    "--preset",
    "tiny",
    "--data",
    "builtin",
    "--builtin-mb",
    "0.4",
    "--eval-batches",
    "2",
    "--steps-per-sample",
    "0",
    "--quiet",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data-cache"))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights_of(run_dir):
    return mx.load(str(checkpoint.latest_checkpoint(run_dir) / "model.safetensors"))


def val_losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in lines if "val_loss" in r]


@pytest.mark.parametrize(
    "arch, extra",
    [("megabyte", []), ("spacebyte", []), ("hnet", []), ("megabyte", ["--data", "builtin-instruct", "--mask-prompt"])],
    ids=["megabyte", "spacebyte", "hnet", "megabyte-mask-prompt"],
)
def test_two_ranks_equal_one_process_over_the_same_global_batches(tmp_path, cache, arch, extra):
    flags = ["--iters", "4", "--steps-per-eval", "2", "--cache-dir", cache, "--arch", arch, *extra]
    single = subprocess.run(
        [sys.executable, *TRAIN, *flags, "--batch-size", "4", "--save-path", str(tmp_path / "one")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    launcher = os.path.join(os.path.dirname(sys.executable), "mlx.launch")
    port = free_ports(1)[0]
    launched = subprocess.run(
        [
            launcher,
            "-n",
            "2",
            "--starting-port",
            str(port),
            "--",
            sys.executable,
            *TRAIN,
            *flags,
            "--batch-size",
            "2",
            "--save-path",
            str(tmp_path / "two"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "over 2 ranks" in launched.stdout + launched.stderr
    one, two = weights_of(tmp_path / "one"), weights_of(tmp_path / "two")
    assert set(one) == set(two)
    worst = max(mx.abs(one[k] - two[k]).max().item() for k in one)
    assert worst <= 1e-5, worst
    # validation over each rank's share of the windows (and of their story masks) sums to one process's
    assert val_losses(tmp_path / "two") == pytest.approx(val_losses(tmp_path / "one"), abs=1e-5)
    # only rank 0 wrote: one metrics file, one line per step and evaluation
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 2, 3, 4, 4]


def start_rank(rank, hostfile, run_dir, cache, *extra):
    env = {**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)}
    command = [sys.executable, *TRAIN, "--cache-dir", cache, "--batch-size", "2", "--save-path", str(run_dir), *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_dead_rank_makes_the_other_exit_with_a_message(tmp_path, cache):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in free_ports(2)]))
    flags = ["--iters", "100000", "--steps-per-eval", "1000", "--steps-per-save", "2", "--distributed-timeout", "10"]
    ranks = [start_rank(r, hostfile, tmp_path / "run", cache, *flags) for r in (0, 1)]
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.05)
    assert metrics.exists(), ranks[0].communicate(timeout=5)
    ranks[1].send_signal(signal.SIGKILL)
    killed = time.time()
    _, stderr = ranks[0].communicate(timeout=60)
    waited = time.time() - killed
    assert ranks[0].returncode != 0
    assert waited < 30, waited
    assert "another rank" in stderr, stderr
    assert "Traceback" not in stderr
    saved = checkpoint.latest_checkpoint(tmp_path / "run")
    assert saved is not None
    from mlx_megabyte import load

    load(saved)  # what was written before is intact


def test_a_rank_that_cannot_connect_gives_up(tmp_path, cache):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in free_ports(2)]))
    started = time.time()
    lonely = start_rank(0, hostfile, tmp_path / "run", cache, "--iters", "5", "--distributed-timeout", "5")
    _, stderr = lonely.communicate(timeout=60)
    assert lonely.returncode != 0
    assert time.time() - started < 40
    assert "cannot connect" in stderr, stderr
