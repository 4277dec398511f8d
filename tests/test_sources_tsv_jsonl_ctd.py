from __future__ import annotations

import json
from pathlib import Path

import pytest

from linker.errors import LinkerError, SourceFormatError
from linker.sources import Source, guess_format
from linker.sources.ctd import read_ctd
from linker.sources.jsonl import read_jsonl
from linker.sources.tsv import read_tsv
from linker.types import AltId, Concept, Term


def test_tsv_reads_names_preference_and_alt_ids(data_dir: Path) -> None:
    records = list(read_tsv(data_dir / "mini_dictionary.tsv", alt_ids=data_dir / "mini_alt_ids.tsv"))
    concepts = {r.concept_id: r.name for r in records if isinstance(r, Concept)}
    assert concepts["MESH:D001943"] == "Breast Neoplasms"
    assert len([r for r in records if isinstance(r, Term)]) == 20
    assert AltId("OMIM:114480", "MESH:D001943") in records


@pytest.mark.parametrize(
    ("content", "message"),
    [("MESH:D1\n", "expected 2 or 3"), ("MESH:D1\tName\tmaybe\n", "is_preferred"), ("\tName\t1\n", "empty")],
)
def test_tsv_malformed(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("MESH:D0\tFine\t1\n" + content)
    with pytest.raises(SourceFormatError, match=rf"bad.tsv:2: .*{message}"):
        list(read_tsv(path))


def test_jsonl_kb(data_dir: Path, tmp_path: Path) -> None:
    records = list(read_jsonl(data_dir / "mini_kb.jsonl"))
    seizures = next(r for r in records if isinstance(r, Concept) and r.concept_id == "C0036572")
    assert seizures.types == ("T184", "T047") and seizures.definition
    assert {r.text for r in records if isinstance(r, Term) and r.concept_id == "C0036572"} == {
        "Seizures", "Epileptic Seizure", "Seizure"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"concept_id": "C1", "canonical_name": "x"}) + "\n{not json\n")
    with pytest.raises(SourceFormatError, match=r"bad.jsonl:2: not valid JSON"):
        list(read_jsonl(bad))
    bad.write_text(json.dumps({"concept_id": "C1", "canonical_name": "x", "aliases": "y"}) + "\n")
    with pytest.raises(SourceFormatError, match="'aliases' must be a list"):
        list(read_jsonl(bad))


def test_ctd_diseases(tmp_path: Path) -> None:
    path = tmp_path / "CTD_diseases.tsv"
    path.write_text("# comment\n"
                    "Breast Neoplasms\tMESH:D001943\tOMIM:114480|DO:DOID:1612\tTumors in the breast.\tMESH:D009371\t"
                    "C04\tC04\tBreast Cancer|Breast Tumor\tCancer\n")
    records = list(read_ctd(path))
    assert records[0] == Concept("MESH:D001943", "Breast Neoplasms", "Tumors in the breast.", (), ("MESH:D009371",))
    assert {r.text for r in records if isinstance(r, Term)} == {"Breast Neoplasms", "Breast Cancer", "Breast Tumor"}
    assert AltId("DO:DOID:1612", "MESH:D001943") in records
    assert guess_format(path) == "ctd"
    path.write_text("Only\tthree\tfields\n")
    with pytest.raises(SourceFormatError, match="CTD_diseases.tsv:1"):
        list(read_ctd(path))


def test_format_guessing_and_errors(data_dir: Path, tmp_path: Path) -> None:
    assert Source.open(data_dir / "umls").format == "umls"
    assert Source.open(data_dir / "mini_kb.jsonl").format == "jsonl"
    with pytest.raises(LinkerError, match="a folder without MRCONSO.RRF"):
        guess_format(tmp_path)
    (tmp_path / "terms.weird").write_text("a\tb\n")
    with pytest.raises(LinkerError, match="cannot tell the ontology format"):
        guess_format(tmp_path / "terms.weird")
    with pytest.raises(LinkerError, match="no such file"):
        Source.open(tmp_path / "missing.obo")


@pytest.mark.parametrize("name", ["mini_dictionary.tsv", "mini_ctd.tsv", "umls/MRCONSO.RRF"])
def test_a_byte_order_mark_is_not_part_of_the_first_record(data_dir: Path, tmp_path: Path, name: str) -> None:
    plain = data_dir / name
    with_bom = tmp_path / name
    with_bom.parent.mkdir(parents=True, exist_ok=True)
    for sibling in plain.parent.iterdir():  # UMLS reads MRDEF and MRSTY beside MRCONSO
        if name.startswith("umls/") and sibling.is_file():
            (with_bom.parent / sibling.name).write_bytes(sibling.read_bytes())
    with_bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    fmt = {"mini_dictionary.tsv": "tsv", "mini_ctd.tsv": "ctd", "umls/MRCONSO.RRF": "umls"}[name]
    assert list(Source.open(with_bom, fmt).records()) == list(Source.open(plain, fmt).records())


def test_huge_names_and_lines_are_clear_errors(tmp_path: Path) -> None:
    from linker.build import build_index

    from conftest import HashEncoder

    long_name = tmp_path / "long.tsv"
    long_name.write_text("MESH:D1\tFine\t1\nMESH:D2\t" + "a" * 20_000 + "\t1\n")
    with pytest.raises(LinkerError, match="MESH:D2 has a name of 20,000 characters"):
        build_index(Source.open(long_name, "tsv"), tmp_path / "idx", encoder=HashEncoder(), progress=False)
    huge_line = tmp_path / "huge.tsv"
    huge_line.write_text("MESH:D1\tFine\t1\nMESH:D2\t" + "a" * 2_000_000 + "\t1\n")
    with pytest.raises(SourceFormatError, match="huge.tsv:2: a line of 2,000,0"):
        list(read_tsv(huge_line))
