"""BioC XML: a ``collection`` of ``document``s, each with passages at document offsets and their annotations."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import unescape

from linker.formats.base import (AppendFile, Annotation, Document, ErrorLog, Failure, Item, Passage, Progress,
                                 Reader, Writer, check_own_start, control_characters, count_bytes, errors_path_for,
                                 truncate_after_last)
from linker.types import Mention

log = logging.getLogger(__name__)

HEADER = ("<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n"
          "<collection><source>concept-linker</source><date></date><key>concept-linker.key</key>\n")
FOOTER = "</collection>\n"
_END = b"</document>\n"
#: Longest document text a BioC reader builds (passage offsets place text: a huge offset would allocate it).
MAX_DOCUMENT_CHARS = 10_000_000
_DOC_ID = re.compile(r"<document><id>(.*?)</id>")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class BioCReader(Reader):
    """Streams ``document`` elements (memory stays flat). Passages are placed at their offsets in the text.

    A document whose passages overlap fails alone; malformed XML ends the file with a failure naming the position.
    """

    format = "bioc"

    def __iter__(self) -> Iterator[Item]:
        number = 0
        root: ET.Element | None = None
        try:
            for event, elem in ET.iterparse(self.path, events=("start", "end")):
                if event == "start":
                    if root is None:
                        root = elem
                    continue
                if elem.tag != "document":
                    continue
                number += 1
                yield self._document(elem, f"{self.path.name}:document {number}")
                elem.clear()
                if root is not None:
                    root.clear()
        except ET.ParseError as err:
            line, column = err.position
            where = f"{self.path.name}:{line}"
            yield Failure(where, where, f"XML parse error at line {line}, column {column} ({err.msg if hasattr(err, 'msg') else err}); "
                                        f"documents after this point were not read")

    def _document(self, elem: ET.Element, where: str) -> Item:
        doc_id = (elem.findtext("id") or "").strip()
        if not doc_id:
            return Failure(where, where, "document without <id>")
        pieces: list[str] = []
        length = 0
        passages: list[Passage] = []
        annotations: list[Annotation] = []
        for passage in elem.iter("passage"):
            try:
                offset = int(passage.findtext("offset") or "0")
            except ValueError:
                return Failure(doc_id, where, f"passage offset {passage.findtext('offset')!r} is not a number")
            text = passage.findtext("text") or ""
            if offset + len(text) > MAX_DOCUMENT_CHARS:
                return Failure(doc_id, where, f"passage offset {offset} would make a document of {offset + len(text):,} "
                                              f"characters; a document may have at most {MAX_DOCUMENT_CHARS:,}")
            if offset < length:
                return Failure(doc_id, where, f"passage at offset {offset} overlaps the previous one (ends at {length})")
            pieces.append(" " * (offset - length))
            pieces.append(text)
            length = offset + len(text)
            kind = next((i.text or "" for i in passage.findall("infon") if i.get("key") == "type"), "")
            passages.append(Passage(offset, text, kind))
            for ann in passage.iter("annotation"):
                infons = {i.get("key"): i.text or "" for i in ann.findall("infon")}
                loc = ann.find("location")
                if loc is None:
                    continue
                try:
                    start, span = int(loc.get("offset", "0")), int(loc.get("length", "0"))
                except ValueError:
                    return Failure(doc_id, where, f"annotation location offset={loc.get('offset')!r} "
                                                  f"length={loc.get('length')!r} is not a pair of numbers")
                ids = tuple(i for i in re.split(r"[|,;]", infons.get("identifier", infons.get("MESH", ""))) if i and i != "-")
                annotations.append(Annotation(start, start + span, ann.findtext("text") or "",
                                              infons.get("type", ""), ids))
        return Document(doc_id, "".join(pieces), where, tuple(passages), tuple(annotations))

    def estimate_total(self) -> int | None:
        return count_bytes(self.path, b"<document")


class BioCWriter(Writer):
    """Appends one ``document`` element per document; the closing tag is written on close and cut on resume."""

    format = "bioc"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = AppendFile(path)
        self._started = False
        self.errors = ErrorLog(errors_path_for(path))

    def progress(self) -> Progress:
        progress = Progress()
        if self.path.exists():
            own = HEADER.encode()
            head = check_own_start(self.path, lambda head: own.startswith(head) or head.startswith(own),
                                   "this linker's BioC header")
            empty = (HEADER + FOOTER).encode().startswith(head)  # a collection without documents: nothing torn
            cut = truncate_after_last(self.path, _END)
            if cut and cut != len(FOOTER.encode()) and not empty:
                log.warning("%s: dropped a torn tail (%d bytes) left by an interrupted run", self.path, cut)
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    for match in _DOC_ID.finditer(line):
                        progress.done_ids.add(unescape(match.group(1)))
            self._started = self.path.stat().st_size > 0
        self.errors.load(progress)
        return progress

    def refuse(self, doc: Document) -> str | None:
        return control_characters(doc.doc_id)  # XML 1.0 cannot hold NUL; a line break breaks resuming

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        if not self._started:
            if self.path.exists() and self.path.stat().st_size:
                truncate_after_last(self.path, _END)
            if not self.path.exists() or self.path.stat().st_size == 0:
                self._out.append(HEADER)
            self._started = True
        self._out.append(_document_xml(doc, mentions))

    def write_error(self, failure: Failure) -> None:
        self.errors.write(failure)

    def close(self) -> None:
        if not self._started and not (self.path.exists() and self.path.stat().st_size):
            self._out.append(HEADER)
            self._started = True
        if self._started:
            self._out.append(FOOTER)
        self._out.close()
        self.errors.close()


def _infon(parent: ET.Element, key: str, value: str) -> None:
    node = ET.SubElement(parent, "infon", key=key)
    node.text = value


def _document_xml(doc: Document, mentions: list[Mention]) -> str:
    elem = ET.Element("document")
    ET.SubElement(elem, "id").text = doc.doc_id
    passages = doc.passages or (Passage(0, doc.text, ""),)
    bounds = [(p, p.offset + len(p.text)) for p in passages]
    placed: dict[int, list[Mention]] = {}
    for m in mentions:
        home = next((i for i, (p, end) in enumerate(bounds) if p.offset <= m.start < max(end, p.offset + 1)), 0)
        placed.setdefault(home, []).append(m)
    number = 0
    for i, passage in enumerate(passages):
        node = ET.SubElement(elem, "passage")
        if passage.kind:
            _infon(node, "type", passage.kind)
        ET.SubElement(node, "offset").text = str(passage.offset)
        ET.SubElement(node, "text").text = _NOT_XML.sub(" ", passage.text)
        for m in placed.get(i, []):
            ann = ET.SubElement(node, "annotation", id=str(number))
            number += 1
            _infon(ann, "type", m.label)
            if m.concept_id:
                _infon(ann, "identifier", m.concept_id)
                best = next((c for c in m.candidates if c.concept_id == m.concept_id), None)
                if best is not None:
                    _infon(ann, "name", best.name)
                    _infon(ann, "score", f"{best.score:.4f}")
            for flag in ("negated", "historical", "hypothetical", "family"):
                if getattr(m, flag):
                    _infon(ann, flag, "true")
            ET.SubElement(ann, "location", offset=str(m.start), length=str(m.end - m.start))
            ET.SubElement(ann, "text").text = _NOT_XML.sub(" ", m.text)
    # keep carriage returns: XML parsers would otherwise turn them into line feeds and shift offsets
    return ET.tostring(elem, encoding="unicode").replace("\r", "&#13;") + "\n"
