"""The offline job: ontology → term dictionary → embeddings → FAISS index, in one self-describing folder.

Resumable: the dictionary and every chunk of embeddings are written atomically under ``OUT/.build``;
the same command run again after a kill picks up at the first missing chunk and produces the same
index as an uninterrupted build. ``meta.json`` is written last, so its presence marks a finished index.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from linker import __version__, faiss_util, integrity, rescoring
from linker.encoders import DEFAULT_BUILD_BACKEND, Encoder, load_encoder
from linker.errors import LinkerError
from linker.locking import exclusive
from linker.meta import (
    CONCEPT_IDS_FILE,
    FAISS_FILE,
    FORMAT_VERSION,
    META_FILE,
    TERM_CONCEPTS_FILE,
    TERMS_FILE,
    write_json_atomic,
)
from linker.normalize import NORMALIZER
from linker.progress import ticking
from linker.sources import Source
from linker.termdb import TermDBWriter
from linker.types import SCOPES, Term

log = logging.getLogger(__name__)

STATE_DIR = ".build"
CHUNK_SIZE = 2048
ADD_BLOCK = 65_536

#: Embeds the distinct texts, chunk by chunk, into ``folder/NNNNNNNNN.npy`` files (the start of each chunk,
#: 9 digits) that are kept across runs, and returns every chunk's file in order:
#: ``(encoder, chunks, total, folder, chunk_size, progress, on_chunk) -> paths``. The default embeds here;
#: :class:`linker.spark.embed.SparkChunkEmbedder` embeds on Spark executors.
ChunkEmbedder = Callable[[Encoder, Iterator[list[str]], int, Path, int, bool, Callable[[int], None] | None],
                         list[Path]]


def _filter_terms(records: Any, scopes: Collection[str] | None, preferred_only: bool) -> Any:
    for record in records:
        if isinstance(record, Term) and record.scope != "LABEL":
            if preferred_only or (scopes is not None and record.scope not in scopes):
                continue
        yield record


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"linker": __version__, "faiss": faiss.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}


def build_index(
    source: Source,
    out_dir: str | Path,
    *,
    model: str | None = None,
    encoder: Encoder | None = None,
    faiss_kind: str = "auto",
    scopes: Collection[str] | None = None,
    preferred_only: bool = False,
    chunk_size: int = CHUNK_SIZE,
    batch_size: int = 64,
    progress: bool = True,
    force: bool = False,
    on_chunk: Callable[[int], None] | None = None,
    embedder: ChunkEmbedder | None = None,
    engine: str = "local",
    calibration: Sequence[str] | np.ndarray | None = None,
) -> Path:
    """Build (or finish building) the index folder *out_dir* and return it.

    *scopes* keeps only synonyms of those scopes (labels are always kept); *preferred_only* keeps
    only each concept's name. *on_chunk* is called after each saved chunk (tests use it to interrupt).
    *embedder* embeds the names elsewhere (Spark), *engine* names it in meta.json; the index is the same.
    *calibration* (query texts, or their vectors) tunes a compressed index; else the index's own names do.
    """
    out = Path(out_dir)
    if scopes is not None:
        unknown = set(scopes) - set(SCOPES)
        if unknown:
            raise LinkerError(f"unknown synonym scope(s) {', '.join(sorted(unknown))}; use some of {', '.join(SCOPES)}")
    if out.exists() and not out.is_dir():
        raise LinkerError(f"{out} is a file, not an index folder; give a folder path (it is created if missing)")
    encoder = encoder or load_encoder(model, backend=DEFAULT_BUILD_BACKEND, batch_size=batch_size)
    faiss_util.check_kind(faiss_kind, encoder.dimension)
    ontology = source.describe()
    key = {
        "ontology": ontology,
        "encoder": encoder.describe(),
        "normalizer": NORMALIZER,
        "faiss_request": faiss_kind,
        "filters": {"scopes": sorted(scopes) if scopes is not None else None, "preferred_only": preferred_only},
        "chunk_size": chunk_size,
    }
    with exclusive(out, f"the index folder {out}"):  # two builds into one folder would mix their chunks
        state_dir = out / STATE_DIR
        meta_path = out / META_FILE
        if meta_path.exists() and not force:
            meta = json.loads(meta_path.read_text())
            if meta.get("build_key") == key and meta.get("format_version") == FORMAT_VERSION:
                log.info("%s is already built from the same source and model; nothing to do", out)
                return out
        state_path = state_dir / "state.json"
        if state_dir.exists() and (force or not state_path.exists() or json.loads(state_path.read_text()).get("key") != key):
            log.info("discarding an unfinished build in %s made with other settings", state_dir)
            shutil.rmtree(state_dir)
        meta_path.unlink(missing_ok=True)
        (state_dir / "vectors").mkdir(parents=True, exist_ok=True)
        state = json.loads(state_path.read_text()) if state_path.exists() else {"key": key}
        started = time.perf_counter()

        db_path = state_dir / TERMS_FILE
        if state.get("counts") and not db_path.exists() and (out / TERMS_FILE).exists():
            os.replace(out / TERMS_FILE, db_path)  # killed after moving it into place, before meta.json: undo
        if not state.get("counts"):
            log.info("reading %s (%s)", source.path, source.format)
            writer = TermDBWriter(db_path.with_name(TERMS_FILE + ".tmp"))
            records: Any = _filter_terms(source.records(), scopes, preferred_only)
            with tqdm(records, unit="records", desc="reading", disable=not progress, mininterval=1) as counted:
                writer.add(counted)
            with ticking("indexing the term dictionary", progress):
                counts = writer.finish()
            if counts["terms"] == 0:
                raise LinkerError(f"{source.path}: no names read; check the file and the filters (format {source.format})")
            os.replace(writer.path, db_path)
            state["counts"] = counts
            write_json_atomic(state_path, state)
            log.info("term dictionary: %(concepts)d concepts, %(terms)d names, %(alt_ids)d alternative ids", counts)
        first_ids, term_rows = _text_layout(db_path)
        paths = (embedder or embed_chunks)(encoder, _distinct_texts(db_path, first_ids, chunk_size), len(first_ids),
                                           state_dir / "vectors", chunk_size, progress, on_chunk)
        _write_concept_arrays(db_path, state_dir)
        preset = faiss_util.preset(faiss_kind, len(term_rows))
        factory = faiss_util.factory_string(faiss_kind, len(term_rows), encoder.dimension)
        log.info("indexing %d vectors with FAISS %s", len(term_rows), factory)
        gather = _gatherer(paths, chunk_size, encoder.dimension)
        index = _index_from_chunks(gather, len(first_ids), term_rows, factory, progress)
        faiss_meta = _faiss_meta(preset, factory)
        arrays = [TERM_CONCEPTS_FILE, CONCEPT_IDS_FILE]
        if preset in faiss_util.RESCORED:
            with ticking("writing float16 vectors for re-scoring", progress):
                rescoring.write_vectors(state_dir / rescoring.VECTORS_FILE, gather, term_rows, encoder.dimension)
            arrays.append(rescoring.VECTORS_FILE)
        if preset != "flat":
            log.info("calibrating the index against an exact search")
            vectors = rescoring.RowFile(state_dir / rescoring.VECTORS_FILE) if preset in faiss_util.RESCORED else None
            queries = calibration if calibration is None or isinstance(calibration, np.ndarray) else (
                encoder.encode(list(calibration)))
            with ticking("calibrating against an exact search", progress):
                params, shortlist, faiss_meta["recall"] = rescoring.calibrate(
                    index, vectors, gather, term_rows, len(first_ids), faiss_meta["search_params"], queries)
            faiss_meta["search_params"] = params
            if vectors is not None:
                faiss_meta["rescore"] = shortlist
            log.info("search parameters %s, shortlist %s: recall against flat %s", params, shortlist,
                     {key: value for key, value in faiss_meta["recall"].items() if key.startswith("recall")})
            if faiss_kind.lower() == "auto" and preset == faiss_util.AUTO_MEDIUM and not faiss_meta["recall"]["reached"]:
                # the graph falls short on these names (synthetic 1M: recall@10 0.938 at efSearch 1024): exact search
                log.warning("the %s index did not reach recall@10 %s of an exact search on the tuning queries; "
                            "auto builds an exact (flat) index instead", preset, rescoring.TARGET_RECALL)
                graph = {"preset": preset, "factory": factory, **faiss_meta["recall"]}
                flat = faiss_util.ALIASES["flat"]
                index = _index_from_chunks(gather, len(first_ids), term_rows, flat, progress)
                faiss_meta = {**_faiss_meta("flat", flat), "auto_fallback": graph}
        faiss.write_index(index, str(state_dir / (FAISS_FILE + ".tmp")))
        for name in arrays:
            os.replace(state_dir / name, out / name)
        os.replace(state_dir / (FAISS_FILE + ".tmp"), out / FAISS_FILE)
        os.replace(db_path, out / TERMS_FILE)
        seconds = time.perf_counter() - started
        meta = {
            "format_version": FORMAT_VERSION,
            "ontology": ontology,
            "encoder": encoder.describe(),
            "normalizer": NORMALIZER,
            "faiss": faiss_meta,
            "filters": key["filters"],
            "counts": {**state["counts"], "distinct_texts": len(first_ids), "vectors": int(index.ntotal)},
            "versions": _versions(),
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds_last_run": round(seconds, 1),
            "build_engine": engine,
            "build_key": key,
        }
        ship = getattr(encoder, "ship", None)  # an encoder whose files travel with the index (an ONNX export)
        if callable(ship):
            meta["encoder"].update(ship(out))
        meta["files"] = integrity.fingerprint_files(out, integrity.shipped_files(out))  # checked at load, verify
        write_json_atomic(meta_path, meta)
        shutil.rmtree(state_dir)
        log.info("built %s in %.1f s", out, seconds)
        return out


def _faiss_meta(preset: str, factory: str) -> dict[str, Any]:
    """meta.json's ``faiss`` entry of a new index, before any calibration."""
    return {"preset": preset, "factory": factory, "metric": "inner_product",
            "search_params": faiss_util.search_params(factory)}


def _write_concept_arrays(db_path: Path, folder: Path) -> None:
    """``concept_ids.npy`` (each concept's id, fixed-width UTF-8, in the dictionary's order) and
    ``term_concepts.npy`` (each term's concept ordinal, in FAISS order), streamed from the dictionary: what a
    search needs per term, memory-mapped at load instead of read into Python objects."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        n_concepts, width = conn.execute("SELECT count(*), max(length(CAST(concept_id AS BLOB))) FROM concepts").fetchone()
        ids = np.fromiter((row[0].encode("utf-8") for row in conn.execute("SELECT concept_id FROM concepts ORDER BY rowid")),
                          dtype=f"S{max(1, width or 1)}", count=n_concepts)
        n_terms = conn.execute("SELECT count(*) FROM terms").fetchone()[0]
        ordinals = np.fromiter((row[0] if row[0] is not None else -1 for row in conn.execute(
            "WITH o AS (SELECT concept_id, row_number() OVER (ORDER BY rowid) - 1 AS ord FROM concepts) "
            "SELECT o.ord FROM terms t LEFT JOIN o ON o.concept_id = t.concept_id ORDER BY t.id")),
            dtype=np.int32, count=n_terms)
    finally:
        conn.close()
    if n_terms and ordinals.min() < 0:
        raise LinkerError(f"{db_path}: a term's concept is missing from the concepts table; rebuild with --force")
    for name, array in ((CONCEPT_IDS_FILE, ids), (TERM_CONCEPTS_FILE, ordinals)):
        tmp = folder / f"{name}.tmp.npy"
        np.save(tmp, array)
        os.replace(tmp, folder / name)


def _text_layout(db_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(first_ids, term_rows)``: the id of the first term of each distinct text, in id order, and for
    every term the row of its text among them. Each distinct text is embedded once, in this order."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        firsts = np.fromiter(
            (row[0] for row in conn.execute("SELECT min(id) OVER (PARTITION BY text) FROM terms ORDER BY id")),
            dtype=np.int64)
    finally:
        conn.close()
    first_ids, term_rows = np.unique(firsts, return_inverse=True)
    return first_ids, term_rows.astype(np.int64)


def _distinct_texts(db_path: Path, first_ids: np.ndarray, chunk_size: int) -> Iterator[list[str]]:
    """The distinct texts in chunks, streamed from the dictionary."""
    is_first = np.zeros(int(first_ids[-1]) + 1 if len(first_ids) else 0, dtype=bool)
    is_first[first_ids] = True
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        chunk: list[str] = []
        for term_id, text in conn.execute("SELECT id, text FROM terms WHERE id <= ? ORDER BY id", (len(is_first),)):
            if is_first[term_id]:
                chunk.append(text)
                if len(chunk) == chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
    finally:
        conn.close()


def chunk_path(folder: Path, start: int) -> Path:
    """The vectors of the chunk of distinct texts that begins at *start*."""
    return folder / f"{start:09d}.npy"


def save_chunk(path: Path, vectors: np.ndarray) -> None:
    """Write one chunk's vectors atomically: a killed build leaves the chunk whole or absent."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    os.replace(tmp, path)


def embed_chunks(
    encoder: Encoder,
    chunks: Iterator[list[str]],
    total: int,
    folder: Path,
    chunk_size: int,
    progress: bool,
    on_chunk: Callable[[int], None] | None,
) -> list[Path]:
    """Embed each chunk of texts into its own ``.npy`` file (kept across runs); return the files in order."""
    starts = range(0, total, chunk_size)
    done = {start for start in starts if chunk_path(folder, start).exists()}
    finished = sum(min(chunk_size, total - start) for start in done)
    if done:
        log.info("resuming: %d of %d names already embedded", finished, total)
    bar = tqdm(total=total, initial=finished, unit="names", desc="embedding", disable=not progress, smoothing=0.1)
    paths = []
    for start, texts in zip(starts, chunks):
        path = chunk_path(folder, start)
        if start not in done:
            save_chunk(path, encoder.encode(texts))
            bar.update(len(texts))
            if on_chunk is not None:
                on_chunk(start)
        paths.append(path)
    bar.close()
    return paths


def _gatherer(paths: list[Path], chunk_size: int, dimension: int) -> Callable[[np.ndarray], np.ndarray]:
    """Vectors of distinct-text rows, read from the chunk files memory-mapped."""
    chunks = [np.load(path, mmap_mode="r") for path in paths]

    def gather(rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), dimension), dtype=np.float32)
        which, offset = np.divmod(rows, chunk_size)
        for chunk in np.unique(which):
            mask = which == chunk
            out[mask] = chunks[chunk][offset[mask]]
        return out

    return gather


def _index_from_chunks(gather: Callable[[np.ndarray], np.ndarray], n_distinct: int, term_rows: np.ndarray,
                       factory: str, progress: bool = False) -> faiss.Index:
    """Add every term's vector to a new index, block by block: memory holds one block besides the index.
    An index that needs training is trained on an evenly spaced sample of names (``train_sample_size``)."""
    size = min(n_distinct, faiss_util.train_sample_size(len(term_rows)))
    sample = np.unique(np.linspace(0, n_distinct - 1, size).astype(np.int64))
    dimension = gather(sample[:1]).shape[1]
    with ticking(f"training FAISS {factory} on {len(sample):,} names", progress and faiss_util.needs_training(factory, dimension)):
        index = faiss_util.new_index(dimension, factory, training=lambda: gather(sample))
    with tqdm(total=len(term_rows), unit="vectors", desc="indexing", disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(term_rows), ADD_BLOCK):
            block = gather(term_rows[start:start + ADD_BLOCK])
            faiss_util.add(index, block)
            bar.update(len(block))
    return faiss_util.to_cpu(index)
