"""Each input reader on the tiny collections of tests/data/notes: documents in order, failures named, not dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from linker.errors import LinkerError, SourceFormatError
from linker.formats import Document, Failure, input_format, open_reader, output_format
from linker.formats.base import Passage

NOTES = Path(__file__).parent / "data" / "notes"


def split(items: list) -> tuple[list[Document], list[Failure]]:
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Failure)]


def test_jsonl_reader_keeps_order_and_names_every_bad_line() -> None:
    reader = open_reader(NOTES / "notes.jsonl")
    docs, failures = split(list(reader))
    assert [d.doc_id for d in docs] == ["n1", "n2", "n3", "n4", "n5", "n6"]
    assert docs[1].text.startswith("Mother reports developmental delay.\nRenal")
    assert docs[5].text.startswith("Ünïcödé")
    assert [(f.doc_id, f.where) for f in failures] == [
        ("bad-json", "notes.jsonl:3"), ("bad-utf8", "notes.jsonl:5"), ("no-text", "notes.jsonl:7")]
    assert "not valid JSON" in failures[0].reason
    assert "not UTF-8" in failures[1].reason
    assert "--text-field" in failures[2].reason
    assert reader.estimate_total() == 9


def test_jsonl_reader_with_named_fields() -> None:
    docs, failures = split(list(open_reader(NOTES / "notes_fields.jsonl", id_field="note", text_field="body_text")))
    assert [d.doc_id for d in docs] == ["n1", "n2", "n3"] and not failures
    with pytest.raises(SourceFormatError, match="notes_fields.jsonl:1: no field doc_id/id.*note, body_text.*--id-field"):
        list(open_reader(NOTES / "notes_fields.jsonl"))
    with pytest.raises(SourceFormatError, match="no field body.*--text-field"):
        list(open_reader(NOTES / "notes_fields.jsonl", id_field="note", text_field="body"))


def test_csv_and_tsv_readers() -> None:
    docs, failures = split(list(open_reader(NOTES / "notes.csv", id_field="note_id", text_field="note_text")))
    assert [d.doc_id for d in docs] == ["n1", "n2", "n3", "n4"] and not failures
    assert "\n" in docs[1].text  # a quoted field spanning two lines
    assert docs[1].where == "notes.csv:4"  # the line where the row ends
    docs, _ = split(list(open_reader(NOTES / "notes.tsv")))
    assert [d.doc_id for d in docs] == ["n1", "n2", "n3"]


def test_csv_unterminated_quote_is_reported_not_swallowed(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,text,ward\nn1,"fever, cough,A\nn2,seizures",B\nn3,"two lines\nof one note",C\nn4,ok,D\n')
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["n3", "n4"]  # an honest multi-line note still reads
    assert [(f.doc_id, f.where) for f in failures] == [("n1", "notes.csv:3")]
    assert "unterminated quote" in failures[0].reason and "n2,seizures" in failures[0].reason
    path.write_text('id,text,ward\nn1,"fever,A\nn2,seizures,B\n')  # open until the end of the file
    docs, failures = split(list(open_reader(path)))
    assert docs == [] and len(failures) == 1 and "never closed" in failures[0].reason
    path.write_text('id,text\na,"seizure\nb,fits\n')  # ids without digits, as many fields as the header
    docs, failures = split(list(open_reader(path)))
    assert docs == [] and [f.where for f in failures] == ["notes.csv:2"]
    assert "never closed" in failures[0].reason and "line 3" in failures[0].reason


def test_csv_reader_names_a_missing_column() -> None:
    with pytest.raises(SourceFormatError, match="no column 'body'.*note_id, note_text, ward"):
        list(open_reader(NOTES / "notes.csv", text_field="body"))


def test_csv_row_with_bad_bytes_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"id,text\na,fine\nb,caf\xe9\nc,also fine\n")
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["a", "c"]
    assert [(f.doc_id, f.where) for f in failures] == [("b", "latin.csv:3")] and "UTF-8" in failures[0].reason


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    jsonl, csv_file = tmp_path / "bom.jsonl", tmp_path / "bom.csv"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "one"}\r\n{"id": "b", "text": "two"}\r\n')
    csv_file.write_bytes(b"\xef\xbb\xbfid,text\r\na,one\r\nb,two\r\n")
    for path in (jsonl, csv_file):
        docs, failures = split(list(open_reader(path)))
        assert [(d.doc_id, d.text) for d in docs] == [("a", "one"), ("b", "two")] and not failures


def test_text_folder_reader() -> None:
    docs, failures = split(list(open_reader(NOTES / "txt")))
    assert [d.doc_id for d in docs] == ["n1", "n2", "ward2/n4"]  # sorted, recursive, README.md ignored
    assert [(f.doc_id, f.where) for f in failures] == [("latin1", "latin1.txt")]


def test_pubtator_reader_offsets_and_broken_block() -> None:
    docs, failures = split(list(open_reader(NOTES / "sample.pubtator")))
    assert [d.doc_id for d in docs] == ["1001", "1002", "1004"]
    first = docs[0]
    assert first.passages == (Passage(0, "Seizures in a child with short stature.", "title"),
                              Passage(40, first.text[40:], "abstract"))
    for ann in first.annotations + docs[1].annotations:
        doc = first if ann in first.annotations else docs[1]
        assert doc.text[ann.start:ann.end] == ann.text
    assert docs[1].annotations[0].ids == ("HP:0000105",)  # the CID relation line is skipped
    assert docs[2].text == "Last document without abstract"
    assert [(f.doc_id, f.where) for f in failures] == [("1003", "sample.pubtator:11")]


def test_bioc_reader_places_passages_at_offsets() -> None:
    docs, failures = split(list(open_reader(NOTES / "sample.bioc.xml")))
    assert [d.doc_id for d in docs] == ["2001", "2002"]
    assert docs[0].text == "Seizures and short stature. A girl with nephromegaly."
    assert docs[0].annotations[0].ids == ("HP:0001250",)
    assert [(f.doc_id, "overlaps" in f.reason) for f in failures] == [("2003", True)]


def test_bioc_reader_reports_malformed_xml(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    text = (NOTES / "sample.bioc.xml").read_text()
    path.write_text(text.replace("<document><id>2002</id>", "<document><id>2002</i>"))
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["2001"]
    assert len(failures) == 1 and "XML parse error at line" in failures[0].reason


def test_formats_told_from_names(tmp_path: Path) -> None:
    assert input_format(NOTES / "txt") == "txt"
    assert input_format(NOTES / "sample.pubtator") == "pubtator"
    sniffed = tmp_path / "corpus.txt"
    sniffed.write_text((NOTES / "sample.pubtator").read_text())
    assert input_format(sniffed) == "pubtator"
    assert output_format("out/") == "brat"
    assert output_format(tmp_path / "a.db") == "sqlite"
    assert output_format(tmp_path / "a.xml") == "bioc"
    with pytest.raises(LinkerError, match="--to"):
        output_format(tmp_path / "a.out")


def test_pubtator_byte_order_mark_and_reversed_offsets(tmp_path: Path) -> None:
    path = tmp_path / "bom.pubtator"
    path.write_bytes(b"\xef\xbb\xbf" + b"7|t|Fever and rash\n7\t0\t5\tFever\tDisease\tD005334\n\n"
                     + b"8|t|Rash again\n8\t4\t0\tRash\tDisease\tD005076\n")
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["7"] and docs[0].annotations[0].start == 0
    assert [f.doc_id for f in failures] == ["8"] and "start 4 after end 0" in failures[0].reason


def test_jsonl_line_nested_too_deep_is_that_documents_failure(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = '{"doc_id": "deep", "text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text('{"doc_id": "a", "text": "Fever."}\n' + deep + '\n{"doc_id": "b", "text": "Rash."}\n')
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["a", "b"]
    assert [(f.doc_id, f.where) for f in failures] == [("deep", "deep.jsonl:2")] and "nested" in failures[0].reason


def test_bioc_bad_location_and_huge_offset_fail_only_their_document(tmp_path: Path) -> None:
    def document(doc_id: str, offset: str, location: str) -> str:
        return (f"<document><id>{doc_id}</id><passage><offset>{offset}</offset><text>Fever.</text>"
                f'<annotation id="1"><location offset="{location}" length="5"/><text>Fever</text></annotation>'
                "</passage></document>")

    path = tmp_path / "bad.xml"
    path.write_text("<collection>" + document("a", "0", "0") + document("b", "0", "x")
                    + document("c", "900000000", "0") + document("d", "0", "0") + "</collection>")
    docs, failures = split(list(open_reader(path)))
    assert [d.doc_id for d in docs] == ["a", "d"] and docs[0].annotations[0].end == 5
    assert [f.doc_id for f in failures] == ["b", "c"]
    assert "offset='x'" in failures[0].reason and "at most 10,000,000" in failures[1].reason
