"""Plain inputs read outside the format readers: a byte-order mark is not data, a bad byte is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import LinkerError, SourceFormatError
from linker.formats.textdir import read_text_file
from linker.train.pairs import read_mentions


def test_training_mentions_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    path = tmp_path / "train.mentions.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "fits", "ids": ["HP:0001250"]}).encode() + b"\n")
    assert list(read_mentions(path)) == [("fits", ["HP:0001250"])]


def test_training_mentions_that_are_not_utf8_or_nested_too_deep_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.mentions.jsonl"
    path.write_bytes(json.dumps({"text": "fits", "ids": ["HP:1"]}).encode() + b"\n\xff\xfe\n")
    with pytest.raises(SourceFormatError, match=r":2.*not UTF-8"):
        list(read_mentions(path))
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SourceFormatError, match=r":1.*expected a JSON object"):
        list(read_mentions(path))


def test_a_text_file_drops_its_byte_order_mark_and_refuses_bad_bytes(tmp_path: Path) -> None:
    good, bad = tmp_path / "note.txt", tmp_path / "bad.txt"
    good.write_bytes(b"\xef\xbb\xbfSeizures since birth.")
    bad.write_bytes(b"fever \xff")
    assert read_text_file(good) == "Seizures since birth."
    with pytest.raises(LinkerError, match="bad.txt: not UTF-8"):
        read_text_file(bad)
    result = CliRunner().invoke(cli, ["render", "--file", str(bad), "-o", str(tmp_path / "page.html")])
    assert result.exit_code == 2 and "not UTF-8" in result.output and "Traceback" not in result.output


DEEP = "[" * 100_000 + "]" * 100_000 + "\n"


def test_ontology_jsonl_nested_too_deep_names_the_line(tmp_path: Path) -> None:
    from linker.sources.jsonl import read_jsonl

    path = tmp_path / "kb.jsonl"
    path.write_text(DEEP)
    with pytest.raises(SourceFormatError, match=r"kb.jsonl:1: JSON nested too deeply"):
        list(read_jsonl(path))


def test_gold_mentions_with_offsets_that_are_not_numbers_name_the_line(tmp_path: Path) -> None:
    from linker.gold import read_mentions as read_gold

    path = tmp_path / "dev.mentions.jsonl"
    path.write_text(json.dumps({"doc_id": "1", "text": "x", "ids": ["D1"], "start": "a", "end": 3}) + "\n")
    with pytest.raises(LinkerError, match=r"dev.mentions.jsonl:1: start 'a' and end 3 must be whole numbers"):
        read_gold(path)


def test_calibration_queries_deep_or_not_utf8_name_the_line(tmp_path: Path) -> None:
    from linker.rescoring import read_queries

    deep, bad, bom = tmp_path / "q.jsonl", tmp_path / "q.txt", tmp_path / "b.txt"
    deep.write_text(json.dumps({"text": "fever"}) + "\n" + DEEP)
    bad.write_bytes(b"fever\n\xff\xfe\n")
    bom.write_bytes(b"\xef\xbb\xbffever\nfits\n")
    with pytest.raises(LinkerError, match=r"q.jsonl:2: JSON nested too deeply"):
        read_queries(deep)
    with pytest.raises(LinkerError, match=r"q.txt:2: not UTF-8"):
        read_queries(bad)
    assert read_queries(bom) == ["fever", "fits"]
