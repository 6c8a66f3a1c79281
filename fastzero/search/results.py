"""A search's directory: ``search.json`` (its settings) and ``trials.jsonl`` (one record per line).

Only the process that drives the search writes, one record as soon as its
trial finishes: a single ``write`` of one line to a file opened for appending,
then ``fsync``. A line cut short by a crash is dropped when the file is read
and cut off before the next append, so every complete line is a whole record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "SETTINGS", "ResultsFile", "read_records", "read_settings",
           "write_settings", "latest_records"]

RESULTS = "trials.jsonl"
SETTINGS = "search.json"


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a results file, in file order ([] if there is none)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is unfinished
        if line.strip():
            records.append(json.loads(line))
    return records


def latest_records(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per trial, its record with the most epochs among the finished ones ('ok' or 'diverged')."""
    best: dict[int, dict[str, Any]] = {}
    for rec in records:
        if rec.get("status") not in ("ok", "diverged"):
            continue
        old = best.get(rec["trial"])
        if old is None or rec["epochs"] > old["epochs"]:
            best[rec["trial"]] = rec
    return best


class ResultsFile:
    """Appends records to ``path``, one line each, durably."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                data = f.read()
            end = data.rfind(b"\n") + 1
            if end < size:  # an unfinished last line from a crash
                os.truncate(self.path, end)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_settings(directory: Path, settings: dict[str, Any]) -> None:
    from fastzero.params_io import atomic_write

    with atomic_write(directory / SETTINGS) as f:
        f.write(json.dumps(settings, indent=1).encode())


def read_settings(directory: Path) -> dict[str, Any]:
    path = directory / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no search ({SETTINGS} is missing)")
    return json.loads(path.read_text())

