"""TSV dictionary reader: ``concept_id<TAB>name[<TAB>is_preferred]``, no header, plus an optional alt-id map."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from linker.errors import SourceFormatError
from linker.sources._io import iter_lines
from linker.types import AltId, Concept, Record, Term

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def read_tsv(path: Path, alt_ids: Path | None = None) -> Iterator[Record]:
    """Stream a dictionary TSV; a row marked preferred names its concept.

    A concept without a preferred row is named by its first row. *alt_ids* is a
    ``alt_id<TAB>concept_id`` file (a header line starting with a non-id is allowed).
    """
    for lineno, line in iter_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise SourceFormatError(
                path, lineno, f"expected 2 or 3 tab-separated fields (concept_id, name[, is_preferred]), got {len(fields)}"
            )
        concept_id, name = fields[0].strip(), fields[1].strip()
        if not concept_id or not name:
            raise SourceFormatError(path, lineno, "empty concept_id or name")
        preferred = False
        if len(fields) == 3:
            flag = fields[2].strip().lower()
            if flag not in _TRUE | _FALSE:
                raise SourceFormatError(path, lineno, f"is_preferred must be 1/0 or true/false, got {fields[2]!r}")
            preferred = flag in _TRUE
        if preferred:
            yield Concept(concept_id, name)
        yield Term(concept_id, name, "LABEL" if preferred else "EXACT")
    if alt_ids is not None:
        yield from read_alt_ids(alt_ids)


def read_alt_ids(path: Path) -> Iterator[AltId]:
    """``alt_id<TAB>concept_id[<TAB>kind]`` rows; a first line ``old_id``/``alt_id`` header is skipped."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if lineno == 1 and fields[0].strip().lower() in {"old_id", "alt_id"}:
            continue
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise SourceFormatError(path, lineno, "expected alt_id<TAB>concept_id[<TAB>kind]")
        kind = fields[2].strip() if len(fields) > 2 and fields[2].strip() else "alt_id"
        yield AltId(fields[0].strip(), fields[1].strip(), kind)
