"""Compressed indexes kept honest: their shortlist re-scored from float16 vectors, their recall measured at build.

A compressed FAISS index (SQ8, product codes) ranks by approximate scores. Each search asks it for
:data:`SHORTLIST` times the names wanted and re-scores that shortlist by exact inner product with the
names' float16 vectors, memory-mapped from ``vectors.f16.npy`` in the index folder (half of flat's bytes,
on disk; only the shortlisted rows are read). At build time the index's recall against an exact flat
search is measured on queries near a seeded sample of the names and recorded in meta.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VECTORS_FILE = "vectors.f16.npy"
#: The shortlist is this many times the names a search wants.
SHORTLIST = 4
#: Recall queries: this many names, each moved off its own vector to cosine about 0.9 (a paraphrase, not itself).
RECALL_QUERIES = 500
RECALL_NOISE = 0.48
BLOCK = 65_536


def write_vectors(path: Path, gather: Callable[[np.ndarray], np.ndarray], term_rows: np.ndarray, dimension: int) -> None:
    """Every term's vector as float16, in FAISS order, written block by block (memory stays one block)."""
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(term_rows), dimension))
    for start in range(0, len(term_rows), BLOCK):
        out[start:start + BLOCK] = gather(term_rows[start:start + BLOCK]).astype(np.float16)
    out.flush()
    del out
    tmp.replace(path)


def rescore(scores: np.ndarray, ids: np.ndarray, queries: np.ndarray, vectors: np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best *n* of each row's shortlist *ids* by exact inner product with the float16 *vectors*."""
    safe = np.where(ids < 0, 0, ids)
    exact = np.einsum("qnd,qd->qn", vectors[safe.ravel()].reshape(*safe.shape, -1).astype(np.float32),
                      queries.astype(np.float32))
    exact[ids < 0] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(exact, order, 1).astype(np.float32), np.take_along_axis(ids, order, 1)


def search(index: Any, vectors: np.ndarray | None, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the *n* nearest terms as every search runs it: from FAISS, and when *vectors* (the
    float16 rows of a compressed index) are given, a shortlist of ``n * SHORTLIST`` re-scored exactly."""
    from linker import faiss_util

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors is None:
        return faiss_util.search(index, queries, n)
    scores, ids = faiss_util.search(index, queries, min(index.ntotal, n * SHORTLIST))
    return rescore(scores, ids, queries, vectors, n)


def recall_queries(gather: Callable[[np.ndarray], np.ndarray], n_distinct: int, seed: int = 0,
                   n_queries: int = RECALL_QUERIES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.choice(n_distinct, size=min(n_queries, n_distinct), replace=False)
    base = gather(np.sort(rows))
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = base + RECALL_NOISE * noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def exact_top(queries: np.ndarray, gather: Callable[[np.ndarray], np.ndarray], term_rows: np.ndarray,
              k: int) -> np.ndarray:
    """The ids of each query's *k* nearest terms by exact inner product, over every term, block by block."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(term_rows), BLOCK):
        block = gather(term_rows[start:start + BLOCK])
        scores = queries @ block.T
        ids = np.arange(start, start + len(block))[None, :].repeat(len(queries), 0)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    return best_ids


def measure_recall(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                   gather: Callable[[np.ndarray], np.ndarray], term_rows: np.ndarray, n_distinct: int,
                   k: int = 10) -> dict[str, Any]:
    """recall@1 and recall@*k* of *search* (as queries will run it, shortlist re-scored) against exact search."""
    queries = recall_queries(gather, n_distinct)
    # compared as distinct names: a name two concepts share is two terms with one vector, in either order
    truth = term_rows[exact_top(queries, gather, term_rows, k)]
    _, found = search(queries, k)
    found = np.where(found < 0, -1, term_rows[np.where(found < 0, 0, found)])
    at1 = float(np.mean(found[:, 0] == truth[:, 0]))
    atk = float(np.mean([len(set(f) & set(t)) / len(set(t)) for f, t in zip(found.tolist(), truth.tolist())]))
    return {"recall@1": round(at1, 4), f"recall@{k}": round(atk, 4), "queries": len(queries),
            "query": f"a name's vector plus noise of norm {RECALL_NOISE}, renormalised (cosine about 0.9)"}
