"""Compressed indexes kept honest: their shortlist re-scored from float16 vectors, their recall measured at build.

A compressed FAISS index (SQ8, product codes) ranks by approximate scores. Each search asks it for
:data:`SHORTLIST` times the names wanted and re-scores that shortlist by exact inner product with the
names' float16 vectors, memory-mapped from ``vectors.f16.npy`` in the index folder (half of flat's bytes,
on disk; only the shortlisted rows are read). At build time the index is calibrated against an exact flat
search on queries near a seeded sample of the names: the cheapest probe setting and shortlist that reach
:data:`TARGET_RECALL` are kept, and their recall, measured on a second sample, is recorded in meta.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VECTORS_FILE = "vectors.f16.npy"
#: The shortlist is this many times the names a search wants (unless calibration chose a longer one).
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


def search(index: Any, vectors: np.ndarray | None, queries: np.ndarray, n: int,
           shortlist: int = SHORTLIST) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the *n* nearest terms as every search runs it: from FAISS, and when *vectors* (the
    float16 rows of a compressed index) are given, a shortlist of ``n * shortlist`` re-scored exactly."""
    from linker import faiss_util

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors is None:
        return faiss_util.search(index, queries, n)
    scores, ids = faiss_util.search(index, queries, min(index.ntotal, n * shortlist))
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
    """The ids of each query's *k* nearest terms by exact inner product, over every term, block by block
    (each block's best *k* by partial selection, merged into the running best)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(term_rows), BLOCK):
        scores = queries @ gather(term_rows[start:start + BLOCK]).T
        if scores.shape[1] > k:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, top, 1)
            ids = top + start
        else:
            ids = np.arange(start, start + scores.shape[1])[None, :].repeat(len(queries), 0)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    return best_ids


#: What a compressed index is tuned to: recall@10 of an exact search, on queries it was not reported on.
TARGET_RECALL = 0.98
#: The values tried, cheapest first, for the parameter that trades speed for recall, and the shortlists.
SWEEP = {"nprobe": (16, 32, 64, 128, 256), "efSearch": (128, 256, 512)}
SHORTLISTS = (4, 8)


def _recall(found: np.ndarray, truth: np.ndarray, term_rows: np.ndarray) -> tuple[float, float]:
    # compared as distinct names: a name two concepts share is two terms with one vector, in either order
    found = np.where(found < 0, -1, term_rows[np.where(found < 0, 0, found)])
    at1 = float(np.mean(found[:, 0] == truth[:, 0]))
    atk = float(np.mean([len(set(f) & set(t)) / len(set(t)) for f, t in zip(found.tolist(), truth.tolist())]))
    return at1, atk


def calibrate(index: Any, vectors: np.ndarray | None, gather: Callable[[np.ndarray], np.ndarray],
              term_rows: np.ndarray, n_distinct: int, params: dict[str, int],
              k: int = 10) -> tuple[dict[str, int], int, dict[str, Any]]:
    """``(search_params, shortlist, recall)`` of a built compressed *index*: the cheapest probe setting
    (``nprobe`` / ``efSearch``, never below *params*) and shortlist whose recall@*k* against an exact search
    reaches :data:`TARGET_RECALL` on one seeded query set (else the most thorough tried), and the recall@1
    and recall@*k* of that setting measured on a second, disjoint-seeded set, as queries will run it."""
    from linker import faiss_util

    tune_queries, report_queries = (recall_queries(gather, n_distinct, seed) for seed in (1, 0))
    both = np.concatenate([tune_queries, report_queries])
    truth = term_rows[exact_top(both, gather, term_rows, k)]  # one pass over every vector for both sets
    tune_truth, report_truth = truth[:len(tune_queries)], truth[len(tune_queries):]
    key = next((name for name in params if name in SWEEP), None)
    try:
        limit = faiss_util.faiss.extract_index_ivf(index).nlist
    except RuntimeError:  # not an IVF index
        limit = 1 << 30
    values = [v for v in SWEEP[key] if params[key] <= v <= limit] or [params[key]] if key else [None]
    shortlists = SHORTLISTS if vectors is not None else (1,)
    chosen = dict(params)
    tried = []
    for value in values:
        for shortlist in shortlists:
            chosen = {**params, key: value} if key else dict(params)
            faiss_util.apply_params(index, chosen)
            _, found = search(index, vectors, tune_queries, k, shortlist)
            reached = _recall(found, tune_truth, term_rows)[1]
            tried.append({**({key: value} if key else {}), "shortlist": shortlist, f"recall@{k}": round(reached, 4)})
            if reached >= TARGET_RECALL:
                break
        else:
            continue
        break
    _, found = search(index, vectors, report_queries, k, shortlist)
    at1, atk = _recall(found, report_truth, term_rows)
    return chosen, shortlist, {
        "recall@1": round(at1, 4), f"recall@{k}": round(atk, 4), "queries": len(report_queries),
        "query": f"a name's vector plus noise of norm {RECALL_NOISE}, renormalised (cosine about 0.9)",
        "target": TARGET_RECALL, "tuned": tried}
