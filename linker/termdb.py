"""The SQLite term dictionary: written once with sqlite-utils, then read (read-only) by any number of processes.

Tables::

    concepts(concept_id PK, name, definition, types JSON, parents JSON)
    terms(id PK = FAISS id, concept_id, text, norm_text, is_preferred, scope, kind)
    alt_ids(alt_id, concept_id, kind)         -- merged, obsolete and secondary ids
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from linker.errors import LinkerError
from linker.normalize import normalize
from linker.types import AltId, Concept, ConceptCard, ConceptInfo, Record, Term

SCHEMA_VERSION = 1
_BATCH = 10_000
#: Longest name a dictionary takes (MEDIC's longest is under 300; the encoder reads 256 tokens at most).
MAX_NAME_CHARS = 10_000


class TermDBWriter:
    """Fills a new dictionary from reader records, in any order; :meth:`finish` merges and numbers the terms."""

    def __init__(self, path: Path) -> None:
        import sqlite_utils  # imported here: reading a dictionary does not need it (half a second)

        path.unlink(missing_ok=True)
        self.path = path
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db["concepts"].create(
            {"concept_id": str, "name": str, "definition": str, "types": str, "parents": str}, pk="concept_id"
        )
        self.db["stage_terms"].create({"concept_id": str, "text": str, "scope": str, "kind": str})
        self.db["stage_terms"].create_index(["concept_id", "text"], unique=True)
        self.db["concept_info"].create({"concept_id": str, "field": str, "value": str})
        self.db["alt_ids"].create({"alt_id": str, "concept_id": str, "kind": str}, pk=("alt_id", "concept_id"))
        self._pending: dict[type, list[dict[str, object]]] = {Concept: [], Term: [], AltId: [], ConceptInfo: []}

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            rows = self._pending[type(record)]
            if isinstance(record, Concept):
                rows.append({"concept_id": record.concept_id, "name": record.name.strip(),
                             "definition": record.definition, "types": json.dumps(list(record.types)),
                             "parents": json.dumps(list(record.parents))})
            elif isinstance(record, Term):
                if len(record.text) > MAX_NAME_CHARS:
                    raise LinkerError(f"concept {record.concept_id} has a name of {len(record.text):,} characters; a "
                                      f"name may have at most {MAX_NAME_CHARS:,}: fix or drop it in the source")
                rows.append({"concept_id": record.concept_id, "text": " ".join(record.text.split()),
                             "scope": record.scope, "kind": record.kind})
            elif isinstance(record, AltId):
                rows.append({"alt_id": record.alt_id, "concept_id": record.concept_id, "kind": record.kind})
            else:
                rows.append({"concept_id": record.concept_id, "field": record.field, "value": record.value})
            if len(rows) >= _BATCH:
                self._flush(type(record))
        for kind in self._pending:
            self._flush(kind)

    def _flush(self, kind: type) -> None:
        rows = self._pending[kind]
        if not rows:
            return
        table = {Concept: "concepts", Term: "stage_terms", AltId: "alt_ids", ConceptInfo: "concept_info"}[kind]
        self.db[table].insert_all(rows, ignore=True, batch_size=_BATCH)
        rows.clear()

    def finish(self) -> dict[str, int]:
        """Name unnamed concepts, merge metadata, number the terms 0..n-1 and index them."""
        db = self.db
        db.conn.create_function("normalize", 1, normalize, deterministic=True)
        # indexed once the rows are in: each concept's definition and types are looked up by concept below,
        # which without it scans every row per concept (hours on a full UMLS release)
        db["concept_info"].create_index(["concept_id", "field"])
        with db.conn:
            # a concept known only from its names is named by its first one
            db.execute("""INSERT OR IGNORE INTO concepts (concept_id, name, types, parents)
                          SELECT concept_id, text, '[]', '[]' FROM stage_terms
                          WHERE rowid IN (SELECT min(rowid) FROM stage_terms GROUP BY concept_id)""")
            # every concept's own name is one of its terms
            db.execute("""INSERT OR IGNORE INTO stage_terms (concept_id, text, scope)
                          SELECT concept_id, name, 'LABEL' FROM concepts""")
            db.execute("""UPDATE concepts SET definition = (
                              SELECT value FROM concept_info i WHERE i.concept_id = concepts.concept_id
                              AND field = 'definition' ORDER BY rowid LIMIT 1)
                          WHERE definition IS NULL""")
            for field, column in (("type", "types"), ("parent", "parents")):
                db.execute(f"""UPDATE concepts SET {column} = (
                                  SELECT json_group_array(value) FROM (
                                      SELECT value FROM json_each(concepts.{column})
                                      UNION SELECT value FROM concept_info i
                                      WHERE i.concept_id = concepts.concept_id AND field = '{field}'))
                              WHERE concept_id IN (SELECT concept_id FROM concept_info WHERE field = '{field}')""")
        db["terms"].create({"id": int, "concept_id": str, "text": str, "norm_text": str, "is_preferred": int,
                            "scope": str, "kind": str}, pk="id")
        with db.conn:
            db.execute("""INSERT INTO terms (id, concept_id, text, norm_text, is_preferred, scope, kind)
                          SELECT row_number() OVER (ORDER BY s.rowid) - 1, s.concept_id, s.text, normalize(s.text),
                                 s.text = c.name, CASE WHEN s.text = c.name THEN 'LABEL'
                                                       WHEN s.scope = 'LABEL' THEN 'EXACT' ELSE s.scope END, s.kind
                          FROM stage_terms s JOIN concepts c USING (concept_id)""")
            # alt ids pointing nowhere, or shadowing a live concept, would mislead
            db.execute("""DELETE FROM alt_ids WHERE concept_id NOT IN (SELECT concept_id FROM concepts)
                          OR alt_id IN (SELECT concept_id FROM concepts)""")
        db["terms"].create_index(["norm_text"])
        db["terms"].create_index(["concept_id"])
        db["alt_ids"].create_index(["concept_id"])
        db["stage_terms"].drop()
        db["concept_info"].drop()
        db["terms"].enable_fts(["text"], create_triggers=False)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        counts = {"concepts": db["concepts"].count, "terms": db["terms"].count, "alt_ids": db["alt_ids"].count}
        db.conn.commit()
        db.execute("VACUUM")
        db.close()
        return counts


class TermDB:
    """Read-only access, one SQLite connection per thread, safe for many processes at once."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise LinkerError(f"{path}: no term dictionary here; build the index first (linker build)")
        self.path = path
        self._local = threading.local()
        try:
            version = self._conn().execute("PRAGMA user_version").fetchone()[0]
            self._conn().execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as err:
            raise LinkerError(f"{path}: damaged term dictionary ({err}); rebuild the index (linker build … --force)") from None
        if version != SCHEMA_VERSION:
            raise LinkerError(f"{path}: term dictionary schema {version}, this version reads {SCHEMA_VERSION}; rebuild the index")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def count(self, table: str) -> int:
        assert table in {"concepts", "terms", "alt_ids"}
        return int(self._conn().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def term_concepts(self) -> list[str]:
        """The concept id of every term, ordered by FAISS id."""
        return [row[0] for row in self._conn().execute("SELECT concept_id FROM terms ORDER BY id")]

    def term_texts(self) -> list[str]:
        """Every distinct term text, in no particular order (what a dictionary matcher looks for)."""
        return [row[0] for row in self._conn().execute("SELECT DISTINCT text FROM terms")]

    def terms(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """``id -> (concept_id, text)`` for the given term ids."""
        result: dict[int, tuple[str, str]] = {}
        unique = sorted({int(i) for i in ids if i >= 0})
        for start in range(0, len(unique), 900):
            chunk = unique[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._conn().execute(f"SELECT id, concept_id, text FROM terms WHERE id IN ({marks})", chunk):
                result[row[0]] = (row[1], row[2])
        return result

    def exact(self, norm_texts: Iterable[str]) -> dict[str, list[tuple[str, str, bool]]]:
        """``norm_text -> [(concept_id, text, is_preferred)]`` for the keys found in the dictionary."""
        found: dict[str, list[tuple[str, str, bool]]] = {}
        keys = sorted({key for key in norm_texts if key})
        for start in range(0, len(keys), 900):
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._conn().execute(
                f"SELECT norm_text, concept_id, text, is_preferred FROM terms WHERE norm_text IN ({marks}) ORDER BY id",
                chunk)
            for norm, concept_id, text, preferred in rows:
                found.setdefault(norm, []).append((concept_id, text, bool(preferred)))
        return found

    def names(self, concept_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(concept_ids))
        result: dict[str, str] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            result.update(self._conn().execute(
                f"SELECT concept_id, name FROM concepts WHERE concept_id IN ({marks})", chunk).fetchall())
        return result

    def concept(self, concept_id: str) -> Concept | None:
        row = self._conn().execute(
            "SELECT concept_id, name, definition, types, parents FROM concepts WHERE concept_id = ?",
            (concept_id,)).fetchone()
        if row is None:
            return None
        return Concept(row[0], row[1], row[2], tuple(json.loads(row[3] or "[]")), tuple(json.loads(row[4] or "[]")))

    def resolve(self, concept_id: str) -> list[str]:
        """Current concept ids for *concept_id*: itself if live, else what its alt/obsolete mapping names."""
        if self.concept(concept_id) is not None:
            return [concept_id]
        rows = self._conn().execute("SELECT concept_id FROM alt_ids WHERE alt_id = ? ORDER BY concept_id",
                                    (concept_id,))
        return [row[0] for row in rows]

    def alt_id_map(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for alt, concept_id in self._conn().execute("SELECT alt_id, concept_id FROM alt_ids ORDER BY alt_id, concept_id"):
            result.setdefault(alt, []).append(concept_id)
        return result

    def card(self, concept_id: str) -> ConceptCard | None:
        concept = self.concept(concept_id)
        if concept is None:
            return None
        conn = self._conn()
        synonyms = tuple(Term(concept_id, text, scope, kind) for text, scope, kind in conn.execute(
            "SELECT text, scope, kind FROM terms WHERE concept_id = ? AND NOT is_preferred ORDER BY id", (concept_id,)))
        alt_ids = tuple(row[0] for row in conn.execute(
            "SELECT alt_id FROM alt_ids WHERE concept_id = ? ORDER BY alt_id", (concept_id,)))
        return ConceptCard(concept, synonyms, alt_ids)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
