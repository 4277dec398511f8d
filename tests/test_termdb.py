from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from linker.normalize import normalize
from linker.sources import Source
from linker.termdb import TermDB, TermDBWriter


@pytest.fixture(scope="module")
def termdb(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TermDB:
    path = tmp_path_factory.mktemp("termdb") / "terms.sqlite"
    writer = TermDBWriter(path)
    writer.add(Source.open(data_dir / "mini.obo").records())
    counts = writer.finish()
    assert counts == {"concepts": 21, "terms": 50, "alt_ids": 4}
    return TermDB(path)


def test_schema(termdb: TermDB) -> None:
    conn = sqlite3.connect(termdb.path)
    columns = {table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
               for table in ("concepts", "terms", "alt_ids")}
    assert columns["concepts"] == ["concept_id", "name", "definition", "types", "parents"]
    assert columns["terms"] == ["id", "concept_id", "text", "norm_text", "is_preferred", "scope", "kind"]
    assert columns["alt_ids"] == ["alt_id", "concept_id", "kind"]
    indexed = {row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert any("norm_text" in sql for sql in indexed)
    ids = [row[0] for row in conn.execute("SELECT id FROM terms ORDER BY id")]
    assert ids == list(range(len(ids)))  # FAISS ids are 0..n-1
    preferred = conn.execute("SELECT count(*) FROM terms WHERE is_preferred").fetchone()[0]
    assert preferred == 21  # one per concept


def test_ambiguous_synonym_maps_to_both_concepts(termdb: TermDB) -> None:
    found = termdb.exact([normalize("developmental delay")])
    assert {cid for cid, _, _ in found["developmental delay"]} == {"HP:0001263", "HP:0001249"}


def test_non_ascii_names_normalise(termdb: TermDB) -> None:
    assert normalize("Glomérulopathie") == "glomerulopathie"
    assert termdb.exact(["glomerulopathie"])["glomerulopathie"][0][0] == "HP:0100820"


def test_alt_and_obsolete_ids_resolve(termdb: TermDB) -> None:
    assert termdb.resolve("HP:0001250") == ["HP:0001250"]
    assert termdb.resolve("HP:0001275") == ["HP:0001250"]
    assert termdb.resolve("HP:0000008") == ["HP:0000077"]
    assert termdb.resolve("HP:0006785") == []  # replaced_by a term this file does not have
    assert termdb.resolve("HP:1234567") == []


def test_read_only_and_shared_between_processes(termdb: TermDB) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        termdb._conn().execute("DELETE FROM terms")
    code = ("import sys; from pathlib import Path; from linker.termdb import TermDB; "
            "print(TermDB(Path(sys.argv[1])).count('terms'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(termdb.path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    assert [p.communicate()[0].strip() for p in procs] == ["50"] * 3
    assert termdb.count("terms") == 50
