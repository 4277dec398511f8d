"""Annotated corpora as the evaluation and training read them: gold mentions (mentions JSONL or PubTator),
their documents, and alt-id maps."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linker.errors import EvaluationInputError, LinkerError
from linker.sources._io import iter_lines, json_object


@dataclass(frozen=True, slots=True)
class GoldMention:
    """One annotated mention with its gold concept ids (several for composite mentions)."""

    doc_id: str
    start: int
    end: int
    text: str
    ids: tuple[str, ...]
    type: str = ""

    @property
    def composite(self) -> bool:
        return len(self.ids) > 1


def read_mentions(path: str | os.PathLike[str], types: Iterable[str] | None = None) -> list[GoldMention]:
    """Gold mentions from a mentions JSONL (``doc_id, start, end, text, ids, type``) or a PubTator file.

    *types* keeps only mentions of those types (e.g. ``Disease`` in BC5CDR).
    """
    path = Path(path)
    wanted = set(types) if types else None
    first = next((line for _, line in iter_lines(path) if line.strip()), "")
    if first.lstrip().startswith("{"):
        mentions = list(_read_mentions_jsonl(path))
    else:
        mentions = _read_pubtator(path)
    kept = [m for m in mentions if wanted is None or m.type in wanted]
    if wanted is not None and mentions and not kept:
        found = ", ".join(sorted({m.type for m in mentions}))
        raise LinkerError(f"{path}: no mention of type {', '.join(sorted(wanted))}; the file has types {found}")
    return kept


_MENTION_SHAPE = '{"doc_id", "start", "end", "text", "ids": [...], "type"}'


def _read_mentions_jsonl(path: Path) -> Iterable[GoldMention]:
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        row = json_object(path, lineno, line, f"one mention object per line, {_MENTION_SHAPE}", EvaluationInputError)
        missing = [key for key in ("doc_id", "text", "ids") if key not in row]
        if missing or not isinstance(row.get("ids"), list):
            raise EvaluationInputError(path, lineno, f"missing or bad field(s) {', '.join(missing) or 'ids'}; "
                                                     f"expected {_MENTION_SHAPE}")
        try:
            start, end = int(row.get("start", -1)), int(row.get("end", -1))
        except (TypeError, ValueError):
            raise EvaluationInputError(path, lineno, f"start {row.get('start')!r} and end {row.get('end')!r} must be "
                                                     "whole numbers (character offsets)") from None
        yield GoldMention(str(row["doc_id"]), start, end, str(row["text"]), tuple(str(i) for i in row["ids"]),
                          str(row.get("type") or ""))


_BARE_MESH = re.compile(r"^[CD]\d{6,9}$")


def _pubtator_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """PubTator concept ids as the shared JSONL writes them: ``+`` combinations split, bare MeSH ids
    (``D012345``, ``C123456``) prefixed ``MESH:``; ``-1`` dropped."""
    out: list[str] = []
    for raw in ids:
        for part in raw.split("+"):
            part = part.strip()
            if part and part != "-1":
                out.append(f"MESH:{part}" if _BARE_MESH.match(part) else part)
    return tuple(dict.fromkeys(out))


def read_documents(path: str | os.PathLike[str]) -> list[Any]:
    """Documents (``doc_id``, ``text``, gold ``annotations``) of a docs JSONL or PubTator file, via
    :mod:`linker.formats`; a block that cannot be read is an error naming its place."""
    from linker.formats import Failure, open_reader

    docs = []
    for item in open_reader(Path(path)):
        if isinstance(item, Failure):
            raise LinkerError(f"{item.where}: {item.reason}")
        docs.append(item)
    return docs


def _read_pubtator(path: Path) -> list[GoldMention]:
    mentions = []
    for doc in read_documents(path):
        for a in doc.annotations:
            mentions.append(GoldMention(str(doc.doc_id), a.start, a.end, a.text, _pubtator_ids(a.ids), a.label or ""))
    return mentions


def read_alt_ids(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``alt_id -> [concept_id, ...]`` from an ``alt_id<TAB>concept_id[<TAB>kind]`` file (header allowed)."""
    from linker.sources.tsv import read_alt_ids as read_rows

    result: dict[str, list[str]] = {}
    for row in read_rows(Path(path)):
        result.setdefault(row.alt_id, []).append(row.concept_id)
    return result
