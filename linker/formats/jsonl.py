"""JSON Lines: input records with id and text fields; output one line per document with its linked mentions."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from linker.formats.base import (AppendFile, Document, ErrorLog, Failure, Item, Progress, Reader, Writer,
                                 check_fields, count_bytes, errors_path_for, foreign_output, record_to_item,
                                 truncate_after_last)
from linker.serialize import mention_to_dict
from linker.sources._io import json_line
from linker.types import Mention

log = logging.getLogger(__name__)


class JsonlReader(Reader):
    """One JSON object per line; *id_field*/*text_field* name the fields (default: doc_id/id…, text…).

    A line that is not UTF-8 or not JSON becomes a :class:`Failure` naming ``file:line``; reading goes on.
    """

    format = "jsonl"

    def __init__(self, path: Path, id_field: str | None = None, text_field: str | None = None) -> None:
        super().__init__(path)
        self.id_field = id_field
        self.text_field = text_field

    def __iter__(self) -> Iterator[Item]:
        checked = False
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                where = f"{self.path.name}:{number}"
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a byte-order mark may lead
                except UnicodeDecodeError as err:
                    yield Failure(_guess_id(raw) or where, where, f"not UTF-8 ({err.reason} at byte {err.start})")
                    continue
                try:
                    record = json_line(line)
                except ValueError as err:
                    yield Failure(_guess_id(raw) or where, where, f"{err}; a document is one flat object per line")
                    continue
                if not checked and isinstance(record, dict):
                    check_fields(self.path, number, list(record), self.id_field, self.text_field)
                    checked = True
                yield record_to_item(record, where, self.id_field, self.text_field)

    def estimate_total(self) -> int | None:
        return count_bytes(self.path, b"\n")


def _guess_id(raw: bytes) -> str | None:
    """The id of a broken line when it can still be seen (``"doc_id": "…"`` or ``"id": …``), so the error names it."""
    import re

    match = re.search(rb'"(?:doc_id|id|note_id|document_id|pmid)"\s*:\s*"?([^",}]+)', raw)
    return match.group(1).decode("utf-8", "replace").strip() if match else None


_PREFIX = b'{"doc_id": '
_DECODER = json.JSONDecoder()


def _doc_id(line: bytes) -> str:
    """The id of an output line without parsing its mentions (the writer puts ``doc_id`` first)."""
    if line.startswith(_PREFIX):
        value, _ = _DECODER.raw_decode(line[len(_PREFIX):].decode("utf-8"))
        return str(value)
    return str(json.loads(line)["doc_id"])


class JsonlWriter(Writer):
    """One line per document: ``{"doc_id", "mentions": [...]}`` (plus ``text`` with *include_text*).

    Resuming reads the ids of complete lines and cuts a torn last line; failures go to ``<name>.errors.jsonl``.
    """

    format = "jsonl"

    def __init__(self, path: Path, include_text: bool = False, candidates: int = 5) -> None:
        self.path = path
        self.include_text = include_text
        self.candidates = candidates
        self._out = AppendFile(path, always=True)
        self.errors = ErrorLog(errors_path_for(path))

    def progress(self) -> Progress:
        progress = Progress()
        if self.path.exists():
            cut = truncate_after_last(self.path, b"\n")
            if cut:
                log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run", self.path, cut)
            with self.path.open("rb") as fh:
                for number, line in enumerate(fh, start=1):
                    if line.strip():
                        try:
                            progress.done_ids.add(_doc_id(line))
                        except (ValueError, KeyError, TypeError, RecursionError):
                            raise foreign_output(self.path, number,
                                                 "a line that is not a document's JSON record") from None
        self.errors.load(progress)
        return progress

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        record: dict[str, object] = {"doc_id": doc.doc_id}
        if self.include_text:
            record["text"] = doc.text
        record["mentions"] = [mention_to_dict(m, self.candidates) for m in mentions]
        self._out.append(json.dumps(record, ensure_ascii=False) + "\n")

    def write_error(self, failure: Failure) -> None:
        self.errors.write(failure)

    def close(self) -> None:
        self._out.close()
        self.errors.close()
