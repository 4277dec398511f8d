"""CSV and TSV with a header row: the id and text columns are named (default: doc_id/id…, text…)."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from linker.formats.base import Failure, Item, Reader, check_fields, count_bytes, record_to_item

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # clinical notes are longer than csv's 128 kB default


class CsvReader(Reader):
    """Rows of a delimited file with a header. Bytes that are not UTF-8 fail that row only."""

    format = "csv"

    def __init__(self, path: Path, id_field: str | None = None, text_field: str | None = None,
                 delimiter: str | None = None) -> None:
        super().__init__(path)
        self.id_field = id_field
        self.text_field = text_field
        self.delimiter = delimiter or ("\t" if path.suffix.lower() in {".tsv", ".tab"} else ",")

    def __iter__(self) -> Iterator[Item]:
        with self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            rows = csv.reader(fh, delimiter=self.delimiter, strict=True)  # strict: a quote open at the end is an error
            header = next(rows, None)
            if header is None:
                return
            for name in (self.id_field, self.text_field):
                if name is not None and name not in header:
                    raise _missing_column(self.path, name, header)
            check_fields(self.path, 1, header, self.id_field, self.text_field)
            while True:
                first_line = rows.line_num + 1
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as err:
                    start = f"{self.path.name}:{first_line}"
                    if "end of data" in str(err):
                        yield Failure(start, start, f"a quote opened in this row is never closed, so the rest of the "
                                      f"file (to line {rows.line_num}) would be read as one field; close the quote "
                                      "(or double a quote inside the text) and run again")
                        return
                    yield Failure(start, start, f"CSV parse error: {err}; check the quoting of this row")
                    continue
                where = f"{self.path.name}:{rows.line_num}"
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    yield Failure(row[0] if row else where, where,
                                  f"{len(row)} fields where the header has {len(header)}; check quoting and the delimiter")
                    continue
                record = dict(zip(header, row))
                item = record_to_item(record, where, self.id_field, self.text_field)
                if isinstance(item, Failure):
                    yield item
                    continue
                swallowed = _swallowed_record(item.doc_id, row, self.delimiter)
                if swallowed is not None:
                    yield Failure(item.doc_id, where, f"a quoted field runs over several lines and one of them starts "
                                  f"like another record ({swallowed!r}): an unterminated quote swallows the rows after "
                                  "it; close the quote (or double a quote inside the text) and run again")
                    continue
                try:
                    item.text.encode("utf-8")
                except UnicodeEncodeError:
                    doc_id = item.doc_id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    yield Failure(doc_id, where, "text is not UTF-8; convert the file with iconv or re-export it as UTF-8")
                    continue
                yield item

    def estimate_total(self) -> int | None:
        return max(0, count_bytes(self.path, b"\n") - 1)


def _id_shape(value: str) -> str:
    """What an id looks like, digits aside: ``n12`` and ``n3`` share the shape ``n0``, ``PMC77`` is ``PMC0``."""
    return re.sub(r"\d+", "0", value)


def _swallowed_record(doc_id: str, row: list[str], delimiter: str) -> str | None:
    """The start of a line inside one of *row*'s cells that begins as a row of this file does, an id shaped
    like *doc_id* and then the delimiter: the mark of an unterminated quote. None for an honest multi-line text."""
    if not any(char.isdigit() for char in doc_id):  # an id without a number has no shape to recognise
        return None
    shape = _id_shape(doc_id)
    for cell in row:
        for line in cell.splitlines()[1:]:
            first, sep, _ = line.partition(delimiter)
            if sep and first.strip() and " " not in first.strip() and _id_shape(first.strip()) == shape:
                return line[:60]
    return None


def _missing_column(path: Path, name: str, header: list[str]) -> Exception:
    from linker.errors import SourceFormatError

    return SourceFormatError(path, 1, f"no column {name!r}; the header has {', '.join(header)}")
