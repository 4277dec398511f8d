"""FAISS index construction, GPU placement and search-time parameters."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import faiss
import numpy as np

from .errors import LinkerError

log = logging.getLogger(__name__)

#: Index kinds by name. The compressed ones (``-sq8``: one byte per dimension; ``ivf-pq``: 4-bit product codes
#: of 4 dimensions each, scanned by FAISS's SIMD "fast scan", whose shortlist is re-ranked in memory by 8-bit
#: codes of the same sub-vectors, ``Refine``: 3/32 of flat's bytes) keep their shortlist re-scored from float16
#: vectors read from the index folder (:data:`RESCORED`); a refined index reads only the best of it
#: (:func:`linker.rescoring.search`).
ALIASES = {"flat": "Flat", "hnsw": "HNSW32,Flat", "ivf": "IVF{nlist},Flat", "ivf-sq8": "IVF{nlist},SQ8",
           "hnsw-sq8": "HNSW32,SQ8", "ivf-pq": "IVF{nlist},PQ{m}x4fs,Refine(PQ{m}x8)"}
#: FAISS's GPU indexes have no fast scan: where a GPU builds and searches, ``ivf-pq`` is 8-bit codes of 8
#: dimensions (the same 48 bytes a name at 384 dimensions) behind an OPQ rotation, which the GPU runs.
GPU_ALIASES = {"ivf-pq": "OPQ{m8},IVF{nlist},PQ{m8}"}
RESCORED = {"ivf-sq8", "hnsw-sq8", "ivf-pq"}
#: ``auto`` is an exact (flat) index up to this many vectors: HPO's 41k names, a scan of 64 MB a query. Above
#: it a single query's scan costs more than embedding the query (MEDIC's 78k names: 15.7 ms against 6.8 ms on 2
#: vCPUs), so ``auto`` takes a graph (:data:`AUTO_MEDIUM`: 1.4 ms, acc@1 of the 4,981 NCBI + BC5CDR dev mentions
#: 0.7797 against flat's 0.7807) up to :data:`AUTO_GRAPH_MAX` vectors (1.5 GB at 384 dimensions), then
#: :data:`AUTO_LARGE`. A graph whose calibration does not reach the recall target is replaced by a flat index at
#: build (:func:`linker.build.build_index`).
AUTO_FLAT_MAX = 50_000
AUTO_MEDIUM = "hnsw"
AUTO_GRAPH_MAX = 1_000_000
AUTO_LARGE = "ivf-pq"
#: An index that needs training is trained on a sample of names evenly spaced through the dictionary: this many,
#: or, for an IVF index of more lists than it allows, :data:`POINTS_PER_LIST` per list (FAISS's k-means wants
#: 39 points per centroid), up to :data:`MAX_TRAIN_SAMPLE`. An IVF index has ``4 sqrt(n)`` lists, as many as
#: that sample allows.
TRAIN_SAMPLE = 200_000
MAX_TRAIN_SAMPLE = 500_000
POINTS_PER_LIST = 39
#: Search-time parameters stored in meta.json and applied on load.
DEFAULT_SEARCH_PARAMS = {"HNSW": {"efSearch": 128}, "IVF": {"nprobe": 16}, "OPQ": {"nprobe": 32}}


def preset(kind: str, n_vectors: int, gpu: bool | None = None) -> str:
    """The preset name *kind* stands for: ``auto`` resolved by the number of vectors, else *kind* itself. Where
    FAISS has GPUs (or *gpu*), ``auto`` stays flat up to :data:`AUTO_GRAPH_MAX`: a GPU scans exactly, and FAISS
    has no HNSW there."""
    name = kind.lower()
    if name == "auto":
        on_gpu = gpu_count() > 0 if gpu is None else gpu
        if n_vectors <= (AUTO_GRAPH_MAX if on_gpu else AUTO_FLAT_MAX):
            return "flat"
        return AUTO_MEDIUM if n_vectors <= AUTO_GRAPH_MAX else AUTO_LARGE
    return name if name in ALIASES else kind


def factory_string(kind: str, n_vectors: int, dimension: int = 384, gpu: bool | None = None) -> str:
    """FAISS factory string of a preset (``flat``, ``hnsw``, ``ivf``, ``ivf-sq8``, ``hnsw-sq8``, ``ivf-pq``,
    ``auto``) or of a factory string given as is."""
    on_gpu = gpu_count() > 0 if gpu is None else gpu
    name = preset(kind, n_vectors, on_gpu)
    factory = (GPU_ALIASES if on_gpu else {}).get(name) or ALIASES.get(name, kind)
    if "{nlist}" in factory:
        factory = factory.replace("{nlist}", str(n_lists(n_vectors)))
    for key, width in (("{m}", 4), ("{m8}", 8)):  # sub-vectors of that many dimensions where the dimension allows
        if key in factory:
            factory = factory.replace(key, str(next(m for m in (dimension // width, dimension // 4, dimension // 2,
                                                                dimension) if m and dimension % m == 0)))
    return factory


def n_lists(n_vectors: int) -> int:
    """The inverted lists of an IVF preset over *n_vectors*: ``4 sqrt(n)``, at most one per
    :data:`POINTS_PER_LIST` names of the largest training sample."""
    return max(1, min(int(4 * math.sqrt(n_vectors)), min(n_vectors, MAX_TRAIN_SAMPLE) // POINTS_PER_LIST))


def train_sample_size(n_vectors: int) -> int:
    """How many names an index over *n_vectors* is trained on (:data:`TRAIN_SAMPLE`, more for many lists)."""
    return min(n_vectors, max(TRAIN_SAMPLE, POINTS_PER_LIST * n_lists(n_vectors)))


def check_kind(kind: str, dimension: int) -> None:
    """Refuse, before any work, an index kind that is neither a preset nor a factory string FAISS parses."""
    if kind.lower() == "auto" or kind.lower() in ALIASES:
        return
    try:
        faiss.index_factory(dimension, kind, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise LinkerError(f"--faiss {kind!r} is neither a preset ({', '.join(['auto', *ALIASES])}) nor a FAISS "
                          "factory string (e.g. 'IVF1024,SQ8'; see the FAISS wiki's index factory page)") from None


def search_params(factory: str) -> dict[str, int]:
    for prefix, params in DEFAULT_SEARCH_PARAMS.items():
        if factory.startswith(prefix):
            return dict(params)
    return {}


#: Read in chunks of this many bytes by :func:`preread`.
PREREAD_CHUNK = 16 << 20


def copies_codes(factory: str) -> bool:
    """Whether FAISS copies this index kind's codes out of a memory-mapped file when it reads it (4-bit fast-scan
    PQ lists, as in the ``ivf-pq`` preset) rather than leaving them mapped."""
    return re.search(r"PQ\d+x4fs", factory) is not None


#: Places in a file where :func:`resident` looks for cached pages.
RESIDENT_SAMPLES = 64


def resident(path: str) -> bool:
    """Whether *path* looks fully in the page cache: a one-byte read that must not wait for the disk
    (``RWF_NOWAIT``) succeeds at :data:`RESIDENT_SAMPLES` evenly spaced places. False where the system cannot tell."""
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None or not hasattr(os, "preadv"):
        return False
    size, byte = os.path.getsize(path), bytearray(1)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in range(RESIDENT_SAMPLES):
            os.preadv(fd, [byte], size * i // RESIDENT_SAMPLES, flag)
    except OSError:  # BlockingIOError: that page is on disk only; EOPNOTSUPP: the file system cannot tell
        return False
    finally:
        os.close(fd)
    return True


def preread(path: str) -> None:
    """Read *path* once from start to end, through the page cache, unless it is there already (:func:`resident`).
    FAISS copies a mapped file's fast-scan lists page by page; from a cold disk that ran at ~140 MB/s where a
    sequential read ran at ~440 MB/s (10M names: 11.1 s against 3.4 s for both steps)."""
    if resident(path):
        return
    chunk = bytearray(PREREAD_CHUNK)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(chunk):
            pass


def read(path: str, prefetch: bool = False) -> faiss.Index:
    """Read an index file, memory-mapped where its type allows (flat codes: the vectors stay on disk until
    searches touch them), else into memory; *prefetch* reads the file sequentially first (:func:`preread`), for
    kinds whose codes are copied (:func:`copies_codes`)."""
    if prefetch:
        preread(path)
    try:
        return faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except (RuntimeError, AttributeError):
        return faiss.read_index(path)


def gpu_count() -> int:
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def to_gpu(index: faiss.Index) -> faiss.Index:
    """Move *index* to all GPUs when the installed faiss has them and the index type runs there."""
    if gpu_count() == 0 or is_graph(index):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as err:  # pragma: no cover - depends on the GPU build
        log.warning("keeping the index on the CPU: %s", err)
        return index


def to_cpu(index: faiss.Index) -> faiss.Index:
    if gpu_count() and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:  # pragma: no cover
        return faiss.index_gpu_to_cpu(index)
    return index


def needs_training(factory: str, dimension: int) -> bool:
    """Whether an index of *factory* must be trained before vectors are added (IVF, PQ, SQ, OPQ)."""
    return not faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT).is_trained


def new_index(dimension: int, factory: str, training: Callable[[], np.ndarray] | None = None) -> faiss.Index:
    """An empty inner-product index (on the GPU when there is one), trained from *training* if it needs it."""
    index = to_gpu(faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT))
    if not index.is_trained:
        if training is None:
            raise ValueError(f"FAISS {factory} needs training vectors")
        index.train(training())
    return index


def build(vectors: np.ndarray, factory: str) -> faiss.Index:
    """An inner-product index over unit *vectors* (ids = row numbers), on the CPU."""
    index = new_index(vectors.shape[1], factory, training=lambda: vectors)
    add(index, vectors)
    return to_cpu(index)


def add(index: faiss.Index, vectors: np.ndarray) -> None:
    """``index.add``; a graph (HNSW) is grown on one thread, where each name is linked to the names added
    before it in a fixed order: with several threads concurrent insertions see each other in the order they
    happen to run, so two builds of one dictionary (a resumed one, a Spark one) could differ. On 2 vCPUs the
    78k MEDIC names take 17-19 s on one thread, 10 s on two."""
    with single_thread(is_graph(index)):
        index.add(vectors)


def is_graph(index: faiss.Index) -> bool:
    """Whether *index* is an HNSW graph (which FAISS runs on CPUs only, and grows thread-order dependently)."""
    return isinstance(index, faiss.IndexHNSW) or "HNSW" in type(index).__name__


def apply_params(index: faiss.Index, params: dict[str, Any]) -> None:
    if not params:
        return
    space = faiss.ParameterSpace()
    for key, value in params.items():
        space.set_index_parameter(index, key, value)


#: A single query is searched on one OpenMP thread, where waking the pool costs more than it saves.
SMALL_BATCH = 2
#: From this many queries on, an exhaustive search goes through BLAS (one matrix product) instead of FAISS's
#: query-by-query scan. FAISS 1.15 takes BLAS only from nq x d >= 128,000 (334 queries at 384 dimensions),
#: tuned for many threads; on 2 cores, over the flat MEDIC index (78k x 384, k = 80), the scan took 1,445 ms
#: for 242 queries and BLAS 115 ms, with BLAS ahead from 3 queries on one thread and on two
#: (``scripts/bench_blas.py``, docs/results/blas.json).
BLAS_BATCH = 3
#: FAISS before 1.15 compares the query count alone with its threshold (default 20), later ones nq x d
_PRODUCT_THRESHOLD = faiss.cvar.distance_compute_blas_threshold > 1000


def _blas_from(queries: int, dimension: int) -> None:
    faiss.cvar.distance_compute_blas_threshold = queries * dimension if _PRODUCT_THRESHOLD else queries


def search(index: faiss.Index, vectors: np.ndarray, n: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` (with FAISS search *params* when given), exhaustive scans through BLAS from
    :data:`BLAS_BATCH` queries on; one query runs on one thread (one query against the flat MEDIC index on 2
    cores: 12 ms on two threads, 5.5 ms on one). The thread count is the calling thread's own OpenMP setting,
    so concurrent searches do not disturb it; the BLAS threshold is FAISS's global one, set to the same value
    by every search."""
    _blas_from(BLAS_BATCH, index.d)
    with single_thread(len(vectors) < SMALL_BATCH):
        return index.search(vectors, n, params=params)


@contextlib.contextmanager
def single_thread(when: bool = True) -> Iterator[None]:
    """FAISS's OpenMP work on this thread on one thread while inside, *when* so (a single query's)."""
    if not when:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
