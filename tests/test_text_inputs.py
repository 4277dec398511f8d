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
