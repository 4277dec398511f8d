"""Small ranking evaluation for training: validation during training and the figures of ``scripts/bench_train.py``.

Dense only: each query's nearest names (inner product of unit vectors), aggregated per concept by the
best name; a query counts as right at k when one of its gold concepts is among the first k concepts.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from linker.encoders import Encoder
from linker.normalize import normalize

log = logging.getLogger(__name__)


@dataclass
class RankingTask:
    """An index of names (each with its concept) and queries with their gold concepts."""

    name: str
    index_texts: list[str]
    index_concepts: list[str]
    queries: list[str]
    gold: list[frozenset[str]]

    def __post_init__(self) -> None:
        if len(self.index_texts) != len(self.index_concepts) or len(self.queries) != len(self.gold):
            raise ValueError("index texts/concepts and queries/gold must have equal lengths")


def evaluate(encoder: Encoder, task: RankingTask, ks: Sequence[int] = (1, 10), batch_size: int = 128,
             exact_first: bool = False, progress: bool = False,
             name_vectors: np.ndarray | None = None, record: list[dict] | None = None) -> dict[str, float]:
    """``{"acc@1": …, "acc@10": …, "queries": n}`` of *task* embedded with *encoder*.

    With *exact_first*, concepts having a name equal to the query after normalisation rank first
    (as :meth:`linker.index.ConceptIndex.search` does); otherwise the ranking is the model's alone.
    *name_vectors* are the index texts already embedded (tasks sharing one index embed it once). With
    *record*, each query's ``{"query", "gold", "ranked"}`` (the first ``max(ks)`` concepts) is appended to it,
    for error analysis.
    """
    import faiss

    if not task.queries:
        return {**{f"acc@{k}": 0.0 for k in ks}, "queries": 0}
    names = name_vectors if name_vectors is not None else encoder.encode(task.index_texts, batch_size=batch_size,
                                                                          progress=progress)
    queries = encoder.encode(task.queries, batch_size=batch_size, progress=progress)
    index = faiss.IndexFlatIP(names.shape[1])
    index.add(np.ascontiguousarray(names, dtype=np.float32))
    depth = min(len(task.index_texts), max(ks) * 8)
    _, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
    exact: dict[str, list[str]] = {}
    if exact_first:
        for text, cid in zip(task.index_texts, task.index_concepts):
            exact.setdefault(normalize(text), []).append(cid)
    hits = {k: 0 for k in ks}
    for row, (query, gold) in enumerate(zip(task.queries, task.gold)):
        ranked = list(dict.fromkeys(exact.get(normalize(query), []))) if exact_first else []
        for term in ids[row]:
            if term < 0:
                continue
            cid = task.index_concepts[term]
            if cid not in ranked:
                ranked.append(cid)
            if len(ranked) >= max(ks):
                break
        for k in ks:
            if gold & set(ranked[:k]):
                hits[k] += 1
        if record is not None:
            record.append({"query": query, "gold": sorted(gold), "ranked": ranked[:max(ks)]})
    n = len(task.queries)
    return {**{f"acc@{k}": round(hits[k] / n, 4) for k in ks}, "queries": n}


def right_at_1(record: Sequence[dict]) -> list[bool]:
    """Per query of an :func:`evaluate` *record*: is a gold concept ranked first?"""
    return [bool(set(r["gold"]) & set(r["ranked"][:1])) for r in record]


def paired_gain(candidate: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """``(gain, z)`` of *candidate* over *reference*: per-query scores of the same queries (a query's weight
    when right, 0 when wrong). ``gain = Σ(c − r)``; ``z = gain / √Σ(c − r)²`` is the sign-test (McNemar)
    statistic: only the queries the two disagree on count, so z ≥ 1 means the gain exceeds one standard
    error of a zero-mean difference. ``z = 0`` when the two agree on every query."""
    if len(candidate) != len(reference):
        raise ValueError(f"paired scores need the same queries ({len(candidate)} vs {len(reference)})")
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    spread = float(np.sqrt(np.sum(diff ** 2)))
    gain = float(diff.sum())
    return gain, (gain / spread if spread else 0.0)


def synonym_task(concepts: dict, split: dict[str, str], part: str, *, scopes: Sequence[str] = ("EXACT",),
                 pool: int | None = None, seed: int = 0, name: str = "synonym") -> RankingTask:
    """Synonyms of the *part* (val/test) concepts as queries against preferred names.

    The index holds the preferred names of all concepts, or with *pool* only the held-out concepts'
    names plus a seeded sample of *pool* other concepts' names (a cheap validation during training).
    """
    held = [cid for cid, s in split.items() if s == part]
    queries, gold = [], []
    for cid in held:
        c = concepts[cid]
        for scope in scopes:
            for text in c.synonyms.get(scope, ()):
                queries.append(text)
                gold.append(frozenset([cid]))
    index_ids = list(concepts)
    if pool is not None:
        others = sorted(set(index_ids) - set(held))
        random.Random(seed).shuffle(others)
        index_ids = held + others[:pool]
    return RankingTask(name, [concepts[cid].name for cid in index_ids], index_ids, queries, gold)
