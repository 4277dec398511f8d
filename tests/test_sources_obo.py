from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from linker.errors import LinkerError, SourceFormatError
from linker.sources import Source
from linker.sources.obo import read_header, read_obo
from linker.types import AltId, Concept, Term


def _records(path: Path, **options: object) -> tuple[dict[str, Concept], list[Term], list[AltId]]:
    records = list(read_obo(path, **options))  # type: ignore[arg-type]
    concepts = {r.concept_id: r for r in records if isinstance(r, Concept)}
    return concepts, [r for r in records if isinstance(r, Term)], [r for r in records if isinstance(r, AltId)]


def test_reads_names_synonyms_definitions_and_parents(data_dir: Path) -> None:
    concepts, terms, _ = _records(data_dir / "mini.obo")
    assert len(concepts) == 21  # 24 [Term] stanzas, 3 obsolete
    seizure = concepts["HP:0001250"]
    assert seizure.name == "Seizure"
    assert seizure.parents == ("HP:0000118",)
    assert seizure.definition is not None and seizure.definition.startswith("A seizure is")
    scopes = {t.text: (t.scope, t.kind) for t in terms if t.concept_id == "HP:0001250"}
    assert scopes == {"Seizure": ("LABEL", None), "Epileptic seizure": ("EXACT", None),
                      "Seizures": ("EXACT", "plural_form"), "Fits": ("RELATED", "layperson")}
    assert concepts["HP:0000105"].parents == ("HP:0000077",)


def test_obsolete_terms_become_alt_ids_not_concepts(data_dir: Path) -> None:
    concepts, terms, alt_ids = _records(data_dir / "mini.obo")
    assert "HP:0006785" not in concepts and not [t for t in terms if t.concept_id == "HP:0006785"]
    found = {(a.alt_id, a.concept_id, a.kind) for a in alt_ids}
    assert ("HP:0006785", "HP:0003325", "replaced_by") in found
    assert ("HP:0000009", "HP:0000077", "replaced_by") in found
    assert ("HP:0000008", "HP:0000077", "replaced_by") in found  # alt id of an obsolete term follows it
    assert ("HP:0000010", "HP:0002721", "consider") in found
    assert ("HP:0001275", "HP:0001250", "alt_id") in found


def test_subtree_keeps_root_and_descendants(data_dir: Path) -> None:
    concepts, _, _ = _records(data_dir / "mini.obo", subtree=["HP:0000077"])
    assert set(concepts) == {"HP:0000077", "HP:0000105", "HP:0100820"}
    with pytest.raises(LinkerError, match="HP:9999999"):
        _records(data_dir / "mini.obo", subtree=["HP:9999999"])


def test_header_and_gzip(data_dir: Path, tmp_path: Path) -> None:
    gz = tmp_path / "mini.obo.gz"
    gz.write_bytes(gzip.compress((data_dir / "mini.obo").read_bytes()))
    assert read_header(gz)["data-version"] == "mini/releases/2026-01-01"
    assert _records(gz)[0].keys() == _records(data_dir / "mini.obo")[0].keys()
    info = Source.open(gz).describe()
    assert info["format"] == "obo" and info["name"] == "mini" and info["release"] == "mini/releases/2026-01-01"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("[Term]\nid: X:1\nname: ok\n[Term\nid: X:2\n", 4, "closing"),
        ("[Term]\nid: X:1\nname ok\n", 3, "tag: value"),
        ('[Term]\nid: X:1\nname: ok\nsynonym: unquoted EXACT []\n', 4, "quoted string"),
        ("[Term]\nid: X:1\ndef: \"fine\" []\n", 1, "no 'name:'"),
        ("[Term]\nname: orphan\n", 1, "without an 'id:'"),
    ],
)
def test_malformed_obo_names_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = tmp_path / "bad.obo"
    path.write_text("format-version: 1.2\n" + body)
    with pytest.raises(SourceFormatError, match=message) as info:
        list(read_obo(path))
    assert info.value.line == line + 1  # the header line comes first
    assert str(path) in str(info.value)


def test_non_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.obo"
    path.write_bytes("[Term]\nid: X:1\nname: Sj\xf6gren\n".encode("latin-1"))
    with pytest.raises(SourceFormatError, match=r"latin1.obo:3: not UTF-8"):
        list(read_obo(path))


def test_truncated_gzip_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    gz = tmp_path / "cut.obo.gz"
    gz.write_bytes(gzip.compress((data_dir / "mini.obo").read_bytes())[:300])
    with pytest.raises(SourceFormatError, match="is the file complete"):
        list(read_obo(gz))
