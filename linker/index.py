"""``ConceptIndex``: a built index folder opened for search — FAISS vectors, term dictionary and meta."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linker import integrity, rescoring
from linker.embedding_cache import EmbeddingCache
from linker.encoders import Encoder, load_encoder
from linker.errors import ConceptNotFoundError, IndexMismatchError, LinkerError
from linker.meta import (
    CONCEPT_IDS_FILE,
    FAISS_FILE,
    META_FILE,
    TERM_CONCEPTS_FILE,
    TERMS_FILE,
    read_meta,
)
from linker.normalize import NORMALIZER, normalize
from linker.termdb import MAX_NAME_CHARS, TermDB
from linker.types import Candidate, ConceptCard

log = logging.getLogger(__name__)

#: Names fetched from FAISS per concept asked for, so that concepts with many close names still fill k.
NAMES_PER_CONCEPT = 4
MIN_NAMES = 32


class ConceptIndex:
    """Search concepts by text. Open with :meth:`load`.

    What a search needs is read when first needed: the FAISS index (and the faiss module) on the first
    vector search, the encoder on the first text to embed. Exact names, concept cards and ``info``
    are answered from the term dictionary alone, without torch, transformers or faiss.
    """

    def __init__(self, path: Path, meta: dict[str, Any], termdb: TermDB, index: Any = None,
                 encoder: Encoder | None = None, model: str | None = None, device: str | None = None,
                 gpu: bool = True) -> None:
        self.path = path
        self.meta = meta
        self.termdb = termdb
        self._faiss = index
        self._gpu = gpu
        self._encoder = encoder
        self._model = model
        self._device = device
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.embedding_cache = EmbeddingCache()
        self._concepts: tuple[np.ndarray, np.ndarray] | None = None
        self._vectors: rescoring.RowFile | None = None
        if encoder is not None:
            self._check_encoder(encoder)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder: Encoder | None = None, model: str | None = None,
             device: str | None = None, gpu: bool = True) -> ConceptIndex:
        """Open an index folder, checking its files are there and its meta.json is one this linker reads.

        The FAISS file is read (and checked against the term dictionary) on the first vector search.
        """
        folder = Path(path)
        meta = read_meta(folder)
        for name in (TERMS_FILE, FAISS_FILE):
            if not (folder / name).exists():
                raise IndexMismatchError(f"{folder}: {META_FILE} is there but {name} is missing; rebuild the index")
        if meta.get("normalizer") != NORMALIZER:
            raise IndexMismatchError(f"{folder}: built with normaliser {meta.get('normalizer')}, this linker uses "
                                     f"{NORMALIZER}; rebuild the index")
        integrity.check(folder, meta, TERMS_FILE)
        return cls(folder, meta, TermDB(folder / TERMS_FILE), None, encoder, model, device, gpu)

    @property
    def faiss(self) -> Any:
        """The FAISS index, read on first use and checked against the term dictionary and meta.json."""
        if self._faiss is None:
            with self._lock:
                if self._faiss is None:
                    self._faiss = self._read_faiss()
        return self._faiss

    def _read_faiss(self) -> Any:

        from linker import faiss_util

        integrity.check(self.path, self.meta, FAISS_FILE)
        try:
            index = faiss_util.read(str(self.path / FAISS_FILE),
                                    prefetch=faiss_util.copies_codes(self.meta["faiss"].get("factory", "")))
        except RuntimeError as err:  # faiss reports a truncated or foreign file as a RuntimeError
            raise IndexMismatchError(f"{self.path}: damaged {FAISS_FILE} ({str(err).splitlines()[0][:200]}); "
                                     "rebuild the index (linker build … --force)") from None
        n_terms = self.termdb.count("terms")
        if index.ntotal != n_terms:
            raise IndexMismatchError(f"{self.path}: {FAISS_FILE} holds {index.ntotal} vectors but {TERMS_FILE} "
                                     f"{n_terms} terms; rebuild the index")
        dimension = self.meta["encoder"]["dimension"]
        if index.d != dimension:
            raise IndexMismatchError(f"{self.path}: {FAISS_FILE} has dimension {index.d}, {META_FILE} says {dimension}")
        faiss_util.apply_params(index, self.meta["faiss"].get("search_params", {}))
        return faiss_util.to_gpu(index) if self._gpu else index

    def _concept_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Each concept's id (UTF-8 bytes, by ordinal) and each term's (FAISS row's) concept ordinal: two arrays of
        the index folder, memory-mapped (no per-term Python objects; pages are read as searches touch them)."""
        if self._concepts is None:
            with self._lock:
                if self._concepts is None:
                    tables = []
                    for name in (CONCEPT_IDS_FILE, TERM_CONCEPTS_FILE):
                        integrity.check(self.path, self.meta, name)
                        try:
                            tables.append(rescoring.map_array(self.path / name))
                        except (OSError, ValueError) as err:
                            raise IndexMismatchError(f"{self.path}: damaged or missing {name} ({err}); rebuild the "
                                                     "index (linker build … --force)") from None
                    self._concepts = tables[0], tables[1]
        return self._concepts

    def _rescoring_vectors(self) -> rescoring.RowFile | None:
        """The float16 vectors a compressed index re-scores its shortlist with (read by row), else None."""
        if not self.meta["faiss"].get("rescore"):
            return None
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    integrity.check(self.path, self.meta, rescoring.VECTORS_FILE)
                    try:
                        self._vectors = rescoring.RowFile(self.path / rescoring.VECTORS_FILE)
                    except (OSError, ValueError) as err:
                        raise IndexMismatchError(f"{self.path}: damaged or missing {rescoring.VECTORS_FILE} ({err}); "
                                                 "rebuild the index (linker build … --force)") from None
        return self._vectors

    # -- encoder ---------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    encoder = self._recorded_encoder()
                    self._check_encoder(encoder)
                    self._encoder = encoder
        return self._encoder

    def _recorded_encoder(self) -> Encoder:
        """The encoder meta.json records: the ONNX export shipped in the folder, else the torch model."""
        recorded = self.meta["encoder"]
        if recorded.get("backend") == "onnx" and self._model is None:
            onnx_dir = recorded.get("onnx_dir", "onnx")
            for name in self.meta.get("files") or {}:
                if name.startswith(f"{onnx_dir}/"):
                    integrity.check(self.path, self.meta, name)
            try:
                return load_encoder(backend="onnx", precision=recorded.get("precision"), device=self._device,
                                    folder=self.path / recorded.get("onnx_dir", "onnx"),
                                    max_length=recorded.get("max_length"))
            except LinkerError as err:
                if "onnxruntime" not in str(err):
                    raise
                log.warning("%s; embedding queries with torch float32 instead (vectors differ slightly)", err)
        shipped = recorded.get("model_dir")  # the model copied inside the index folder
        model = self._model or (str(self.path / shipped) if shipped else recorded["model"])
        precision = recorded.get("precision", "float32")
        return load_encoder(model, device=self._device, max_length=recorded.get("max_length"),
                            precision=precision if precision == "bf16" else "float32")

    def _check_encoder(self, encoder: Encoder) -> None:
        recorded = self.meta["encoder"]
        if encoder.dimension != recorded["dimension"]:
            raise IndexMismatchError(
                f"{self.path}: index vectors have dimension {recorded['dimension']} (model {recorded['model']}), "
                f"but model {encoder.name} gives {encoder.dimension}; use the index's model or rebuild the index"
            )
        if encoder.name != recorded["model"] and not (recorded.get("model_dir") and self._model is None):
            log.warning("index %s was built with %s; searching it with %s", self.path, recorded["model"], encoder.name)

    # -- search ----------------------------------------------------------------------------------------------
    def search(self, texts: Sequence[str], k: int = 10, *, skip_unique_exact: bool = False) -> list[list[Candidate]]:
        """For each text, up to *k* concepts ranked by their best-matching name.

        Concepts with a name equal to the text after :func:`~linker.normalize.normalize` come first
        with score 1.0 and ``exact=True``; the rest are ranked by cosine similarity. With
        *skip_unique_exact*, a text that is the name of exactly one concept gets that concept alone,
        without being embedded or searched (a name shared by several concepts is still ranked).
        """
        if k < 1:
            raise LinkerError(f"k must be at least 1, got {k}")
        texts = list(texts)
        if not texts:
            return []
        for text in texts:
            if len(text) > MAX_NAME_CHARS:
                raise LinkerError(f"a query of {len(text):,} characters ({text[:30]!r}…); a query is compared "
                                  f"with names, which have at most {MAX_NAME_CHARS:,}: look up a term, and annotate "
                                  "running text (linker annotate)")
        exact = self.exact_candidates(texts)
        out: list[list[Candidate] | None] = [None] * len(texts)
        if skip_unique_exact:
            for i, found in enumerate(exact):
                if len(found) == 1:
                    out[i] = found
        rest = [i for i, row in enumerate(out) if row is None]
        if rest:
            vectors = self.embed([texts[i] for i in rest])
            for i, row in zip(rest, self._ranked(vectors, [exact[i] for i in rest], k)):
                out[i] = row
        return [row or [] for row in out]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of *texts* through the query cache. Threads take turns at the encoder (a Hugging Face
        tokenizer is not safe under concurrent calls): the server's lookups and annotations share one index."""
        return self.embedding_cache.embed(texts, self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._encode_lock:
            return self.encoder.encode(texts)

    def search_vectors(self, vectors: np.ndarray, texts: Sequence[str], k: int = 10) -> list[list[Candidate]]:
        """As :meth:`search`, for already embedded *texts*."""
        return self._ranked(vectors, self.exact_candidates(texts), k)

    def exact_candidates(self, texts: Sequence[str]) -> list[list[Candidate]]:
        """For each text, the concepts holding a name equal to it after normalisation, from the term dictionary
        alone: score 1.0, ``exact=True``, concepts holding it as their preferred name first, then by id."""
        keys = [normalize(text) for text in texts]
        exact = self.termdb.exact(keys)
        rows = [sorted(exact.get(key, ()), key=lambda m: (not m[2], m[0])) for key in keys]
        names = self.termdb.names(concept_id for row in rows for concept_id, _, _ in row)
        out = []
        for row in rows:
            seen: dict[str, Candidate] = {}
            for concept_id, matched, _ in row:
                seen.setdefault(concept_id, Candidate(concept_id, names.get(concept_id, concept_id), matched, 1.0, True))
            out.append(list(seen.values()))
        return out

    def _ranked(self, vectors: np.ndarray, exact: list[list[Candidate]], k: int) -> list[list[Candidate]]:
        """Exact candidates first, then the concepts of the nearest names, up to *k* per row."""
        n_names = min(self.faiss.ntotal, max(MIN_NAMES, k * NAMES_PER_CONCEPT))
        scores, ids = rescoring.search(self.faiss, self._rescoring_vectors(), vectors, n_names,
                                        self.meta["faiss"].get("rescore") or rescoring.SHORTLIST)
        concept_ids, term_concept = self._concept_table()
        ordinals = np.where(ids < 0, -1, np.asarray(term_concept)[np.where(ids < 0, 0, ids)]).tolist()
        decoded: dict[int, str] = {}  # concept ordinal -> id, each read from the mapped table once per call
        ranked: list[list[tuple[str, int | None, float]]] = []
        wanted_terms: set[int] = set()
        for row, found in enumerate(exact):
            seen: dict[str, tuple[str, int | None, float]] = {c.concept_id: (c.concept_id, None, 1.0) for c in found}
            for score, term_id, ordinal in zip(scores[row].tolist(), ids[row].tolist(), ordinals[row]):
                if len(seen) >= k:
                    break
                if term_id < 0:
                    continue
                concept_id = decoded.get(ordinal)
                if concept_id is None:
                    concept_id = decoded[ordinal] = concept_ids[ordinal].decode("utf-8")
                if concept_id not in seen:
                    seen[concept_id] = (concept_id, term_id, score)
                    wanted_terms.add(term_id)
            ranked.append(list(seen.values())[:k])
        term_text = self.termdb.terms(sorted(wanted_terms))
        names = self.termdb.names(c for row in ranked for c, term, _ in row if term is not None)
        out = []
        for row, found in zip(ranked, exact):
            by_id = {c.concept_id: c for c in found}
            out.append([by_id[cid] if term is None else Candidate(cid, names.get(cid, cid), term_text[term][1], score, False)
                        for cid, term, score in row])
        return out

    def lookup(self, text: str, k: int = 10) -> list[Candidate]:
        return self.search([text], k)[0]

    # -- concepts --------------------------------------------------------------------------------------------
    def resolve(self, concept_id: str) -> list[str]:
        """Current ids for a live, alternative or obsolete id (empty when unknown)."""
        return self.termdb.resolve(concept_id)

    def card(self, concept_id: str) -> ConceptCard:
        """The concept card of *concept_id*, following alt/obsolete ids to the current concept."""
        current = self.resolve(concept_id)
        if not current:
            raise ConceptNotFoundError(f"{concept_id} is not a concept, alternative or obsolete id of {self.path}")
        card = self.termdb.card(current[0])
        assert card is not None
        return card

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "ontology": self.meta["ontology"], "encoder": self.meta["encoder"],
                "faiss": self.meta["faiss"], "counts": self.meta["counts"], "built_at": self.meta.get("built_at"),
                "versions": self.meta.get("versions")}

    @property
    def dimension(self) -> int:
        return int(self.meta["encoder"]["dimension"])
