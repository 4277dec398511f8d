from __future__ import annotations

from pathlib import Path

import pytest

from linker.errors import SourceFormatError
from linker.sources import Source
from linker.sources.umls import read_umls
from linker.types import Concept, ConceptInfo, Term


def test_names_filtered_by_language_and_suppress_flag(data_dir: Path) -> None:
    records = list(read_umls(data_dir / "umls"))
    concepts = {r.concept_id: r.name for r in records if isinstance(r, Concept)}
    assert concepts == {"C0036572": "Seizures", "C0015967": "Fever", "C0004096": "Asthma",
                        "C0011849": "Diabetes Mellitus"}
    texts = {r.text for r in records if isinstance(r, Term)}
    assert "Crises convulsives" not in texts  # French row, ENG only by default
    assert "Seizures (old)" not in texts  # SUPPRESS=O
    assert "Hyperthermia" not in texts  # SUPPRESS=Y
    assert {"Seizure", "Epileptic Seizure", "Pyrexia"} <= texts
    infos = [r for r in records if isinstance(r, ConceptInfo)]
    assert ConceptInfo("C0036572", "type", "T184") in infos
    assert any(i.field == "definition" and i.concept_id == "C0015967" for i in infos)


def test_source_vocabulary_and_language_options(data_dir: Path) -> None:
    records = list(read_umls(data_dir / "umls" / "MRCONSO.RRF", sources=["SNOMEDCT_US"], drop_suppress=()))
    texts = {r.text for r in records if isinstance(r, Term)}
    assert texts == {"Pyrexia", "Hyperthermia", "Asthmatic", "Diabète sucré (FR label in ENG row)"}
    french = [r for r in read_umls(data_dir / "umls", languages=["FRE"]) if isinstance(r, Term)]
    assert [t.text for t in french] == ["Crises convulsives"]


def test_definitions_and_types_reach_the_dictionary(data_dir: Path, tmp_path: Path) -> None:
    from linker.termdb import TermDB, TermDBWriter

    writer = TermDBWriter(tmp_path / "t.sqlite")
    writer.add(Source.open(data_dir / "umls").records())
    writer.finish()
    card = TermDB(tmp_path / "t.sqlite").card("C0036572")
    assert card is not None
    assert set(card.concept.types) == {"T184", "T047"}
    assert card.concept.definition is not None and "cortical" in card.concept.definition
    assert {t.text for t in card.synonyms} == {"Seizure", "Epileptic Seizure"}


def test_wrong_field_count_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "MRCONSO.RRF"
    bad.write_text("C0000001|ENG|P|L1|PF|S1|Y|A1||||MSH|MH|D1|Name|0|N||\nC0000002|ENG|P|L2|PF|S2\n")
    with pytest.raises(SourceFormatError, match=r"MRCONSO.RRF:2: expected 18"):
        list(read_umls(bad))
