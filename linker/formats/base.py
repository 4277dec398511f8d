"""What readers yield and writers take, and the machinery every file writer shares (resumable append, error log)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from linker.errors import LinkerError
from linker.types import Mention

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Passage:
    """A part of a document (PubTator title/abstract, a BioC passage) at *offset* in the document text."""

    offset: int
    text: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Annotation:
    """A span an input file already carries (PubTator/BioC gold annotations); kept for evaluation and round trips."""

    start: int
    end: int
    text: str
    label: str = ""
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Document:
    """One input document. *where* names its place in the input (``file:line``) for error reports."""

    doc_id: str
    text: str
    where: str = ""
    passages: tuple[Passage, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failure:
    """A document that could not be read or annotated. *where* (``file:line``) is unique per input record."""

    doc_id: str
    where: str
    reason: str
    stage: str = "read"  # read | annotate | write

    def to_dict(self) -> dict[str, str]:
        return {"doc_id": self.doc_id, "where": self.where, "stage": self.stage, "reason": self.reason}


#: What a reader yields, in input order.
Item = Document | Failure


@dataclass(slots=True)
class Progress:
    """What an output already holds: ids of annotated documents and input places of recorded failures."""

    done_ids: set[str] = field(default_factory=set)
    failed_where: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)


class Reader:
    """Streams documents from one input; never loads the whole input."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def estimate_total(self) -> int | None:
        """A cheap count of the records (for the progress bar's ETA), or None."""
        return None


class Writer:
    """Receives annotated documents in input order; knows from its own output what is already done."""

    format: str = ""

    def progress(self) -> Progress:
        """What the output already holds; also repairs a torn tail left by an interrupted run."""
        raise NotImplementedError

    def refuse(self, doc: Document) -> str | None:
        """Why *doc* cannot be written in this format (then it is recorded as failed), or None."""
        return None

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        raise NotImplementedError

    def write_error(self, failure: Failure) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- appendable files ------------------------------------------------------------------------------------------

def truncate_after_last(path: Path, marker: bytes) -> int:
    """Cut *path* just after the last occurrence of *marker* (the end of the last complete record).

    Returns the number of bytes removed. A file without any marker is emptied.
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    block = 1 << 16
    with path.open("rb+") as fh:
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start + len(marker) - 1)
            at = chunk.rfind(marker)
            if at >= 0 and start + at + len(marker) <= size:
                keep = start + at + len(marker)
                break
            end = start
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return size - keep


def foreign_output(path: Path, line: int, problem: str) -> LinkerError:
    """The error for an existing output (or errors file) holding a line this package did not write."""
    return LinkerError(f"{path}:{line}: {problem}, so {path.name} is not an output of linker annotate; run with "
                       "--overwrite to replace it, or choose another output")


def check_own_start(path: Path, looks_own: Callable[[bytes], bool], what: str) -> bytes:
    """Refuse to resume into *path* when its first bytes are not what this package's writer starts it with
    (*looks_own* of up to 4 kB), rather than cutting a stranger's file as a torn tail; return those bytes."""
    if not path.exists():
        return b""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head and not looks_own(head):
        raise foreign_output(path, 1, f"a start that is not {what}")
    return head


def iter_jsonl_records(path: Path, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Complete JSON lines of an output file this package wrote (torn tails are cut before), each an object
    with *fields*; any other line is a :func:`foreign_output` error."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                raise foreign_output(path, number, "a line that is not JSON") from None
            if not isinstance(record, dict) or any(name not in record for name in fields):
                raise foreign_output(path, number, f"a line without the field(s) {', '.join(fields)}")
            yield record


class AppendFile:
    """A text file written one whole record at a time, flushed after each record (so a crash tears at most one).

    With *always*, closing creates the file even when nothing was written (an output of no documents is an
    empty file, not a missing one)."""

    def __init__(self, path: Path, always: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.always = always
        self._fh: IO[str] | None = None

    def append(self, text: str) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8", newline="")
        self._fh.write(text)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self.always and not self.path.exists():
            self.path.touch()


class ErrorLog:
    """``<output>.errors.jsonl``: one JSON line per failed document (doc_id, where, stage, reason)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AppendFile(path)

    def load(self, progress: Progress) -> None:
        if not self.path.exists():
            return
        cut = truncate_after_last(self.path, b"\n")
        if cut:
            log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run", self.path, cut)
        for record in iter_jsonl_records(self.path, ("where", "doc_id")):
            progress.failed_where.add(str(record["where"]))
            progress.failed_ids.add(str(record["doc_id"]))

    def write(self, failure: Failure) -> None:
        self._file.append(json.dumps(failure.to_dict(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


def errors_path_for(output: Path) -> Path:
    """``notes.jsonl`` -> ``notes.jsonl.errors.jsonl`` (one per output, whatever its format); a folder keeps its errors inside."""
    if output.is_dir():
        return output / "errors.jsonl"
    return output.with_name(output.name + ".errors.jsonl")


# -- records with named fields (JSONL, CSV) ------------------------------------------------------------------

DEFAULT_ID_FIELDS = ("doc_id", "id", "note_id", "document_id", "pmid")
DEFAULT_TEXT_FIELDS = ("text", "note_text", "body", "content", "abstract", "note", "report")


def record_to_item(record: Any, where: str, id_field: str | None, text_field: str | None) -> Item:
    """A document from a mapping, or a failure naming the place, the missing field and the option that fixes it."""
    if not isinstance(record, dict):
        return Failure(where, where, f"expected an object with id and text fields, got {type(record).__name__}")
    doc_id = _field(record, id_field, DEFAULT_ID_FIELDS)
    text = _field(record, text_field, DEFAULT_TEXT_FIELDS)
    if doc_id is None or str(doc_id).strip() == "":
        wanted = id_field or "/".join(DEFAULT_ID_FIELDS)
        return Failure(where, where, f"no document id (field {wanted}; the record has {_keys(record)}); "
                                     "name the id field with --id-field")
    doc_id = str(doc_id).strip()
    if text is None:
        wanted = text_field or "/".join(DEFAULT_TEXT_FIELDS)
        return Failure(doc_id, where, f"no text (field {wanted}; the record has {_keys(record)}); "
                                      "name the text field with --text-field")
    if not isinstance(text, str):
        return Failure(doc_id, where, f"text field holds {type(text).__name__}, not a string")
    return Document(doc_id, text, where)


def check_fields(path: Path, line: int, fields: list[str], id_field: str | None, text_field: str | None) -> None:
    """Fail the whole input when its first record has no id or text field: every record would fail alike."""
    from linker.errors import SourceFormatError

    for name, defaults, option in ((id_field, DEFAULT_ID_FIELDS, "--id-field"),
                                   (text_field, DEFAULT_TEXT_FIELDS, "--text-field")):
        wanted = [name] if name else list(defaults)
        if not any(w in fields for w in wanted):
            raise SourceFormatError(path, line, f"no field {'/'.join(wanted)}; the first record has "
                                                f"{', '.join(fields) or 'no fields'}: name the right one with {option}")


def _keys(record: dict[str, Any]) -> str:
    keys = list(record)
    return ", ".join(map(str, keys[:10])) + (", …" if len(keys) > 10 else "") if keys else "no fields"


def _field(record: dict[str, Any], name: str | None, defaults: tuple[str, ...]) -> Any:
    if name is not None:
        return record.get(name)
    for key in defaults:
        if key in record:
            return record[key]
    return None


def count_bytes(path: Path, needle: bytes) -> int:
    """How often *needle* occurs in *path*, read in blocks (a cheap total for the progress bar)."""
    count = 0
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            data = tail + chunk
            count += data.count(needle)
            tail = data[-(len(needle) - 1):] if len(needle) > 1 else b""
            if tail and needle in tail:  # pragma: no cover - tail is shorter than needle
                count -= 1
    return count


def control_characters(doc_id: str) -> str | None:
    """Why *doc_id* cannot be an id in a line- or XML-based output (a control character), or None."""
    bad = sorted({f"U+{ord(c):04X}" for c in doc_id if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        return f"document id {doc_id!r} holds control characters ({', '.join(bad)}), which this format cannot hold"
    return None
