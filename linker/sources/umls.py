"""UMLS Rich Release Format reader: MRCONSO names, MRDEF definitions, MRSTY semantic types.

Streams row by row: memory stays flat however large MRCONSO is (rows of one CUI are grouped,
as the release sorts them; an unsorted file still works, its CUI's first group names it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import groupby
from pathlib import Path

from linker.errors import LinkerError, SourceFormatError
from linker.sources._io import iter_lines
from linker.types import Concept, ConceptInfo, Record, Term

MRCONSO_FIELDS = ("CUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "AUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY",
                  "CODE", "STR", "SRL", "SUPPRESS", "CVF")
MRDEF_FIELDS = ("CUI", "AUI", "ATUI", "SATUI", "SAB", "DEF", "SUPPRESS", "CVF")
MRSTY_FIELDS = ("CUI", "TUI", "STN", "STY", "ATUI", "CVF")
#: Suppressible flags dropped by default: O obsolete, E editor-suppressed, Y suppressible.
DEFAULT_DROP_SUPPRESS = frozenset({"O", "E", "Y"})


def _rrf_rows(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    for lineno, line in iter_lines(path):
        if not line:
            continue
        values = line.split("|")
        if values and values[-1] == "":
            values.pop()
        if len(values) != len(fields):
            raise SourceFormatError(
                path, lineno, f"expected {len(fields)} '|'-separated fields ({'|'.join(fields)}|), got {len(values)}"
            )
        yield lineno, dict(zip(fields, values))


def locate(path: Path, name: str) -> Path | None:
    """Find ``NAME.RRF`` (or ``.RRF.gz``) in the folder of *path* (or in *path* if it is a folder)."""
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / f"{name}.RRF", folder / f"{name}.RRF.gz"):
        if candidate.exists():
            return candidate
    return None


def _preference(row: dict[str, str]) -> tuple[bool, bool, bool]:
    return (row["TS"] == "P", row["STT"] == "PF", row["ISPREF"] == "Y")


def read_umls(
    path: Path,
    languages: Collection[str] = ("ENG",),
    sources: Collection[str] | None = None,
    drop_suppress: Collection[str] = DEFAULT_DROP_SUPPRESS,
    definitions: bool = True,
    semantic_types: bool = True,
) -> Iterator[Record]:
    """Stream concepts and names from MRCONSO, then definitions (MRDEF) and types (MRSTY) beside it.

    *path* is MRCONSO.RRF(.gz) or the META folder holding it. *sources* limits names to those
    source vocabularies (SAB), *languages* to those LAT codes.
    """
    mrconso = locate(path, "MRCONSO") if path.is_dir() else path
    if mrconso is None:
        raise LinkerError(f"{path}: no MRCONSO.RRF or MRCONSO.RRF.gz in this folder")
    langs = set(languages)
    sabs = set(sources) if sources else None
    drop = set(drop_suppress)

    def kept(item: tuple[int, dict[str, str]]) -> bool:
        row = item[1]
        return (
            (not langs or row["LAT"] in langs)
            and (sabs is None or row["SAB"] in sabs)
            and row["SUPPRESS"] not in drop
            and bool(row["STR"].strip())
        )

    rows = filter(kept, _rrf_rows(mrconso, MRCONSO_FIELDS))
    for cui, group in groupby(rows, key=lambda item: item[1]["CUI"]):
        members = [row for _, row in group]
        best = max(members, key=_preference)
        yield Concept(cui, best["STR"])
        for row in members:
            yield Term(cui, row["STR"], "LABEL" if row is best else "EXACT", row["TTY"] or None)
    mrdef = locate(mrconso, "MRDEF") if definitions else None
    if mrdef is not None:
        for _, row in _rrf_rows(mrdef, MRDEF_FIELDS):
            if row["SUPPRESS"] not in drop and (sabs is None or row["SAB"] in sabs) and row["DEF"].strip():
                yield ConceptInfo(row["CUI"], "definition", row["DEF"].strip())
    mrsty = locate(mrconso, "MRSTY") if semantic_types else None
    if mrsty is not None:
        for _, row in _rrf_rows(mrsty, MRSTY_FIELDS):
            yield ConceptInfo(row["CUI"], "type", row["TUI"])
