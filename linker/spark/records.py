"""The row shapes of Spark annotation: one row per mention, one per failed document, and back to values.

A mention row carries everything :class:`~linker.types.Mention` does (every candidate at full precision,
with the text it matched), so that the same writers as a local run can be fed from it and give the same
bytes. :func:`arrow_schema` is the one definition of the columns; Spark's schema is derived from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from linker.types import Candidate, Mention

#: Columns of a mention, in order (``doc_id`` first); ``error`` is set, and the rest null, on a failure row.
COLUMNS = ("doc_id", "start", "end", "text", "label", "concept_id", "concept_ids", "name", "score", "negated",
           "historical", "hypothetical", "family", "source", "candidates", "error")


def arrow_schema() -> Any:
    """The Arrow schema of mention rows: what part files hold and, as Spark types, what Spark returns."""
    import pyarrow as pa

    candidate = pa.struct([("concept_id", pa.string()), ("name", pa.string()), ("matched_text", pa.string()),
                           ("score", pa.float64()), ("exact", pa.bool_())])
    kinds = {"start": pa.int32(), "end": pa.int32(), "concept_ids": pa.list_(pa.string()), "score": pa.float64(),
             "negated": pa.bool_(), "historical": pa.bool_(), "hypothetical": pa.bool_(), "family": pa.bool_(),
             "candidates": pa.list_(candidate)}
    return pa.schema([(name, kinds.get(name, pa.string())) for name in COLUMNS])


def spark_schema() -> Any:
    """:func:`arrow_schema` as a Spark ``StructType``: the schema :func:`linker.spark.annotate_dataframe` returns."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema())


def mention_row(doc_id: str, mention: Mention, candidates: int | None = None) -> dict[str, Any]:
    """*mention* of *doc_id* as a row; *candidates* keeps that many ranked candidates (None: all)."""
    best = next((c for c in mention.candidates if c.concept_id == mention.concept_id), None) \
        if mention.concept_id is not None else None
    ranked = mention.candidates if candidates is None else mention.candidates[:candidates]
    return {
        "doc_id": doc_id, "start": mention.start, "end": mention.end, "text": mention.text, "label": mention.label,
        "concept_id": mention.concept_id, "concept_ids": list(mention.concept_ids),
        "name": best.name if best else None, "score": float(best.score) if best else None,
        "negated": mention.negated, "historical": mention.historical, "hypothetical": mention.hypothetical,
        "family": mention.family, "source": mention.source,
        "candidates": [{"concept_id": c.concept_id, "name": c.name, "matched_text": c.matched_text,
                        "score": float(c.score), "exact": c.exact} for c in ranked],
        "error": None,
    }


def failure_row(doc_id: str | None, reason: str) -> dict[str, Any]:
    """A failed document: its id and why, every mention column null."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(doc_id=doc_id, error=reason)
    return row


def row_mention(row: dict[str, Any]) -> Mention:
    """The :class:`Mention` a :func:`mention_row` (written with all candidates) was made from."""
    candidates = tuple(Candidate(c["concept_id"], c["name"], c["matched_text"], float(c["score"]), bool(c["exact"]))
                       for c in _sequence(row["candidates"]))
    conjuncts = tuple(_sequence(row["concept_ids"]))
    concept_id = row["concept_id"]
    return Mention(int(row["start"]), int(row["end"]), row["text"], candidates, concept_id, row["source"],
                   negated=bool(row["negated"]), historical=bool(row["historical"]),
                   hypothetical=bool(row["hypothetical"]), family=bool(row["family"]), label=row["label"],
                   conjunct_ids=conjuncts if len(conjuncts) > 1 or (conjuncts and conjuncts[0] != concept_id) else ())


def _sequence(value: Iterable[Any] | None) -> Sequence[Any]:
    return list(value) if value is not None else []
