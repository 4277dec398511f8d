"""Readers and writers of document collections, one module per format.

Inputs: a folder of ``.txt`` files, JSONL, CSV/TSV, PubTator, BioC XML.
Outputs: JSONL, PubTator, BioC XML, BRAT standoff (a folder), SQLite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.formats.base import (
    Annotation,
    Document,
    Failure,
    Item,
    Passage,
    Progress,
    Reader,
    Writer,
)

__all__ = ["INPUT_FORMATS", "OUTPUT_FORMATS", "SPARK_OUTPUT_FORMATS", "Annotation", "Document", "Failure", "Item", "Passage", "Progress",
           "Reader", "Writer", "input_format", "open_reader", "open_writer", "output_format"]

INPUT_FORMATS = ("txt", "jsonl", "csv", "tsv", "pubtator", "bioc")
OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc", "brat", "sqlite")
#: Outputs only the Spark engine writes (a folder of part files: ``mentions/``, ``failures/``).
SPARK_OUTPUT_FORMATS = ("parquet",)

_INPUT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
                   ".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc"}
_OUTPUT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc",
                    ".sqlite": "sqlite", ".sqlite3": "sqlite", ".db": "sqlite", ".brat": "brat",
                    ".parquet": "parquet"}


class UnknownFormatError(LinkerError):
    """The format of an input or output cannot be told from its name."""


def input_format(path: Path, fmt: str | None = None) -> str:
    """*fmt*, else the format told by *path*: a folder is ``txt``; a ``.txt`` file is PubTator if it looks so."""
    if fmt:
        if fmt not in INPUT_FORMATS:
            raise UnknownFormatError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
        return fmt
    if path.is_dir():
        return "txt"
    suffix = path.suffix.lower()
    if suffix in _INPUT_SUFFIXES:
        return _INPUT_SUFFIXES[suffix]
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
        if re.match(rb"[^|\t\n]+\|[ta]\|", head):
            return "pubtator"
        if head.startswith(b"<"):
            return "bioc"
        if head.startswith(b"{"):
            return "jsonl"
    raise UnknownFormatError(f"cannot tell the format of input {path}; name it with --from "
                             f"({', '.join(INPUT_FORMATS)})")


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """*fmt*, else told by the suffix of *path*; an existing folder or a name ending in ``/`` is BRAT, unless it
    ends in ``.parquet``."""
    if fmt:
        if fmt not in OUTPUT_FORMATS + SPARK_OUTPUT_FORMATS:
            raise UnknownFormatError(f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS + SPARK_OUTPUT_FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if str(path).endswith(("/", "\\")) or Path(path).is_dir():
        return "brat"
    path = Path(path)
    if suffix in _OUTPUT_SUFFIXES:
        return _OUTPUT_SUFFIXES[suffix]
    raise UnknownFormatError(f"cannot tell the output format from {path}; name it with --to "
                             f"({', '.join(OUTPUT_FORMATS)}) or use a suffix such as .jsonl or .sqlite")


def open_reader(path: str | Path, fmt: str | None = None, *, id_field: str | None = None,
                text_field: str | None = None) -> Reader:
    """A streaming reader of *path* (format *fmt* or told from the name)."""
    path = Path(path)
    if not path.exists():
        raise LinkerError(f"input {path} does not exist")
    kind = input_format(path, fmt)
    if kind == "txt":
        if not path.is_dir():
            raise LinkerError(f"input {path}: the txt format reads a folder of .txt files; pass the folder")
        from linker.formats.textdir import TextDirReader

        return TextDirReader(path)
    if kind == "jsonl":
        from linker.formats.jsonl import JsonlReader

        return JsonlReader(path, id_field, text_field)
    if kind in {"csv", "tsv"}:
        from linker.formats.csv import CsvReader

        return CsvReader(path, id_field, text_field, delimiter="\t" if kind == "tsv" else ",")
    if kind == "pubtator":
        from linker.formats.pubtator import PubTatorReader

        return PubTatorReader(path)
    from linker.formats.bioc import BioCReader

    return BioCReader(path)


def open_writer(path: str | Path, fmt: str | None = None, **options: Any) -> Writer:
    """A resumable writer of *path*. Options: ``include_text`` (JSONL), ``concepts`` (SQLite: id -> Concept)."""
    kind = output_format(path, fmt)
    path = Path(path)
    if kind == "jsonl":
        from linker.formats.jsonl import JsonlWriter

        return JsonlWriter(path, include_text=bool(options.get("include_text")), candidates=options.get("candidates", 5))
    if kind == "pubtator":
        from linker.formats.pubtator import PubTatorWriter

        return PubTatorWriter(path)
    if kind == "bioc":
        from linker.formats.bioc import BioCWriter

        return BioCWriter(path)
    if kind == "brat":
        from linker.formats.brat import BratWriter

        return BratWriter(path)
    from linker.formats.sqlite import SqliteWriter

    return SqliteWriter(path, concepts=options.get("concepts"), candidates=options.get("candidates", 5))
