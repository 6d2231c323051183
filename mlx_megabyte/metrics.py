"""metrics.jsonl: one JSON line per training step and per evaluation, written by rank 0, flushed line by line;
on resume the lines of steps to be redone are dropped, and a damaged line (a full disk can cut the last
one short) is left out and counted."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .files import write_text


class Metrics:
    """metrics.jsonl in the run directory (rank 0 only): one line per step and per evaluation."""

    def __init__(self, path: Path, enabled: bool, resumed_step: int):
        self.path, self.enabled = path, enabled
        self.dropped = 0  # damaged lines left out (a full disk can cut the last one short)
        if enabled and path.is_file():
            # Lines written after the checkpoint we resume from describe steps that will be redone.
            kept = []
            for line in path.read_text(errors="replace").splitlines():
                record = _json_object(line)
                if record is None:
                    self.dropped += bool(line.strip())
                elif record.get("step", 0) <= resumed_step:
                    kept.append(line)
            write_text(path, "".join(line + "\n" for line in kept))
        try:
            self.file = open(path, "a") if enabled else None
        except OSError as error:
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None

    def write(self, record: dict):
        if self.file:
            try:
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
            except OSError as error:
                raise UserError(
                    f"cannot write {self.path}: {error.strerror or error}; checkpoints written so far are intact"
                ) from None

    def close(self):
        if self.file:
            try:
                self.file.close()
            except OSError:
                pass  # the write that failed has said so already


def _json_object(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
