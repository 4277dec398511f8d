"""scispaCy knowledge-base JSONL: one concept a line with ``concept_id, canonical_name, aliases, types, definition``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from linker.errors import SourceFormatError
from linker.sources._io import iter_lines, json_object
from linker.types import Concept, Record, Term


def _string_list(path: Path, lineno: int, record: dict[str, object], key: str) -> list[str]:
    value = record.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SourceFormatError(path, lineno, f"'{key}' must be a list of strings, got {value!r}")
    return value


def read_jsonl(path: Path) -> Iterator[Record]:
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        record = json_object(path, lineno, line, "one concept object per line")
        concept_id = record.get("concept_id")
        name = record.get("canonical_name")
        if not isinstance(concept_id, str) or not concept_id or not isinstance(name, str) or not name.strip():
            raise SourceFormatError(path, lineno, "each line needs string 'concept_id' and 'canonical_name'")
        definition = record.get("definition")
        if definition is not None and not isinstance(definition, str):
            raise SourceFormatError(path, lineno, f"'definition' must be a string, got {definition!r}")
        types = _string_list(path, lineno, record, "types")
        yield Concept(concept_id, name, definition or None, tuple(types))
        yield Term(concept_id, name, "LABEL")
        for alias in _string_list(path, lineno, record, "aliases"):
            if alias.strip():
                yield Term(concept_id, alias, "EXACT")
