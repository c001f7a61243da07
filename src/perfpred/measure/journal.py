"""The measurement journal: finished rows, appended one line at a time, so that a run resumes where it stopped."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path


def row_key(model: str, input_width: int | None, sid: str) -> str:
    """The resume key: a model at an input width under one set of settings is measured once."""
    return f"{model}@{input_width}#{sid}"


def to_measure(previous: dict | None, retry_failed: bool = False) -> bool:
    """Whether a model is measured now, given its journal row (None: none yet): not measured yet, or failed and
    `retry_failed` (`--retry-failed`: the new row replaces the failed one)."""
    return previous is None or (retry_failed and previous["status"] == "failed")


def read_journal(path: Path) -> list[dict]:
    """Rows of a journal; a torn line (a run killed while writing it) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_journal(path: Path, row: dict) -> None:
    """Append one row as one line in one write, flushed to disk before the next model starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as journal:
        torn = journal.tell() > 0 and path.read_bytes()[-1:] != b"\n"  # a killed run's half line stays alone
        journal.write((b"\n" if torn else b"") + json.dumps(row, default=str).encode() + b"\n")
        journal.flush()
        os.fsync(journal.fileno())


def write_series(folder: Path, row: dict) -> Path:
    """Keep a row's per-iteration times (ms), gzip-compressed JSON, for a person to look at; a model's second timing
    (stage.retime_slow: `timings` 2) in a file of its own beside the first's."""
    folder.mkdir(parents=True, exist_ok=True)
    second = "-timed-again" if row.get("retimed") else ""
    path = folder / f"{row['model']}@{row['input_width']}-{row['settings_id']}{second}.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump({k: row[k] for k in ("target", "model", "input_width", "settings_id", "times_ms")}, handle)
    return path


