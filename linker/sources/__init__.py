"""Ontology readers. Each streams :data:`~linker.types.Record` values; :func:`open_source` picks one by format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.sources._io import file_sha256
from linker.sources.ctd import read_ctd
from linker.sources.jsonl import read_jsonl
from linker.sources.obo import read_header, read_obo
from linker.sources.tsv import read_tsv
from linker.sources.umls import locate, read_umls
from linker.types import Record

READERS: dict[str, Callable[..., Iterator[Record]]] = {
    "obo": read_obo,
    "umls": read_umls,
    "tsv": read_tsv,
    "jsonl": read_jsonl,
    "ctd": read_ctd,
}


def guess_format(path: Path) -> str:
    """Format from the file name: ``.obo``, ``MRCONSO.RRF`` or a META folder, ``CTD_diseases.tsv``, ``.tsv``, ``.jsonl``."""
    name = path.name.lower().removesuffix(".gz")
    if path.is_dir():
        if locate(path, "MRCONSO") is not None:
            return "umls"
        raise LinkerError(f"{path}: a folder without MRCONSO.RRF; the only folder an ontology may be is a UMLS "
                          "release (META/ or a folder holding MRCONSO.RRF): give the ontology file instead")
    elif name.endswith(".obo"):
        return "obo"
    elif name.endswith(".rrf"):
        return "umls"
    elif name.startswith("ctd_diseases"):
        return "ctd"
    elif name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    elif name.endswith((".jsonl", ".json")):
        return "jsonl"
    raise LinkerError(f"{path}: cannot tell the ontology format from the name; pass --format one of {', '.join(READERS)}")


@dataclass(frozen=True)
class Source:
    """An ontology file, its format and reader options."""

    path: Path
    format: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path, format: str | None = None, **options: Any) -> Source:
        path = Path(path)
        if not path.exists():
            raise LinkerError(f"{path}: no such file or folder; check the ontology path")
        fmt = format or guess_format(path)
        if fmt not in READERS:
            raise LinkerError(f"unknown ontology format {fmt!r}; use one of {', '.join(READERS)}")
        return cls(path, fmt, {key: value for key, value in options.items() if value is not None})

    def records(self) -> Iterator[Record]:
        return READERS[self.format](self.path, **self.options)

    def describe(self) -> dict[str, Any]:
        """Name, release and checksum recorded in ``meta.json``."""
        name = self.path.name.removesuffix(".gz")
        release = None
        if self.format == "obo":
            header = read_header(self.path)
            name = header.get("ontology", name)
            release = header.get("data-version")
        checksum_path = locate(self.path, "MRCONSO") if self.path.is_dir() else self.path
        return {
            "name": name,
            "release": release,
            "format": self.format,
            "path": str(self.path),
            "sha256": file_sha256(checksum_path) if checksum_path else None,
            "options": {key: sorted(value) if isinstance(value, (set, frozenset, tuple, list)) else str(value)
                        for key, value in self.options.items()},
        }
