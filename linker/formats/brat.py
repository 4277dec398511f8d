"""BRAT standoff: a folder with ``<id>.txt`` and ``<id>.ann`` per document (T spans, N normalisations, A flags)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

from linker.formats.base import Document, ErrorLog, Failure, Progress, Writer
from linker.types import Mention

#: Longest file name (bytes) of common file systems (ext4, XFS, APFS, NTFS in UTF-16 units).
NAME_MAX = 255
FLAGS = {"negated": "Negated", "historical": "Historical", "hypothetical": "Hypothetical", "family": "Family"}


def file_stem(doc_id: str) -> str:
    """A file name for *doc_id* that maps back to it (``/`` and other unsafe characters are %-escaped)."""
    return quote(doc_id, safe=" -_.,+=@()[]") if not doc_id.startswith(".") else quote(doc_id, safe="")


class BratWriter(Writer):
    """A document is done once its ``.ann`` exists: the ``.txt`` is written first, the ``.ann`` renamed into place."""

    format = "brat"

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.errors = ErrorLog(path / "errors.jsonl")

    def progress(self) -> Progress:
        progress = Progress()
        if self.path.is_dir():
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.name.endswith(".ann"):
                        progress.done_ids.add(unquote(entry.name[:-4]))
                    elif entry.name.endswith(".ann.tmp"):
                        os.unlink(entry.path)  # torn by an interrupted run
        self.errors.load(progress)
        return progress

    def refuse(self, doc: Document) -> str | None:
        longest = len((file_stem(doc.doc_id) + ".ann.tmp").encode("utf-8"))
        if longest > NAME_MAX:
            return (f"document id of {len(doc.doc_id)} characters makes a file name of {longest} bytes; BRAT file "
                    f"names may have at most {NAME_MAX}: shorten the ids, or write another format")
        return None

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        stem = self.path / file_stem(doc.doc_id)
        stem.with_name(stem.name + ".txt").write_text(doc.text, encoding="utf-8", newline="")
        tmp = stem.with_name(stem.name + ".ann.tmp")
        tmp.write_text(ann_text(doc.text, mentions), encoding="utf-8", newline="")
        os.replace(tmp, stem.with_name(stem.name + ".ann"))

    def write_error(self, failure: Failure) -> None:
        self.errors.write(failure)

    def close(self) -> None:
        self.errors.close()


def ann_text(text: str, mentions: list[Mention]) -> str:
    lines: list[str] = []
    n_norm = n_attr = 0
    for number, m in enumerate(mentions, start=1):
        fragments = _fragments(text, m.start, m.end)
        span_text = " ".join(text[s:e] for s, e in fragments)
        label = (m.label or "CONCEPT").replace(" ", "_")
        lines.append(f"T{number}\t{label} {';'.join(f'{s} {e}' for s, e in fragments)}\t{span_text}")
        if m.concept_id:
            n_norm += 1
            name = next((c.name for c in m.candidates if c.concept_id == m.concept_id), "")
            ref = m.concept_id if ":" in m.concept_id else f"concept:{m.concept_id}"
            lines.append(f"N{n_norm}\tReference T{number} {ref}\t{' '.join(name.split())}")
        for flag, attribute in FLAGS.items():
            if getattr(m, flag):
                n_attr += 1
                lines.append(f"A{n_attr}\t{attribute} T{number}")
    return "".join(line + "\n" for line in lines)


def _fragments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """BRAT spans cannot cross a line break: split into discontinuous fragments."""
    fragments: list[tuple[int, int]] = []
    s = start
    for i in range(start, end):
        if text[i] in "\r\n":
            if i > s:
                fragments.append((s, i))
            s = i + 1
    if end > s:
        fragments.append((s, end))
    return fragments or [(start, end)]
