"""Data-parallel training over MLX's own `mx.distributed`, as started by `mlx.launch`.

    mlx.launch -n 2 -- python -m mlx_megabyte.train --preset small --data builtin
    mlx.launch --hostfile hosts.json -- python -m mlx_megabyte.train ...

Every rank runs the same script. Collective operations block until every rank joins, so a rank that
died, or never connected, would leave the others waiting forever: a watchdog ends a rank that has made
no progress for `timeout` seconds, with a message, and checkpoints written before stay as they are
(they are only ever replaced by an atomic rename).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx

from . import cpu

DEFAULT_TIMEOUT = 300.0  # seconds without progress; the first step (compilation) must fit in it


def launched() -> bool:
    """Was this process started as one rank of several (by mlx.launch or by hand)?"""
    return any(os.environ.get(name) for name in ("MLX_HOSTFILE", "MLX_RANK", "OMPI_COMM_WORLD_RANK"))


# The watchdog is a separate little process: a collective that waits for a dead peer blocks inside MLX
# without releasing the GIL, so no Python thread of the training process could notice. The trainer
# writes "<timeout>\t<activity>" lines to its pipe; silence longer than the timeout ends the trainer.
_WATCHER = """
import os, select, signal, sys, time
parent, name = int(sys.argv[1]), sys.argv[2]
timeout, activity = float("inf"), "starting"
while True:
    ready, _, _ = select.select([0], [], [], None if timeout == float("inf") else timeout)
    if not ready:
        sys.stderr.write(f"error: {name}no progress for {timeout:.0f} s while {activity}: another rank has "
                         "probably died or cannot connect; stopping (checkpoints written so far are intact)\\n")
        sys.stderr.flush()
        try:
            os.kill(parent, signal.SIGTERM)
            time.sleep(5)
            os.kill(parent, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    data = os.read(0, 65536)
    if not data:
        break  # the trainer closed the pipe or exited
    try:
        limit, activity = data.decode().splitlines()[-1].split("\\t", 1)
        timeout = float(limit)
    except ValueError:
        pass
"""


class Watchdog:
    """Ends this process (non-zero exit) when `beat()` has not been called for `timeout` seconds."""

    def __init__(self, timeout: float, rank_name: str = ""):
        self.timeout = timeout
        read, self._write = os.pipe()
        self._watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), rank_name], stdin=read)
        os.close(read)
        self.beat("starting")

    def beat(self, activity: str, timeout: float | None = None) -> None:
        """Progress was made; `timeout` (default: the watchdog's) applies until the next beat."""
        limit = self.timeout if timeout is None else timeout
        try:
            os.write(self._write, f"{limit}\t{activity}\n".encode())
        except OSError:
            pass

    def stop(self) -> None:
        if self._write is not None:
            os.close(self._write)
            self._write = None
            self._watcher.wait()


def init(timeout: float):
    """The process group, and a watchdog when several ranks run (None for a single process).

    `mx.distributed.init()` gives a group of size 1 when the process was not launched as a rank.
    """
    watchdog = Watchdog(timeout, f"rank {os.environ.get('MLX_RANK', '?')}: ") if launched() else None
    if watchdog:
        watchdog.beat("connecting to the other ranks")
    group = mx.distributed.init()
    if watchdog and group.size() == 1:
        watchdog.stop()
        watchdog = None
    if watchdog:
        barrier(group)
        share_cores(group)
    return group, watchdog


def share_cores(group) -> None:
    """Ranks on one machine split its cores between their BLAS thread pools instead of oversubscribing."""
    try:
        hosts = json.loads(open(os.environ["MLX_HOSTFILE"]).read())
        ips = [entry[0].rsplit(":", 1)[0] for entry in hosts]
    except (KeyError, OSError, ValueError, IndexError, TypeError, AttributeError):
        return
    if len(ips) == group.size():
        local = ips.count(ips[group.rank()])
        cpu.set_blas_threads((os.cpu_count() or 1) // local)


def barrier(group) -> None:
    """Wait until every rank gets here."""
    if group.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))


def total(values: list[mx.array], group) -> list[mx.array]:
    """Sum arrays over all ranks (identity for one process)."""
    if group.size() == 1:
        return values
    return [mx.distributed.all_sum(v, group=group) for v in values]
