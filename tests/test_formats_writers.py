"""Each writer round-trips through its reader, repairs the torn tail an interrupted run leaves, and knows what is done."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fakes import KeywordAnnotator

from linker.formats import Document, Failure, open_reader, open_writer
from linker.formats.brat import file_stem
from linker.formats.sqlite import SqliteWriter, documents_with_concept
from linker.termdb import TermDB
from linker.types import Candidate, Mention

NOTES = Path(__file__).parent / "data" / "notes"


def sample_docs() -> list[Document]:
    docs = [d for d in open_reader(NOTES / "sample.pubtator") if isinstance(d, Document)]
    docs += [Document("carriage", "Seizures\r\nshort stature\tand\x01 control chars", "x:1"),
             Document("dir/with slash", "Nephromegaly.", "x:2")]
    return docs


def annotated() -> list[tuple[Document, list]]:
    docs = sample_docs()
    return list(zip(docs, KeywordAnnotator()([d.text for d in docs])))


def write_all(path: Path | str, fmt: str | None = None, **options: object) -> None:
    with open_writer(path, fmt, **options) as writer:
        assert not writer.progress().done_ids
        for doc, mentions in annotated():
            writer.write(doc, mentions)
        writer.write_error(Failure("broken", "in.jsonl:9", "not valid JSON"))


@pytest.mark.parametrize("suffix", [".pubtator", ".xml"])
def test_pubtator_and_bioc_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    write_all(path)
    back = [d for d in open_reader(path) if isinstance(d, Document)]
    expected = annotated()
    assert [d.doc_id for d in back] == [d.doc_id for d, _ in expected]
    for doc, (orig, mentions) in zip(back, expected):
        if suffix == ".pubtator":  # line breaks and tabs become spaces, offsets kept
            assert doc.text == orig.text.translate(str.maketrans("\r\n\t", "   "))
        elif orig.doc_id != "carriage":
            assert doc.text == orig.text
        else:  # \r survives as &#13;, control characters become spaces
            assert doc.text == orig.text.replace("\x01", " ")
        assert [(a.start, a.end, a.ids) for a in doc.annotations] == [(m.start, m.end, (m.concept_id,)) for m in mentions]
    errors = (tmp_path / f"out{suffix}.errors.jsonl").read_text().splitlines()
    assert [json.loads(line)["doc_id"] for line in errors] == ["broken"]


def test_bioc_output_is_one_valid_collection_after_resume(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    path = tmp_path / "out.xml"
    pairs = annotated()
    with open_writer(path) as writer:
        writer.progress()
        writer.write(*pairs[0])
    with open_writer(path) as writer:
        assert writer.progress().done_ids == {pairs[0][0].doc_id}
        for pair in pairs[1:]:
            writer.write(*pair)
    root = ET.parse(path).getroot()
    assert [d.findtext("id") for d in root.iter("document")] == [d.doc_id for d, _ in pairs]


def test_jsonl_writer_lines_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_all(path, include_text=True)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    pairs = annotated()
    assert [line["doc_id"] for line in lines] == [d.doc_id for d, _ in pairs]
    first = lines[0]
    assert first["text"] == pairs[0][0].text
    assert first["mentions"][0] | {"candidates": None} == {
        "start": 0, "end": 8, "text": "Seizures", "label": "CONCEPT", "concept_id": "HP:0001250", "concept_ids": ["HP:0001250"], "name": "Seizure",
        "score": 0.9, "candidates": None, "negated": False, "historical": False, "hypothetical": False,
        "family": False, "source": "dictionary"}
    assert any(m["negated"] for m in first["mentions"])  # "No seizures"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"doc_id": "half-writ')  # a run killed mid-line
    writer = open_writer(path)
    progress = writer.progress()
    writer.close()
    assert path.read_bytes() == whole
    assert progress.done_ids == {d.doc_id for d, _ in pairs} and progress.failed_where == {"in.jsonl:9"}


def test_pubtator_writer_cuts_a_torn_block(tmp_path: Path) -> None:
    path = tmp_path / "out.pubtator"
    write_all(path)
    whole = path.read_bytes()
    path.write_bytes(whole + b"9999|t|torn title\n9999|a|torn abs")
    writer = open_writer(path)
    assert "9999" not in writer.progress().done_ids
    writer.close()
    assert path.read_bytes() == whole


def test_brat_writer(tmp_path: Path) -> None:
    folder = tmp_path / "brat"
    write_all(str(folder) + "/")
    pairs = annotated()
    assert sorted(p.name for p in folder.glob("*.ann")) == sorted(file_stem(d.doc_id) + ".ann" for d, _ in pairs)
    ann = (folder / "1001.ann").read_text().splitlines()
    assert ann[0] == "T1\tCONCEPT 0 8\tSeizures"
    assert ann[1] == "N1\tReference T1 HP:0001250\tSeizure"
    assert any(line.startswith("A") and "Negated" in line for line in ann)
    crlf = (folder / "carriage.ann").read_text().splitlines()
    assert crlf[0] == "T1\tCONCEPT 0 8\tSeizures"
    assert (folder / "carriage.txt").read_bytes() == "Seizures\r\nshort stature\tand\x01 control chars".encode()
    (folder / "half.ann.tmp").write_text("torn")
    writer = open_writer(folder, "brat")
    assert writer.progress().done_ids == {d.doc_id for d, _ in pairs}  # "dir/with slash" maps back
    writer.close()
    assert not (folder / "half.ann.tmp").exists()


def test_sqlite_writer_tables_and_descendant_query(tmp_path: Path, mini_index_dir: Path) -> None:
    path = tmp_path / "out.sqlite"
    termdb = TermDB(mini_index_dir / "terms.sqlite")
    write_all(path, concepts=termdb.concept)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == len(annotated())
    assert conn.execute("SELECT doc_id, reason FROM errors").fetchall() == [("broken", "not valid JSON")]
    # HP:0000105 Enlarged kidney -> HP:0000077 Abnormality of the kidney -> HP:0000118 Phenotypic abnormality
    assert conn.execute("SELECT distance FROM concept_ancestors WHERE concept_id = 'HP:0000105' "
                        "AND ancestor_id = 'HP:0000118'").fetchone() == (2,)
    kidney = documents_with_concept(path, "HP:0000077")
    assert kidney == sorted(d.doc_id for d, ms in annotated() if any(m.concept_id == "HP:0000105" for m in ms))
    assert documents_with_concept(path, "HP:0000077", descendants=False) == []
    everything = documents_with_concept(path, "HP:0000118")
    assert set(kidney) < set(everything)
    plan = " ".join(row[-1] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT DISTINCT m.doc_id FROM concept_ancestors a JOIN mentions m "
        "ON m.concept_id = a.concept_id WHERE a.ancestor_id = 'HP:0000118'"))
    assert "USING" in plan and "SCAN m" not in plan  # both sides use an index
    writer = open_writer(path, concepts=termdb.concept)
    assert writer.progress().failed_ids == {"broken"}
    writer.close()


def test_sqlite_documents_and_their_mentions_commit_together(tmp_path: Path) -> None:
    """A write that stops between the tables (here a trigger aborts the mentions' insert, as a kill would stop
    it) leaves neither: a resumed run must not take the document as done without its mentions."""
    path = tmp_path / "out.sqlite"
    writer = SqliteWriter(path)
    writer.db.execute("CREATE TRIGGER stop BEFORE INSERT ON mentions BEGIN SELECT RAISE(ABORT, 'stopped'); END")
    fever = Mention(0, 5, "Fever", (Candidate("HP:0001945", "Fever", "Fever", 1.0, True),), "HP:0001945", "dictionary")
    writer.write(Document("d1", "Fever today.", "in.jsonl:1"), [fever])
    with pytest.raises(sqlite3.DatabaseError, match="stopped"):
        writer.flush()
    writer.db.execute("DROP TRIGGER stop")
    assert writer.progress().done_ids == set()  # d1 is not done: a resumed run annotates it again
    writer.db.close()
