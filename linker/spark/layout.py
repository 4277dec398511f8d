"""Where a Spark run keeps its work: staged input parts, finished part files and the run manifest.

A run into a Parquet folder works inside it (``OUT/input/``, ``OUT/mentions/``, ``OUT/failures/``); a run
into one of the project's own formats works in ``OUT.spark/`` beside the output, which is removed once its
parts have been written into the output in input order. A part is finished exactly when its mentions file
exists: every file is written under a temporary name and renamed into place, failures before mentions, so
a killed task leaves either nothing or a whole part, and a task run twice writes the same bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from linker.meta import write_json_atomic

MANIFEST = "_job.json"
COUNTS_KEY = b"linker.counts"


def job_dir(output: Path, kind: str) -> Path:
    """The folder a Spark run into *output* (of format *kind*) works in."""
    return output if kind == "parquet" else Path(f"{output}.spark")


class JobLayout:
    """Paths and state of one Spark run's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.input_dir = root / "input"
        self.mentions_dir = root / "mentions"
        self.failures_dir = root / "failures"

    @staticmethod
    def part_name(part: int) -> str:
        return f"part-{part:05d}.parquet"

    def input_part(self, part: int, table: bool) -> Path:
        """The staged documents of *part*: a file, or for a table Spark staged, the folder ``_part=N``."""
        return self.input_dir / (f"_part={part}" if table else self.part_name(part))

    def mentions_part(self, part: int) -> Path:
        return self.mentions_dir / self.part_name(part)

    def failures_part(self, part: int | str) -> Path:
        return self.failures_dir / (self.part_name(part) if isinstance(part, int) else f"part-{part}.parquet")

    def is_finished(self, part: int) -> bool:
        """A part is finished exactly when its mentions file exists (written last, atomically)."""
        return self.mentions_part(part).exists()

    def finished(self, parts: int) -> list[int]:
        return [part for part in range(parts) if self.is_finished(part)]

    # -- manifest ----------------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {}

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / MANIFEST, manifest)


def write_table(table: Any, path: Path, counts: dict[str, int] | None = None) -> None:
    """Write an Arrow *table* to *path* atomically (temporary name, then rename), with *counts* in its metadata."""
    import pyarrow.parquet as pq

    if counts is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), COUNTS_KEY: json.dumps(counts)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_counts(path: Path) -> dict[str, int]:
    """The counts :func:`write_table` stored in a part file."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata.get(COUNTS_KEY, b"{}"))


def remove_job(output: Path, kind: str) -> None:
    """Delete the work folder of a Spark run into *output* (for Parquet output: the whole output)."""
    import shutil

    shutil.rmtree(job_dir(output, kind), ignore_errors=True)
