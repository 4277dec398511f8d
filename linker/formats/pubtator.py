"""PubTator: ``id|t|title``, ``id|a|abstract``, then ``id<TAB>start<TAB>end<TAB>text<TAB>type<TAB>concept`` lines.

Document text is ``title + " " + abstract``, so offsets are those of the PubTator corpora (NCBI disease, BC5CDR).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from linker.formats.base import (AppendFile, Annotation, Document, ErrorLog, Failure, Item, Passage, Progress,
                                 Reader, Writer, check_own_start, control_characters, count_bytes, errors_path_for,
                                 truncate_after_last)
from linker.types import Mention

log = logging.getLogger(__name__)
_HEAD = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


def _starts_a_block(head: bytes) -> bool:
    """Whether a file starts as this writer starts one: a title line, or a first block torn before its line end."""
    first, newline, _ = head.partition(b"\n")
    match = _HEAD.match(first.decode("utf-8", "replace"))
    return bool(match and match.group(2) == "t") or (not newline and b"\t" not in first)
_SPACES = str.maketrans({"\n": " ", "\r": " ", "\t": " "})


class PubTatorReader(Reader):
    """Blocks separated by blank lines; a block that does not parse fails alone (naming its first line)."""

    format = "pubtator"

    def _blocks(self) -> Iterator[tuple[int, list[bytes]]]:
        block: list[bytes] = []
        first = 0
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not part of the id
                    raw = raw[3:]
                if raw.strip():
                    if not block:
                        first = number
                    block.append(raw.rstrip(b"\r\n"))
                elif block:
                    yield first, block
                    block = []
        if block:
            yield first, block

    def __iter__(self) -> Iterator[Item]:
        for first, raw_lines in self._blocks():
            where = f"{self.path.name}:{first}"
            guess = raw_lines[0].split(b"|", 1)[0].split(b"\t", 1)[0].decode("utf-8", "replace").strip() or where
            try:
                lines = [raw.decode("utf-8") for raw in raw_lines]
            except UnicodeDecodeError as err:
                yield Failure(guess, where, f"not UTF-8 ({err.reason}); convert the file with iconv")
                continue
            try:
                yield _parse_block(lines, where)
            except ValueError as err:
                yield Failure(guess, where, f"PubTator parse error: {err}")

    def estimate_total(self) -> int | None:
        return count_bytes(self.path, b"|t|")


def _parse_block(lines: list[str], where: str) -> Document:
    doc_id: str | None = None
    parts: dict[str, str] = {}
    annotations: list[Annotation] = []
    for offset, line in enumerate(lines):
        head = _HEAD.match(line)
        if head:
            if doc_id is not None and head.group(1) != doc_id:
                raise ValueError(f"line {offset + 1} of the block has id {head.group(1)}, the block is {doc_id}; "
                                 "separate documents by a blank line")
            doc_id = head.group(1)
            parts[head.group(2)] = head.group(3)
            continue
        cells = line.split("\t")
        if len(cells) >= 4 and cells[1].isdigit() and cells[2].isdigit():
            if int(cells[1]) > int(cells[2]):
                raise ValueError(f"line {offset + 1} of the block has start {cells[1]} after end {cells[2]}; "
                                 "an annotation is start<TAB>end with start <= end")
            ids = tuple(i for i in re.split(r"[|,;]", cells[5]) if i and i != "-1") if len(cells) > 5 else ()
            annotations.append(Annotation(int(cells[1]), int(cells[2]), cells[3], cells[4] if len(cells) > 4 else "", ids))
        elif len(cells) >= 3:  # a relation line (BC5CDR CID) carries no span
            continue
        else:
            raise ValueError(f"line {offset + 1} of the block is neither id|t|, id|a| nor a tab-separated annotation")
    if doc_id is None or "t" not in parts:
        raise ValueError("no id|t|title line")
    title, abstract = parts["t"], parts.get("a", "")
    if abstract:
        passages = (Passage(0, title, "title"), Passage(len(title) + 1, abstract, "abstract"))
        text = f"{title} {abstract}"
    else:
        passages, text = (Passage(0, title, "title"),), title
    return Document(doc_id, text, where, passages, tuple(annotations))


def split_title_abstract(doc: Document) -> tuple[str, str]:
    """The title and abstract lines for *doc*, offsets kept (line breaks become spaces)."""
    p = doc.passages
    if len(p) == 2 and p[0].offset == 0 and p[1].offset == len(p[0].text) + 1 and doc.text == f"{p[0].text} {p[1].text}":
        return p[0].text.translate(_SPACES), p[1].text.translate(_SPACES)
    return doc.text.translate(_SPACES), ""


class PubTatorWriter(Writer):
    """Appends one block per document; resuming cuts what follows the last complete block (blank line)."""

    format = "pubtator"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = AppendFile(path, always=True)
        self.errors = ErrorLog(errors_path_for(path))

    def progress(self) -> Progress:
        progress = Progress()
        if self.path.exists():
            check_own_start(self.path, _starts_a_block, "a PubTator title line (ID|t|title)")
            cut = truncate_after_last(self.path, b"\n\n")
            if cut:
                log.warning("%s: dropped a torn last block (%d bytes) left by an interrupted run", self.path, cut)
            with self.path.open("rb") as fh:
                for raw in fh:
                    head = _HEAD.match(raw.decode("utf-8", "replace").rstrip("\n"))
                    if head and head.group(2) == "t":
                        progress.done_ids.add(head.group(1))
        self.errors.load(progress)
        return progress

    def refuse(self, doc: Document) -> str | None:
        if "|" in doc.doc_id:
            return f"document id {doc.doc_id!r} contains |, which PubTator cannot hold"
        return control_characters(doc.doc_id)

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        doc_id = doc.doc_id
        title, abstract = split_title_abstract(doc)
        lines = [f"{doc_id}|t|{title}\n", f"{doc_id}|a|{abstract}\n"]
        for m in mentions:
            concept = m.concept_id or "-"
            lines.append(f"{doc_id}\t{m.start}\t{m.end}\t{m.text.translate(_SPACES)}\t{m.label}\t{concept}\n")
        self._out.append("".join(lines) + "\n")

    def write_error(self, failure: Failure) -> None:
        self.errors.write(failure)

    def close(self) -> None:
        self._out.close()
        self.errors.close()
