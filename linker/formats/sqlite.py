"""SQLite output (sqlite-utils): documents, mentions, concepts with their ancestor closure, and errors.

Tables::

    documents(doc_id PK, text, source, n_mentions)
    mentions(id PK, doc_id, start, end, text, label, concept_id, name, score, negated, historical,
             hypothetical, family, source, candidates JSON)          -- indexed on doc_id and concept_id
    concepts(concept_id PK, name, parents JSON)                      -- linked concepts and all their ancestors
    concept_ancestors(concept_id, ancestor_id, distance)             -- closure, self at distance 0
    errors(where PK, doc_id, stage, reason)

All notes mentioning a concept or any of its descendants::

    SELECT DISTINCT m.doc_id FROM concept_ancestors a JOIN mentions m ON m.concept_id = a.concept_id
    WHERE a.ancestor_id = :concept_id
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from linker.errors import LinkerError
from linker.formats.base import Document, Failure, Progress, Writer
from linker.serialize import mention_to_dict
from linker.types import Concept, Mention

log = logging.getLogger(__name__)

#: concept id -> the concept (name, parents), or None when the index does not know it
ConceptLookup = Callable[[str], Concept | None]

DESCENDANT_MENTIONS_SQL = """
SELECT DISTINCT m.doc_id FROM concept_ancestors a JOIN mentions m ON m.concept_id = a.concept_id
WHERE a.ancestor_id = ? ORDER BY m.doc_id
"""


class SqliteWriter(Writer):
    """Documents are committed in batches; a document is done once its transaction committed."""

    format = "sqlite"

    def __init__(self, path: Path, concepts: ConceptLookup | None = None, commit_every: int = 500,
                 candidates: int = 5, commit_seconds: float = 2.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lookup = concepts
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self._flushed = time.monotonic()
        self.candidates = candidates
        self.db = sqlite_utils.Database(path)
        try:
            tables = self.db.table_names()
            if tables and "documents" not in tables:
                raise sqlite3.DatabaseError(f"it holds other tables ({', '.join(tables[:5])})")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._create()
            self._known: set[str] = {row[0] for row in self.db.execute("SELECT concept_id FROM concepts")}
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise LinkerError(f"{path}: not a database written by linker annotate ({err}); run with --overwrite to "
                              "replace it, or choose another output") from None
        self._docs: list[dict[str, Any]] = []
        self._mentions: list[dict[str, Any]] = []
        self._concepts: list[dict[str, Any]] = []
        self._closure: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []

    def _create(self) -> None:
        db = self.db
        if "documents" in db.table_names():
            return
        with db.conn:
            db["documents"].create({"doc_id": str, "text": str, "source": str, "n_mentions": int}, pk="doc_id")
            db["mentions"].create({"id": int, "doc_id": str, "start": int, "end": int, "text": str, "label": str,
                                   "concept_id": str, "name": str, "score": float, "negated": int, "historical": int,
                                   "hypothetical": int, "family": int, "source": str, "candidates": str}, pk="id",
                                  foreign_keys=[("doc_id", "documents", "doc_id")])
            db["concepts"].create({"concept_id": str, "name": str, "parents": str}, pk="concept_id")
            db["concept_ancestors"].create({"concept_id": str, "ancestor_id": str, "distance": int},
                                           pk=("concept_id", "ancestor_id"))
            db["errors"].create({"where": str, "doc_id": str, "stage": str, "reason": str}, pk="where")
            db["mentions"].create_index(["doc_id"])
            db["mentions"].create_index(["concept_id", "doc_id"])
            db["concept_ancestors"].create_index(["ancestor_id", "concept_id"])
            db["errors"].create_index(["doc_id"])

    def progress(self) -> Progress:
        progress = Progress()
        progress.done_ids.update(row[0] for row in self.db.execute("SELECT doc_id FROM documents"))
        for where, doc_id in self.db.execute("SELECT [where], doc_id FROM errors"):
            progress.failed_where.add(where)
            progress.failed_ids.add(doc_id)
        return progress

    def write(self, doc: Document, mentions: list[Mention]) -> None:
        self._docs.append({"doc_id": doc.doc_id, "text": doc.text, "source": doc.where, "n_mentions": len(mentions)})
        for m in mentions:
            d = mention_to_dict(m, self.candidates)
            d.pop("concept_ids")  # a composite's conjuncts: JSONL and HTTP only; this schema keeps one concept
            d["candidates"] = json.dumps(d["candidates"], ensure_ascii=False)
            d["doc_id"] = doc.doc_id
            self._mentions.append(d)
            if m.concept_id:
                self._add_concept(m.concept_id)
        if len(self._docs) >= self.commit_every or time.monotonic() - self._flushed > self.commit_seconds:
            self.flush()

    def _add_concept(self, concept_id: str) -> None:
        """Record *concept_id* and, once, its ancestors with their distances (breadth first)."""
        if concept_id in self._known:
            return
        distance: dict[str, int] = {concept_id: 0}
        frontier = [concept_id]
        while frontier:
            following: list[str] = []
            for cid in frontier:
                concept = self.lookup(cid) if self.lookup else None
                if cid not in self._known:
                    self._known.add(cid)
                    self._concepts.append({"concept_id": cid, "name": concept.name if concept else None,
                                           "parents": json.dumps(list(concept.parents) if concept else [])})
                for parent in concept.parents if concept else ():
                    if parent not in distance:
                        distance[parent] = distance[cid] + 1
                        following.append(parent)
            frontier = following
        self._closure.extend({"concept_id": concept_id, "ancestor_id": a, "distance": d} for a, d in distance.items())

    def write_error(self, failure: Failure) -> None:
        self._errors.append(failure.to_dict())

    def flush(self) -> None:
        """Write what is pending in one transaction: a document is in ``documents`` only with its mentions.

        Plain ``executemany`` between an explicit BEGIN and COMMIT: sqlite-utils' ``insert_all`` commits each
        call on its own (outside a transaction it opens one), so a kill between two calls left documents
        without their mentions, and a resumed run then took those documents as done."""
        conn = self.db.conn
        pending = [("INSERT", "documents", self._docs), ("INSERT", "mentions", self._mentions),
                   ("INSERT OR IGNORE", "concepts", self._concepts),
                   ("INSERT OR IGNORE", "concept_ancestors", self._closure),
                   ("INSERT OR REPLACE", "errors", self._errors)]
        if any(rows for _, _, rows in pending):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for verb, table, rows in pending:
                    if rows:
                        columns = list(rows[0])
                        conn.executemany(f"{verb} INTO [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
                                         f"VALUES ({', '.join('?' * len(columns))})",
                                         [tuple(row.get(c) for c in columns) for row in rows])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        for rows in (self._docs, self._mentions, self._concepts, self._closure, self._errors):
            rows.clear()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.db.close()


def documents_with_concept(path: str | Path, concept_id: str, descendants: bool = True) -> list[str]:
    """Ids of the documents in an annotation database that mention *concept_id* (or any descendant)."""
    db = sqlite_utils.Database(path)
    try:
        if descendants:
            return [row[0] for row in db.execute(DESCENDANT_MENTIONS_SQL, [concept_id])]
        return [row[0] for row in db.execute(
            "SELECT DISTINCT doc_id FROM mentions WHERE concept_id = ? ORDER BY doc_id", [concept_id])]
    finally:
        db.close()
