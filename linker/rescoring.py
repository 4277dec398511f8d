"""Compressed indexes kept honest: their shortlist re-scored from float16 vectors, their recall measured at build.

A compressed FAISS index (SQ8, product codes) ranks by approximate scores. Each search asks it for a
shortlist (:func:`shortlist_width`) and re-scores that shortlist by exact inner product with the
names' float16 vectors, read from ``vectors.f16.npy`` in the index folder (half of flat's bytes, on disk) by
:class:`RowFile`: only the shortlisted rows, with ``pread``, so that they pass through the kernel's page cache
and never become the process's own memory. At build time the index is calibrated against an exact flat
search (:func:`calibrate`) on queries given with the build, or else on a seeded sample of its own names,
each searched for its neighbours among the other names (itself left out of both answers). The cheapest
probe setting and shortlist whose recall on one half reaches :data:`TARGET_RECALL` by more than its
standard error (:data:`MARGIN_SE`) are kept, and their recall, measured on the other half, is recorded in
meta.json.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VECTORS_FILE = "vectors.f16.npy"
#: The shortlist is this many times the names a search wants (unless calibration chose a longer one).
SHORTLIST = 4
#: Recall queries: this many names, each searched for its nearest other names.
RECALL_QUERIES = 500
BLOCK = 65_536


def map_array(path: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only for random access: the kernel is told not to read ahead, so a
    search maps the pages it touches, not the megabytes around them (``ValueError`` / ``OSError`` when the
    file is damaged)."""
    import mmap

    array = np.load(path, mmap_mode="r")
    handle = getattr(array, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_RANDOM"):
        handle.madvise(mmap.MADV_RANDOM)
    return array


class RowFile:
    """The rows of a 2-D ``.npy`` file, read on demand with ``pread``: ``rows[ids]`` is the array of those rows.

    A search re-scores a few hundred random rows of a file that can hold gigabytes. Memory-mapped, every row
    it touched would stay in the process's resident memory, which at ten million names grew with each query
    towards the whole file; read this way, the rows pass through the page cache, which the kernel shares and
    evicts, and the process holds only the rows of the search at hand (the design DiskANN uses for its
    full-precision vectors): one call per distinct row, 1.4 µs each. ``ValueError`` names a file whose header
    or size is not that of a C-ordered 2-D array; ``OSError`` one that cannot be read.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 2 or fortran_order or dtype.hasobject:
            raise ValueError(f"{path}: not a C-ordered 2-D array of numbers (shape {shape})")
        self.path, self.shape, self.dtype = path, (int(shape[0]), int(shape[1])), dtype
        self.row_bytes = self.shape[1] * dtype.itemsize
        size = path.stat().st_size
        if size != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{path}: {size} bytes, its header says {self.offset + self.shape[0] * self.row_bytes}")
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= self.shape[0]):
            raise IndexError(f"{self.path}: rows {ids.min()}..{ids.max()} asked of {self.shape[0]}")
        unique, inverse = np.unique(ids, return_inverse=True)
        data = b"".join([os.pread(self._fd, self.row_bytes, offset)
                         for offset in (self.offset + unique * self.row_bytes).tolist()])
        if len(data) != len(unique) * self.row_bytes:
            raise OSError(f"{self.path}: short read ({len(data)} of {len(unique) * self.row_bytes} bytes); "
                          "rebuild the index")
        return np.frombuffer(data, dtype=self.dtype).reshape(len(unique), self.shape[1])[inverse]


def write_vectors(path: Path, gather: Callable[[np.ndarray], np.ndarray], term_rows: np.ndarray, dimension: int) -> None:
    """Every term's vector as float16, in FAISS order, written block by block (memory stays one block)."""
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(term_rows), dimension))
    for start in range(0, len(term_rows), BLOCK):
        out[start:start + BLOCK] = gather(term_rows[start:start + BLOCK]).astype(np.float16)
    out.flush()
    del out
    tmp.replace(path)


#: Queries re-scored together: the gathered rows of one block stay a few MB however large the batch.
RESCORE_BLOCK = 64


def as_float32(rows: np.ndarray) -> np.ndarray:
    """*rows* as float32; float16 ones through FAISS's SIMD decoder (numpy's cast took 0.4 ms for 320 rows of
    384, FAISS's 0.17 ms)."""
    if rows.dtype != np.float16 or not len(rows):
        return rows.astype(np.float32)
    return _fp16_decoder(rows.shape[1]).sa_decode(np.ascontiguousarray(rows).view(np.uint8))


@functools.lru_cache(maxsize=8)
def _fp16_decoder(dimension: int) -> Any:
    """FAISS's float16 scalar quantizer of *dimension* (no data; its decoder only), made once per dimension
    rather than once per block re-scored."""
    from linker import faiss_util

    return faiss_util.faiss.IndexScalarQuantizer(dimension, faiss_util.faiss.ScalarQuantizer.QT_fp16)


def rescore(scores: np.ndarray, ids: np.ndarray, queries: np.ndarray, vectors: RowFile | np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best *n* of each row's shortlist *ids* by exact inner product with the float16 *vectors*."""
    from linker import faiss_util

    best_scores = np.empty((len(ids), min(n, ids.shape[1])), dtype=np.float32)
    best_ids = np.empty(best_scores.shape, dtype=ids.dtype)
    for start in range(0, len(ids), RESCORE_BLOCK):
        block = ids[start:start + RESCORE_BLOCK]
        safe = np.where(block < 0, 0, block)
        with faiss_util.single_thread(len(block) < faiss_util.SMALL_BATCH):  # as FAISS searched a single query
            rows = as_float32(vectors[safe.ravel()]).reshape(*safe.shape, -1)
        exact = np.einsum("qnd,qd->qn", rows, queries[start:start + RESCORE_BLOCK].astype(np.float32))
        exact[block < 0] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :n]
        best_scores[start:start + len(block)] = np.take_along_axis(exact, order, 1)
        best_ids[start:start + len(block)] = np.take_along_axis(block, order, 1)
    return best_scores, best_ids


def search(index: Any, vectors: RowFile | np.ndarray | None, queries: np.ndarray, n: int,
           shortlist: int = SHORTLIST) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the *n* nearest terms as every search runs it: from FAISS, and when *vectors* (the
    float16 rows of a compressed index) are given, a shortlist (:func:`shortlist_width`) re-scored exactly."""
    from linker import faiss_util

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors is None:
        return ties_by_row(*faiss_util.search(index, queries, n))
    scores, ids = _shortlist(index, queries, shortlist_width(index.ntotal, n, shortlist), n)
    return ties_by_row(*rescore(scores, ids, queries, vectors, n))


#: Scores this close are equal: the same vector scored on another thread may differ in its last bits.
TIE = 1e-6


def ties_by_row(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """*scores* and *ids* ordered best first with equal scores (within :data:`TIE`) in row order: FAISS leaves
    names of equal score (one name held by several concepts: one vector each) in the order its threads met
    them, so ``-p 1`` and ``-p 2`` could rank them differently. The linker then breaks such ties by meaning
    (:mod:`linker.linking.context`)."""
    if scores.size == 0:
        return scores, ids
    order = np.lexsort((ids, -np.round(scores.astype(np.float64) / TIE)), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)


#: An index with codes to refine by (FAISS ``Refine``, the ``ivf-pq`` preset) re-ranks its shortlist with them
#: and hands on only this many times the ten best to be read from disk and re-scored exactly. At ten million
#: names, nprobe 256 and 2,560 shortlisted, keeping 32x gave recall@10 0.9855 and 16x 0.962, where 1,280
#: shortlisted and all re-scored gave 0.9831 with four times the rows read.
REFINED = 32


def _shortlist(index: Any, queries: np.ndarray, width: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's *width* best of each query; of an index with refinement codes, the best :data:`REFINED` times
    ten of them by those codes (never fewer than :data:`SHORTLIST` times *n*)."""
    from linker import faiss_util

    if not isinstance(index, faiss_util.faiss.IndexRefine):
        return faiss_util.search(index, queries, width)
    keep = min(width, max(n * SHORTLIST, CALIBRATED_K * REFINED))
    params = faiss_util.faiss.IndexRefineSearchParameters(k_factor=width / keep)  # per call: threads share the index
    return faiss_util.search(index, queries, keep, params)


def shortlist_width(n_total: int, n: int, shortlist: int) -> int:
    """How many names FAISS is asked for when *n* are wanted: *shortlist* times the :data:`CALIBRATED_K` names
    that calibration measured the shortlist for (its recall@10 holds for the best ten, whatever *n*), and
    never fewer than :data:`SHORTLIST` times *n*. A search for more names than ten does not multiply the long
    shortlists that product codes need: at ten million names, 32 × 32 rows re-scored per query became 320."""
    return min(n_total, max(n * SHORTLIST, CALIBRATED_K * shortlist))


def held_out(n_distinct: int, seed: int, n_queries: int = RECALL_QUERIES) -> np.ndarray:
    """A seeded sample of distinct-name rows to search from."""
    return np.sort(np.random.default_rng(seed).choice(n_distinct, size=min(n_queries, n_distinct), replace=False))


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
#: The tuning queries' recall must exceed the target by this many standard errors of its mean: 250 queries
#: measure recall@10 to about ±0.005. With one standard error, settings tuned to 0.98 fell to 0.978-0.979 on
#: the 1,000 mention queries of the one-million-name benchmark (three builds); with two they held.
MARGIN_SE = 2.0
CALIBRATED_K = 10
#: The values tried, cheapest first, for the parameter that trades speed for recall, and the shortlists.
SWEEP = {"nprobe": (16, 32, 64, 128, 256, 512, 1024, 2048), "efSearch": (128, 256, 512, 1024)}
#: Shortlists to 128x: 4-bit codes tell near-tied names apart less well than they find them (at 10M synthetic
#: names, 32x of the ten best reached recall@10 0.92 whatever nprobe, from 256 on).
SHORTLISTS = (4, 8, 16, 32, 64, 128)
#: An index with refinement codes re-ranks its shortlist in memory and reads :data:`REFINED` times ten rows
#: whatever its length, so a longer shortlist costs it little: it tries 256x too.
REFINED_SHORTLISTS = (*SHORTLISTS, 256)
#: When no setting reaches the target, the cheapest within this much of the best recall reached is kept.
NEAR_BEST = 0.002


def _recall(found: np.ndarray, truth: np.ndarray, rows: np.ndarray | None, term_rows: np.ndarray,
            k: int) -> tuple[float, float, float]:
    """recall@1 and recall@*k* of FAISS ids *found* against *truth*, and the standard error of that recall@*k*
    (of the mean over queries), compared as distinct names (a name two concepts share is two terms with one
    vector), each query's own name *rows* (when queries are names) left out of both."""
    at1, atk = [], []
    owns = rows.tolist() if rows is not None else [-1] * len(found)
    for own, got, want in zip(owns, found.tolist(), truth.tolist()):
        got = list(dict.fromkeys(term_rows[i] for i in got if i >= 0 and term_rows[i] != own))[:k]
        want = list(dict.fromkeys(term_rows[i] for i in want if term_rows[i] != own))[:k]
        at1.append(bool(got) and bool(want) and got[0] == want[0])
        atk.append(len(set(got) & set(want)) / max(1, len(want)))
    error = float(np.std(atk, ddof=1) / np.sqrt(len(atk))) if len(atk) > 1 else 0.0
    return float(np.mean(at1)), float(np.mean(atk)), error


def calibrate(index: Any, vectors: RowFile | np.ndarray | None, gather: Callable[[np.ndarray], np.ndarray],
              term_rows: np.ndarray, n_distinct: int, params: dict[str, int], queries: np.ndarray | None = None,
              k: int = CALIBRATED_K) -> tuple[dict[str, int], int, dict[str, Any]]:
    """``(search_params, shortlist, recall)`` of a built compressed *index*: the cheapest probe setting
    (``nprobe`` / ``efSearch``, never below *params*) and shortlist whose recall@*k* against an exact search,
    less :data:`MARGIN_SE` standard errors, reaches :data:`TARGET_RECALL` on one set of queries (else the
    cheapest within :data:`NEAR_BEST` of the best recall reached), and the recall@1 and recall@*k* of that
    setting measured on a second set, as queries will run it.

    *queries* (vectors of real queries, e.g. mentions embedded by the index's encoder) are split in two,
    alternately; without them, two seeded samples of the index's own names are searched for their nearest
    other names. Real queries are the better yardstick: mentions sit farther from every name than names sit
    from each other, and an index tuned on names alone reaches less recall on them."""
    from linker import faiss_util

    if queries is not None and len(queries) >= 2:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        tune_queries, report_queries = queries[0::2], queries[1::2]
        tune_rows = report_rows = None
        extra, note = 0, f"{len(queries)} given query vectors, alternately tuned on and reported on"
    else:
        tune_rows, report_rows = held_out(n_distinct, 1), held_out(n_distinct, 0)
        tune_queries, report_queries = gather(tune_rows), gather(report_rows)
        extra, note = 1, "a name's vector; its nearest other names (itself left out), against an exact search"
    # one exact pass over every vector for both sets (k + 1 terms where each query's own name is left out)
    truth = exact_top(np.concatenate([tune_queries, report_queries]), gather, term_rows, k + extra)
    tune_truth, report_truth = truth[:len(tune_queries)], truth[len(tune_queries):]
    key = next((name for name in params if name in SWEEP), None)
    try:
        limit = faiss_util.faiss.extract_index_ivf(index).nlist
    except RuntimeError:  # not an IVF index
        limit = 1 << 30
    values = ([v for v in SWEEP[key] if params[key] <= v <= limit] or [params[key]]) if key else [None]
    refined = isinstance(index, faiss_util.faiss.IndexRefine)
    shortlists = (REFINED_SHORTLISTS if refined else SHORTLISTS) if vectors is not None else (1,)
    tried: list[dict[str, Any]] = []
    cleared = False  # the last setting tried cleared the target by the margin
    for value in values:
        setting = {**params, key: value} if key else dict(params)
        faiss_util.apply_params(index, setting)
        # one FAISS search per probe value; each shortlist is a prefix of the longest (FAISS returns best first),
        # except where refinement codes re-rank each shortlist: one search per shortlist
        if not refined:
            widest = shortlist_width(index.ntotal, k + extra, shortlists[-1])
            scores, ids = faiss_util.search(index, tune_queries, widest)
        for shortlist in shortlists:
            width = shortlist_width(index.ntotal, k + extra, shortlist)
            listed = _shortlist(index, tune_queries, width, k + extra) if refined else (
                scores[:, :width], ids[:, :width])
            found = rescore(*listed, tune_queries, vectors, k + extra)[1] if (
                vectors is not None) else listed[1][:, :k + extra]
            _, reached, error = _recall(found, tune_truth, tune_rows, term_rows, k)
            tried.append({**({key: value} if key else {}), "shortlist": shortlist, f"recall@{k}": round(reached, 4),
                          "se": round(error, 4)})
            cleared = reached - MARGIN_SE * error >= TARGET_RECALL
            if cleared:
                break
        if cleared:
            break
    best = max(t[f"recall@{k}"] for t in tried)
    pick = tried[-1] if cleared else next(t for t in tried if t[f"recall@{k}"] >= best - NEAR_BEST)
    chosen = {**params, key: pick[key]} if key else dict(params)
    shortlist = pick["shortlist"]
    faiss_util.apply_params(index, chosen)
    _, found = search(index, vectors, report_queries, k + extra, shortlist)
    at1, atk, error = _recall(found, report_truth, report_rows, term_rows, k)
    return chosen, shortlist, {"recall@1": round(at1, 4), f"recall@{k}": round(atk, 4), "se": round(error, 4),
                               "queries": len(report_queries), "query": note, "target": TARGET_RECALL,
                               "margin_se": MARGIN_SE, "reached": cleared, "tuned": tried}


def read_queries(path: Path) -> list[str]:
    """Calibration queries from *path*: one text per line, or JSON lines with a ``text`` field (a mentions
    file); distinct, in file order."""
    from linker.errors import LinkerError
    from linker.sources._io import iter_lines, json_object

    texts: dict[str, None] = {}
    for lineno, line in iter_lines(path):  # a byte-order mark, a bad byte or a huge line is handled there
        line = line.strip()
        if not line:
            continue
        if path.suffix == ".jsonl":
            row = json_object(path, lineno, line, 'a JSON object with a "text" field')
            if "text" not in row:
                raise LinkerError(f'{path}:{lineno}: expected a JSON object with a "text" field')
            line = str(row["text"])
        texts[line] = None
    if len(texts) < 2:
        raise LinkerError(f"{path}: at least two distinct queries are needed to calibrate an index")
    return list(texts)
